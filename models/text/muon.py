"""Muon: momentum orthogonalised by Newton–Schulz, for the hidden weight matrices of a network.

Keller Jordan et al. (2024), the optimizer of the modded-nanogpt speedruns. Adam
scales every coordinate of the update by itself; Muon takes the (Nesterov)
momentum of a weight matrix's gradient and replaces it by the nearest
semi-orthogonal matrix (all singular values ~1), so every direction of the matrix
moves by the same amount and the rare directions are not drowned by the dominant
ones. Five steps of a quintic Newton–Schulz iteration approximate the
orthogonalisation with matrix products only.

Only for 2-D hidden matrices: embeddings, the output head and gains stay with
AdamW (the caller builds both; see ``models.text.gpt.configure_optimizers``).

Two things make it cheap on a CPU: matrices of the same shape are orthogonalised
in one batched product (a 4-layer GPT has two shapes), and a fused q|k|v matrix
is split into its row blocks (param-group option ``blocks``), each orthogonalised
on its own as if q, k and v were separate matrices.
"""

from __future__ import annotations

from collections import defaultdict

import torch

NS_COEFFS = (3.4445, -4.7750, 2.0315)  # quintic with the largest slope at 0 (Jordan 2024)


def orthogonalize(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """~U V^T of each matrix of g (..., m, n) with g = U S V^T: singular values pushed to ~[0.7, 1.2]."""
    a, b, c = NS_COEFFS
    x = g.bfloat16() if g.is_cuda else g  # bf16 is emulated (slow) on CPUs without AVX-512 BF16
    tall = x.size(-2) > x.size(-1)
    if tall:  # iterate on the short side: X X^T is then the smaller Gram matrix
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)  # Frobenius norm >= spectral norm: all singular values <= 1
    for _ in range(steps):
        A = x @ x.mT  # (..., m, m)
        B = b * A + c * (A @ A)
        x = a * x + B @ x
    if tall:
        x = x.mT
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """SGD with Nesterov momentum whose update is orthogonalised, scaled by sqrt(max(1, rows / cols)).

    Param-group options: ``lr``, ``momentum``, ``weight_decay`` (decoupled, as AdamW),
    ``ns_steps``, ``blocks`` (split each matrix into that many row blocks, e.g. 3 for q|k|v).
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, weight_decay: float = 0.0,
                 ns_steps: int = 5, blocks: int = 1):
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "ns_steps": ns_steps,
                    "blocks": blocks}
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2 or p.size(0) % group["blocks"]:
                    raise ValueError(f"Muon takes 2-D matrices whose rows split into {group['blocks']} blocks: {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # (rows, cols, ns_steps) -> [(param, its lr, its weight decay, update slot)]: one batched NS per shape
        batches: dict[tuple, list] = defaultdict(list)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(state["momentum_buffer"])
            grads = [p.grad for p in params]
            mu = group["momentum"]
            torch._foreach_lerp_(bufs, grads, 1 - mu)  # buf = mu buf + (1 - mu) g
            nesterov = torch._foreach_lerp(grads, bufs, mu)  # g + mu (buf - g): look one step ahead
            k = group["blocks"]
            for p, u in zip(params, nesterov):
                blocks = u.view(k, p.size(0) // k, p.size(1))  # (k, m, n)
                batches[(blocks.size(1), blocks.size(2), group["ns_steps"])].append((p, group, blocks))
        for (m, n, steps), items in batches.items():
            ortho = orthogonalize(torch.cat([b for _, _, b in items]), steps)  # (sum k, m, n)
            scale = max(1.0, m / n) ** 0.5  # equal RMS update for tall and wide matrices
            for (p, group, blocks), o in zip(items, ortho.split([b.size(0) for _, _, b in items])):
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(o.reshape(p.shape), alpha=-group["lr"] * scale)
        return loss
