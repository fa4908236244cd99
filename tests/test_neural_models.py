"""Neural forecasters: shapes, parameter counts, the lecture's LSTM cell, causal masks, overfitting."""

import numpy as np
import pytest
import torch

from models import registry

torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and the CPU is shared
from models.neural.training import n_params
from models.neural.lstm import LectureLSTM
from models.neural.transformer import TransformerNet, causal_mask

NEURAL = sorted(n for n, c in registry.available().items() if getattr(c, "family", "") == "neural")


def test_all_networks_are_registered():
    assert set(NEURAL) >= {"simple_rnn", "rnn", "lstm", "cnn_lstm", "seq2seq_attn", "transformer", "deepar"}


def test_simple_rnn_has_the_lectures_parameter_counts():
    # Keras summary: BatchNorm 4 (2 trainable), SimpleRNN(1) 3, Dense(1) 2 -> 9 total, 7 trainable
    net = registry.get("simple_rnn")(season=1).build_network(1)
    assert n_params(net) == (9, 7)
    assert registry.get("simple_rnn")(season=24).input_size == 12


@pytest.mark.parametrize("name", [n for n in NEURAL if not n.startswith("deepar")])  # DeepAR nets emit distributions
def test_forward_shapes(name):
    cls = registry.get(name)
    model = registry.create(name, season=24, **cls.tiny_config)
    n_features = 1 if not cls.supports_exog else 4
    net = model.build_network(n_features)
    net.eval()
    x = torch.randn(5, model.input_size, n_features)
    assert net(x).shape == (5, model.horizon)


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


def test_deepar_quantiles_come_from_samples_and_are_ordered():
    rng = np.random.default_rng(0)
    y = 20 + np.sin(np.arange(400) * 2 * np.pi / 24) * 5 + rng.normal(size=400)
    cls = registry.get("deepar")
    model = registry.create("deepar", season=24, **{**cls.tiny_config, "likelihood": "gaussian"}).fit(y[:300])
    fc = model.forecast_origins(y, np.arange(299, 320), 4)
    assert (fc.lower[95] <= fc.lower[80]).all() and (fc.upper[80] <= fc.upper[95]).all()
    assert "crps_h4" in model.log_extras()["metrics"]
