"""A global gradient-boosted forecaster (LightGBM) on features of the history at the origin.

What a practitioner reaches for first on hourly pollution data: boosted trees on lagged
values, rolling statistics, calendar features and the weather as it was known at the
origin, trained across every series there is. Built on lightgbm directly (mlforecast
needs pandas < 3).

**Features at origin o** (position ``o`` is the last value known), all read from
``y[:o+1]``, ``X[:o+1]``:

- the level ``u_o`` (the series standardised by its own fit-part statistics) and the
  changes ``u_{o+1-l} - u_o`` for each lag ``l``; the rolling mean, sd, min and max of
  the last ``w`` values (relative to ``u_o``); the hours since the last observed value;
- every exogenous column at the origin and its change over ``exog_diffs`` steps (weather
  known at the origin; never the future weather);
- neighbouring stations (columns ``nb:<station>``): their value relative to ``u_o`` (in
  the series' own units) and their last change, one by one and averaged;
- the calendar of the origin (hour, weekday, month, day of year) when ``calendar_start``
  places position 0 in time.

Values are ``t(y)`` (``log1p`` for skewed non-negative series, ``log`` for prices) divided
by the sd of its one-step changes, so that a step is comparable across series: the panel
series (other stations or indices, each cut at the training end by the harness) are
scaled by their own statistics and stacked below the series' own rows. Their exogenous
columns are matched by name; what a panel series lacks is missing (trees route missing
values on their own).

**Multi-step**: ``direct`` trains one booster per step ``k`` on the target
``u_{o+k} - u_o``; ``recursive`` trains the one-step booster only and feeds its forecast
back, recomputing lags and rolling statistics from the extended path, with the exogenous
and neighbour features held at their origin values (the weather ahead is not known).

**Validation and intervals**: the last ``val_fraction`` of the training part is never
trained on: it stops boosting early and gives the residual quantiles per step (in the
scaled space, so intervals widen with the level under ``log1p``) — split-conformal
intervals. Boosters are saved as LightGBM's own text format (no pickle).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from models.base import Forecast, Forecaster, Levels, ffill
from models.registry import register
from models.residual_quantiles import ResidualQuantiles
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


class _Series:
    """One series prepared for features: scaled values (causally filled), exogenous columns
    in the model's column order, neighbours, calendar."""

    def __init__(self, u: np.ndarray, observed: np.ndarray, age: np.ndarray, exog: np.ndarray | None,
                 neighbours: np.ndarray | None, calendar: np.ndarray | None, scaler: SeriesScaling) -> None:
        self.u, self.observed, self.age = u, observed, age
        self.exog, self.neighbours, self.calendar, self.scaler = exog, neighbours, calendar, scaler


