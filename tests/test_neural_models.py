"""Neural forecasters: parameter counts by formula, each window forecast from itself only, the
lecture's LSTM cell, causal masks, attention, overfitting, DeepAR's likelihood, samples and CRPS."""

import numpy as np
import pytest
import torch

from models import registry
from models.neural.deepar import DeepARNet, crps_from_samples
from models.neural.lstm import LectureLSTM
from models.neural.training import n_params
from models.neural.transformer import TransformerNet, causal_mask

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)

NEURAL = sorted(n for n, c in registry.available().items() if getattr(c, "family", "") == "neural")


NETWORKS = ["simple_rnn", "rnn", "lstm", "cnn_lstm", "cnn_lstm_nb", "seq2seq_attn", "transformer"]


def test_every_registered_network_is_under_test():
    assert set(NEURAL) == {*NETWORKS, "deepar", "deepar_plus"}


def test_simple_rnn_has_the_lectures_parameter_counts():
    # Keras summary: BatchNorm 4 (2 trainable), SimpleRNN(1) 3, Dense(1) 2 -> 9 total, 7 trainable
    net = registry.get("simple_rnn")(season=1).build_network(1)
    assert n_params(net) == (9, 7)
    assert registry.get("simple_rnn")(season=24).input_size == 12


def test_lstm_parameter_count_is_the_gate_formula():
    # 4 gates x (input weights + recurrent weights + two biases), then a dense head of H outputs
    model = registry.create("lstm", season=24, hidden=8, horizon=6)
    assert n_params(model.build_network(3)) == (4 * (3 * 8 + 8 * 8 + 2 * 8) + 8 * 6 + 6,) * 2


@pytest.mark.parametrize("name", NETWORKS)
def test_each_window_is_forecast_from_itself_only(name):
    """Every registered network maps windows (B, L, F) to changes (B, H); in eval mode a
    window's output depends on that window (its last value, its exogenous columns) and on
    nothing else in the batch."""
    cls = registry.get(name)
    model = registry.create(name, season=24, **cls.tiny_config)
    n_features = 1 if not cls.supports_exog else 4
    torch.manual_seed(0)
    net = model.build_network(n_features).eval()
    x = torch.randn(5, model.input_size, n_features)
    with torch.no_grad():
        out = net(x)
        assert out.shape == (5, model.horizon) and torch.isfinite(out).all()
        others = x.clone()
        others[1:] = torch.randn(4, model.input_size, n_features) * 3  # the rest of the batch changes
        torch.testing.assert_close(net(others)[0], out[0])
        alone = net(x[:1])  # a batch of one
        torch.testing.assert_close(alone[0], out[0], rtol=1e-5, atol=1e-6)
        moved = x.clone()
        moved[0, -1, 0] += 2.0  # the window's last target value
        assert not torch.allclose(net(moved)[0], out[0])


@pytest.mark.parametrize("likelihood", ["gaussian", "student_t"])
def test_deepar_net_emits_a_valid_distribution_and_its_log_likelihood(likelihood):
    torch.manual_seed(0)
    net = DeepARNet(hidden=8, layers=1, likelihood=likelihood, dropout=0.0).eval()
    (mu, sigma, nu), _ = net(torch.randn(3, 10, 1))
    assert mu.shape == sigma.shape == (3, 10) and (sigma > 0).all()
    z = torch.randn(3, 10)
    if likelihood == "gaussian":
        assert nu is None
        expected = -torch.distributions.Normal(mu, sigma).log_prob(z)
    else:
        assert (nu > 2).all()  # a finite variance
        expected = -torch.distributions.StudentT(nu, mu, sigma).log_prob(z)
    torch.testing.assert_close(net.nll(mu, sigma, nu, z), expected)


def test_lecture_lstm_cell_matches_torch():
    torch.manual_seed(0)
    ref = torch.nn.LSTM(3, 5, batch_first=True)
    mine = LectureLSTM(3, 5)
    with torch.no_grad():
        for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(mine.cell, k).copy_(getattr(ref, f"{k}_l0"))
    x = torch.randn(4, 7, 3)
    h0, c0 = torch.randn(1, 4, 5), torch.randn(1, 4, 5)
    out_ref, (h_ref, c_ref) = ref(x, (h0, c0))
    out, (h, c) = mine(x, (h0[0], c0[0]))
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c, c_ref[0], rtol=1e-5, atol=1e-6)


