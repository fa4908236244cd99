"""Seq2seq encoder-decoder with Luong (dot) attention for multi-step forecasts.

Encoder: an LSTM over the window. Decoder: an LSTM cell run for H steps, its input the
previous step's forecast (the window's last value at step 1). At each step (Luong et al.,
2015, "global attention, dot score"):

    score_s = h_dec . h_enc_s          for every encoder state s
    a       = softmax(score)           attention weights over the window
    context = sum_s a_s h_enc_s
    h~      = tanh(W_c [context; h_dec])
    y_k     = W_o h~

The last batch's weights are kept (``last_attention``, shape (B, H, L)) for the heatmap
logged to MLflow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from models.neural.base import NeuralForecaster
from models.neural.windows import window_index
from models.registry import register
from seqcast.model_config import Seq2SeqAttnParams


class Seq2SeqAttention(nn.Module):
    def __init__(self, n_features: int, hidden: int, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon
        self.encoder = nn.LSTM(n_features, hidden, batch_first=True)
        self.decoder = nn.LSTMCell(1, hidden)
        self.combine = nn.Linear(2 * hidden, hidden)
        self.out = nn.Linear(hidden, 1)
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, F) -> (B, H)
        enc, (h, c) = self.encoder(x)  # enc: (B, L, hid)
        h, c = h[-1], c[-1]
        prev = x.new_zeros(x.shape[0], 1)  # change from the last value: 0 at the origin
        outs, weights = [], []
        for _ in range(self.horizon):
            h, c = self.decoder(prev, (h, c))
            score = torch.bmm(enc, h.unsqueeze(2)).squeeze(2)  # (B, L)
            a = torch.softmax(score, dim=1)
            context = torch.bmm(a.unsqueeze(1), enc).squeeze(1)  # (B, hid)
            h_tilde = torch.tanh(self.combine(torch.cat([context, h], dim=1)))
            prev = self.out(h_tilde)  # (B, 1)
            outs.append(prev)
            weights.append(a)
        self.last_attention = torch.stack(weights, dim=1).detach()  # (B, H, L)
        return torch.cat(outs, dim=1)


@register
class Seq2SeqAttentionForecaster(NeuralForecaster):
    name = "seq2seq_attn"
    Params = Seq2SeqAttnParams
    tiny_config = {**NeuralForecaster.tiny_config, "hidden": 8}

    def build_network(self, n_features: int) -> nn.Module:
        return Seq2SeqAttention(n_features, int(self.config.hidden), self.horizon)

    def attention_map(self, n_windows: int = 200) -> np.ndarray:
        """Mean attention (H, L) over the windows ending at the last ``n_windows`` fitted positions."""
        feats = self.inputs_.features(self.y_, self.X_ if self.n_exog_ else None)
        ends = np.arange(max(self.input_size - 1, len(feats) - n_windows), len(feats))
        self._predict_z(feats[window_index(ends, self.input_size)], batch=len(ends))
        return self.net.last_attention.float().mean(0).cpu().numpy()

    def figures(self) -> dict[str, Any]:
        import matplotlib.pyplot as plt

        figs = super().figures()
        att = self.attention_map()
        fig, ax = plt.subplots(figsize=(7, 4))
        im = ax.imshow(att, aspect="auto", cmap="viridis",
                       extent=(-self.input_size + 0.5, 0.5, self.horizon + 0.5, 0.5))
        ax.set_xlabel("window position (0 = origin)")
        ax.set_ylabel("forecast step")
        ax.set_title("Luong attention, mean over the last 200 training windows")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        figs["attention_heatmap.png"] = fig
        return figs
