"""Point, interval and direction metrics, and the Diebold–Mariano test.

Every function takes aligned arrays and ignores pairs whose actual value is missing
(protocols.md: errors only where the actual is observed).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def _observed(actual: np.ndarray, *others: np.ndarray) -> np.ndarray:
    mask = ~np.isnan(actual)
    for o in others:
        mask &= ~np.isnan(o)
    return mask


def mae(actual: np.ndarray, pred: np.ndarray) -> float:
    m = _observed(actual, pred)
    return float(np.mean(np.abs(actual[m] - pred[m])))


def rmse(actual: np.ndarray, pred: np.ndarray) -> float:
    m = _observed(actual, pred)
    return float(np.sqrt(np.mean((actual[m] - pred[m]) ** 2)))


def mase_scale(y_train: np.ndarray, season: int) -> float:
    """In-sample MAE of the (seasonal) naive forecast over pairs where both values are observed."""
    y_train = np.asarray(y_train, dtype=float)
    diff = y_train[season:] - y_train[:-season]
    diff = diff[~np.isnan(diff)]
    if len(diff) == 0:
        raise ValueError("no observed pair to scale MASE")
    return float(np.mean(np.abs(diff)))


def mase(mae_value: float, scale: float) -> float:
    """MAE over the in-sample (seasonal) naive MAE. A series the in-sample naive forecasts exactly
    (scale 0: constant, or a pure seasonal pattern) scores 0 when the model is exact too, else inf."""
    if scale > 0:
        return mae_value / scale
    return 0.0 if mae_value == 0 else float("inf")


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    m = _observed(actual, lower, upper)
    return float(np.mean((actual[m] >= lower[m]) & (actual[m] <= upper[m])))


def directional_accuracy(actual: np.ndarray, pred: np.ndarray, reference: np.ndarray) -> float:
    """Share of forecasts whose predicted change from the origin value has the actual change's sign.

    Pairs where the actual did not move, or where the forecast predicts no move (the
    naive forecast always), are left out: NaN when no direction was predicted at all.
    """
    da, dp = actual - reference, pred - reference
    m = _observed(da, dp) & (da != 0) & (dp != 0)
    if not m.any():
        return float("nan")
    return float(np.mean(np.sign(da[m]) == np.sign(dp[m])))


def diebold_mariano(actual: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, h: int = 1,
                    power: int = 2) -> tuple[float, float]:
    """DM statistic and two-sided p-value of equal accuracy of forecasts a and b.

    Loss differential d = |e_a|^power - |e_b|^power; long-run variance with h-1
    autocovariances; Harvey–Leybourne–Newbold small-sample correction with a
    Student-t reference. A negative statistic means a is more accurate.
    """
    m = _observed(actual, pred_a, pred_b)
    d = np.abs(actual[m] - pred_a[m]) ** power - np.abs(actual[m] - pred_b[m]) ** power
    n = len(d)
    if n < 3:
        return float("nan"), float("nan")
    dbar = d.mean()
    gamma = [np.mean((d[k:] - dbar) * (d[: n - k] - dbar)) for k in range(h)]
    var = (gamma[0] + 2 * sum(gamma[1:])) / n
    if var <= 0:
        return float("nan"), float("nan")
    dm = dbar / np.sqrt(var)
    correction = np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    stat = float(dm * correction)
    p = float(2 * stats.t.sf(abs(stat), df=n - 1))
    return stat, p
