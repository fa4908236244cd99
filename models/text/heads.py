"""Heads on the GPT's hidden states: a task head (GPT-1), a scalar reward head, a per-token value head (PPO).

GPT-1 (Radford et al. 2018) fine-tunes with the last token's hidden state h_T of the
decoder fed to one linear layer, W_y h_T, and optionally keeps the language-model
loss as an auxiliary objective (L = L_task + lambda * L_LM). The reward model of
InstructGPT is the same thing with one output (a scalar score of a whole text); PPO's
critic is one output per position. The heads read :meth:`models.text.gpt.GPT.hidden`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.text.gpt import GPT


def last_hidden(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's last real token: h (B, T, C), lengths (B,) -> (B, C).

    Rows are right-padded; the decoder is causal, so padding after a row's end never changes it.
    """
    return h[torch.arange(h.size(0), device=h.device), lengths - 1]  # (B, C)


def mean_hidden(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The mean hidden state over each row's real tokens: h (B, T, C), lengths (B,) -> (B, C) (padding left out)."""
    mask = (torch.arange(h.size(1), device=h.device)[None, :] < lengths[:, None]).to(h.dtype)  # (B, T)
    return (h * mask[..., None]).sum(1) / lengths[:, None].to(h.dtype)


POOLS = {"last": last_hidden, "mean": mean_hidden}  # what a head reads of a row: GPT-1's last token, or the mean


class SequenceHead(nn.Module):
    """A GPT + a linear map of the pooled hidden state (``pool``: the last token's, GPT-1, or the line's mean)
    to ``n_out`` values (classes, or 1: a reward)."""

    def __init__(self, gpt: GPT, n_out: int, pool: str = "last"):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {sorted(POOLS)}, not {pool!r}")
        self.gpt = gpt
        self.pool = pool
        self.head = nn.Linear(gpt.config.n_embd, n_out)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor, with_lm: bool = False):
        """idx (B, T), lengths (B,) -> head outputs (B, n_out) [and the LM logits (B, T, V) for the auxiliary loss]."""
        h = self.gpt.hidden(idx)  # (B, T, C)
        out = self.head(POOLS[self.pool](h, lengths))  # (B, n_out)
        return (out, self.gpt.lm_head(h)) if with_lm else out


class ValueHead(nn.Module):
    """PPO's critic: one value per position from the hidden states, V(s_t) = w . h_t + b."""

    def __init__(self, n_embd: int):
        super().__init__()
        self.v = nn.Linear(n_embd, 1)
        nn.init.zeros_(self.v.weight)
        nn.init.zeros_(self.v.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.v(h).squeeze(-1)  # (B, T, C) -> (B, T)
