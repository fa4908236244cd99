"""A copy head for the GPT (a pointer-generator output, See et al. 2017 "Get To The Point"; CopyNet, Gu et al. 2016).

The next token is a mixture of two distributions the model computes itself:

    p(x_{t+1}) = (1 - g_t) * softmax(lm_head(h_t))  +  g_t * sum_j a_tj [x_j = x_{t+1}]      j <= t

``g_t = sigmoid(w . h_t + b)`` is a learnt gate (generate or copy) and ``a_t`` a learnt
attention over the tokens already in the context (point at position j: emit x_j). Its
score adds two parts:

- the *n-gram part*: position j is a good place to continue from when the characters
  before it, x_{j-1}, ..., x_{j-n}, are the characters just written, x_t, ..., x_{t-n+1}.
  Each offset has a learnt embedding (unit-normalised), so the score counts the offsets
  that match, times a learnt scale. This is the induction mechanism (Olsson et al. 2022)
  that a 4-layer character model does not form in a few hundred fine-tuning steps on
  2 CPU cores, given as structure instead of learnt from scratch;
- the *content part*: ``(W_q h_t) . (W_k h_j) / sqrt(d)``, which learns *where* to copy
  from (a name of the question, a value of a tool's result).

Nothing here knows names, tools or JSON: which text to copy, when, and when to stop is
learnt from the fine-tuning data. The output is a log-probability (B, T, V) that stands
where the logits were (``log_softmax`` of it is itself: losses, sampling and log-probs of
sequences are unchanged). With a :class:`models.text.gpt.KVCache`, the keys and the tokens of
earlier positions are kept in the cache, so generation feeds one token per step.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def shifted(idx: torch.Tensor, k: int) -> torch.Tensor:
    """``idx`` moved right by ``k`` along time (token 0 where nothing precedes): x_{t-k} at t."""
    return F.pad(idx, (k, 0))[:, : idx.size(1)] if k else idx


class CopyHead(nn.Module):
    def __init__(self, vocab_size: int, n_embd: int, ngram: int, dim: int = 32):
        super().__init__()
        self.ngram, self.dim, self.vocab_size = ngram, dim, vocab_size
        self.offsets = nn.ModuleList(nn.Embedding(vocab_size, dim) for _ in range(ngram))
        self.q = nn.Linear(n_embd, dim, bias=False)
        self.k = nn.Linear(n_embd, dim, bias=False)
        self.gate = nn.Linear(n_embd, 1)
        self.scale = nn.Parameter(torch.tensor(4.0))  # one matching offset: e^4 times more attention
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for e in self.offsets:
            nn.init.normal_(e.weight, std=1.0)
        nn.init.normal_(self.q.weight, std=0.02)
        nn.init.normal_(self.k.weight, std=0.02)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, -2.0)  # start mostly generating: the pretrained model's output

    def _ngram(self, idx: torch.Tensor, first: int) -> torch.Tensor:
        """Sum of the unit embeddings of x_{t-first}, x_{t-first-1}, ... (offset i has its own table)."""
        return sum(F.normalize(e(shifted(idx, first + i)), dim=-1) for i, e in enumerate(self.offsets))

    def forward(self, idx: torch.Tensor, h: torch.Tensor, logits: torch.Tensor, cache=None, start: int = 0,
                last_only: bool = False) -> torch.Tensor:
        """Log-probabilities of the next token, (B, T, V) or (B, 1, V) with ``last_only``.

        ``idx`` (B, T) and ``h`` (B, T, C) are this call's tokens and final hidden states;
        ``logits`` the output head's for the same rows (only the last one with ``last_only``).
        With ``cache`` (positions ``start`` .. ``start+T-1`` are new) earlier keys and tokens
        come from it and this call's are stored in it.
        """
        B, T = idx.shape
        if cache is not None:
            cache.tokens[:, start : start + T] = idx
            full = cache.tokens[:, : start + T]  # every token so far: the n-gram features need the ones before
        else:
            full = idx
        keys_e = self._ngram(full, 1)[:, -T:]  # at j: x_{j-1}, x_{j-2}, ...
        keys_h = self.k(h)
        if cache is not None:
            cache.copy_e[:, start : start + T] = keys_e
            cache.copy_h[:, start : start + T] = keys_h
            keys_e, keys_h = cache.copy_e[:, : start + T], cache.copy_h[:, : start + T]
            vals = cache.tokens[:, : start + T]
        else:
            vals = idx
        rows = slice(T - 1, T) if last_only else slice(0, T)
        q_e = self._ngram(full, 0)[:, -T:][:, rows]  # at t: x_t, x_{t-1}, ...
        hq = h[:, rows]
        score = self.scale * (q_e @ keys_e.transpose(1, 2)) + self.q(hq) @ keys_h.transpose(1, 2) / math.sqrt(self.dim)
        n_q, n_k = score.shape[1], score.shape[2]
        pos_q = torch.arange(n_k - n_q, n_k, device=idx.device).unsqueeze(1)  # absolute positions of the queries
        allowed = torch.arange(n_k, device=idx.device).unsqueeze(0) <= pos_q  # j <= t: only tokens already there
        att = score.masked_fill(~allowed, float("-inf")).softmax(-1)  # (B, n_q, n_k)
        p_copy = torch.zeros(B, n_q, self.vocab_size, dtype=att.dtype, device=idx.device)
        p_copy.scatter_add_(2, vals.unsqueeze(1).expand(B, n_q, n_k), att)
        g = torch.sigmoid(self.gate(hq))  # (B, n_q, 1)
        p = (1 - g) * logits.float().softmax(-1) + g * p_copy
        return torch.log(p.clamp_min(1e-12)).to(logits.dtype)
