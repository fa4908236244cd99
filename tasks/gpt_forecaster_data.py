"""Training windows for the GPT forecaster: every series' training part, plus generated series.

The series come from the pipeline's clean tables (one data path: :func:`clean_tables` is
the only place that reads them), each cut by its own protocol (:func:`tasks.series.protocol_for`:
``y_train`` is exactly the training part, gap-filled as every model sees it), so no value
of any test period is read. With ``validation`` the protocols move back into their own
training parts (:func:`tasks.backtest.holdout_protocol`): the series are cut before the
validation slice the lever benchmark scores. The held-out series
(``gpt_forecaster_train.held_out``) are kept apart: training never sees them, their
training parts only measure the zero-shot loss.

Generated series (the ``synthetic`` group): the lecture's processes and KernelSynth draws
(tasks/kernel_synth.py, Chronos). A window is ``block_size + 1`` consecutive values. Its
scale comes from its first ``context`` values only (what the forecaster has at an origin);
the remaining ``horizon`` values are tokenized with that scale, as forecasts will be
decoded. TSMixup (Chronos): a ``tsmixup.prob`` share of the windows are replaced by convex
combinations of ``k ~ U{1..max_k}`` standardised real-series windows with Dirichlet weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from models.base import ffill
from models.gpt_forecaster import model_inputs
from models.series_tokenizer import SeriesTokenizer
from seqcast.config import Params
from seqcast.gpt_forecaster_config import SyntheticParams, TSMixupParams
from tasks.backtest import Protocol, holdout_protocol
from tasks.kernel_synth import describe, kernel_synth
from tasks.series import protocol_for, split_table

MODEL = "gpt_forecaster"
SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class Source:
    uid: str
    group: str  # the dataset it comes from, or "synthetic"
    values: np.ndarray  # transformed, forward-filled, no leading NaN
    train_end: str
    centered: bool = True  # scaled around the context mean (False: around 0, for returns)
    whole: bool = False  # scaled by the statistics of the whole series (its training part), not the context


def training_datasets(params: Params) -> list[str]:
    """The datasets whose training parts the forecaster learns from (``gpt_forecaster_train.mix``)."""
    return [d for d in params.gpt_forecaster_train.mix if d != SYNTHETIC]


def clean_tables(params: Params) -> dict[str, pd.DataFrame]:
    """The pipeline's clean tables of :func:`training_datasets`: every series the forecaster trains or is scored on."""
    return {d: pd.read_parquet(params.path("clean", f"{d}.parquet")) for d in training_datasets(params)}


def dataset_protocols(params: Params, tables: dict[str, pd.DataFrame],
                      validation: float | None = None) -> Iterator[tuple[str, Protocol]]:
    """(dataset, protocol) of every series of the tables, in params.yaml order; with ``validation``
    the protocol of the slice at the end of the training part (that share of it)."""
    for dataset, table in tables.items():
        parts = split_table(table)
        for uid in parts:
            proto = protocol_for(uid, parts, dataset, params, panel=False)
            yield dataset, (holdout_protocol(proto, validation) if validation else proto)


