"""The ladder table: the lecture's order, DVC metrics, and the schema's new parts."""

import pytest

from seqcast.gpt_config import GPTParams, GPUParams
from tasks.text import lm_ladder


def test_rows_sort_up_the_ladder_and_become_dvc_metrics():
    rows = lm_ladder.with_perplexity([
        {"model": m, "val_loss": v, "train_s": 1.0, "detail": ""}
        for m, v in [("gpt", 1.5), ("lstm", 1.9), ("6-gram", 1.56), ("unigram", 3.3), ("word bigram", 2.2),
                     ("bigram", 2.5), ("rnn", 2.0), ("word unigram", 2.4)]
    ])
    order = [r["model"] for r in lm_ladder.sort_rows(rows)]
    assert order == ["unigram", "word unigram", "bigram", "word bigram", "6-gram", "rnn", "lstm", "gpt"]
    m = lm_ladder.as_metrics(rows)
    assert m["gpt"] == {"val_loss": 1.5, "perplexity": pytest.approx(4.4817, abs=1e-4), "train_s": 1.0}
    assert "| gpt | 1.5000 | 4.48 | 1.0 |" in lm_ladder.markdown(rows)


def test_classical_rungs_include_the_word_models():
    text = ("the cat sat on the mat. the dog sat on the log. " * 40) + "a cat and a dog met on a mat. " * 20
    rows = lm_ladder.classical_rungs(text[:2400], text[2400:], sorted(set(text)), [3])
    assert [r["model"] for r in rows] == ["unigram", "bigram", "3-gram", "word unigram", "word bigram"]
    assert all(r["train_s"] >= 0 and r["val_loss"] > 0 for r in rows)


def test_the_gpu_recipe_changes_only_what_it_names():
    p = GPTParams(gpu={"model": {"n_layer": 6, "n_embd": 384, "n_head": 6}, "train": {"batch_size": 64}})
    cpu_m, cpu_t = p.recipe("cpu")
    gpu_m, gpu_t = p.recipe("cuda")
    assert (cpu_m.n_layer, cpu_t.batch_size) == (p.model.n_layer, p.train.batch_size)
    assert (gpu_m.n_layer, gpu_m.n_embd, gpu_t.batch_size) == (6, 384, 64)
    assert gpu_m.block_size == cpu_m.block_size and gpu_t.lr == cpu_t.lr
    with pytest.raises(ValueError, match="unknown keys"):
        GPUParams(model={"n_layers": 6})
