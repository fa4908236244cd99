"""Stationarity: ADF and KPSS on the level, the first difference and (prices) log returns.

The two tests have opposite null hypotheses (ADF: unit root; KPSS: stationary), so
together they tell four cases apart:

- ADF rejects, KPSS does not                    -> stationary (d = 0)
- level fails, but with a trend term ADF rejects
  and KPSS does not                             -> trend-stationary (d = 0, trend "ct")
- ADF cannot reject on the level and the first
  difference is stationary                      -> difference-stationary (d = 1, or 2)
- ADF rejects and KPSS also rejects             -> stationary by ADF, flagged "tests disagree"
  (long memory or breaks; KPSS over-rejects on long samples)

``d`` is the number of differences after which ADF rejects a unit root (at most
``max_d``); the Box–Jenkins stage reads it.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class TestResult:
    test: str  # "adf" or "kpss"
    transform: str  # "level", "diff1", "log_return", ...
    regression: str  # "c" or "ct"
    statistic: float
    pvalue: float
    lags: int
    rejects: bool  # null rejected at alpha


def _adf(y: np.ndarray, transform: str, regression: str, alpha: float) -> TestResult:
    from statsmodels.tsa.stattools import adfuller

    r = adfuller(y, regression=regression, autolag="AIC", result_object=True)
    return TestResult("adf", transform, regression, float(r.statistic), float(r.pvalue), int(r.lags),
                      bool(r.pvalue < alpha))


def _kpss(y: np.ndarray, transform: str, regression: str, alpha: float) -> TestResult:
    from statsmodels.tsa.stattools import kpss

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # p-values outside the table are clipped to [0.01, 0.1]
        r = kpss(y, regression=regression, nlags="auto", result_object=True)
    return TestResult("kpss", transform, regression, float(r.statistic), float(r.pvalue), int(r.lags),
                      bool(r.pvalue < alpha))


def _stationary(adf: TestResult, kpss: TestResult) -> bool:
    return adf.rejects and not kpss.rejects


def analyse(y: np.ndarray, *, alpha: float = 0.05, max_d: int = 2, is_price: bool = False,
            max_points: int | None = None) -> dict:
    """Tests and verdict for one series (NaNs dropped; the most recent ``max_points``)."""
    y = np.asarray(y, dtype=float)
    y = y[~np.isnan(y)]
    if max_points and len(y) > max_points:
        y = y[-max_points:]
    if len(y) < 20:
        raise ValueError(f"stationarity needs at least 20 observed points, got {len(y)}")
    tests: list[TestResult] = []
    level = {reg: (_adf(y, "level", reg, alpha), _kpss(y, "level", reg, alpha)) for reg in ("c", "ct")}
    tests += [t for pair in level.values() for t in pair]

    d, series = 0, y
    adf_c = level["c"][0]
    while not adf_c.rejects and d < max_d:
        d += 1
        series = np.diff(series)
        adf_c = _adf(series, f"diff{d}", "c", alpha)
        tests += [adf_c, _kpss(series, f"diff{d}", "c", alpha)]
    if d == 0:
        tests += [_adf(np.diff(y), "diff1", "c", alpha), _kpss(np.diff(y), "diff1", "c", alpha)]
    if is_price and np.all(y > 0):
        r = np.diff(np.log(y))
        tests += [_adf(r, "log_return", "c", alpha), _kpss(r, "log_return", "c", alpha)]

    trend = "c"
    agree = True
    if _stationary(*level["c"]):
        verdict = "stationary"
    elif not level["c"][0].rejects and _stationary(*level["ct"]):
        verdict, d, trend = "trend-stationary", 0, "ct"
    elif level["c"][0].rejects:
        verdict, agree = "stationary", False  # ADF rejects a unit root, KPSS rejects stationarity
    elif adf_c.rejects:
        verdict = "difference-stationary"
    else:
        verdict = "non-stationary"
    return {
        "verdict": verdict,
        "d": int(d),
        "trend": trend,
        "tests_agree": agree,
        "n": int(len(y)),
        "alpha": alpha,
        "tests": [asdict(t) for t in tests],
    }


def acf_pacf_figure(y: np.ndarray, nlags: int, title: str):
    """ACF and PACF of the level and the first difference (2 x 2 panels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from statsmodels.graphics.tsaplots import plot_acf, plot_pacf

    y = np.asarray(y, dtype=float)
    y = y[~np.isnan(y)]
    fig, axes = plt.subplots(2, 2, figsize=(11, 6))
    for row, (label, series) in enumerate((("level", y), ("first difference", np.diff(y)))):
        plot_acf(series, lags=nlags, ax=axes[row, 0], title=f"ACF, {label}")
        plot_pacf(series, lags=nlags, ax=axes[row, 1], title=f"PACF, {label}", method="ywm")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