def test_causal_mask_blocks_the_future():
    mask = causal_mask(4)
    assert torch.isinf(mask[np.triu_indices(4, 1)]).all() and (mask[np.tril_indices(4)] == 0).all()
    torch.manual_seed(0)
    net = TransformerNet(2, 8, 2, 1, 16, 0.0, input_size=10, horizon=6).eval()
    memory = net.encode(torch.randn(3, 10, 2))
    prev = torch.randn(3, 6, 1)
    changed = prev.clone()
    changed[:, 4:] += 10.0  # later decoder positions change
    a, b = net.decode(memory, prev), net.decode(memory, changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_seq2seq_attention_weights_are_a_distribution():
    model = registry.create("seq2seq_attn", season=24, **registry.get("seq2seq_attn").tiny_config)
    net = model.build_network(3).eval()
    net(torch.randn(2, model.input_size, 3))
    att = net.last_attention
    assert att.shape == (2, model.horizon, model.input_size)
    torch.testing.assert_close(att.sum(-1), torch.ones(2, model.horizon))


def test_a_tiny_model_overfits_a_tiny_series():
    t = np.arange(160)
    y = 10 + 5 * np.sin(2 * np.pi * t / 12)
    model = registry.create("lstm", season=12, input_size=12, horizon=3, hidden=16, epochs=60, patience=1000,
                            lr=2e-2, batch_size=32, val_fraction=0.1, progress=False, loss="mse")
    model.fit(y)
    assert model.history[-1]["train_loss"] < 0.01 * model.history[0]["train_loss"]
    fc = model.forecast_origins(y, np.arange(140, 150), 3)
    target = y[np.arange(140, 150)[:, None] + np.arange(1, 4)[None, :]]
    assert np.abs(fc.mean - target).max() < 1.0


def test_crps_from_samples_known_answers():
    rng = np.random.default_rng(0)
    point = np.full((1, 40, 2), 3.0)  # every sample the same value: CRPS = |x - y|
    assert crps_from_samples(point, np.array([[1.0, 3.5]])) == pytest.approx((2.0 + 0.5) / 2)
    normal = rng.standard_normal((1, 20_000, 1))  # N(0, 1) at y = 0: 2 phi(0) - 1/sqrt(pi)
    assert crps_from_samples(normal, np.zeros((1, 1))) == pytest.approx(2 / np.sqrt(2 * np.pi) - 1 / np.sqrt(np.pi),
                                                                         abs=0.005)
    assert crps_from_samples(point, np.array([[np.nan, 3.5]])) == pytest.approx(0.5)  # missing actuals drop out


def test_deepar_point_intervals_and_crps_come_from_its_sample_paths():
    rng = np.random.default_rng(0)
    y = 20 + np.sin(np.arange(400) * 2 * np.pi / 24) * 5 + rng.normal(size=400)
    cls = registry.get("deepar")
    model = registry.create("deepar", season=24, **{**cls.tiny_config, "likelihood": "gaussian"}).fit(y[:300])
    origins = np.arange(299, 320)
    fc = model.forecast_origins(y, origins, 4)
    samples = model.sample_paths(y, origins, 4)  # (n, S, h): the noise is a function of (seed, origin)
    assert samples.shape == (len(origins), cls.tiny_config["num_samples"], 4)
    np.testing.assert_allclose(fc.mean, np.median(samples, axis=1))
    np.testing.assert_allclose(fc.lower[80], np.quantile(samples, 0.1, axis=1))
    np.testing.assert_allclose(fc.upper[95], np.quantile(samples, 0.975, axis=1))
    assert (fc.lower[95] <= fc.lower[80]).all() and (fc.upper[80] <= fc.upper[95]).all()
    actual = y[origins[:, None] + np.arange(1, 5)[None, :]]
    assert model.log_extras()["metrics"]["crps_h4"] == pytest.approx(crps_from_samples(samples, actual))
    # the samples live in original units: around the series' level, not its scaled value
    assert 10 < np.median(samples) < 30
