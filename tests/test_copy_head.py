"""The chat model's copy head (models/text/copy_head.py): a distribution, the induction it starts with, the KV cache."""

import pytest
import torch

from models.text.gpt import GPT, GPTConfig, grow_model

CFG = GPTConfig(block_size=48, vocab_size=20, n_layer=2, n_head=2, n_embd=32, rope=True, qk_norm=True, copy_ngram=3)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny tensors, one thread


def model(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**CFG.to_dict(), **kw})).eval()


def test_output_is_a_log_distribution_and_the_last_row_is_the_full_forwards():
    m = model()
    x = torch.randint(20, (2, 17))
    with torch.no_grad():
        full, loss = m(x, x)
        last, _ = m(x)
    assert torch.allclose(full.exp().sum(-1), torch.ones(2, 17), atol=1e-5)  # log-probabilities: they sum to one
    assert torch.allclose(full[:, -1], last[:, 0], atol=1e-5)
    assert torch.allclose(torch.log_softmax(full, -1), full, atol=1e-5)  # losses and samplers read them as logits
    assert torch.isfinite(loss)


def test_copying_continues_the_earlier_occurrence_of_what_was_just_written():
    """Known answer (induction): after "...9 3 7 1 5 ... 9 3 7" a copy-only head says 1, the token that followed."""
    m = model()
    with torch.no_grad():
        m.copy.gate.bias.fill_(30.0)  # copy only
        m.copy.q.weight.zero_()  # no content part: the n-gram part alone
        m.copy.scale.fill_(8.0)
    x = torch.tensor([[2, 9, 3, 7, 1, 5, 4, 6, 8, 9, 3, 7]])
    with torch.no_grad():
        logp, _ = m(x)
    assert int(logp[0, -1].argmax()) == 1
    assert float(logp[0, -1].exp()[1]) > 0.99
    # and a token that never occurred in the context cannot be copied
    assert float(logp[0, -1].exp()[19]) < 1e-6


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cached_generation_gives_the_tokens_of_full_recomputation(temperature):
    m = model()
    with torch.no_grad():
        m.copy.gate.bias.fill_(0.0)  # both halves of the mixture matter
    x = torch.randint(20, (2, 11))
    a = m.generate(x, 30, temperature, seed=5, use_cache=True)
    b = m.generate(x, 30, temperature, seed=5, use_cache=False)
    assert torch.equal(a, b)
    assert a.size(1) == 41


def test_grow_model_adds_the_copy_head_and_the_checkpoint_rebuilds_it():
    from models.text.gpt import model_from_checkpoint

    torch.manual_seed(0)
    base = GPT(GPTConfig(**{**CFG.to_dict(), "copy_ngram": 0, "block_size": 16, "vocab_size": 11}))
    big = grow_model(base, vocab_size=15, block_size=40, seed=0, copy_ngram=4)
    assert big.copy is not None and big.copy.ngram == 4 and base.copy is None
    assert torch.equal(big.h[0].attn.c_attn.weight, base.h[0].attn.c_attn.weight)  # the base's weights carried over
    again = model_from_checkpoint({"model_args": big.config.to_dict(), "model": big.state_dict()}).eval()
    x = torch.randint(15, (1, 20))
    with torch.no_grad():
        assert torch.allclose(again(x, x)[0], big.eval()(x, x)[0])
