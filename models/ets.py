"""Exponential smoothing (ETS, statsmodels ``ETSModel``), the form chosen by criterion.

Candidates: error ``add``/``mul`` × trend none/damped additive × season none/``add``/``mul``
(seasonal forms only when ``season > 1``; multiplicative forms only for a positive
series). Each is fitted on the last ``fit_window`` training points; the lowest AICc wins.

Update for rolling forecasts: the fitted parameters and initial states run the ETS
recursions (``ETSModel.smooth``: filtering, no re-estimation) over the whole series from
the start of the fit window; the state after each origin gives the point forecasts

    yhat_{o+j} = (l_o + phi_j b_o) (+|x) s_{o+j-m ceil(j/m)},   phi_j = phi + ... + phi^j,

vectorised over origins. Intervals are the class-1 formula of Hyndman et al. (2008),
``sigma^2 [1 + sum_{i<j} (alpha + beta phi_i + gamma 1{i mod m = 0})^2]``, exact for
additive models; for multiplicative errors the same factor is applied to the relative
error (``std = |yhat| sigma_rel ...``), an approximation stated here.
Missing values are forward-filled (causal) before smoothing.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np

from models.base import DirectForecaster, Forecast, Levels, ffill
from models.registry import register
from seqcast.model_config import EtsParams

EPS = 0.1  # multiplicative forms smooth max(y, EPS)


@register
class Ets(DirectForecaster):
    name = "ets"
    Params = EtsParams
    family = "classical"
    update_method = "ETS recursions (smoothing) with the fitted parameters, no refit"
    tiny_config = {"fit_window": 200, "errors": ["add"], "trends": [None], "seasonals": [None]}

    def _model(self, y: np.ndarray, form: dict):
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        seasonal = form["seasonal"]
        y = np.maximum(y, EPS) if "mul" in (form["error"], seasonal) else y
        return ETSModel(y, error=form["error"], trend=form["trend"], damped_trend=form["trend"] is not None,
                        seasonal=seasonal, seasonal_periods=self.season if seasonal else None)

    def _fit(self, y: np.ndarray, X: np.ndarray | None) -> None:
        cfg = self.config
        filled = ffill(y)
        window = cfg.fit_window
        self.start_ = max(int(np.flatnonzero(~np.isnan(filled))[0]), len(y) - int(window) if window else 0)
        sample = filled[self.start_:]
        positive = bool(np.nanmin(sample) > 0)
        seasonals = [s for s in cfg.seasonals if s is None or (self.season > 1 and len(sample) > 2 * self.season)]
        best, self.search_ = None, {}
        for error, trend, seasonal in itertools.product(cfg.errors, cfg.trends, seasonals):
            if not positive and "mul" in (error, seasonal):
                continue
            form = {"error": error, "trend": trend, "seasonal": seasonal}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = self._model(sample, form).fit(disp=False, maxiter=cfg.maxiter)
            except (ValueError, np.linalg.LinAlgError):
                continue
            score = float(getattr(res, cfg.criterion))
            self.search_[f"{error},{trend},{seasonal}"] = score
            if np.isfinite(score) and (best is None or score < best[0]):
                best = (score, form, res)
        if best is None:
            raise RuntimeError("ets: no candidate form could be fitted")
        _, self.form_, res = best
        self.params_ = np.asarray(res.params, dtype=float)
        self.param_names_ = list(res.model.param_names)
        fitted = np.asarray(res.fittedvalues, dtype=float)
        err = sample - fitted
        if self.form_["error"] == "mul":
            err = err / np.where(np.abs(fitted) > EPS, fitted, EPS)
        self.sigma_ = float(np.sqrt(np.mean(err[np.isfinite(err)] ** 2)))

    def _param(self, name: str, default: float = 0.0) -> float:
        return float(self.params_[self.param_names_.index(name)]) if name in self.param_names_ else default

    def _states(self, y: np.ndarray) -> np.ndarray:
        """States (level, trend?, season?) after each observation from ``start_`` on."""
        filled = ffill(np.asarray(y, dtype=float))[self.start_:]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = self._model(filled, self.form_).smooth(self.params_)
        return np.asarray(res.states, dtype=float)

    def _forecast(self, y: np.ndarray, origins: np.ndarray, h: int, levels: Levels) -> Forecast:
        states = self._states(y[: origins[-1] + 1])
        rel = origins - self.start_
        alpha, beta = self._param("smoothing_level"), self._param("smoothing_trend")
        gamma, phi = self._param("smoothing_seasonal"), self._param("damping_trend", 1.0)
        steps = np.arange(1, h + 1)
        level = states[rel, 0][:, None]
        col = 1
        mean = np.repeat(level, h, axis=1)
        phi_j = np.cumsum(phi ** steps)
        if self.form_["trend"]:
            mean = mean + states[rel, col][:, None] * phi_j[None, :]
            col += 1
        m = self.season
        if self.form_["seasonal"]:
            k = (steps - 1) // m + 1
            idx = rel[:, None] + steps[None, :] - m * k[None, :]
            s = states[np.maximum(idx, 0), col]
            mean = mean * s if self.form_["seasonal"] == "mul" else mean + s
        c = alpha + (beta * np.concatenate([[0.0], phi_j[:-1]]) if self.form_["trend"] else 0.0)
        c = np.broadcast_to(c, (h,)).copy()
        c[1:] = alpha + (beta * phi_j[:-1] if self.form_["trend"] else 0.0)
        if self.form_["seasonal"]:
            c[1:] += gamma * ((steps[:-1] % m) == 0)
        factor = np.sqrt(1.0 + np.concatenate([[0.0], np.cumsum(c[1:] ** 2)]))
        std = self.sigma_ * factor[None, :]
        if self.form_["error"] == "mul":
            std = std * np.abs(mean)
        return Forecast.gaussian(mean, np.broadcast_to(std, mean.shape), levels)


    def get_state(self):
        form = [self.form_["error"], self.form_["trend"] or "none", self.form_["seasonal"] or "none"]
        return {**super().get_state(), "params": self.params_, "param_names": np.array(self.param_names_),
                "form": np.array(form), "sigma": np.array([self.sigma_]), "start": np.array([self.start_])}

    def set_state(self, state):
        self.y_ = np.asarray(state["y"], dtype=float)
        self.params_ = np.asarray(state["params"], dtype=float)
        self.param_names_ = [str(v) for v in state["param_names"]]
        e, t, s = (str(v) for v in state["form"])
        self.form_ = {"error": e, "trend": None if t == "none" else t, "seasonal": None if s == "none" else s}
        self.sigma_ = float(state["sigma"][0])
        self.start_ = int(state["start"][0])
        self.fitted = True

    def describe(self):
        out = super().describe()
        if self.fitted:
            f = self.form_
            out["form"] = f"ETS({f['error'][0].upper()},{'Ad' if f['trend'] else 'N'},{(f['seasonal'] or 'n')[0].upper()})"
            out.update({k: round(self._param(k), 5) for k in ("smoothing_level", "smoothing_trend",
                                                               "smoothing_seasonal", "damping_trend")
                        if k in self.param_names_})
        return out

    def log_extras(self) -> dict:
        return {"dicts": {"ets_search.json": getattr(self, "search_", {})}, "tags": {"ets_form": self.describe().get("form", "")}}
