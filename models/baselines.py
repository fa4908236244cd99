"""The baselines every model must beat: naive, seasonal naive and drift.

Intervals follow Hyndman & Athanasopoulos (FPP3, section 5.5): residual standard
deviation sigma from one-step in-sample residuals, widened with the horizon as
sqrt(h) (naive), sqrt(floor((h-1)/m)+1) (seasonal naive) and sqrt(h (1 + h/T)) (drift).
All three are vectorised over origins, so a year of hourly origins costs milliseconds.
"""

from __future__ import annotations

import numpy as np

from models.base import DirectForecaster, Forecast, ffill
from models.registry import register
from seqcast.model_config import DriftParams, NaiveParams, SeasonalNaiveParams


class _Baseline(DirectForecaster):
    family = "baseline"
    update_method = "exact: the forecast is a function of the latest observations"

    def _residual_sigma(self, y: np.ndarray) -> float:
        lag = self._lag()
        resid = y[lag:] - y[:-lag]
        if self.name == "drift":
            resid = resid - np.nanmean(resid)
        resid = resid[~np.isnan(resid)]
        if len(resid) < 2:
            raise ValueError(f"{self.name}: not enough observed pairs to estimate the residual spread")
        return float(np.sqrt(np.mean(resid**2)))

    def _lag(self) -> int:
        return 1

    def _fit(self, y: np.ndarray, X: np.ndarray | None) -> None:
        self.sigma_ = self._residual_sigma(y)

    def _forecast(self, y, origins, h, levels) -> Forecast:
        filled = ffill(y)
        steps = np.arange(1, h + 1)
        mean = self._mean(filled, origins, steps)
        std = self.sigma_ * self._spread(filled, origins, steps)
        return Forecast.gaussian(mean, np.broadcast_to(std, mean.shape), levels)

    def get_state(self):
        return {**super().get_state(), "sigma": np.array([self.sigma_])}

    def set_state(self, state):
        self.y_ = np.asarray(state["y"], dtype=float)
        self.sigma_ = float(state["sigma"][0])
        self.fitted = True


@register
class Naive(_Baseline):
    """y_{o+h} = y_o (random walk)."""

    name = "naive"
    Params = NaiveParams

    def _mean(self, y, origins, steps):
        return np.repeat(y[origins][:, None], len(steps), axis=1)

    def _spread(self, y, origins, steps):
        return np.sqrt(steps)


@register
class SeasonalNaive(_Baseline):
    """y_{o+h} = y_{o+h-m k}, the same hour of the last observed season."""

    name = "seasonal_naive"
    Params = SeasonalNaiveParams

    def _lag(self) -> int:
        return max(self.season, 1)

    def _mean(self, y, origins, steps):
        m = self._lag()
        k = (steps - 1) // m + 1
        idx = origins[:, None] + steps[None, :] - m * k[None, :]
        return y[idx]

    def _spread(self, y, origins, steps):
        return np.sqrt((steps - 1) // self._lag() + 1)


@register
class Drift(_Baseline):
    """Naive plus the average historical change (a straight line through first and last)."""

    name = "drift"
    Params = DriftParams

    def _mean(self, y, origins, steps):
        first = np.flatnonzero(~np.isnan(y))[0]
        span = np.maximum(origins - first, 1)
        slope = (y[origins] - y[first]) / span
        return y[origins][:, None] + slope[:, None] * steps[None, :]

    def _spread(self, y, origins, steps):
        first = np.flatnonzero(~np.isnan(y))[0]
        T = np.maximum(origins - first + 1, 2)[:, None]  # observations up to each origin
        return np.sqrt(steps[None, :] * (1 + steps[None, :] / T))
