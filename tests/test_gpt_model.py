"""The GPT itself: shapes, causal mask, parameter count, initial loss, overfitting, KV cache, sampling."""

import math

import pytest
import torch

from models.text.gpt import GPT, GPTConfig, sample_next

TINY = GPTConfig(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=16)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny tensors, one thread


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**TINY.to_dict(), **kw}))


def test_shapes_and_inference_path():
    m = tiny()
    x = torch.randint(11, (3, 16))
    logits, loss = m(x, x)
    assert logits.shape == (3, 16, 11) and loss.ndim == 0
    logits, loss = m(x)
    assert logits.shape == (3, 1, 11) and loss is None  # inference: last position only


def test_parameter_count_matches_formula():
    c = TINY
    per_block = 2 * c.n_embd + 3 * c.n_embd**2 + c.n_embd**2 + 2 * 4 * c.n_embd**2  # 2 LNs, qkv, proj, MLP
    expected = c.vocab_size * c.n_embd + c.n_layer * per_block + c.n_embd  # tied head: counted once
    m = tiny()
    assert m.num_params() == expected
    assert m.num_params(non_embedding=False) == expected + c.block_size * c.n_embd
    assert m.lm_head.weight is m.wte.weight  # weight tying


def test_reference_config_size():
    assert GPT(GPTConfig()).num_params() == 795_904  # the P3 "baby": ~0.80M


def test_causal_mask_future_tokens_never_change_earlier_logits():
    m = tiny().eval()
    x = torch.randint(11, (2, 16))
    y = x.clone()
    y[:, 9:] = (y[:, 9:] + 1) % 11  # change every token from position 9 on
    with torch.no_grad():
        a, _ = m(x, x)
        b, _ = m(y, y)
    assert torch.allclose(a[:, :9], b[:, :9], atol=1e-6)
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_loss_at_init_is_ln_vocab():
    m = GPT(GPTConfig(block_size=32, vocab_size=65, n_layer=2, n_head=2, n_embd=32))
    x, y = torch.randint(65, (8, 32)), torch.randint(65, (8, 32))  # y != x: tying favours the input token
    _, loss = m(x, y)
    assert abs(loss.item() - math.log(65)) < 0.1


def test_tiny_model_overfits_one_batch():
    m = tiny()
    x = torch.randint(11, (4, 16))
    y = torch.randint(11, (4, 16))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    for _ in range(150):
        _, loss = m(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_kv_cache_gives_the_same_tokens_as_recomputing():
    m = tiny()
    idx = torch.randint(11, (2, 3))
    cached = m.generate(idx, 12, temperature=0.0, use_cache=True)
    plain = m.generate(idx, 12, temperature=0.0, use_cache=False)
    assert torch.equal(cached, plain)
    # past the context the window slides; both paths still agree
    assert torch.equal(m.generate(idx, 30, 0.0, use_cache=True), m.generate(idx, 30, 0.0, use_cache=False))


def test_kv_cache_logits_match_full_forward():
    from models.text.gpt import KVCache

    m = tiny().eval()
    x = torch.randint(11, (1, 10))
    cache = KVCache(m.config, 1)
    with torch.no_grad():
        m(x[:, :6], cache=cache)  # prefill 6
        l1, _ = m(x[:, 6:8], cache=cache)  # 2 tokens after a cached prefix (explicit mask path)
        l2, _ = m(x[:, 8:9], cache=cache)  # 1 token
        full, _ = m(x, x)
    assert torch.allclose(l1[:, -1], full[:, 7], atol=1e-5)
    assert torch.allclose(l2[:, -1], full[:, 8], atol=1e-5)


def test_temperature_zero_is_deterministic_and_one_is_not():
    m = tiny()
    idx = torch.zeros((1, 1), dtype=torch.long)
    greedy = {tuple(m.generate(idx, 20, temperature=0.0, seed=s)[0].tolist()) for s in range(5)}
    assert len(greedy) == 1  # five identical samples
    sampled = {tuple(m.generate(idx, 20, temperature=1.0, seed=s)[0].tolist()) for s in range(5)}
    assert len(sampled) > 1
    # a seed makes sampling reproducible
    assert torch.equal(m.generate(idx, 20, 1.0, seed=3), m.generate(idx, 20, 1.0, seed=3))


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.tensor([[5.0, 4.0, 1.0, 0.0, -1.0]])
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, 1.0, 2, None, g).item() for _ in range(200)}
    assert draws <= {0, 1}
    draws = {sample_next(logits, 1.0, None, 0.5, g).item() for _ in range(200)}
    assert draws == {0}  # the top token alone holds > 50% of the mass


