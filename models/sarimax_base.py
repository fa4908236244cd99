"""Shared machinery of the SARIMAX-family forecasters (SARIMA, weather SARIMAX,
harmonic regression, stepwise ARIMA).

Every one of them is "regression with seasonal ARIMA errors": ``z_t = r_t' beta + u_t``
with ``z = y`` or ``log1p(y)``, ``r_t`` the model's regressors (none, lagged weather,
Fourier terms) and ``u_t`` a SARIMA process. Parameters are estimated once, on the
last ``fit_window`` training points (the 19.3 GB of a full-sample season-24 fit is
the reason); afterwards the fitted parameters *filter*: one Kalman pass over the last
``filter_window`` points before the first origin plus everything after gives the
predicted state at every origin, and :func:`models.statespace.forecast_moments` turns
those into ``h``-step forecasts for all origins at once. Nothing is refitted in P1a.

With ``transform: log1p`` (models/target_transform.py) the model lives on ``log(1 + y)``: the point forecast is the
back-transformed median (``expm1`` of the Gaussian mean) and the interval bounds are
the back-transformed quantiles (exact, the transform is monotone).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from models.base import Forecast, Forecaster, Levels
from models.statespace import forecast_moments
from models.target_transform import TargetTransform
from seqcast.model_config import SarimaxParams


class SarimaxForecaster(Forecaster):
    family = "classical"
    update_method = "Kalman filtering with the fitted parameters (no refit)"
    Params = SarimaxParams

    # -- hooks for subclasses -----------------------------------------------------------
    def _regressors(self, n: int, X: np.ndarray | None) -> np.ndarray | None:
        """In-sample regressors ``r_t`` for positions ``0..n-1`` (causal: ``X[:t]`` at most)."""
        return None

    def _future_regressors(self, origins: np.ndarray, h: int, n: int, X: np.ndarray | None) -> np.ndarray | None:
        """Regressors of the targets ``o+1..o+h`` as known at each origin: ``(n_origins, h, k)``."""
        return None

    def _R(self, n: int, X: np.ndarray | None) -> np.ndarray | None:
        R = self._regressors(n, X)
        keep = getattr(self, "reg_keep_", None)
        return R if R is None or keep is None else R[:, keep]

    # -- transform ----------------------------------------------------------------------
    @property
    def target(self) -> TargetTransform:
        """The configured pointwise transform (``none`` or ``log1p``); nothing to fit, no scaling."""
        return TargetTransform(self.config.transform)

    def _z(self, y: np.ndarray) -> np.ndarray:
        return self.target.forward(y)

    # -- statsmodels model ----------------------------------------------------------------
    def _trend(self) -> str:
        cfg = self.config
        d_total = cfg.d + cfg.D
        if d_total >= 2:
            return "n"
        # a windowed fit cannot index a linear trend consistently: "ct" falls back to "c"
        return "c" if cfg.trend in ("c", "ct") else "n"

    def _model(self, z: np.ndarray, R: np.ndarray | None, validate: bool = True):
        """``validate=False`` for the filter pass with fitted parameters: a regressor that happens to be
        constant over a short window (snow hours in autumn) does not matter when nothing is estimated
        (statsmodels itself skips the check when it extends a fitted model)."""
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        cfg = self.config
        seasonal = (cfg.P, cfg.D, cfg.Q, self.season) if self.season > 1 and (cfg.P or cfg.D or cfg.Q) else (0, 0, 0, 0)
        return SARIMAX(z, exog=R, order=(cfg.p, cfg.d, cfg.q), seasonal_order=seasonal, trend=self._trend(),
                       enforce_stationarity=True, enforce_invertibility=True, concentrate_scale=False,
                       validate_specification=validate)

    def _fit(self, y: np.ndarray, X: np.ndarray | None) -> None:
        z = self._z(y)
        self.reg_keep_ = None
        R = self._regressors(len(y), X)
        window = self.config.fit_window
        start = max(0, len(z) - int(window)) if window else 0
        if R is not None:  # a regressor constant over the fit window is not identified: drop it
            self.reg_keep_ = np.flatnonzero(np.ptp(R[start:], axis=0) > 0)
            R = R[:, self.reg_keep_]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = self._model(z[start:], None if R is None else R[start:])
            res = model.fit(disp=False, maxiter=self.config.maxiter)
        self.params_ = np.asarray(res.params, dtype=float)
        self.param_names_ = list(model.param_names)
        self.aic_ = float(res.aic)
        self.bic_ = float(res.bic)
        self.converged_ = bool((res.mle_retvals or {}).get("converged", True))
        self.n_reg_ = 0 if R is None else R.shape[1]
        self._diagnose(res)

    def _diagnose(self, res) -> None:
        """Ljung–Box on the standardised one-step residuals of the fit window."""
        from statsmodels.stats.diagnostic import acorr_ljungbox

        resid = np.asarray(res.filter_results.standardized_forecasts_error[0], dtype=float)
        burn = max(res.loglikelihood_burn, 1)
        resid = resid[burn:]
        resid = resid[np.isfinite(resid)]
        lags = [lag for lag in (10, 2 * max(self.season, 5)) if lag < len(resid) // 2]
        if not lags:
            self.lb_ = {}
            return
        lb = acorr_ljungbox(resid, lags=sorted(set(lags)))
        self.lb_ = {f"ljung_box_pvalue_lag{int(lag)}": float(p) for lag, p in zip(lb.index, lb["lb_pvalue"])}

    # -- filtering and forecasting ---------------------------------------------------------
    def _filtered(self, y: np.ndarray, X: np.ndarray | None, first_origin: int):
        """Kalman pass with the fitted parameters over a causal window ending at ``len(y)``."""
        z = self._z(np.asarray(y, dtype=float))
        R = self._R(len(z), X)
        window = self.config.filter_window
        start = max(0, first_origin + 1 - int(window)) if window else 0
        model = self._model(z[start:], None if R is None else R[start:], validate=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = model.filter(self.params_)
        return res, start

    def _n_reg(self) -> int:
        return getattr(self, "n_reg_", 0)

    def _forecast(self, y: np.ndarray, origins: np.ndarray, h: int, levels: Levels, X: np.ndarray | None) -> Forecast:
        origins = np.asarray(origins, dtype=int)
        if len(origins) == 0:
            empty = np.empty((0, h))
            return Forecast(empty, {lv: empty for lv in levels}, {lv: empty for lv in levels})
        res, start = self._filtered(y[: origins[-1] + 1], None if X is None else X[: origins[-1] + 1], int(origins[0]))
        mean, var = forecast_moments(res.filter_results, origins - start, h)
        k = self._n_reg()
        if k:
            beta = self.params_[res.model.k_trend : res.model.k_trend + k]
            F = self._future_regressors(origins, h, origins[-1] + 1, X)
            if self.reg_keep_ is not None:
                F = F[:, :, self.reg_keep_]
            mean = mean + F @ beta
        std = np.sqrt(var)
        lower, upper = {}, {}
        for level in levels:
            zq = stats.norm.ppf(0.5 + level / 200.0)
            lower[level], upper[level] = mean - zq * std, mean + zq * std
        return self.target.inverse_forecast(mean, lower, upper)

    def _update(self, y_new: np.ndarray, X_new: np.ndarray | None) -> None:
        pass  # the filter runs over the extended history at predict time

    def _predict(self, h: int, levels: Levels, X_future: np.ndarray | None) -> Forecast:
        n = len(self.y_)
        return self._forecast(self.y_, np.array([n - 1]), h, levels, self.X_)

    def forecast_origins(self, y, origins, h, levels=(80, 95), X=None) -> Forecast:
        self._check_fitted()
        y = np.asarray(y, dtype=float)
        X = None if X is None or not self.supports_exog else np.asarray(X, dtype=float)
        return self._forecast(y, np.asarray(origins, dtype=int), h, tuple(levels), X)

    # -- persistence and reporting -----------------------------------------------------------
    def get_state(self):
        state = {**super().get_state(), "params": self.params_}
        if getattr(self, "reg_keep_", None) is not None:
            state["reg_keep"] = self.reg_keep_
        return state

    def set_state(self, state):
        self.y_ = np.asarray(state["y"], dtype=float)
        self.X_ = None if "X" not in state else np.asarray(state["X"], dtype=float)
        self.params_ = np.asarray(state["params"], dtype=float)
        self.reg_keep_ = np.asarray(state["reg_keep"], dtype=int) if "reg_keep" in state else None
        self._after_load()
        self.fitted = True

    def _after_load(self) -> None:
        """Rebuild what the regressors need (e.g. their count) from ``y_``/``X_``."""
        R = self._R(len(self.y_), self.X_)
        self.n_reg_ = 0 if R is None else R.shape[1]

    def order_label(self) -> str:
        c = self.config
        label = f"({c.p},{c.d},{c.q})"
        if c.P or c.D or c.Q:
            label += f"({c.P},{c.D},{c.Q})[{self.season}]"
        return label

    def describe(self):
        out = super().describe()
        if self.fitted and hasattr(self, "aic_"):
            out.update({"order": self.order_label(), "aic": round(self.aic_, 3), "converged": self.converged_})
        return out

    def log_extras(self) -> dict:
        lb = getattr(self, "lb_", {})
        if not lb:
            return {}
        worst = min(lb.values())
        return {"metrics": {**lb, "ljung_box_pvalue": worst},
                "tags": {"residuals_white": str(worst >= 0.05).lower(), "order": self.order_label()}}