def series_sources(params: Params, protocols: list[tuple[str, Protocol]]) -> tuple[list[Source], list[Source]]:
    """(training sources, held-out sources): each series' training part, read as the forecaster reads it.

    Every series of a dataset is cut at the earliest training end among them, in calendar
    time (the rule of the harness's panel, :func:`tasks.backtest.panel_until`): one checkpoint
    forecasts all of them, and the stations of one city move together, so a station's
    training years must not cover another's test year (PM2.5: the multi-site stations' 2014
    beside the US embassy's test year 2014).
    ``gpt_forecaster_train.train_series``: ``all`` (every series but the held-out ones) or
    ``reference`` (the first series of each dataset only: the lever "all stations, all indices").
    """
    p = params.gpt_forecaster_train
    cut = {}  # one checkpoint forecasts every series: none may read another's test period
    for dataset, proto in protocols:
        cut[dataset] = min(cut.get(dataset, proto.train_end), proto.train_end)
    train, out, first = [], [], {}
    for dataset, proto in protocols:
        first.setdefault(dataset, proto.unique_id)
        config = params.models.params_for(MODEL, dataset)
        kind = config.transform
        keep = np.asarray(proto.ds[: proto.n_train] <= cut[dataset])
        if keep.sum() < 2:
            continue  # a series that starts after the cut has no training part before it
        y = ffill(proto.y_train[keep])
        if np.isnan(y).all():
            continue
        y = model_inputs(y[np.flatnonzero(~np.isnan(y))[0]:], kind)[0]  # what the forecaster reads
        y = y[np.flatnonzero(~np.isnan(y))[0]:]  # log returns start one point later
        end = proto.ds[: proto.n_train][keep][-1]
        src = Source(proto.unique_id, dataset, y, str(end), centered=kind != "log_return",
                     whole=config.scale_by == "history")
        if proto.unique_id == p.held_out.get(dataset):
            out.append(src)
        elif p.train_series == "all" or proto.unique_id == first[dataset]:
            train.append(src)
    return train, out


def synthetic_sources(p: SyntheticParams) -> list[Source]:
    """The lecture's processes (``n_series`` in turn: white noise, random walk, AR(1), seasonal sinusoid,
    GBM), then ``kernel_synth.n_series`` KernelSynth draws."""
    rng = np.random.default_rng(p.seed)
    n, out = p.length, []
    for i in range(p.n_series):
        kind = ("white_noise", "random_walk", "ar1", "seasonal", "gbm")[i % 5]
        e = rng.normal(size=n)
        if kind == "white_noise":
            y = rng.uniform(-5, 5) + rng.uniform(0.1, 3) * e
        elif kind == "random_walk":
            y = rng.uniform(10, 1000) + np.cumsum(rng.uniform(0.1, 5) * e)
        elif kind == "ar1":
            phi, y = rng.uniform(-0.9, 0.98), np.empty(n)
            y[0] = e[0]
            for t in range(1, n):
                y[t] = phi * y[t - 1] + e[t]
            y = rng.uniform(-10, 100) + y
        elif kind == "seasonal":
            period = rng.choice([5, 7, 12, 24, 48])
            t = np.arange(n)
            y = (rng.uniform(0, 50) + rng.uniform(1, 10) * np.sin(2 * np.pi * t / period + rng.uniform(0, 6.3))
                 + rng.uniform(0.05, 1.5) * e + np.cumsum(rng.uniform(0, 0.3) * rng.normal(size=n)))
        else:  # GBM: log price a random walk with drift
            y = rng.uniform(10, 3000) * np.exp(np.cumsum(rng.uniform(-2e-4, 5e-4) + rng.uniform(0.003, 0.03) * e))
        out.append(Source(f"{SYNTHETIC}_{kind}_{i}", SYNTHETIC, y.astype(float), ""))
    ks = p.kernel_synth
    for i, (spec, y) in enumerate(kernel_synth(ks.n_series, ks.length, p.seed + 1, ks.max_kernels)):
        out.append(Source(f"kernel_synth_{i}: {describe(spec)}", SYNTHETIC, y, ""))
    return out


def dirichlet_weights(rng: np.random.Generator, k: int, alpha: float) -> np.ndarray:
    """k convex weights (they sum to 1) ~ Dirichlet(alpha, ..., alpha)."""
    return rng.dirichlet(np.full(k, alpha))


