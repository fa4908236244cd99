"""The recurrent rungs: the stream loss is exact, training learns, two rungs train side by side."""

import math

import pytest
import torch

from models.char_rnn import RecurrentLM, RecurrentLMConfig
from seqcast.gpt_config import RecurrentLMParams
from tasks.recurrent_lm import exact_stream_loss, streams, train_recurrent_lm, train_rungs

DATA = torch.arange(3000) % 7  # a stream a recurrent net learns at once: 0 1 2 3 4 5 6 0 1 ...


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_stream_loss_is_the_mean_over_every_character(cell):
    torch.manual_seed(0)
    m = RecurrentLM(RecurrentLMConfig(vocab_size=7, cell=cell, embd=8, hidden=16)).eval()
    ids, ctx = torch.randint(7, (50,)), torch.randint(7, (10,))
    full = torch.cat([ctx, ids])
    with torch.no_grad():
        logits, _, _ = m(full[None, :-1])  # one pass, no chunking
    expected = torch.nn.functional.cross_entropy(logits[0, 9:], full[10:]).item()  # only the 50 ids are scored
    assert math.isclose(exact_stream_loss(m, ids, ctx, chunk=7), expected, rel_tol=1e-5)  # chunks carry the state
    no_ctx = torch.nn.functional.cross_entropy(m(ids[None, :-1])[0][0], ids[1:]).item()
    assert math.isclose(exact_stream_loss(m, ids, None, chunk=16), no_ctx, rel_tol=1e-5)


def test_streams_are_contiguous_slices():
    s = streams(torch.arange(10), 3)
    assert s.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_training_learns_a_periodic_stream(cell):
    p = RecurrentLMParams(hidden=32, embd=8, seq_len=16, batch_size=8, lr=1e-2, max_iters=60)
    res = train_recurrent_lm(cell, p, DATA, DATA[:500], vocab_size=7)
    assert res["val_loss"] < 0.3 * math.log(7) and res["train_s"] > 0
    assert res["tokens"] == 60 * 8 * 16


def test_two_rungs_train_in_parallel_processes_as_in_one():
    p = RecurrentLMParams(hidden=16, embd=8, seq_len=16, batch_size=4, lr=1e-2, max_iters=10)
    jobs = {"rnn": p, "lstm": p}
    par = train_rungs(jobs, DATA, DATA[:300], 7, seed=3, parallel=True)
    seq = train_rungs(jobs, DATA, DATA[:300], 7, seed=3, parallel=False)
    assert set(par) == {"rnn", "lstm"}
    for cell in jobs:
        assert par[cell]["val_loss"] == pytest.approx(seq[cell]["val_loss"], abs=1e-6)
