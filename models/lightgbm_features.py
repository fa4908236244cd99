"""The features the boosted trees read (models/lightgbm_model.py), at each origin ``o``
(position ``o`` is the last value known), all from ``y[:o+1]`` and ``X[:o+1]``:

- the level ``u_o`` (the series standardised by its own fit-part statistics) and the changes
  ``u_{o+1-l} - u_o`` for each lag ``l``; the rolling mean, sd, min and max of the last ``w``
  values (relative to ``u_o``); the hours since the last observed value;
- every exogenous column at the origin and its change over ``exog_diffs`` steps (weather
  known at the origin; never the future weather);
- neighbouring stations (columns ``nb:<station>``): their value relative to ``u_o`` (in the
  series' own units) and their last change, one by one and averaged;
- the calendar of the origin (hour, weekday, month, day of year) when ``calendar_start``
  places position 0 in time.

Values are ``u = t(y) / sd(diff t)``: the target transform (models/target_transform.py:
``log1p`` for skewed non-negative series, ``log`` for prices, ``auto`` by the shared rule)
with ``step`` scaling, so that a step is comparable across series. A panel series (another
station or index, cut at the training end by the harness) is scaled by its own statistics;
its exogenous columns are matched by name, and what it lacks is missing (trees route missing
values on their own). The targets are the changes ``u_{o+k} - u_o``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.base import ffill
from models.target_transform import TargetTransform
from seqcast.model_config import LightGBMParams

NEIGHBOUR_PREFIX = "nb:"


def history_windows(u: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """(n, length) values ending at each position (the last column is the origin); NaN before 0."""
    idx = ends[:, None] + np.arange(-length + 1, 1)[None, :]
    out = u[np.clip(idx, 0, None)]
    out[idx < 0] = np.nan
    return out


def calendar_features(stamps: pd.DatetimeIndex) -> np.ndarray:
    """(n, 4): hour, weekday, month, day of year."""
    return np.column_stack([stamps.hour, stamps.dayofweek, stamps.month, stamps.dayofyear]).astype(np.float32)


@dataclass(frozen=True)
class SeriesScaling:
    """What makes one series comparable with another: ``u = t(y) / sd(diff t)`` (the target
    transform with ``step`` scaling) and the level ``(t - mean) / sd`` (``standard``), both fitted
    on that series' training part."""

    target: TargetTransform
    level_scale: TargetTransform

    @classmethod
    def fit(cls, y: np.ndarray, transform: str) -> SeriesScaling:
        target = TargetTransform.fit(y, transform, "step")
        return cls(target, TargetTransform.fit(y, target.kind, "standard"))

    def scaled(self, y: np.ndarray) -> np.ndarray:
        return self.target.forward(y)

    def inverse(self, u: np.ndarray) -> np.ndarray:
        return self.target.inverse(u)

    def level(self, u: np.ndarray) -> np.ndarray:
        return self.level_scale.scaled(self.target.unscaled(u))

    def to_dict(self) -> dict:
        return {"target": self.target.to_dict(), "level": self.level_scale.to_dict()}

    @classmethod
    def from_dict(cls, d: dict | list) -> SeriesScaling:
        if isinstance(d, list):  # saved before the target transform module: [kind, mean, sd, step]
            kind, mu, sd, step = d
            return cls(TargetTransform(kind, 0.0, step), TargetTransform(kind, mu, sd))
        return cls(TargetTransform.from_dict(d["target"]), TargetTransform.from_dict(d["level"]))


@dataclass
class PreparedSeries:
    """One series prepared for features: scaled values (causally filled), which were observed,
    the steps since the last observation, exogenous columns in the model's column order,
    neighbours, calendar."""

    u: np.ndarray
    observed: np.ndarray
    age: np.ndarray
    exog: np.ndarray | None
    neighbours: np.ndarray | None
    calendar: np.ndarray | None
    scaler: SeriesScaling

    @classmethod
    def of(cls, y: np.ndarray, scaler: SeriesScaling, exog: np.ndarray | None, neighbours: np.ndarray | None,
           calendar: np.ndarray | None) -> PreparedSeries:
        observed = np.isfinite(y)
        pos = np.where(observed, np.arange(len(y)), -1)
        last = np.maximum.accumulate(pos) if len(pos) else pos
        age = np.where(last >= 0, np.arange(len(y)) - last, np.nan).astype(np.float32)
        return cls(scaler.scaled(ffill(y)), observed, age, exog, neighbours, calendar, scaler)