class WindowSampler:
    """Random windows, tokenized: ``batch(gen, B)`` -> (x, y) token ids (B, block_size) each.

    A window's source is drawn with the ``mix`` share of its group (a dataset, or synthetic),
    in proportion to its length within the group; missing targets are -1.
    """

    def __init__(self, sources: list[Source], tok: SeriesTokenizer, block_size: int, context: int,
                 mix: dict[str, float], tsmixup: TSMixupParams | None = None):
        L = block_size + 1
        self.sources = [s for s in sources if len(s.values) >= L]
        if not self.sources:
            raise ValueError(f"no series has {L} points for a training window")
        self.tok, self.L, self.context, self.tsmixup = tok, L, context, tsmixup
        groups = {s.group for s in self.sources}
        share = {g: mix.get(g, 0.0) for g in groups}
        total = sum(share.values()) or 1.0
        starts = [len(s.values) - L + 1 for s in self.sources]  # windows of each source
        group_len = {g: sum(n for s, n in zip(self.sources, starts) if s.group == g) for g in groups}
        self.weights = torch.tensor([share[s.group] / total * n / group_len[s.group]
                                     for s, n in zip(self.sources, starts)], dtype=torch.float64)
        real = torch.tensor([s.group != SYNTHETIC for s in self.sources], dtype=torch.float64)
        self.real_weights = self.weights * real if float((self.weights * real).sum()) > 0 else None
        self._whole_stats: dict[int, tuple[float, float]] = {}

    def _draw(self, gen: torch.Generator, weights: torch.Tensor, B: int) -> tuple[np.ndarray, np.ndarray]:
        """Windows (B, L) and the index of each one's source (B,)."""
        src = torch.multinomial(weights, B, replacement=True, generator=gen).numpy()
        rows = []
        for i in src:
            v = self.sources[i].values
            start = int(torch.randint(len(v) - self.L + 1, (1,), generator=gen))
            rows.append(v[start : start + self.L])
        return np.stack(rows), src

    def stats(self, w: np.ndarray, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """loc, scale (B,) of windows: their context's (around 0 for returns), or their whole series'."""
        ctx = w[:, : self.context]
        centered = np.array([self.sources[i].centered for i in src])
        loc, scale = self.tok.stats(ctx)
        if not centered.all():
            loc0, scale0 = self.tok.stats(ctx, centered=False)
            loc, scale = np.where(centered, loc, loc0), np.where(centered, scale, scale0)
        for b, i in enumerate(src):
            if self.sources[i].whole:
                loc[b], scale[b] = self._whole(i)
        return loc, scale

    def _whole(self, i: int) -> tuple[float, float]:
        if i not in self._whole_stats:
            s = self.sources[i]
            loc, scale = self.tok.stats(s.values[None, :], centered=s.centered)
            self._whole_stats[i] = (float(loc[0]), float(scale[0]))
        return self._whole_stats[i]

    def windows(self, gen: torch.Generator, B: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Windows (B, L) and the loc, scale (B,) each is tokenized with; with TSMixup, some mixed."""
        w, src = self._draw(gen, self.weights, B)
        loc, scale = self.stats(w, src)
        mx = self.tsmixup
        if mx is None or mx.prob <= 0 or self.real_weights is None:
            return w, loc, scale
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen)))
        for b in np.flatnonzero(rng.random(B) < mx.prob):
            k = int(rng.integers(1, mx.max_k + 1))
            parts, idx = self._draw(gen, self.real_weights, k)
            w[b] = self.mix(parts, *self.stats(parts, idx), dirichlet_weights(rng, k, mx.alpha))
            loc[b], scale[b] = 0.0, 1.0  # already standardised, component by component
        return w, loc, scale

    @staticmethod
    def mix(parts: np.ndarray, loc: np.ndarray, scale: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """TSMixup of windows (k, L): each standardised by its own loc, scale, then weighted (weights sum to 1)."""
        return weights @ ((parts - loc[:, None]) / scale[:, None])

    def tokenize(self, w: np.ndarray, loc: np.ndarray | None = None,
                 scale: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) token ids (B, L - 1) of windows scaled by loc, scale (default: their contexts')."""
        if loc is None:
            loc, scale = self.tok.stats(w[:, : self.context])
        ids = self.tok.encode(w, loc, scale)  # (B, L)
        x = torch.from_numpy(ids[:, :-1])
        y = torch.from_numpy(np.where(ids[:, 1:] == self.tok.missing_id, -1, ids[:, 1:]))
        return x, y

    def batch(self, gen: torch.Generator, B: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokenize(*self.windows(gen, B))

    def fixed(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The same n windows every call (evaluation; never mixed)."""
        w, src = self._draw(torch.Generator().manual_seed(seed), self.weights, n)
        return self.tokenize(w, *self.stats(w, src))
