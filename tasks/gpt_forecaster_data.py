"""Training windows for the GPT forecaster: every series' training part, plus generated series.

The series come from the pipeline's clean tables (one data path), each cut by its own
protocol (:func:`tasks.series.protocol_for`: ``y_train`` is exactly the training part,
gap-filled as every model sees it), so no value of any test period is read. The
held-out series (``gpt_forecaster_train.held_out``) are kept apart: training never sees
them, their training parts only measure the zero-shot loss.

A window is ``block_size + 1`` consecutive values. Its scale comes from its first
``context`` values only (what the forecaster has at an origin); the remaining
``horizon`` values are tokenized with that scale, as forecasts will be decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from models.base import ffill
from models.gpt_forecaster import model_inputs
from models.series_tokenizer import SeriesTokenizer
from seqcast.config import Params
from seqcast.gpt_forecaster_config import SyntheticParams
from tasks.series import protocol_for, split_table


@dataclass(frozen=True)
class Source:
    uid: str
    dataset: str  # a dataset of params.yaml, or "synthetic"
    values: np.ndarray  # transformed, forward-filled, no leading NaN
    train_end: str
    centered: bool = True  # scaled around the context mean (False: around 0, for returns)


def training_datasets(params: Params) -> list[str]:
    """The datasets whose training parts the forecaster learns from (``gpt_forecaster_train.mix``)."""
    return [d for d in params.gpt_forecaster_train.mix if d != "synthetic"]


def series_sources(params: Params, tables: dict[str, pd.DataFrame]) -> tuple[list[Source], list[Source]]:
    """(training sources, held-out sources) from the clean tables, each cut at its protocol's training end."""
    held = params.gpt_forecaster_train.held_out
    train, out = [], []
    for dataset in training_datasets(params):
        kind = params.models.config_for("gpt_forecaster", dataset).get("transform", "none")
        parts = split_table(tables[dataset])
        for uid in parts:
            proto = protocol_for(uid, parts, dataset, params, panel=False)
            y = ffill(proto.y_train)
            y = model_inputs(y[np.flatnonzero(~np.isnan(y))[0]:], kind)[0]  # what the forecaster reads
            y = y[np.flatnonzero(~np.isnan(y))[0]:]  # log returns start one point later
            src = Source(uid, dataset, y, str(proto.train_end), centered=kind != "log_return")
            (out if uid == held.get(dataset) else train).append(src)
    return train, out


def synthetic_sources(p: SyntheticParams) -> list[Source]:
    """The lecture's processes, ``n_series`` in turn: white noise, random walk, AR(1), seasonal sinusoid, GBM."""
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
        out.append(Source(f"synthetic_{kind}_{i}", "synthetic", y.astype(float), ""))
    return out


class WindowSampler:
    """Random windows, tokenized: ``batch(gen, B)`` -> (x, y) token ids (B, block_size) each.

    A window's source is drawn with the ``mix`` share of its group (market / pm25 /
    synthetic), in proportion to its length within the group; missing targets are -1.
    """

    def __init__(self, sources: list[Source], tok: SeriesTokenizer, block_size: int, context: int,
                 mix: dict[str, float]):
        L = block_size + 1
        self.sources = [s for s in sources if len(s.values) >= L]
        if not self.sources:
            raise ValueError(f"no series has {L} points for a training window")
        self.tok, self.L, self.context = tok, L, context
        groups = {s.dataset for s in self.sources}
        share = {g: mix.get(g, 0.0) for g in groups}
        total = sum(share.values()) or 1.0
        weights = []
        for s in self.sources:
            group_len = sum(len(o.values) - L + 1 for o in self.sources if o.dataset == s.dataset)
            weights.append(share[s.dataset] / total * (len(s.values) - L + 1) / group_len)
        self.weights = torch.tensor(weights, dtype=torch.float64)

    def windows(self, gen: torch.Generator, B: int) -> tuple[np.ndarray, np.ndarray]:
        """Windows (B, L) and whether each is centred (B,)."""
        src = torch.multinomial(self.weights, B, replacement=True, generator=gen).tolist()
        rows = []
        for i in src:
            v = self.sources[i].values
            start = int(torch.randint(len(v) - self.L + 1, (1,), generator=gen))
            rows.append(v[start : start + self.L])
        return np.stack(rows), np.array([self.sources[i].centered for i in src])

    def tokenize(self, w: np.ndarray, centered: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        loc, scale = self.tok.stats(w[:, : self.context])
        if centered is not None and not centered.all():
            loc0, scale0 = self.tok.stats(w[:, : self.context], centered=False)
            loc, scale = np.where(centered, loc, loc0), np.where(centered, scale, scale0)
        ids = self.tok.encode(w, loc, scale)  # (B, L)
        x = torch.from_numpy(ids[:, :-1])
        y = torch.from_numpy(np.where(ids[:, 1:] == self.tok.missing_id, -1, ids[:, 1:]))
        return x, y

    def batch(self, gen: torch.Generator, B: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokenize(*self.windows(gen, B))

    def fixed(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The same n windows every call (evaluation)."""
        return self.batch(torch.Generator().manual_seed(seed), n)
