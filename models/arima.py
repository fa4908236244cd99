"""ARIMA(p, d, q) with a constant, estimated by statsmodels' state-space SARIMAX.

``d`` comes from the stationarity stage; ``p`` and ``q`` from ``params.yaml``. The
model is fitted on the last ``fit_window`` points of the training history (memory
and time grow with the sample; the estimates settle long before), then the fitted
parameters filter the whole series: rolling forecasts update by Kalman filtering,
never by refitting (see :mod:`models.statespace`).
"""

from __future__ import annotations

import warnings

import numpy as np

from models.base import Forecast, Forecaster, Levels
from models.registry import register
from models.statespace import forecast_from_states, is_time_invariant
from seqcast.model_config import ArimaParams


@register
class Arima(Forecaster):
    name = "arima"
    Params = ArimaParams
    family = "classical"
    update_method = "Kalman filtering with the fitted parameters (no refit)"
    uses_differencing_order = True
    tiny_config = {"p": 1, "d": 0, "q": 1}

    # statsmodels model on a series with the configured order
    def _model(self, y: np.ndarray):
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        cfg = self.config
        # with d = 1 a constant is a drift, with d = 2 a quadratic trend (none then);
        # "ct" (trend-stationary series) adds a linear trend to the constant
        trend = cfg.trend if cfg.d == 0 else ("c" if cfg.d == 1 else "n")
        return SARIMAX(y, order=(cfg.p, cfg.d, cfg.q), trend=trend,
                       enforce_stationarity=True, enforce_invertibility=True)

    def _fit(self, y: np.ndarray, X: np.ndarray | None) -> None:
        # a linear trend is indexed from the first point: fitting it on a window would
        # shift it against the full series, so trend-stationary fits use everything
        window = self.config.fit_window if self.config.trend != "ct" else None
        y_fit = y[-int(window):] if window else y
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = self._model(y_fit).fit(disp=False, maxiter=self.config.maxiter)
        self.params_ = np.asarray(res.params, dtype=float)
        self.param_names_ = list(res.model.param_names)
        self.aic_ = float(res.aic)
        self.converged_ = bool(res.mle_retvals.get("converged", True)) if res.mle_retvals else True
        self._filter(y)

    def _filter(self, y: np.ndarray) -> None:
        self.res_ = self._model(y).filter(self.params_)

    def _update(self, y_new: np.ndarray, X_new: np.ndarray | None) -> None:
        self._filter(self.y_)

    def _predict(self, h: int, levels: Levels, X_future: np.ndarray | None) -> Forecast:
        return forecast_from_states(self.res_.filter_results, np.array([len(self.y_) - 1]), h, levels)

    def forecast_origins(self, y, origins, h, levels=(80, 95), X=None) -> Forecast:
        self._check_fitted()
        y = np.asarray(y, dtype=float)
        res = self._model(y).filter(self.params_)  # one causal pass over the whole series
        if not is_time_invariant(res.filter_results):
            return super().forecast_origins(y, origins, h, levels, X)
        return forecast_from_states(res.filter_results, np.asarray(origins, dtype=int), h, levels)

    def get_state(self):
        return {**super().get_state(), "params": self.params_}

    def set_state(self, state):
        self.y_ = np.asarray(state["y"], dtype=float)
        self.params_ = np.asarray(state["params"], dtype=float)
        self._filter(self.y_)
        self.fitted = True

    def describe(self):
        out = super().describe()
        if self.fitted:
            c = self.config
            out.update({"order": f"({c.p},{c.d},{c.q})",
                        "aic": round(getattr(self, "aic_", float("nan")), 3)})
            out.update({f"coef_{k}": round(float(v), 6) for k, v in zip(getattr(self, "param_names_", []), self.params_)})
        return out