# ---------------------------------------------------------------- the speedrun options (defaults: the reference)

MODERN = dict(rope=True, qk_norm=True, mlp="relu2", tie_weights=False)


def test_default_config_is_the_reference_and_old_checkpoints_load():
    from models.text.gpt import model_from_checkpoint

    old_args = {"block_size": 16, "vocab_size": 11, "n_layer": 2, "n_head": 2, "n_embd": 16, "dropout": 0.0, "bias": False}
    m = GPT(GPTConfig(**old_args))  # a checkpoint written before the options existed has only these keys
    again = model_from_checkpoint({"model_args": old_args, "model": m.state_dict()})
    c = again.config
    assert (c.rope, c.qk_norm, c.mlp, c.tie_weights) == (False, False, "gelu", True)
    x = torch.randint(11, (2, 16))
    assert torch.equal(again(x, x)[0], m(x, x)[0])


def test_rope_model_has_no_position_table_and_an_untied_head_has_its_own_rows():
    c = TINY
    m = tiny(**MODERN)
    assert m.wpe is None and "wpe.weight" not in m.state_dict()
    assert m.lm_head.weight is not m.wte.weight
    tied = tiny(rope=True)
    assert m.num_params() == tied.num_params() + c.vocab_size * c.n_embd  # the head's own matrix
    assert tied.num_params() == tied.num_params(non_embedding=False)  # nothing positional to exclude


@pytest.mark.parametrize("opts", [dict(rope=True), dict(qk_norm=True), dict(mlp="relu2"), MODERN])
def test_options_keep_causality_and_the_kv_cache_exact(opts):
    m = tiny(**opts).eval()
    x = torch.randint(11, (2, 16))
    y = x.clone()
    y[:, 9:] = (y[:, 9:] + 1) % 11
    with torch.no_grad():
        a, _ = m(x, x)
        b, _ = m(y, y)
    assert torch.allclose(a[:, :9], b[:, :9], atol=1e-6)
    idx = torch.randint(11, (2, 3))
    assert torch.equal(m.generate(idx, 30, 0.0, use_cache=True), m.generate(idx, 30, 0.0, use_cache=False))


def test_rope_attention_depends_on_relative_positions_only():
    from models.text.gpt import apply_rope, rope_tables

    cos, sin = rope_tables(GPTConfig(block_size=32, n_embd=16, n_head=2))  # head size 8
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i, j):  # q at position i, k at position j
        return (apply_rope(q, cos[i : i + 1], sin[i : i + 1]) * apply_rope(k, cos[j : j + 1], sin[j : j + 1])).sum()

    assert torch.allclose(score(3, 1), score(20, 18), atol=1e-5)
    assert not torch.allclose(score(3, 1), score(3, 2), atol=1e-3)
    assert torch.allclose(apply_rope(q, cos[5:6], sin[5:6]).norm(), q.norm(), atol=1e-6)  # a rotation


def test_relu2_mlp_is_relu_squared():
    from models.text.gpt import MLP

    torch.manual_seed(0)
    mlp = MLP(GPTConfig(n_embd=8, mlp="relu2"))
    x = torch.randn(2, 3, 8)
    assert torch.allclose(mlp(x), mlp.c_proj(torch.relu(mlp.c_fc(x)) ** 2))


@pytest.mark.parametrize("opts", [{}, MODERN])
def test_grow_model_keeps_what_the_base_knew(opts):
    from models.text.gpt import grow_model

    base = tiny(**opts).eval()
    big = grow_model(base, vocab_size=15, block_size=40, seed=0).eval()
    assert big.config.vocab_size == 15 and big.config.block_size == 40
    x = torch.randint(11, (2, 16))
    with torch.no_grad():
        a, _ = base(x, x)
        b, _ = big(x, x)
    assert torch.allclose(a, b[..., :11], atol=1e-5)  # old tokens, old positions: the same logits
    assert big(torch.randint(15, (1, 40)))[0].shape == (1, 1, 15)  # the longer context works
