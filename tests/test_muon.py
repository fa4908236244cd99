"""Muon: the Newton–Schulz orthogonalisation, the blocks of a fused q|k|v matrix, who gets which optimizer."""

import pytest
import torch

from models.text.gpt import GPT, GPTConfig, configure_optimizers
from models.text.muon import Muon, orthogonalize


@pytest.mark.parametrize("shape", [(32, 32), (16, 64), (64, 16)])
def test_orthogonalize_pushes_every_singular_value_near_one(shape):
    torch.manual_seed(0)
    g = torch.randn(*shape) @ torch.diag(torch.logspace(-1, 0, shape[1]))  # singular values over a decade
    s = torch.linalg.svdvals(orthogonalize(g))
    assert s.min() > 0.5 and s.max() < 1.3  # the quintic's band (Jordan 2024), not exactly 1
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    # same singular vectors: the update points where U V^T does
    assert torch.nn.functional.cosine_similarity(orthogonalize(g).flatten(), (u @ vh).flatten(), dim=0) > 0.95


def test_batched_orthogonalization_equals_one_matrix_at_a_time():
    g = torch.randn(5, 12, 20)
    assert torch.allclose(orthogonalize(g), torch.stack([orthogonalize(x) for x in g]), atol=1e-5)


def test_blocks_orthogonalize_q_k_v_separately():
    torch.manual_seed(0)
    w1, w2 = torch.nn.Parameter(torch.zeros(24, 8)), torch.nn.Parameter(torch.zeros(24, 8))
    g = torch.randn(24, 8)
    w1.grad, w2.grad = g.clone(), g.clone()
    Muon([w1], lr=1.0, momentum=0.0, blocks=3).step()
    Muon([w2], lr=1.0, momentum=0.0, blocks=1).step()
    expected = -torch.cat([orthogonalize(b) for b in g.split(8)])  # three 8x8 blocks, scale 1
    assert torch.allclose(w1, expected, atol=1e-5)
    assert torch.allclose(w2, -orthogonalize(g) * 3**0.5, atol=1e-5)  # one tall matrix: sqrt(rows / cols)


def test_muon_takes_hidden_matrices_and_adamw_the_rest():
    m = GPT(GPTConfig(block_size=8, vocab_size=7, n_layer=2, n_head=2, n_embd=8, tie_weights=False))
    muon, adamw = configure_optimizers(m, 0.1, 1e-3, (0.9, 0.99), muon_lr=0.02)
    in_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    in_adamw = {id(p) for g in adamw.param_groups for p in g["params"]}
    assert not in_muon & in_adamw and in_muon | in_adamw == {id(p) for p in m.parameters()}
    hidden = {id(p) for p in m.h.parameters() if p.dim() == 2}
    assert in_muon == hidden
    assert {id(m.wte.weight), id(m.lm_head.weight), id(m.wpe.weight)} <= in_adamw
    assert [g["blocks"] for g in muon.param_groups] == [3, 1]  # q|k|v, then the other matrices


def test_muon_trains_a_tiny_model():
    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=16, rope=True))
    opts = configure_optimizers(m, 0.0, 1e-2, (0.9, 0.99), muon_lr=0.05)
    x, y = torch.randint(11, (4, 16)), torch.randint(11, (4, 16))
    first = None
    for _ in range(100):
        _, loss = m(x, y)
        first = first or loss.item()
        loss.backward()
        for o in opts:
            o.step()
            o.zero_grad()
    assert loss.item() < 0.2 * first
