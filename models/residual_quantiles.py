"""Split-conformal intervals from the residuals of a validation slice the model never trained on.

A model forecasts every origin of its validation slice (the end of its training part, held
out of training) for steps ``1..H``; the residuals ``actual - forecast`` of each step, in
the space the model works in (scaled, so that under ``log1p`` an interval widens with the
level), give quantiles on a grid of probabilities :data:`PROBS`. The interval at level
``L`` adds the ``0.5 -/+ L/200`` residual quantiles (read off the grid by linear
interpolation) to the point forecast, clipped so that it always contains the point.
Steps past ``H`` take step ``H``'s quantiles, optionally widened by ``sqrt(1 + k // H)``
for the ``k``-th step (a recursive forecast feeding ``H``-step blocks back).
"""

from __future__ import annotations

import numpy as np

PROBS = np.linspace(0.005, 0.995, 199)


class ResidualQuantiles:
    """Per-step residual quantiles ``q`` of shape ``(len(PROBS), H)``."""

    def __init__(self, q: np.ndarray) -> None:
        self.q = q

    @classmethod
    def fit(cls, resid: np.ndarray, horizon: int) -> ResidualQuantiles:
        """``resid`` (n, H): NaN where a target was missing; none observed: zero-width intervals."""
        if not np.isfinite(resid).any():
            return cls(np.zeros((len(PROBS), horizon)))
        return cls(np.nan_to_num(np.nanquantile(resid, PROBS, axis=0), nan=0.0))

    @classmethod
    def zeros(cls, horizon: int) -> ResidualQuantiles:
        return cls(np.zeros((len(PROBS), horizon)))

    @property
    def horizon(self) -> int:
        return self.q.shape[1]

    def offsets(self, level: int, h: int, widen: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) offsets, each ``(h,)``, to add to the point forecast of steps ``1..h``."""
        steps = np.arange(h)
        cols = np.minimum(steps, self.horizon - 1)
        lo = np.array([np.interp(0.5 - level / 200, PROBS, self.q[:, j]) for j in cols])
        hi = np.array([np.interp(0.5 + level / 200, PROBS, self.q[:, j]) for j in cols])
        lo, hi = np.minimum(lo, 0), np.maximum(hi, 0)
        if widen:
            factor = np.sqrt(steps // self.horizon + 1)
            lo, hi = lo * factor, hi * factor
        return lo, hi

    def tolist(self) -> list:
        return np.asarray(self.q).tolist()
