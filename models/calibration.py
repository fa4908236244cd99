"""Split-conformal calibration of prediction intervals by one scale factor per level.

A model's interval ``[l, u]`` around its point ``m`` keeps its shape (asymmetric, wider
when the level is high) and is stretched or shrunk about ``m`` by a factor ``s``:
``[m - s (m - l), m + s (u - m)]``. On a calibration slice each observed actual ``y``
needs ``s_i = (m - y) / (m - l)`` below the point or ``(y - m) / (u - m)`` above it to be
covered; the factor is the ``ceil((n + 1) level) / n`` empirical quantile of the
``s_i`` (split conformal prediction, Vovk et al. 2005; Lei et al. 2018), so the
rescaled intervals cover at least ``level`` of the slice, and of new data exchangeable
with it. The slice must come before anything the intervals are judged on.
"""

from __future__ import annotations

import numpy as np

from models.base import Forecast

_EPS = 1e-9


def needed_scale(actual: np.ndarray, mean: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Per observed pair, the smallest factor that puts the actual inside the rescaled interval."""
    actual, mean = np.asarray(actual, float), np.asarray(mean, float)
    below = (mean - actual) / np.maximum(mean - np.asarray(lower, float), _EPS)
    above = (actual - mean) / np.maximum(np.asarray(upper, float) - mean, _EPS)
    s = np.maximum(np.maximum(below, above), 0.0)
    return s[np.isfinite(actual) & np.isfinite(mean) & np.isfinite(s)]


def scale_factor(actual: np.ndarray, mean: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: float) -> float:
    """The split-conformal factor for ``level`` (percent); 1.0 when nothing was observed."""
    s = np.sort(needed_scale(actual, mean, lower, upper))
    if len(s) == 0:
        return 1.0
    k = int(np.ceil((len(s) + 1) * level / 100.0))
    return float(s[min(k, len(s)) - 1])


def rescale(fc: Forecast, factors: dict[int, float]) -> Forecast:
    """Intervals stretched about the point by each level's factor; a wider level still holds the
    narrower one (the bounds are nested again after rescaling)."""
    lower, upper = {}, {}
    for level in fc.levels:
        f = float(factors.get(level, 1.0))
        lower[level] = fc.mean - f * (fc.mean - fc.lower[level])
        upper[level] = fc.mean + f * (fc.upper[level] - fc.mean)
    ordered = sorted(fc.levels)
    for narrow, wide in zip(ordered, ordered[1:]):
        lower[wide] = np.minimum(lower[wide], lower[narrow])
        upper[wide] = np.maximum(upper[wide], upper[narrow])
    return Forecast(fc.mean, lower, upper)
