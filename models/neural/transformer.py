"""Transformer encoder-decoder for multi-step forecasts.

Encoder: the window's rows projected to ``d_model`` plus learned positions, multi-head
self-attention over the (all past) window. Decoder: token k carries the value at step
k-1 (token 0: the origin's value, i.e. change 0), masked self-attention (a causal mask:
token k sees tokens <= k only) and encoder-decoder attention over the window.
With ``decoding: autoregressive`` training uses teacher forcing (the true previous
values) and forecasting feeds back its own outputs; with ``decoding: direct`` every
decoder token is a step embedding and all steps come out of one pass (no exposure bias).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from models.neural.base import NeuralForecaster
from models.registry import register
from seqcast.model_config import TransformerParams


def causal_mask(n: int, device=None) -> torch.Tensor:
    """(n, n) additive mask: -inf above the diagonal (position i may not attend to j > i)."""
    return torch.triu(torch.full((n, n), float("-inf"), device=device), diagonal=1)


class TransformerNet(nn.Module):
    def __init__(self, n_features: int, d_model: int, heads: int, layers: int, ff: int, dropout: float,
                 input_size: int, horizon: int, direct: bool = False) -> None:
        super().__init__()
        self.horizon = horizon
        self.direct = direct
        self.src_proj = nn.Linear(n_features, d_model)
        self.src_pos = nn.Parameter(torch.randn(input_size, d_model) * 0.02)
        self.tgt_proj = nn.Linear(1, d_model)
        self.tgt_pos = nn.Parameter(torch.randn(horizon, d_model) * 0.02)
        with warnings.catch_warnings():  # nested tensors are off with norm_first; nothing to act on
            warnings.simplefilter("ignore")
            self.transformer = nn.Transformer(d_model, heads, layers, layers, ff, dropout, batch_first=True,
                                              norm_first=True)
        self.out = nn.Linear(d_model, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        return self.transformer.encoder(self.src_proj(x) + self.src_pos[-L:])  # (B, L, d)

    def decode(self, memory: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """prev (B, k, 1): values at steps 0..k-1 -> forecasts (B, k) for steps 1..k."""
        k = prev.shape[1]
        tgt = self.tgt_proj(prev) + self.tgt_pos[:k]
        out = self.transformer.decoder(tgt, memory, tgt_mask=causal_mask(k, prev.device), tgt_is_causal=True)
        return self.out(out).squeeze(-1)

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        memory = self.encode(x)
        start = x.new_zeros(x.shape[0], 1, 1)
        if self.direct:  # all steps in one pass: token k = step embedding only (no fed-back values)
            return self.decode(memory, x.new_zeros(x.shape[0], self.horizon, 1))
        if target is not None:  # teacher forcing: inputs are the true changes at steps 0..H-1
            prev = torch.cat([start, target[:, :-1, None]], dim=1)
            return self.decode(memory, prev)
        prev = start
        for _ in range(self.horizon):
            step = self.decode(memory, prev)[:, -1:]  # (B, 1)
            prev = torch.cat([prev, step[:, :, None]], dim=1)
        return prev[:, 1:, 0]


@register
class TransformerForecaster(NeuralForecaster):
    name = "transformer"
    Params = TransformerParams
    tiny_config = {**NeuralForecaster.tiny_config, "d_model": 8, "heads": 2, "ff": 16}

    def build_network(self, n_features: int) -> nn.Module:
        c = self.config
        return TransformerNet(n_features, int(c.d_model), int(c.heads), int(c.layers), int(c.ff),
                              float(c.dropout), self.input_size, self.horizon, c.decoding == "direct")

    def loss_fn(self, net, x, target, mask):
        # missing targets were forward-filled in the inputs; teacher forcing reads the filled values
        pred = net(x, torch.nan_to_num(target))
        err = (pred - target)[mask]
        if self.config.loss == "mae":
            return err.abs().mean()
        return (err**2).mean()
