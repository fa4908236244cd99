"""A global gradient-boosted forecaster (LightGBM) on features of the history at the origin.

What a practitioner reaches for first on hourly pollution data: boosted trees on lagged
values, rolling statistics, calendar features and the weather as it was known at the
origin, trained across every series there is. Built on lightgbm directly (mlforecast
needs pandas < 3). The features, their scaling (the target transform with ``step``
scaling) and the targets are built by models/lightgbm_features.py; this module holds the
boosters.

**Multi-step**: ``direct`` trains one booster per step ``k`` on the target
``u_{o+k} - u_o``; ``recursive`` trains the one-step booster only and feeds its forecast
back, recomputing lags and rolling statistics from the extended path, with the exogenous
and neighbour features held at their origin values (the weather ahead is not known).

**Validation and intervals**: the last ``val_fraction`` of the training part is never
trained on: it stops boosting early and gives the residual quantiles per step (in the
scaled space, so intervals widen with the level under ``log1p``) — split-conformal
intervals (models/residual_quantiles.py). Boosters are saved as LightGBM's own text
format (no pickle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.base import Forecast, Forecaster, Levels
from models.lightgbm_features import OriginFeatures, PreparedSeries, SeriesScaling, history_windows
from models.registry import register
from models.residual_quantiles import ResidualQuantiles
from seqcast.model_config import LightGBMParams


def booster_params(c: LightGBMParams) -> dict[str, Any]:
    """LightGBM's training parameters from the configuration (deterministic, one row-wise pass)."""
    return {"objective": {"l2": "regression", "l1": "regression_l1", "huber": "huber"}[c.objective],
            "num_leaves": int(c.num_leaves), "learning_rate": float(c.learning_rate),
            "min_data_in_leaf": int(c.min_data_in_leaf), "feature_fraction": float(c.feature_fraction),
            "bagging_fraction": float(c.bagging_fraction), "bagging_freq": 1 if c.bagging_fraction < 1 else 0,
            "lambda_l2": float(c.lambda_l2), "max_bin": int(c.max_bin), "num_threads": int(c.threads),
            "seed": int(c.seed), "deterministic": True, "force_row_wise": True, "verbosity": -1}


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

    # -- fit -----------------------------------------------------------------------------
    def _split(self, n: int) -> int:
        n_val = max(int(n * float(self.config.val_fraction)), self.horizon + 1)
        n_fit = n - n_val
        if n_fit < self.features_.memory // 4 + self.horizon + 10:
            raise ValueError(f"{self.name}: {n} points are too few for its lags and horizon {self.horizon}")
        return n_fit

    def _fit(self, y: np.ndarray, X: np.ndarray | None) -> None:
        import lightgbm as lgb

        c = self.config
        self.n_inputs_ = 0 if X is None else int(X.shape[1])
        if self.exog_names_ and len(self.exog_names_) != self.n_inputs_:
            raise ValueError(f"{self.name}: {len(self.exog_names_)} names for {self.n_inputs_} exogenous columns")
        self.features_ = OriginFeatures(c, self.exog_names_, self.n_inputs_)
        n = len(y)
        n_fit = self._split(n)
        self.holdout_start_ = n_fit
        self.scaler_ = SeriesScaling.fit(y[:n_fit], c.transform)
        own = self.features_.prepare(y, X, self.scaler_, self.features_.calendar(n))
        rng = np.random.default_rng(c.seed)
        train_ends = np.arange(0, n_fit - 1, int(c.stride))
        parts = [(own, train_ends, n_fit)]
        self.n_panel_series_ = 0
        if c.use_panel:
            for other in self.panel_:
                ps = self.features_.panel_series(other, self.horizon)
                if ps is not None:
                    parts.append((ps, np.arange(0, len(ps.u) - 1, int(c.panel_stride)), len(ps.u)))
                    self.n_panel_series_ += 1
        feats = np.concatenate([self.features_.features(s, e) for s, e, _ in parts])
        val_ends = np.arange(n_fit - 1, n - 1)
        val_feats = self.features_.features(own, val_ends)
        steps = [1] if c.strategy == "recursive" else list(range(1, self.horizon + 1))
        params = booster_params(c)
        self.boosters_, self.best_iterations_ = [], []
        for step in steps:
            target = np.concatenate([self.features_.targets(s, e, step, limit) for s, e, limit in parts])
            keep = np.flatnonzero(np.isfinite(target))
            if c.max_rows and len(keep) > c.max_rows:
                keep = np.sort(rng.choice(keep, int(c.max_rows), replace=False))
            val_target = self.features_.targets(own, val_ends, step)
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
        resid = np.column_stack([self.features_.targets(own, val_ends, k + 1) for k in range(self.horizon)]) - z
        self.spread_ = ResidualQuantiles.fit(resid, self.horizon)

    # -- forecasting ---------------------------------------------------------------------
    def _predict_step(self, booster_index: int, feats: np.ndarray) -> np.ndarray:
        booster = self.boosters_[booster_index]
        return booster.predict(feats, num_iteration=self.best_iterations_[booster_index])

    def _forecast_u(self, s: PreparedSeries, ends: np.ndarray, h: int) -> np.ndarray:
        """Forecast changes u_{o+k} - u_o, (n, h), for the origins ``ends``."""
        out = np.zeros((len(ends), h))
        if len(ends) == 0:
            return out
        if self.config.strategy == "direct":
            feats = self.features_.features(s, ends)
            for k in range(min(h, len(self.boosters_))):
                out[:, k] = self._predict_step(k, feats)
            if h > len(self.boosters_):  # beyond the last booster: hold its forecast
                out[:, len(self.boosters_):] = out[:, [len(self.boosters_) - 1]]
            return out
        hist = history_windows(s.u, ends, self.features_.memory)
        origin = hist[:, -1].copy()
        for k in range(h):
            step = self._predict_step(0, self.features_.features(s, ends, hist, ends + k))
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
        s = self.features_.prepare(y[:n], None if X is None or not self.n_inputs_ else np.asarray(X)[:n], self.scaler_,
                          self.features_.calendar(n))
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
        return self.features_.names()

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
        model.features_ = OriginFeatures(model.config, model.exog_names_, model.n_inputs_)
        model.scaler_ = SeriesScaling.from_dict(state["scaler"])
        model.spread_ = ResidualQuantiles(np.asarray(state["quantiles"], dtype=float))
        model.best_iterations_ = [int(v) for v in state["best_iterations"]]
        model.n_features_, model.n_panel_series_ = int(state["n_features"]), int(state["n_panel_series"])
        model.boosters_ = [lgb.Booster(model_str=text) for text in state["boosters"]]
        model.fitted = True
        return model
