"""The GPT forecaster: tokenizer round trip, quantiles of a categorical, batched sampling equal
to one origin at a time, training windows that never reach a test period, and a tiny
training run whose checkpoint the forecaster loads (zero-shot tag on a held-out series)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import registry
from models.gpt_forecaster import GPTForecaster, categorical_quantiles, quantile_levels
from models.series_tokenizer import SeriesTokenizer
from tasks.gpt_forecaster_data import Source, WindowSampler


@pytest.mark.parametrize("scaling", ["standard", "mean"])
def test_scaling_and_binning_round_trip_within_half_a_bin(scaling):
    rng = np.random.default_rng(0)
    tok = SeriesTokenizer(n_bins=256, low=-6, high=6, scaling=scaling)
    x = 2000 + np.cumsum(rng.normal(scale=15, size=(8, 96)), axis=1)  # index-like levels
    loc, scale = tok.stats(x[:, :72])
    z = (x - loc[:, None]) / scale[:, None]
    inside = (z > tok.low) & (z < tok.high)
    back = tok.decode(tok.encode(x, loc, scale), loc, scale)
    err = np.abs(back - x)[inside]
    assert inside.mean() > 0.9
    assert (err <= tok.width / 2 * np.broadcast_to(scale[:, None], x.shape)[inside] + 1e-9).all()


def test_out_of_range_values_clip_to_the_edge_bins_and_nan_is_missing():
    tok = SeriesTokenizer(n_bins=16, low=-2, high=2)
    loc, scale = np.array([0.0]), np.array([1.0])
    ids = tok.encode(np.array([[-50.0, 50.0, np.nan, 0.1]]), loc, scale)
    assert ids.tolist() == [[0, 15, tok.missing_id, 8]]
    assert np.isnan(tok.decode(ids, loc, scale)[0, 2])
    assert tok.vocab_size == 17


def test_a_daily_one_percent_move_spans_several_bins():
    """The reason for standardisation: mean scaling puts a 1 % move of an index inside one bin."""
    rng = np.random.default_rng(1)
    ctx = 2000 * np.exp(np.cumsum(rng.normal(scale=0.01, size=(1, 72)), axis=1))
    move = np.concatenate([ctx, ctx[:, -1:] * 1.01], axis=1)
    bins = {}
    for scaling in ("standard", "mean"):
        tok = SeriesTokenizer(n_bins=512, low=-6 if scaling == "standard" else -15,
                              high=6 if scaling == "standard" else 15, scaling=scaling)
        loc, scale = tok.stats(ctx)
        ids = tok.encode(move, loc, scale)[0]
        bins[scaling] = abs(int(ids[-1]) - int(ids[-2]))
    assert bins["standard"] >= 3 and bins["mean"] <= 1


def test_quantiles_of_a_uniform_categorical_are_linear():
    probs = np.full((1, 10), 0.1)
    qs = quantile_levels((80, 95))
    np.testing.assert_allclose(qs, [0.5, 0.1, 0.9, 0.025, 0.975])
    got = categorical_quantiles(probs, qs, low=-5.0, width=1.0)
    np.testing.assert_allclose(got[0], -5.0 + 10 * qs, atol=1e-9)
    point = categorical_quantiles(np.eye(10)[[3]], np.array([0.5]), low=0.0, width=1.0)
    assert 3.0 <= point[0, 0] <= 4.0  # all mass in bin 3: inside it


def test_sampling_is_batched_and_depends_only_on_the_origin():
    y = 50 + 10 * np.sin(np.arange(400) * 2 * np.pi / 24)
    model = registry.create("gpt_forecaster", season=24, n_samples=8, context=24).fit(y[:300])
    origins = np.array([299, 320, 350])
    all_at_once = model.forecast_origins(y, origins, 6)
    one = model.forecast_origins(y, origins[1:2], 6)
    np.testing.assert_allclose(all_at_once.mean[1:2], one.mean, rtol=1e-6)
    assert model.forecast_origins(y, origins, 6).mean.tolist() == all_at_once.mean.tolist()  # seeded


def test_without_a_checkpoint_the_model_is_untrained_and_never_zero_shot():
    model = registry.create("gpt_forecaster", season=5, series="^GSPC").fit(np.arange(50.0))
    assert model.zero_shot is False and model.log_extras()["tags"]["zero_shot"] == "false"


def test_training_windows_come_only_from_the_sources_and_scale_by_the_context():
    v = np.arange(1000.0)
    tok = SeriesTokenizer(n_bins=64)
    s = WindowSampler([Source("a", "market", v, "t"), Source("short", "pm25", v[:10], "t")], tok, 16, 12,
                      {"market": 1.0, "pm25": 1.0})
    assert [x.uid for x in s.sources] == ["a"]  # too short for a window: dropped
    w, loc, scale = s.windows(torch.Generator().manual_seed(0), 5)
    assert w.shape == (5, 17) and (np.diff(w, axis=1) == 1).all()
    np.testing.assert_allclose(loc, w[:, :12].mean(axis=1))  # the context's mean and spread only
    np.testing.assert_allclose(scale, w[:, :12].std(axis=1))
    x, y = s.tokenize(w, loc, scale)
    assert x.shape == y.shape == (5, 16) and (x[:, 1:] == y[:, :-1]).all()
    # a linear ramp standardised over its first 12 values: the last targets run past the range's top
    assert int(y[0, -1]) > int(y[0, 10])


def test_a_series_scaled_by_its_history_keeps_its_level_in_the_tokens(tmp_path):
    """scale_by history: windows of one series at different levels get different tokens (context scaling
    maps both to the same ones), and the forecaster scales its contexts by the fitted history alike."""
    from models.text.gpt import GPT, GPTConfig

    tok = SeriesTokenizer(n_bins=64, low=-3, high=3)
    v = np.concatenate([np.full(50, 10.0), np.full(50, 30.0)]) + np.tile([0.0, 1.0], 50)
    by_context = WindowSampler([Source("a", "demo", v, "t")], tok, 7, 4, {"demo": 1.0})
    by_history = WindowSampler([Source("a", "demo", v, "t", whole=True)], tok, 7, 4, {"demo": 1.0})
    low, high = v[None, 10:18], v[None, 70:78]
    src = np.array([0])
    assert (by_context.tokenize(low, *by_context.stats(low, src))[0]
            == by_context.tokenize(high, *by_context.stats(high, src))[0]).all()
    lo_ids = by_history.tokenize(low, *by_history.stats(low, src))[0]
    hi_ids = by_history.tokenize(high, *by_history.stats(high, src))[0]
    assert (hi_ids > lo_ids).all()
    np.testing.assert_allclose(by_history.stats(low, src), ([v.mean()], [v.std()]))
    cfg = GPTConfig(block_size=16, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, rope=True)
    torch.save({"model": GPT(cfg).state_dict(), "model_args": cfg.to_dict(), "tokenizer": tok.to_dict(),
                "series": {}, "held_out": {}, "transforms": {}, "train": {}}, tmp_path / "m.pt")
    model = GPTForecaster(GPTForecaster.Params(checkpoint=str(tmp_path / "m.pt"), context=4, scale_by="history"),
                          season=2).fit(v)
    ids, loc, scale, _ = model._contexts(v, np.array([20, 80]))
    np.testing.assert_allclose(loc, v.mean())
    np.testing.assert_allclose(scale, v.std())
    assert (ids[1] > ids[0]).all()


def test_a_trained_checkpoint_loads_and_tags_held_out_series_as_zero_shot(tmp_path):
    from models.text.gpt import GPT, GPTConfig

    tok = SeriesTokenizer(n_bins=32)
    cfg = GPTConfig(block_size=16, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, rope=True)
    torch.save({"model": GPT(cfg).state_dict(), "model_args": cfg.to_dict(), "tokenizer": tok.to_dict(),
                "series": {"^KS11": {"dataset": "market", "train_end": "2018-05-01", "n_points": 500}},
                "held_out": {"market": "^GSPC"}, "transforms": {"market": "none"}, "train": {"iters": 0}},
               tmp_path / "model.pt")
    seen = registry.create("gpt_forecaster", season=5, checkpoint=str(tmp_path / "model.pt"), context=8,
                           series="^KS11").fit(np.arange(60.0))
    held = registry.create("gpt_forecaster", season=5, checkpoint=str(tmp_path / "model.pt"), context=8,
                           series="^GSPC").fit(np.arange(60.0))
    assert seen.zero_shot is False and held.zero_shot is True
    assert held.log_extras()["tags"] == {"zero_shot": "true", "held_out": "^GSPC"}
    fc = held.predict(5)
    assert fc.mean.shape == (1, 5) and np.isfinite(fc.mean).all()
    held.save(tmp_path / "saved")
    again = registry.load(tmp_path / "saved")
    assert isinstance(again, GPTForecaster) and again.zero_shot is True
    np.testing.assert_allclose(again.predict(5).mean, fc.mean)



def test_the_comparison_has_one_row_per_model_and_a_zero_shot_block():
    from flows.gpt_forecaster import columns_of, comparison_rows, markdown

    m = lambda task, mase: {f"{task}_mase": mase, f"{task}_cov80": 0.8, f"{task}_cov95": 0.95}  # noqa: E731
    boards = {"pm25": {"us_embassy": {"naive": m("P1b", 0.707), "sarima": m("P1b", 0.69),
                                      "gpt_forecaster": m("P1b", 0.6)},
                       "Dongsi": {"naive": m("P1b", 0.8), "gpt_forecaster": m("P1b", 0.7), "arima": m("P1b", 0.75)}},
              "market": {"^KS11": {"naive": m("P2a", 1.0), "prophet": m("P2a", 1.3), "gpt_forecaster": m("P2a", 1.01)}}}
    tasks = {"pm25": "P1b", "market": "P2a"}
    rows = comparison_rows(boards, {"pm25": "us_embassy", "market": "^KS11"}, {"pm25": "Dongsi", "market": None},
                           tasks)
    main = [r for r in rows if r["series"] == "us_embassy / ^KS11"]
    assert [r["model"] for r in main] == ["naive", "sarima", "prophet", "gpt_forecaster"]
    naive = main[0]
    assert naive["P1b_mase"] == 0.707 and naive["P2a_mase"] == 1.0
    assert main[1]["P2a_mase"] is None and main[2]["P1b_mase"] is None  # a model that ran on one dataset only
    zero = [r for r in rows if r["series"] == "Dongsi"]
    assert [(r["model"], r["zero_shot"]) for r in zero] == [("naive", False), ("arima", False),
                                                            ("gpt_forecaster", True)]
    assert "| gpt_forecaster | Dongsi | yes | 0.700 |" in markdown(rows, columns_of(tasks))


@pytest.mark.parametrize("transform", ["none", "log1p", "log_return"])
def test_model_inputs_invert_to_the_next_values(transform):
    from models.gpt_forecaster import inverse, model_inputs

    y = np.array([100.0, 101.0, 99.0, 102.0, 104.0])
    z, level = model_inputs(y, transform)
    # the inputs after origin 1, mapped back from the level at origin 1, are the values that followed
    np.testing.assert_allclose(inverse(z[None, 2:], level[1], transform)[0], y[2:])


def test_compare_command_writes_the_table(tmp_path, mirror, prefect_server):
    """`python -m flows.gpt_forecaster compare`, as a user types it, on two small leaderboards."""
    import json
    import subprocess
    import sys

    from conftest import child_env, copy_project

    ws = copy_project(tmp_path / "project", {"gpt_forecaster_train": {"held_out": {"market": None, "pm25": None}}})
    board = ws / "reports" / "backtest"
    board.mkdir(parents=True, exist_ok=True)
    (board / "pm25.json").write_text(json.dumps({"us_embassy": {"naive": {"P1b_mase": 0.707, "P1b_cov80": 0.88},
                                                                "gpt_forecaster": {"P1b_mase": 0.69}}}))
    (board / "market.json").write_text(json.dumps({"^KS11": {"naive": {"P2a_mase": 1.317}}}))
    out = subprocess.run([sys.executable, "-m", "flows.gpt_forecaster", "compare"], cwd=ws,
                         env=child_env(ws, mirror, prefect_server), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    table = (ws / "reports" / "gpt_forecaster" / "comparison.md").read_text()
    assert "| naive | us_embassy / ^KS11 |  | 0.707 | 0.880 | – | – | 1.317 |" in table
    assert "| gpt_forecaster | us_embassy / ^KS11 |  | 0.690 |" in table


def test_returns_are_scaled_around_zero_not_their_context_mean():
    tok = SeriesTokenizer(n_bins=64, low=-4, high=4)
    r = np.array([[0.01, 0.02, 0.01, 0.02]])
    loc, scale = tok.stats(r, centered=False)
    assert loc[0] == 0.0 and scale[0] == pytest.approx(np.sqrt(np.mean(r**2)))
    zero = tok.encode(np.array([[0.0]]), loc, scale)[0, 0]
    assert tok.decode(np.array([[zero]]), loc, scale)[0, 0] == pytest.approx(0.0, abs=tok.width * scale[0])


def test_the_held_out_series_run_the_gpt_forecaster_beside_the_fitted_models():
    from seqcast.config import load_params
    from tasks.series import models_for

    params = load_params()
    held = params.gpt_forecaster_train.held_out
    for dataset in ("market", "pm25"):
        series = params.dataset(dataset).series
        names = models_for(held[dataset], series[0], dataset, params)
        assert names[0] == "naive" and "gpt_forecaster" in names and len(names) > 2
        other = next(s for s in series[1:] if s != held[dataset])
        assert "gpt_forecaster" not in models_for(other, series[0], dataset, params)
