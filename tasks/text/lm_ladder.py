"""The lecture's ladder of language models on the P3 split, one table in nats per character.

Rungs: character unigram and bigram, the Kneser–Ney n-gram (``models/text/ngram.py``),
word unigram and bigram (``models/text/word_lm.py``), the recurrent RNN and LSTM LMs
(``tasks/text/recurrent_lm.py``) and the GPT. Every row carries its training time
(``train_s``: counting / fitting / the training loop, not the scoring), so the table
says what each step up the ladder costs as well as what it buys.
"""

from __future__ import annotations

import math
import time

from models.text.ngram import ladder as char_ngram_rungs
from models.text.word_lm import WordBigram, WordUnigram


def word_rungs(train: str, val: str) -> list[dict]:
    rows = []
    for name, cls, detail in (("word unigram", WordUnigram, "add-0.1; unseen words spelled by characters"),
                              ("word bigram", WordBigram, "interpolated KN over words; unseen words spelled")):
        t0 = time.perf_counter()
        m = cls().fit(train)
        rows.append({"model": name, "val_loss": m.loss(val, train), "train_s": time.perf_counter() - t0,
                     "detail": detail})
    return rows


def classical_rungs(train: str, val: str, vocab: list[str], kn_orders: list[int]) -> list[dict]:
    """unigram, bigram, n-gram (characters), then the word unigram and bigram."""
    return with_perplexity(char_ngram_rungs(train, val, vocab, kn_orders) + word_rungs(train, val))


def with_perplexity(rows: list[dict]) -> list[dict]:
    for r in rows:
        r["perplexity"] = math.exp(r["val_loss"])
    return rows


ORDER = ["unigram", "word unigram", "bigram", "word bigram", "n-gram", "rnn", "lstm", "gpt"]


def sort_rows(rows: list[dict]) -> list[dict]:
    """The lecture's order: up the ladder (an n-gram row is named by its order, e.g. 6-gram)."""
    key = lambda r: ORDER.index("n-gram" if r["model"].endswith("-gram") else r["model"])  # noqa: E731
    return sorted(rows, key=key)


def markdown(rows: list[dict]) -> str:
    lines = ["| model | val loss (nats/char) | perplexity | training time (s) | detail |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['val_loss']:.4f} | {r['perplexity']:.2f} | {r['train_s']:.1f} | {r['detail']} |"
              for r in rows]
    return "\n".join(lines)


def as_metrics(rows: list[dict]) -> dict:
    """{model: {val_loss, perplexity, train_s}}: what ``dvc metrics show`` prints, one row per rung."""
    return {r["model"]: {k: round(r[k], 4) for k in ("val_loss", "perplexity", "train_s")} for r in rows}
