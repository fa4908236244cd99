"""The GPT forecaster's Chronos levers and its zero-shot protocol, by known answers: a KernelSynth
draw has its kernel's covariance, TSMixup weights are convex, P4 origins end at the last value,
a tiny model trained on a pure seasonal series forecasts it past its block (sliding), and the
lever table summarises seeds as mean and spread."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from models.series_tokenizer import SeriesTokenizer
from seqcast.gpt_forecaster_config import SyntheticParams, TSMixupParams
from tasks.gpt_forecaster_data import Source, WindowSampler, dirichlet_weights, synthetic_sources
from tasks.kernel_synth import BANK, describe, kernel_matrix, kernel_synth, random_spec, sample_gp
from tasks.packaged_series import PACKAGED, p4_protocol, packaged_protocol, season_of, stride_origins


def test_kernels_of_the_bank_have_their_closed_forms():
    t = np.linspace(0, 1, 25)
    per = kernel_matrix(("periodic", 6.0), 25)  # a period of 6 steps
    assert np.allclose(per[0, [0, 6, 12, 18, 24]], 1.0) and per[0, 3] < 0.2
    np.testing.assert_allclose(kernel_matrix(("linear", 1.0), 25), 1.0 + np.outer(t, t))
    np.testing.assert_allclose(kernel_matrix(("rbf", 0.5), 25)[0, -1], np.exp(-1 / (2 * 0.25)))
    np.testing.assert_allclose(kernel_matrix(("rational_quadratic", 1.0), 25)[0, -1], 1 / 1.5)
    np.testing.assert_allclose(kernel_matrix(("white", 0.1), 25), 0.1 * np.eye(25))
    a, b = ("periodic", 6.0), ("rbf", 0.5)
    np.testing.assert_allclose(kernel_matrix(("*", a, b), 25), kernel_matrix(a, 25) * kernel_matrix(b, 25))
    np.testing.assert_allclose(kernel_matrix(("+", a, b), 25), kernel_matrix(a, 25) + kernel_matrix(b, 25))


def test_a_kernel_synth_draw_has_the_covariance_of_its_kernel():
    spec = ("+", ("*", ("periodic", 4.0), ("rbf", 1.0)), ("white", 0.1))
    cov = kernel_matrix(spec, 12)
    draws = sample_gp(cov, np.random.default_rng(0), n=40000)  # (n, 12)
    np.testing.assert_allclose(draws.mean(axis=0), 0.0, atol=0.03)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), cov, atol=0.04)


def test_kernel_synth_composes_one_to_max_kernels_and_is_seeded():
    rng = np.random.default_rng(3)
    assert all(random_spec(rng, 1) in BANK for _ in range(20))
    sizes = {describe(random_spec(rng, 3)).count("(") for _ in range(200)}
    assert sizes == {1, 2, 3}
    a, b = kernel_synth(4, 64, seed=5), kernel_synth(4, 64, seed=5)
    assert [describe(s) for s, _ in a] == [describe(s) for s, _ in b]
    assert all(np.array_equal(x, y) and x.shape == (64,) and np.isfinite(x).all() for (_, x), (_, y) in zip(a, b))


def test_synthetic_sources_are_the_lecture_processes_then_kernel_synth():
    p = SyntheticParams(n_series=5, length=300, seed=0, kernel_synth={"n_series": 3, "length": 128, "max_kernels": 5})
    src = synthetic_sources(p)
    assert [s.uid.split("_", 1)[1].rsplit("_", 1)[0] for s in src[:5]] == [
        "white_noise", "random_walk", "ar1", "seasonal", "gbm"]
    assert [len(s.values) for s in src] == [300] * 5 + [128] * 3
    assert all(s.group == "synthetic" for s in src) and src[5].uid.startswith("kernel_synth_0: ")
    assert (src[4].values > 0).all()  # GBM stays positive


def test_tsmixup_weights_are_convex_and_the_mix_is_standardised():
    rng = np.random.default_rng(0)
    for k in (1, 2, 3):
        w = dirichlet_weights(rng, k, 1.5)
        assert w.shape == (k,) and (w >= 0).all() and w.sum() == pytest.approx(1.0)
    tok = SeriesTokenizer(n_bins=64)
    ramp = np.arange(40.0)
    s = WindowSampler([Source("a", "demo", ramp, "t")], tok, 16, 12, {"demo": 1.0})
    one = np.stack([ramp[:17], 5 * ramp[:17] + 100])  # the same shape at another level and scale
    mixed = s.mix(one, *s.stats(one, np.array([0, 0])), np.array([0.3, 0.7]))
    z = (ramp[:17] - ramp[:12].mean()) / ramp[:12].std()
    np.testing.assert_allclose(mixed, z)  # both standardise to the same window: any convex mix is it


def test_tsmixup_replaces_that_share_of_windows_with_mixes_of_real_series():
    tok = SeriesTokenizer(n_bins=64)
    real = Source("real", "demo", np.sin(np.arange(500.0)) * 50 + 1000, "t")
    synth = Source("synth", "synthetic", np.arange(500.0), "")
    gen = torch.Generator().manual_seed(0)
    never = WindowSampler([real, synth], tok, 16, 12, {"demo": 0.5, "synthetic": 0.5})
    always = WindowSampler([real, synth], tok, 16, 12, {"demo": 0.5, "synthetic": 0.5},
                           TSMixupParams(prob=1.0, max_k=2, alpha=1.5))
    w0, _, _ = never.windows(gen, 64)
    w1, loc, scale = always.windows(gen, 64)
    assert (w0 > 100).any()  # raw levels
    assert np.abs(w1).max() < 10 and (loc == 0).all() and (scale == 1).all()  # mixes of standardised windows
    assert not np.isclose(np.diff(w1, axis=1), np.diff(w1, axis=1)[:, :1]).all(axis=1).any()  # no synthetic ramp


def test_the_season_comes_from_the_frequency_and_short_series_are_refused():
    assert [season_of(f) for f in ("weekly", "monthly", "quarterly", "yearly", "hourly")] == [52, 12, 4, 1, 24]
    with pytest.raises(ValueError, match="unknown frequency"):
        season_of("fortnightly")
    with pytest.raises(ValueError, match="too few"):
        p4_protocol("short", pd.Series(np.arange(20.0), index=pd.date_range("2000", periods=20, freq="MS")), 12)


def test_p4_origins_step_by_h_and_the_last_forecast_ends_at_the_last_value():
    assert stride_origins(80, 100, 4).tolist() == [79, 83, 87, 91, 95]
    y = pd.Series(np.arange(120.0), index=pd.date_range("2000", periods=120, freq="MS"))
    proto = p4_protocol("x", y, 12)
    one, many = proto.tasks
    assert proto.n_train == 96 and (one.name, one.h, one.origins[0], one.origins[-1]) == ("P4a", 1, 95, 118)
    assert (many.name, many.h) == ("P4b", 12) and many.origins[-1] + many.h == 119
    assert proto.scale == 12.0  # a ramp: the seasonal-naive MAE is the season
    yearly = p4_protocol("y", y, 1)
    assert [t.name for t in yearly.tasks] == ["P4a"] and yearly.scale == 1.0  # h = 1: one task


def test_packaged_series_validation_never_reaches_the_test_part():
    co2 = next(s for s in PACKAGED if s.frequency == "weekly")
    test, val = packaged_protocol(co2), packaged_protocol(co2, validation=True)
    assert co2.season == 52 and test.tasks[1].h == 52
    assert val.ds[-1] < test.ds[test.n_train]  # the validation protocol ends before the test part starts


def test_a_pure_seasonal_series_is_forecast_past_the_block(tmp_path, one_thread):
    """A tiny model trained on a sinusoid continues it 24 steps from a block of 24 (context 16: two slides)."""
    from models.text.gpt import GPTConfig
    from models.gpt_forecaster import GPTForecaster
    from seqcast.gpt_config import TrainParams
    from tasks.text.gpt_train import train

    period = 8
    y = 10 + 3 * np.sin(2 * np.pi * np.arange(600) / period)
    tok = SeriesTokenizer(n_bins=64, low=-3, high=3)
    sampler = WindowSampler([Source("sine", "demo", y[:400], "")], tok, 24, 16, {"demo": 1.0})
    cfg = GPTConfig(block_size=24, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=32, rope=True,
                    qk_norm=True, mlp="relu2", tie_weights=False)
    tp = TrainParams(batch_size=16, max_iters=200, lr=3e-3, warmup_iters=10, lr_decay_iters=200,
                     eval_interval=1000, eval_iters=1, threads=1)
    res = train(cfg, tp, lambda g: sampler.batch(g, 16), lambda m: {}, tmp_path, seed=0, resume=False, progress=False)
    torch.save({"model": res["model"].state_dict(), "model_args": cfg.to_dict(), "tokenizer": tok.to_dict(),
                "series": {}, "held_out": {}, "transforms": {}, "train": {}}, tmp_path / "m.pt")
    model = GPTForecaster(GPTForecaster.Params(checkpoint=str(tmp_path / "m.pt"), context=16, n_samples=16),
                          season=period).fit(y[:400])
    origins = np.array([399, 433, 470, 555])
    fc = model.forecast_origins(y, origins, 24)
    actual = y[origins[:, None] + 1 + np.arange(24)]
    persistence = np.abs(y[origins][:, None] - actual).mean()
    assert np.abs(fc.mean - actual).mean() < 0.2 * persistence
    assert (fc.lower[80] <= fc.mean).all() and (fc.mean <= fc.upper[80]).all()


def test_the_lever_table_is_the_mean_and_spread_over_seeds():
    from benchmarks.gpt_forecaster import geo_mean, markdown, summarize

    rows = [{"variant": "a", "seed": s, "P1b_rel": v, "train_s": 10.0} for s, v in enumerate([0.9, 1.0, 1.1])]
    rows.append({"variant": "b", "seed": 0, "P1b_rel": 0.8})
    (a, b) = summarize(rows)
    assert a["seeds"] == 3 and a["P1b_rel"] == [1.0, 0.1] and a["train_s"] == [10.0, 0.0]
    assert b["P1b_rel"] == [0.8, 0.0] and "P2a_rel" not in b
    assert "| a | 3 | 1.000 ± 0.100 |" in markdown([a, b])
    assert geo_mean([0.5, 2.0]) == pytest.approx(1.0)


@pytest.mark.parametrize("transform", ["none", "log_return"])
def test_mixture_quantiles_are_those_of_each_steps_distribution_over_the_prefixes(transform):
    """Two sampled prefixes, each sure of its next bin: the mixture puts half the mass on each."""
    from models import registry

    model = registry.create("gpt_forecaster", season=1, transform=transform).fit(np.arange(1.0, 60.0))
    tok = model.tok
    K = tok.n_bins
    probs = np.zeros((1, 2, K))
    probs[0, 0, 10], probs[0, 1, 20] = 1.0, 1.0
    loc, scale, last = np.array([0.0]), np.array([1.0]), np.array([0.5])
    qs = np.array([0.5, 0.25, 0.75])
    if transform == "none":
        got = model._mixture_step(probs, np.zeros((1, 2, 0), dtype=int), loc, scale, last, qs)[0]
        assert tok.low + 10 * tok.width <= got[1] <= tok.low + 11 * tok.width
        assert tok.low + 20 * tok.width <= got[2] <= tok.low + 21 * tok.width
    else:  # log returns: each prefix's past bins shift its next value (y = exp(level + sum of returns))
        drawn = np.array([[[30], [40]]])
        got = model._mixture_step(probs, drawn, loc, scale, last, qs)[0]
        c = tok.centers
        np.testing.assert_allclose(got[1:], [np.exp(0.5 + c[30] + c[10]), np.exp(0.5 + c[40] + c[20])])


def test_mixture_forecasts_depend_only_on_the_origin():
    from models import registry

    y = 50 + 10 * np.sin(np.arange(400) * 2 * np.pi / 24)
    model = registry.create("gpt_forecaster", season=24, n_samples=8, context=24, quantiles="mixture").fit(y[:300])
    origins = np.array([299, 320, 350])
    fc = model.forecast_origins(y, origins, 6)
    one = model.forecast_origins(y, origins[1:2], 6)
    np.testing.assert_allclose(fc.mean[1:2], one.mean, rtol=1e-6)
    assert (fc.lower[95] <= fc.lower[80]).all() and (fc.lower[80] <= fc.mean).all() and (fc.mean <= fc.upper[80]).all()
