"""Fourier: find the dominant periods with a periodogram, then harmonic regression.

:func:`periodogram` is the FFT power spectrum of the (gap-filled, demeaned) training
series; :func:`dominant_periods` keeps the strongest peaks. The forecaster regresses
the series on ``sin/cos(2 pi k t / period)`` for the top ``K`` periods with ARIMA
errors (statsmodels SARIMAX with those terms as exogenous regressors). The terms are
deterministic functions of the position, so their future values are known at any
origin; the ARIMA errors are filtered with the fitted parameters (no refit in P1a).
The periodogram plot is logged to MLflow through :meth:`figures`.
"""

from __future__ import annotations

import numpy as np

from models.base import ffill
from models.registry import register
from models.sarimax_base import SarimaxForecaster
from seqcast.model_config import FourierParams


def periodogram(y: np.ndarray, pad: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (cycles per step, > 0) and power ``|FFT|^2 / n`` of a series.

    ``pad > 1`` zero-pads to ``pad * n`` points: a finer frequency grid, so that a
    period is located to better than the ``1/n`` resolution of the raw FFT.
    """
    y = ffill(np.asarray(y, dtype=float))
    y = y[~np.isnan(y)]
    y = y - y.mean()
    n = len(y)
    power = np.abs(np.fft.rfft(y, n=pad * n)) ** 2 / n
    freq = np.fft.rfftfreq(pad * n)
    return freq[1:], power[1:]


def dominant_periods(y: np.ndarray, k: int = 3, min_period: float = 2.0, max_period: float | None = None) -> list[float]:
    """The ``k`` periods (in steps) of the strongest local maxima of the periodogram."""
    freq, power = periodogram(y, pad=8)
    max_period = max_period or len(y) / 2
    ok = (1 / freq >= min_period) & (1 / freq <= max_period)
    peak = np.zeros_like(ok)
    peak[1:-1] = (power[1:-1] >= power[:-2]) & (power[1:-1] >= power[2:])
    idx = np.flatnonzero(ok & peak)
    top = idx[np.argsort(power[idx])[::-1][:k]]
    return [float(1 / freq[i]) for i in top]


@register
class Fourier(SarimaxForecaster):
    name = "fourier"
    Params = FourierParams  # no seasonal ARIMA part: the harmonics carry the seasons
    tiny_config = {"k": 2, "p": 1, "q": 0, "fit_window": 300, "filter_window": None, "max_period": 100}

    def __init__(self, config: FourierParams | None = None, *, season: int = 24) -> None:
        super().__init__(config, season=season)

    def _fit(self, y, X):
        window = self.config.fit_window
        sample = y[-int(window) * 4:] if window else y  # a longer sample resolves the periods better
        self.freq_, self.power_ = periodogram(sample)
        self._record(periods=dominant_periods(sample, self.config.k, max_period=self.config.max_period))
        super()._fit(y, None)

    def _terms(self, t: np.ndarray) -> np.ndarray:
        cols = []
        for period in self.config.periods:
            w = 2 * np.pi * t / period
            cols += [np.sin(w), np.cos(w)]
        return np.column_stack(cols)

    def _regressors(self, n, X):
        return self._terms(np.arange(n, dtype=float)) if self.config.periods else None

    def _future_regressors(self, origins, h, n, X):
        t = origins[:, None] + np.arange(1, h + 1)[None, :]
        return self._terms(t.ravel().astype(float)).reshape(len(origins), h, -1)

    def describe(self):
        out = super().describe()
        out["periods"] = ",".join(f"{p:.2f}" for p in self.config.periods or [])
        return out

    def figures(self) -> dict:
        if not hasattr(self, "freq_"):
            return {}
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.loglog(1 / self.freq_, self.power_, lw=0.7)
        for p in self.config.periods:
            ax.axvline(p, color="red", ls="--", lw=0.8)
            ax.annotate(f"{p:.1f}", (p, self.power_.max()), fontsize=8, color="red")
        ax.set_xlabel("period (steps)")
        ax.set_ylabel("power")
        ax.set_title("Periodogram of the training series (top periods dashed)")
        fig.tight_layout()
        return {"periodogram.png": fig}
