"""Word-level unigram and bigram language models: the lecture's first rungs.

The lecture's point: a unigram model gives "the cat sat" and "sat cat the" the same
probability (a bag of words), a bigram model prefers the grammatical order because
P(w_i | w_{i-1}) has learnt which word follows which. ``sequence_probability``
returns log P(w_1 .. w_n) under either.

To sit in the ladder's table beside the character models, both also score raw text
in nats per character: the text is cut into tokens (words, single punctuation
marks, runs of white space) that cover every character, and a token never seen in
training is spelled out character by character (an ``<unk>`` event times a
character unigram with an end mark), so the probabilities of all strings sum to 1.
Smoothing: add-k for the unigram, interpolated absolute discounting (Kneser–Ney
continuation counts for the lower order) for the bigram; constants from the counts.
"""

from __future__ import annotations

import math
import re
from collections import Counter

TOKEN_RE = re.compile(r"[A-Za-z']+|\s+|[^A-Za-z'\s]")  # words, white-space runs, single other characters
UNK, BOS, EOW = "<unk>", "<s>", "\0"  # EOW ends a spelled-out unknown token


def tokenize(text: str) -> list[str]:
    """Tokens whose concatenation is ``text``: every character belongs to exactly one token."""
    return TOKEN_RE.findall(text)


def words(text: str) -> list[str]:
    """The words (and punctuation marks) of a sentence, without the white space: for ``sequence_probability``."""
    return [t for t in tokenize(text) if not t.isspace()]


def histories(toks: list[str], first: str | None = None) -> list[str | None]:
    """For each token the last non-space token before it: a bigram over words, white space in between."""
    out, last = [], first
    for t in toks:
        out.append(last)
        if not t.isspace():
            last = t
    return out


class _Speller:
    """P(token) of an unseen token: character unigram (add-1) over its characters and an end mark."""

    def __init__(self, text: str):
        self.counts = Counter(text) + Counter({EOW: 1})
        self.total = sum(self.counts.values())
        self.v = len(self.counts) + 1  # + one slot for characters never seen

    def logp(self, token: str) -> float:
        return sum(math.log((self.counts.get(c, 0) + 1) / (self.total + self.v)) for c in token + EOW)


class WordUnigram:
    """P(w) = (c(w) + k) / (N + k (V + 1)), the extra slot being ``<unk>``."""

    def __init__(self, k: float = 0.1, min_count: int = 1):
        self.k, self.min_count = k, min_count

    def fit(self, text: str) -> WordUnigram:
        toks = tokenize(text)
        counts = Counter(toks)
        self.counts = Counter({t: c for t, c in counts.items() if c >= self.min_count})
        self.counts[UNK] = sum(c for t, c in counts.items() if c < self.min_count)
        self.n = sum(self.counts.values())
        self.speller = _Speller(text)
        return self

    def logp(self, token: str, prev: str | None = None) -> float:
        denom = self.n + self.k * len(self.counts)
        if token in self.counts and token != UNK:
            return math.log((self.counts[token] + self.k) / denom)
        return math.log((self.counts[UNK] + self.k) / denom) + self.speller.logp(token)

    def sequence_probability(self, sentence: str | list[str]) -> float:
        """log P of the word sequence (a bag of words: the order does not matter)."""
        toks = words(sentence) if isinstance(sentence, str) else sentence
        return sum(self.logp(t) for t in toks)

    def loss(self, text: str, context: str = "") -> float:
        """Nats per character of ``text``."""
        return -sum(self.logp(t) for t in tokenize(text)) / len(text)


class WordBigram(WordUnigram):
    """P(w | v) = max(c(v w) - D, 0) / c(v) + D N1+(v .) / c(v) * P_cont(w): interpolated Kneser–Ney.

    v is the previous word (or punctuation mark): white space between words is a token
    the model predicts too (given the word before it) but never a context.
    """

    def fit(self, text: str) -> WordBigram:
        super().fit(text)
        toks = [t if t in self.counts else UNK for t in tokenize(text)]
        self.pairs = Counter(zip(histories(toks, BOS), toks))
        self.ctx_total, self.ctx_types, left = Counter(), Counter(), Counter()
        for (v, w), c in self.pairs.items():
            self.ctx_total[v] += c
            self.ctx_types[v] += 1
            left[w] += 1  # continuation count: in how many contexts w appears
        n1 = sum(1 for c in self.pairs.values() if c == 1)
        n2 = sum(1 for c in self.pairs.values() if c == 2)
        self.d = n1 / (n1 + 2 * n2) if n1 + n2 else 0.75
        self.cont, self.cont_total = left, len(self.pairs)
        return self

    def _p_cont(self, w: str) -> float:
        # + add-one over the vocabulary so a known word never seen as a continuation keeps some mass
        return (self.cont.get(w, 0) + 1) / (self.cont_total + len(self.counts))

    def logp(self, token: str, prev: str | None = None) -> float:
        w = token if token in self.counts and token != UNK else UNK
        v = prev if prev is None or prev in self.counts else UNK
        v = BOS if v is None else v
        total = self.ctx_total.get(v, 0)
        p = self._p_cont(w)
        if total:
            p = max(self.pairs.get((v, w), 0) - self.d, 0) / total + self.d * self.ctx_types[v] / total * p
        return math.log(p) + (self.speller.logp(token) if w == UNK else 0.0)

    def sequence_probability(self, sentence: str | list[str]) -> float:
        """log P(w_1 .. w_n) = sum of log P(w_i | w_{i-1}), the first word given the start."""
        toks = words(sentence) if isinstance(sentence, str) else sentence
        return sum(self.logp(t, p) for p, t in zip(histories(toks), toks))

    def loss(self, text: str, context: str = "") -> float:
        toks = tokenize(text)
        before = [t for t in tokenize(context) if not t.isspace()][-1:] or [None]
        return -sum(self.logp(t, p) for p, t in zip(histories(toks, before[0]), toks)) / len(text)