@register
class LightGBMForecaster(Forecaster):
    name = "lightgbm"
    Params = LightGBMParams
    family = "boosting"
    supports_exog = True
    uses_panel = True
    uses_neighbours = True
    uses_calendar = True
    update_method = "features read the extended history; boosters fixed (no refit)"
    tiny_config: ClassVar[dict[str, Any]] = {"n_estimators": 20, "lags": [1, 2, 24], "windows": [6],
                                             "min_data_in_leaf": 10, "horizon": 6}

    def __init__(self, config: LightGBMParams | None = None, *, season: int = 1) -> None:
        super().__init__(config, season=season)
        self.horizon = int(self.config.horizon or max(self.season, 1))
        self.boosters_: list = []

    # -- inputs --------------------------------------------------------------------------
    def _columns(self) -> tuple[list[int], list[int]]:
        """Positions of the exogenous and the neighbour columns of X."""
        names = list(self.exog_names_) or [f"x{i}" for i in range(self.n_inputs_)]
        nb = [i for i, n in enumerate(names) if n.startswith(NEIGHBOUR_PREFIX)]
        if not self.config.use_neighbours:
            nb = []
        exog = [i for i, n in enumerate(names) if not n.startswith(NEIGHBOUR_PREFIX)]
        return exog, nb

    def _calendar(self, n: int) -> np.ndarray | None:
        c = self.config
        if not (c.calendar and c.calendar_start):
            return None
        return calendar_features(pd.date_range(pd.Timestamp(c.calendar_start), periods=n, freq=c.calendar_freq))

    def _prepare(self, y: np.ndarray, X: np.ndarray | None, scaler: SeriesScaling,
                 calendar: np.ndarray | None) -> _Series:
        y = np.asarray(y, dtype=float)
        observed = np.isfinite(y)
        pos = np.where(observed, np.arange(len(y)), -1)
        last = np.maximum.accumulate(pos) if len(pos) else pos
        age = np.where(last >= 0, np.arange(len(y)) - last, np.nan).astype(np.float32)
        u = scaler.scaled(ffill(y))
        exog = neighbours = None
        if self.n_inputs_ and X is not None:
            X = np.asarray(X, dtype=float)
            if len(X) < len(y):  # new observations came without exog (the pyfunc): hold the last row
                X = np.vstack([X, np.repeat(X[-1:], len(y) - len(X), axis=0)])
            X = np.column_stack([ffill(col) for col in X[: len(y)].T]) if X.shape[1] else X[: len(y)]
            exog_cols, nb_cols = self._columns()
            exog = X[:, exog_cols] if exog_cols else None
            neighbours = scaler.scaled(X[:, nb_cols]) if nb_cols else None
        return _Series(u, observed, age, exog, neighbours, calendar, scaler)

    def _panel_series(self, other) -> _Series | None:
        """A panel series in the model's own layout: its exogenous columns matched by name."""
        y = np.asarray(other.y, dtype=float)
        if np.isfinite(y).sum() < max(self.lags_) + self.horizon + 2:
            return None
        scaler = SeriesScaling.fit(y, self.config.transform)
        exog = None
        exog_cols, nb_cols = self._columns()
        if exog_cols:
            exog = np.full((len(y), len(exog_cols)), np.nan)
            names = list(other.exog_names or ())
            for j, i in enumerate(exog_cols):
                name = self.exog_names_[i] if self.exog_names_ else None
                if other.X is not None and name in names:
                    exog[:, j] = ffill(np.asarray(other.X, dtype=float)[:, names.index(name)])
        neighbours = np.full((len(y), len(nb_cols)), np.nan) if nb_cols else None
        calendar = None
        if self.config.calendar and self.config.calendar_start:
            calendar = calendar_features(pd.DatetimeIndex(other.ds))
        observed = np.isfinite(y)
        pos = np.where(observed, np.arange(len(y)), -1)
        last = np.maximum.accumulate(pos)
        age = np.where(last >= 0, np.arange(len(y)) - last, np.nan).astype(np.float32)
        return _Series(scaler.scaled(ffill(y)), observed, age, exog, neighbours, calendar, scaler)

    # -- features ------------------------------------------------------------------------
    @property
    def lags_(self) -> list[int]:
        return sorted(set(int(v) for v in self.config.lags))

    def _memory(self) -> int:
        return max(max(self.lags_), max(self.config.windows or [1]))

    def _path_features(self, hist: np.ndarray) -> list[np.ndarray]:
        """Features of the target's own history: hist (n, M) ending at the origin."""
        origin = hist[:, -1]
        cols = [origin]  # placeholder for the level, replaced by the caller
        cols += [hist[:, -lag] - origin for lag in self.lags_ if lag > 1]
        for w in self.config.windows:
            part = hist[:, -w:]
            with np.errstate(all="ignore"):
                cols += [np.nanmean(part, axis=1) - origin, np.nanstd(part, axis=1),
                         np.nanmin(part, axis=1) - origin, np.nanmax(part, axis=1) - origin]
        return cols

    def _origin_features(self, s: _Series, ends: np.ndarray) -> list[np.ndarray]:
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

    def _calendar_at(self, s: _Series, positions: np.ndarray) -> list[np.ndarray]:
        if s.calendar is None:
            return []
        return list(s.calendar[np.clip(positions, 0, len(s.calendar) - 1)].T)

    def _features(self, s: _Series, ends: np.ndarray, hist: np.ndarray | None = None,
                  at: np.ndarray | None = None) -> np.ndarray:
        """(n, F) features at ``ends``; ``hist``/``at``: a (recursive) path and the virtual origin
        positions it ends at (the calendar moves with it, the origin features do not)."""
        hist = history_windows(s.u, ends, self._memory()) if hist is None else hist
        at = ends if at is None else at
        cols = self._path_features(hist)
        cols[0] = s.scaler.level(hist[:, -1])
        cols += self._origin_features(s, ends)
        cols += self._calendar_at(s, at)
        return np.column_stack(cols).astype(np.float32)

    def _targets(self, s: _Series, ends: np.ndarray, step: int, limit: int | None = None) -> np.ndarray:
        """u_{o+step} - u_o where that value was observed and lies before ``limit``; else NaN."""
        tgt = ends + step
        ok = tgt < (len(s.u) if limit is None else min(limit, len(s.u)))
        out = np.full(len(ends), np.nan, dtype=np.float32)
        t = np.where(ok, tgt, 0)
        out[ok] = (s.u[t] - s.u[ends])[ok]
        out[~(ok & s.observed[t])] = np.nan
        return out

    # -- fit -----------------------------------------------------------------------------
    def _split(self, n: int) -> int:
        n_val = max(int(n * float(self.config.val_fraction)), self.horizon + 1)
        n_fit = n - n_val
        if n_fit < self._memory() // 4 + self.horizon + 10:
            raise ValueError(f"{self.name}: {n} points are too few for its lags and horizon {self.horizon}")
        return n_fit

    def _fit(self, y: np.ndarray, X: np.ndarray | None) -> None:
        import lightgbm as lgb

        c = self.config
        self.n_inputs_ = 0 if X is None else int(X.shape[1])
        if self.exog_names_ and len(self.exog_names_) != self.n_inputs_:
            raise ValueError(f"{self.name}: {len(self.exog_names_)} names for {self.n_inputs_} exogenous columns")
        n = len(y)
        n_fit = self._split(n)
        self.holdout_start_ = n_fit
        self.scaler_ = SeriesScaling.fit(y[:n_fit], c.transform)
        own = self._prepare(y, X, self.scaler_, self._calendar(n))
        rng = np.random.default_rng(c.seed)
        train_ends = np.arange(0, n_fit - 1, int(c.stride))
        parts = [(own, train_ends, n_fit)]
        self.n_panel_series_ = 0
        if c.use_panel:
            for other in self.panel_:
                ps = self._panel_series(other)
                if ps is not None:
                    parts.append((ps, np.arange(0, len(ps.u) - 1, int(c.panel_stride)), len(ps.u)))
                    self.n_panel_series_ += 1
        feats = np.concatenate([self._features(s, e) for s, e, _ in parts])
        val_ends = np.arange(n_fit - 1, n - 1)
        val_feats = self._features(own, val_ends)
        steps = [1] if c.strategy == "recursive" else list(range(1, self.horizon + 1))
        params = {"objective": {"l2": "regression", "l1": "regression_l1", "huber": "huber"}[c.objective],
                  "num_leaves": int(c.num_leaves), "learning_rate": float(c.learning_rate),
                  "min_data_in_leaf": int(c.min_data_in_leaf), "feature_fraction": float(c.feature_fraction),
                  "bagging_fraction": float(c.bagging_fraction), "bagging_freq": 1 if c.bagging_fraction < 1 else 0,
                  "lambda_l2": float(c.lambda_l2), "max_bin": int(c.max_bin), "num_threads": int(c.threads), "seed": int(c.seed),
                  "deterministic": True, "force_row_wise": True, "verbosity": -1}
        self.boosters_, self.best_iterations_ = [], []
        for step in steps:
            target = np.concatenate([self._targets(s, e, step, limit) for s, e, limit in parts])
            keep = np.flatnonzero(np.isfinite(target))
            if c.max_rows and len(keep) > c.max_rows:
                keep = np.sort(rng.choice(keep, int(c.max_rows), replace=False))
            val_target = self._targets(own, val_ends, step)
            vkeep = np.isfinite(val_target)
            train = lgb.Dataset(feats[keep], target[keep], free_raw_data=True)
            valid = lgb.Dataset(val_feats[vkeep], val_target[vkeep], reference=train)
            booster = lgb.train(params, train, num_boost_round=int(c.n_estimators), valid_sets=[valid],
                                callbacks=[lgb.early_stopping(int(c.early_stopping), verbose=False)])
            self.boosters_.append(booster)
            self.best_iterations_.append(int(booster.best_iteration or booster.current_iteration()))
        self.n_features_ = feats.shape[1]
        # split-conformal spreads: residual quantiles per step on the validation slice
        z = self._forecast_u(own, val_ends, self.horizon)
        resid = np.column_stack([self._targets(own, val_ends, k + 1) for k in range(self.horizon)]) - z
        self.spread_ = ResidualQuantiles.fit(resid, self.horizon)

    # -- forecasting ---------------------------------------------------------------------
    def _predict_step(self, booster_index: int, feats: np.ndarray) -> np.ndarray:
        booster = self.boosters_[booster_index]
        return booster.predict(feats, num_iteration=self.best_iterations_[booster_index])

    def _forecast_u(self, s: _Series, ends: np.ndarray, h: int) -> np.ndarray:
        """Forecast changes u_{o+k} - u_o, (n, h), for the origins ``ends``."""
        out = np.zeros((len(ends), h))
        if len(ends) == 0:
            return out
        if self.config.strategy == "direct":
            feats = self._features(s, ends)
            for k in range(min(h, len(self.boosters_))):
                out[:, k] = self._predict_step(k, feats)
            if h > len(self.boosters_):  # beyond the last booster: hold its forecast
                out[:, len(self.boosters_):] = out[:, [len(self.boosters_) - 1]]
            return out
        hist = history_windows(s.u, ends, self._memory())
        origin = hist[:, -1].copy()
        for k in range(h):
            step = self._predict_step(0, self._features(s, ends, hist, ends + k))
            nxt = hist[:, -1] + step
            out[:, k] = nxt - origin
            hist = np.concatenate([hist[:, 1:], nxt[:, None]], axis=1)
        return out

    def forecast_origins(self, y, origins, h, levels=(80, 95), X=None) -> Forecast:
        self._check_fitted()
        y = np.asarray(y, dtype=float)
        origins = np.asarray(origins, dtype=int)
        if len(origins) == 0:
            empty = np.empty((0, h))
            return Forecast(empty, {lv: empty for lv in levels}, {lv: empty for lv in levels})
        n = int(origins.max()) + 1
        s = self._prepare(y[:n], None if X is None or not self.n_inputs_ else np.asarray(X)[:n], self.scaler_,
                          self._calendar(n))
        z = self._forecast_u(s, origins, h)
        base = s.u[origins][:, None]
        lower, upper = {}, {}
        for level in levels:  # beyond the last booster's step: its quantiles
            lo, hi = self.spread_.offsets(level, h)
            lower[level], upper[level] = base + z + lo[None, :], base + z + hi[None, :]
        return self.scaler_.target.inverse_forecast(base + z, lower, upper)

    def _predict(self, h: int, levels: Levels, X_future: np.ndarray | None) -> Forecast:
        return self.forecast_origins(self.y_, np.array([len(self.y_) - 1]), h, levels, self.X_)

    def _update(self, y_new: np.ndarray, X_new: np.ndarray | None) -> None:
        pass  # boosters stay as fitted; features read the extended history

    # -- reporting -----------------------------------------------------------------------
    def feature_names(self) -> list[str]:
        names = ["level"] + [f"lag{lag}" for lag in self.lags_ if lag > 1]
        names += [f"roll{w}_{stat}" for w in self.config.windows for stat in ("mean", "sd", "min", "max")]
        names += ["age"]
        exog_cols, nb_cols = self._columns() if self.n_inputs_ else ([], [])
        exog = [self.exog_names_[i] if self.exog_names_ else f"x{i}" for i in exog_cols]
        names += exog + [f"{e}_d{d}" for d in self.config.exog_diffs for e in exog]
        if nb_cols:
            nb = [self.exog_names_[i] for i in nb_cols]
            names += [f"{b}_rel" for b in nb] + [f"{b}_d1" for b in nb] + ["nb_mean_rel", "nb_mean_d1"]
        if self.config.calendar and self.config.calendar_start:
            names += ["hour", "weekday", "month", "dayofyear"]
        return names

    def describe(self) -> dict[str, Any]:
        out = {k: v for k, v in super().describe().items()}
        if self.fitted:
            out.update({"n_features": self.n_features_, "n_boosters": len(self.boosters_),
                        "n_panel_series": self.n_panel_series_, "transform_kind": self.scaler_.target.kind,
                        "mean_best_iteration": float(np.mean(self.best_iterations_))})
        return out

    def log_extras(self) -> dict[str, Any]:
        gain = np.sum([b.feature_importance("gain") for b in self.boosters_], axis=0)
        names = self.feature_names()
        top = sorted(zip(names, gain.tolist(), strict=False), key=lambda p: -p[1])[:30]
        return {"metrics": {"n_features": float(self.n_features_), "n_panel_series": float(self.n_panel_series_),
                            "mean_best_iteration": float(np.mean(self.best_iterations_))},
                "dicts": {"feature_importance_gain.json": dict(top)}}

    # -- persistence ---------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = super().save(folder)
        state = {"exog_names": list(self.exog_names_), "n_inputs": self.n_inputs_, "scaler": self.scaler_.to_dict(),
                 "quantiles": self.spread_.tolist(), "best_iterations": self.best_iterations_,
                 "n_features": self.n_features_, "n_panel_series": self.n_panel_series_,
                 "boosters": [b.model_to_string() for b in self.boosters_]}
        (folder / "lightgbm.json").write_text(json.dumps(state))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LightGBMForecaster:
        import lightgbm as lgb

        folder = Path(folder)
        model, state = cls._load_saved(folder, "lightgbm.json")
        model.exog_names_ = tuple(state["exog_names"])
        model.n_inputs_ = int(state["n_inputs"])
        model.scaler_ = SeriesScaling.from_dict(state["scaler"])
        model.spread_ = ResidualQuantiles(np.asarray(state["quantiles"], dtype=float))
        model.best_iterations_ = [int(v) for v in state["best_iterations"]]
        model.n_features_, model.n_panel_series_ = int(state["n_features"]), int(state["n_panel_series"])
        model.boosters_ = [lgb.Booster(model_str=text) for text in state["boosters"]]
        model.fitted = True
        return model
