"""Character n-gram language models for the ladder: unigram (add-k), interpolated Kneser–Ney.

All score text in nats per character, the unit of P3, so they sit in one table
with the GPT. Smoothing parameters (add-k's k, the n-gram order) are tuned on a
held-out slice at the end of the training text, never on validation.
"""

from __future__ import annotations

import math
import time
from collections import Counter


class AddKUnigram:
    """P(c) = (count(c) + k) / (N + k V): the floor of the ladder."""

    def __init__(self, vocab: list[str], k: float = 1.0):
        self.vocab, self.k = list(vocab), k

    def fit(self, text: str) -> AddKUnigram:
        self.counts, self.n = Counter(text), len(text)
        return self

    def loss(self, text: str, context: str = "") -> float:
        V, k = len(self.vocab), self.k
        logp = {c: math.log((self.counts.get(c, 0) + k) / (self.n + k * V)) for c in set(text)}
        return -sum(logp[c] for c in text) / len(text)


class KneserNey:
    """Interpolated Kneser–Ney of order ``order`` over characters (Chen & Goodman 1998).

    Top order: P(w|h) = max(c(hw) - D, 0) / c(h.) + D N1+(h.) / c(h.) * P_lower(w|h[1:]).
    Lower orders use continuation counts N1+(.hw) (in how many contexts a string
    appears, not how often), which is what makes KN better than plain backoff.
    The bottom is interpolated with the uniform distribution, so unseen characters
    still get probability. One discount per order, D = n1 / (n1 + 2 n2) (Ney et al.).
    """

    def __init__(self, vocab: list[str], order: int = 5):
        self.vocab, self.order = list(vocab), order

    def fit(self, text: str) -> KneserNey:
        n = self.order
        self.grams: dict[int, Counter] = {}
        # raw counts of every k-gram, k = 1..n (a model of lower order reuses them)
        for k in range(1, n + 1):
            self.grams[k] = Counter(text[i : i + k] for i in range(len(text) - k + 1))
        # continuation counts: N1+(.s) = distinct left extensions of s
        self.cont: dict[int, Counter] = {k: Counter(g[1:] for g in self.grams[k + 1]) for k in range(1, n)}
        self._stats: dict[tuple[int, bool], tuple[Counter, Counter, float]] = {}
        return self

    def _level(self, k: int, top: bool) -> tuple[Counter, Counter, Counter, float]:
        """Counts used at level k, their per-context totals and type counts, and the discount."""
        key = (k, top)
        counts = self.grams[k] if top or k == self.order else self.cont[k]
        if key not in self._stats:
            totals, types = Counter(), Counter()
            for g, c in counts.items():
                totals[g[:-1]] += c
                types[g[:-1]] += 1
            coc = Counter(c for c in counts.values() if c <= 2)
            n1, n2 = coc.get(1, 0), coc.get(2, 0)
            d = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.5
            self._stats[key] = (totals, types, d)
        totals, types, d = self._stats[key]
        return counts, totals, types, d

    def prob(self, history: str, w: str) -> float:
        h = history[len(history) - self.order + 1 :] if self.order > 1 else ""
        p = 1.0 / len(self.vocab)  # uniform at the bottom
        # from unigrams up to the longest available context; the longest level uses raw counts
        for k in range(1, len(h) + 2):
            ctx = h[len(h) - k + 1 :] if k > 1 else ""
            counts, totals, types, d = self._level(k, top=(k == len(h) + 1))
            total = totals.get(ctx, 0)
            if total == 0:
                continue  # unseen context: keep the lower-order estimate
            c = counts.get(ctx + w, 0)
            p = max(c - d, 0.0) / total + d * types[ctx] / total * p
        return p

    def loss(self, text: str, context: str = "") -> float:
        """Nats per character of ``text``; ``context`` is the text just before it (e.g. train's tail)."""
        full = context[-(self.order - 1) :] + text if self.order > 1 else text
        off = len(full) - len(text)
        nll = 0.0
        for i in range(len(text)):
            j = off + i
            nll -= math.log(self.prob(full[max(0, j - self.order + 1) : j], full[j]))
        return nll / len(text)


def tune_and_fit(
    kind: str, train: str, vocab: list[str], grid: list[float] | list[int], heldout_fraction: float = 0.1
) -> tuple[AddKUnigram | KneserNey, dict]:
    """Pick the grid value with the lowest held-out loss (last slice of train), refit on all of train."""
    cut = int(len(train) * (1 - heldout_fraction))
    fit_part, held = train[:cut], train[cut:]
    make = {"unigram": lambda v: AddKUnigram(vocab, k=v), "kn": lambda v: KneserNey(vocab, order=int(v))}[kind]
    if kind == "kn":  # one fit at the largest order serves every smaller order
        big = KneserNey(vocab, order=int(max(grid))).fit(fit_part)
        scores = {}
        for v in grid:
            m = KneserNey(vocab, order=int(v))
            m.grams, m.cont, m._stats = big.grams, big.cont, {}
            scores[v] = m.loss(held, fit_part)
    else:
        scores = {v: make(v).fit(fit_part).loss(held) for v in grid}
    best = min(scores, key=scores.get)
    return make(best).fit(train), {"heldout_loss": scores, "best": best}


def ladder(train: str, val: str, vocab: list[str], kn_orders: list[int] | None = None) -> list[dict]:
    """The classical rungs: rows {model, val_loss, perplexity, train_s, detail} in nats/char on ``val``.

    ``train_s``: seconds to count (and tune) the model on ``train``; scoring is not included.
    """
    kn_orders = kn_orders or [3, 4, 5, 6, 7]
    rows = []
    t0 = time.perf_counter()
    uni, info = tune_and_fit("unigram", train, vocab, [0.01, 0.1, 1.0])
    t1 = time.perf_counter()
    rows.append({"model": "unigram", "val_loss": uni.loss(val), "train_s": t1 - t0, "detail": f"add-k, k={info['best']}"})
    t0 = time.perf_counter()
    bi = KneserNey(vocab, order=2).fit(train)
    t1 = time.perf_counter()
    rows.append({"model": "bigram", "val_loss": bi.loss(val, train), "train_s": t1 - t0, "detail": "interpolated Kneser-Ney"})
    t0 = time.perf_counter()
    kn, info = tune_and_fit("kn", train, vocab, kn_orders)
    t1 = time.perf_counter()
    rows.append({"model": f"{kn.order}-gram", "val_loss": kn.loss(val, train), "train_s": t1 - t0,
                 "detail": f"interpolated KN, order tuned on held-out {kn_orders}"})
    for r in rows:
        r["perplexity"] = math.exp(r["val_loss"])
    return rows
