"""Seasonal ARIMA: the daily season of hourly PM2.5 (24 h), and a weather variant.

``sarima`` is SARIMA(p,d,q)(P,D,Q)[season]; ``sarimax_weather`` adds the weather
(dew point, temperature, pressure, wind speed, wind direction, rain, snow) as it was
known at the forecast origin: the regressors of the target hour ``t`` are the weather
of hour ``t-1`` and its change over that hour. From an origin ``o`` the first step
uses the observed ``x_o`` (known), later steps hold the weather at ``x_o``
(persistence: the changes are zero) — no future weather is ever read, so the
model is *not* "oracle". Both fit on a training window and filter the rest (see
:mod:`models.sarimax_base`).
"""

from __future__ import annotations

import numpy as np

from models.base import ffill
from models.registry import register
from models.sarimax_base import SarimaxForecaster
from seqcast.model_config import SarimaLogParams, SarimaParams, SarimaxWeatherParams


@register
class Sarima(SarimaxForecaster):
    name = "sarima"
    Params = SarimaParams
    tiny_config = {"p": 1, "q": 0, "P": 1, "Q": 0, "fit_window": 300, "filter_window": None, "maxiter": 20}

    def __init__(self, config: SarimaParams | None = None, *, season: int = 24) -> None:
        super().__init__(config, season=season)


@register
class SarimaxWeather(SarimaxForecaster):
    name = "sarimax_weather"
    # change_columns: hourly changes only of the smooth weather columns (dew point, temperature,
    # pressure = 0, 1, 2 in the P1 table); cumulated wind speed resets when the direction
    # changes, so its "change" is an artefact
    Params = SarimaxWeatherParams
    supports_exog = True
    oracle_exog = False
    tiny_config = {"p": 1, "q": 0, "P": 1, "Q": 0, "fit_window": 300, "filter_window": None, "maxiter": 20}

    def __init__(self, config: SarimaxWeatherParams | None = None, *, season: int = 24) -> None:
        super().__init__(config, season=season)

    def _fit(self, y, X):
        if X is None:  # no weather given: the plain SARIMA (stated in describe())
            self.keep_ = None
            super()._fit(y, None)
            return
        X = _ffill_cols(X)
        # one-hot wind directions sum to one, which the constant already spans: drop one
        binary = [j for j in range(X.shape[1]) if np.isin(X[:, j], (0.0, 1.0)).all()]
        drop = binary[-1:] if len(binary) > 1 and np.allclose(X[:, binary].sum(axis=1), 1.0) else []
        self.keep_ = np.array([j for j in range(X.shape[1]) if j not in drop], dtype=int)
        # standardise with training moments so the optimiser sees comparable scales
        self.x_mean_ = np.nanmean(X[:, self.keep_], axis=0)
        self.x_std_ = np.nanstd(X[:, self.keep_], axis=0)
        self.x_std_[~np.isfinite(self.x_std_) | (self.x_std_ == 0)] = 1.0
        cc = [c for c in self.config.change_columns if c < X.shape[1]]
        self._record(change_columns=cc)
        self.d_std_ = np.nanstd(np.diff(X[:, cc], axis=0), axis=0) if cc else np.empty(0)
        self.d_std_[~np.isfinite(self.d_std_) | (self.d_std_ == 0)] = 1.0
        super()._fit(y, X)

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        Xs = (_ffill_cols(X)[:, self.keep_] - self.x_mean_) / self.x_std_
        # clipped: cumulated rain/snow hours of a wet summer lie far outside a dry winter window
        return np.clip(np.nan_to_num(Xs, nan=0.0), -5.0, 5.0)

    def _changes(self, X: np.ndarray) -> np.ndarray:
        """Standardised hourly changes ``x_t - x_{t-1}`` of the change columns, clipped at 5 sd."""
        cc = self.config.change_columns
        Xf = _ffill_cols(X[:, cc]) if cc else np.zeros((len(X), 0))
        D = np.vstack([np.zeros((1, Xf.shape[1])), np.diff(Xf, axis=0)]) / self.d_std_
        return np.clip(np.nan_to_num(D, nan=0.0), -5.0, 5.0)

    def _regressors(self, n, X):
        if X is None or getattr(self, "keep_", None) is None:
            return None
        Xs = np.hstack([self._scaled(X[:n]), self._changes(X[:n])])
        return np.vstack([np.zeros((1, Xs.shape[1])), Xs[:-1]])  # the weather of hour t-1 for target t

    def _future_regressors(self, origins, h, n, X):
        if X is None or getattr(self, "keep_", None) is None:
            return None
        Xs, D = self._scaled(X[:n]), self._changes(X[:n])
        level = np.repeat(Xs[origins][:, None, :], h, axis=1)  # x_o, held (persistence)
        change = np.zeros((len(origins), h, D.shape[1]))
        change[:, 0, :] = D[origins]  # the change observed at the origin; none afterwards
        return np.concatenate([level, change], axis=2)

    def _predict(self, h, levels, X_future):
        X = self.X_
        if X is not None and len(X) < len(self.y_):  # updated without weather: hold the last known row
            X = np.vstack([X, np.repeat(X[-1:], len(self.y_) - len(X), axis=0)])
        return self._forecast(self.y_, np.array([len(self.y_) - 1]), h, levels, X)

    def get_state(self):
        state = super().get_state()
        if self.keep_ is not None:
            state.update({"x_mean": self.x_mean_, "x_std": self.x_std_, "keep": self.keep_, "d_std": self.d_std_})
        return state

    def set_state(self, state):
        self.keep_ = None
        if "keep" in state:
            self.x_mean_ = np.asarray(state["x_mean"], dtype=float)
            self.x_std_ = np.asarray(state["x_std"], dtype=float)
            self.keep_ = np.asarray(state["keep"], dtype=int)
            self.d_std_ = np.asarray(state["d_std"], dtype=float)
        super().set_state(state)

    def describe(self):
        out = super().describe()
        out["weather"] = "lag-1 at origin, persistence ahead" if getattr(self, "keep_", None) is not None else "none given"
        return out


def _ffill_cols(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    return np.column_stack([ffill(X[:, j]) for j in range(X.shape[1])]) if X.size else X


@register
class SarimaLog(Sarima):
    """SARIMA on ``log(1 + y)``: the point forecast is the back-transformed median (the
    MAE-optimal point of a skewed series), the interval bounds the back-transformed quantiles."""

    name = "sarima_log"
    Params = SarimaLogParams  # transform: log1p