class OriginFeatures:
    """The feature builder of one fitted model: its configuration and the names of its
    exogenous columns (``nb:<station>``: a neighbour) decide the layout."""

    def __init__(self, config: LightGBMParams, exog_names: tuple[str, ...], n_inputs: int) -> None:
        self.config, self.exog_names, self.n_inputs = config, tuple(exog_names), int(n_inputs)

    # -- series --------------------------------------------------------------------------
    def columns(self) -> tuple[list[int], list[int]]:
        """Positions of the exogenous and the neighbour columns of X."""
        names = list(self.exog_names) or [f"x{i}" for i in range(self.n_inputs)]
        nb = [i for i, n in enumerate(names) if n.startswith(NEIGHBOUR_PREFIX)]
        if not self.config.use_neighbours:
            nb = []
        exog = [i for i, n in enumerate(names) if not n.startswith(NEIGHBOUR_PREFIX)]
        return exog, nb

    def calendar(self, n: int) -> np.ndarray | None:
        c = self.config
        if not (c.calendar and c.calendar_start):
            return None
        return calendar_features(pd.date_range(pd.Timestamp(c.calendar_start), periods=n, freq=c.calendar_freq))

    def prepare(self, y: np.ndarray, X: np.ndarray | None, scaler: SeriesScaling,
                calendar: np.ndarray | None) -> PreparedSeries:
        """The series itself (its X columns in the fitted order, forward-filled causally)."""
        y = np.asarray(y, dtype=float)
        exog = neighbours = None
        if self.n_inputs and X is not None:
            X = np.asarray(X, dtype=float)
            if len(X) < len(y):  # new observations came without exog (the pyfunc): hold the last row
                X = np.vstack([X, np.repeat(X[-1:], len(y) - len(X), axis=0)])
            X = np.column_stack([ffill(col) for col in X[: len(y)].T]) if X.shape[1] else X[: len(y)]
            exog_cols, nb_cols = self.columns()
            exog = X[:, exog_cols] if exog_cols else None
            neighbours = scaler.scaled(X[:, nb_cols]) if nb_cols else None
        return PreparedSeries.of(y, scaler, exog, neighbours, calendar)

    def panel_series(self, other, horizon: int) -> PreparedSeries | None:
        """A panel series in the model's own layout: its exogenous columns matched by name."""
        y = np.asarray(other.y, dtype=float)
        if np.isfinite(y).sum() < max(self.lags) + horizon + 2:
            return None
        scaler = SeriesScaling.fit(y, self.config.transform)
        exog = None
        exog_cols, nb_cols = self.columns()
        if exog_cols:
            exog = np.full((len(y), len(exog_cols)), np.nan)
            names = list(other.exog_names or ())
            for j, i in enumerate(exog_cols):
                name = self.exog_names[i] if self.exog_names else None
                if other.X is not None and name in names:
                    exog[:, j] = ffill(np.asarray(other.X, dtype=float)[:, names.index(name)])
        neighbours = np.full((len(y), len(nb_cols)), np.nan) if nb_cols else None
        calendar = None
        if self.config.calendar and self.config.calendar_start:
            calendar = calendar_features(pd.DatetimeIndex(other.ds))
        return PreparedSeries.of(y, scaler, exog, neighbours, calendar)

    # -- features ------------------------------------------------------------------------
    @property
    def lags(self) -> list[int]:
        return sorted(set(int(v) for v in self.config.lags))

    @property
    def memory(self) -> int:
        """The longest look-back of any feature: the largest lag or rolling window."""
        return max(max(self.lags), max(self.config.windows or [1]))

    def path_features(self, hist: np.ndarray) -> list[np.ndarray]:
        """Features of the target's own history: hist (n, M) ending at the origin."""
        origin = hist[:, -1]
        cols = [origin]  # placeholder for the level, replaced by the caller
        cols += [hist[:, -lag] - origin for lag in self.lags if lag > 1]
        for w in self.config.windows:
            part = hist[:, -w:]
            with np.errstate(all="ignore"):
                cols += [np.nanmean(part, axis=1) - origin, np.nanstd(part, axis=1),
                         np.nanmin(part, axis=1) - origin, np.nanmax(part, axis=1) - origin]
        return cols

    def origin_features(self, s: PreparedSeries, ends: np.ndarray) -> list[np.ndarray]:
        """Features held at the origin: exogenous values and changes, neighbours, calendar."""
        cols: list[np.ndarray] = [s.age[ends]]
        if s.exog is not None:
            cols += list(s.exog[ends].T)
            for d in self.config.exog_diffs:
                prev = np.clip(ends - d, 0, None)
                cols += list((s.exog[ends] - s.exog[prev]).T)
        if s.neighbours is not None:
            rel = s.neighbours[ends] - s.u[ends][:, None]
            change = s.neighbours[ends] - s.neighbours[np.clip(ends - 1, 0, None)]
            with np.errstate(all="ignore"):
                cols += list(rel.T) + list(change.T)
                if s.neighbours.shape[1]:
                    cols += [np.nanmean(rel, axis=1), np.nanmean(change, axis=1)]
        return cols

    def calendar_at(self, s: PreparedSeries, positions: np.ndarray) -> list[np.ndarray]:
        if s.calendar is None:
            return []
        return list(s.calendar[np.clip(positions, 0, len(s.calendar) - 1)].T)

    def features(self, s: PreparedSeries, ends: np.ndarray, hist: np.ndarray | None = None,
                 at: np.ndarray | None = None) -> np.ndarray:
        """(n, F) features at ``ends``; ``hist``/``at``: a (recursive) path and the virtual origin
        positions it ends at (the calendar moves with it, the origin features do not)."""
        hist = history_windows(s.u, ends, self.memory) if hist is None else hist
        at = ends if at is None else at
        cols = self.path_features(hist)
        cols[0] = s.scaler.level(hist[:, -1])
        cols += self.origin_features(s, ends)
        cols += self.calendar_at(s, at)
        return np.column_stack(cols).astype(np.float32)

    def targets(self, s: PreparedSeries, ends: np.ndarray, step: int, limit: int | None = None) -> np.ndarray:
        """u_{o+step} - u_o where that value was observed and lies before ``limit``; else NaN."""
        tgt = ends + step
        ok = tgt < (len(s.u) if limit is None else min(limit, len(s.u)))
        out = np.full(len(ends), np.nan, dtype=np.float32)
        t = np.where(ok, tgt, 0)
        out[ok] = (s.u[t] - s.u[ends])[ok]
        out[~(ok & s.observed[t])] = np.nan
        return out

    def names(self) -> list[str]:
        """The name of every feature column, in order."""
        names = ["level"] + [f"lag{lag}" for lag in self.lags if lag > 1]
        names += [f"roll{w}_{stat}" for w in self.config.windows for stat in ("mean", "sd", "min", "max")]
        names += ["age"]
        exog_cols, nb_cols = self.columns() if self.n_inputs else ([], [])
        exog = [self.exog_names[i] if self.exog_names else f"x{i}" for i in exog_cols]
        names += exog + [f"{e}_d{d}" for d in self.config.exog_diffs for e in exog]
        if nb_cols:
            nb = [self.exog_names[i] for i in nb_cols]
            names += [f"{b}_rel" for b in nb] + [f"{b}_d1" for b in nb] + ["nb_mean_rel", "nb_mean_d1"]
        if self.config.calendar and self.config.calendar_start:
            names += ["hour", "weekday", "month", "dayofyear"]
        return names
