"""GPT-1 task heads: the speaker task held out by speech, the heads, the auxiliary LM loss, the three variants."""

from __future__ import annotations

import pytest
import torch

from models.text.gpt import GPT, GPTConfig
from models.text.heads import SequenceHead, ValueHead, last_hidden
from models.text.tokenizers import CharTokenizer
from seqcast.gpt_config import HeadsParams
from tasks.text import heads

PLAY = "\n\n".join(
    [f"ROMEO:\nBut soft, what light {i}\nthrough yonder window" for i in range(6)]
    + [f"JULIET:\nO Romeo, Romeo {i}" for i in range(3)]
    + ["NURSE:\nAnon, anon!"]
) + "\n"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny tensors, one thread


def test_speeches_and_the_split_by_speech():
    sp = heads.speeches(PLAY)
    assert len(sp) == 10 and sp[0] == ("ROMEO", ["But soft, what light 0", "through yonder window"])
    task = heads.speaker_task(PLAY, n_speakers=2, test_fraction=0.3, seed=0)
    assert task["speakers"] == ["ROMEO", "JULIET"]  # NURSE is not among the 2 most frequent
    lines = lambda part: {ln for ln, _ in task[part] if ln != "through yonder window"}  # noqa: E731
    assert not lines("train") & lines("test")  # no line (speech) on both sides
    n_test_speeches = sum(1 for ln, _ in task["test"] if ln.startswith(("But", "O Romeo")))
    assert n_test_speeches == int(9 * 0.3)
    # a speech's lines stay together: both ROMEO lines of a held-out speech are in test
    assert sum(ln == "through yonder window" for ln, _ in task["test"]) == sum(ln.startswith("But") for ln, _ in task["test"])


def test_majority_baseline_known_answer():
    assert heads.majority_accuracy(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1, 0])) == 0.5


def test_last_hidden_reads_each_rows_last_real_token_and_padding_does_not_change_it():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=1, n_head=2, n_embd=8)).eval()
    x = torch.tensor([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]])
    h = last_hidden(gpt.hidden(x), torch.tensor([3, 5]))
    assert torch.allclose(h[0], gpt.hidden(x[:1, :3])[0, -1], atol=1e-6)  # causal: the right padding is invisible
    logits, _ = gpt(x[:1, :3])
    assert torch.allclose(gpt.lm_head(gpt.hidden(x[:1, :3]))[:, -1], logits[:, -1], atol=1e-5)  # same as forward
    assert ValueHead(8)(gpt.hidden(x)).shape == (2, 5)


def test_head_loss_adds_lambda_times_the_lm_loss():
    torch.manual_seed(0)
    model = SequenceHead(GPT(GPTConfig(block_size=8, vocab_size=7, n_layer=1, n_head=1, n_embd=8)), 3)
    x, lengths, y = torch.tensor([[1, 2, 3, 0]]), torch.tensor([3]), torch.tensor([2])
    task_only = heads.head_loss(model, x, lengths, y, 0.0)
    both = heads.head_loss(model, x, lengths, y, 0.5)
    logits = model.gpt.lm_head(model.gpt.hidden(x))
    lm = torch.nn.functional.cross_entropy(logits[0, :2], torch.tensor([2, 3]))  # next chars inside the line only
    assert torch.allclose(both, task_only + 0.5 * lm, atol=1e-5)


def test_the_three_variants_and_the_baseline_on_a_tiny_play():
    text = "\n\n".join(f"{'ROMEO' if i % 2 else 'JULIET'}:\n{'ab' * (1 + i % 3) if i % 2 else 'xy' * (1 + i % 3)}"
                       for i in range(80)) + "\n"
    tok = CharTokenizer.train(text)
    torch.manual_seed(0)
    base = GPT(GPTConfig(block_size=16, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16))
    hp = HeadsParams(task="speaker", n_speakers=2, max_chars=8, iters=40, batch_size=8, linear_iters=100,
                     finetune_lr=3e-3)
    res = heads.run_variants(base, tok, heads.make_task(text, hp, 0), hp, seed=0)
    assert set(res) >= {"majority", "linear", "finetune", "scratch"} and res["classes"] == ["JULIET", "ROMEO"]
    assert res["finetune"] == 1.0 and res["scratch"] == 1.0  # 'ab' vs 'xy' lines: trivially separable
    assert res["majority"] <= 0.6


def test_acceptability_task_shuffles_half_the_lines_and_tests_on_the_unseen_text():
    from tasks.text.corpus import split_text

    lines = [f"line {i} of the play is here" for i in range(400)]
    text = "\n".join(lines) + "\n"
    task = heads.acceptability_task(text, seed=1)
    train_text, val_text = split_text(text)
    assert task["classes"] == ["shuffled", "as written"]
    assert all(line in val_text for line, y in task["test"] if y == 1)  # test lines: the P3 validation part
    assert not set(train_text.split("\n")) & {line for line, y in task["test"]}  # no train line is a test line
    ys = [y for _, y in task["train"] + task["test"]]
    assert 0.4 < sum(ys) / len(ys) < 0.6
    for line, y in task["train"][:50]:
        if y == 0:  # the same words in another order: only the order tells them apart
            assert line not in lines and sorted(line.split()) in [sorted(x.split()) for x in lines]


def test_iterations_follow_the_labelled_lines():
    hp = HeadsParams(batch_size=32, epochs=10, min_iters=30, iters=150)
    assert [heads.iterations(n, hp) for n in (50, 200, 1000, 3000)] == [30, 63, 150, 150]


def test_learning_curve_has_a_row_per_size_and_seed():
    text = "\n".join(f"one two three four five {i}" for i in range(300)) + "\n"
    tok = CharTokenizer.train(text)
    torch.manual_seed(0)
    base = GPT(GPTConfig(block_size=32, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16))
    hp = HeadsParams(max_chars=24, iters=3, min_iters=2, linear_iters=3, batch_size=8)
    rows = heads.learning_curve(base, tok, text, hp, sizes=[10, 40], seeds=[1, 2], variants=("finetune",))
    assert [(r["seed"], r["n_train"]) for r in rows] == [(1, 10), (1, 40), (2, 10), (2, 40)]
    assert all("finetune" in r and "scratch" not in r for r in rows)
