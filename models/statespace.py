"""Forecasts from many origins of a fitted linear Gaussian state-space model.

statsmodels filters a whole series in one pass; the one-step predicted state
``a[o+1|o]`` and its covariance ``P[o+1|o]`` at every origin come out of that pass.
From there the ``h``-step forecasts are the usual recursions, vectorised over origins:

    mean_j = Z a + d,  var_j = Z P Z' + H,  a <- T a + c,  P <- T P T' + R Q R'

This is how P1a (8,760 hourly origins) and P1b (365 daily origins) run without a
single refit: one filtering pass plus a few small matrix products.
"""

from __future__ import annotations

import numpy as np

from models.base import Forecast, Levels


MATRICES = ("design", "obs_intercept", "obs_cov", "transition", "state_intercept", "selection", "state_cov")


def is_time_invariant(filter_results) -> bool:
    """True when every system matrix is the same at all times (stored once, or repeated)."""
    for m in MATRICES:
        arr = getattr(filter_results, m)
        if arr.shape[-1] > 1 and not np.all(arr == arr[..., :1]):
            return False
    return True


def forecast_from_states(
    filter_results,
    origins: np.ndarray,
    h: int,
    levels: Levels,
) -> Forecast:
    """``h``-step forecasts at each origin from the filter's predicted states.

    ``filter_results`` must come from filtering a series that covers every origin
    (``predicted_state`` has one column more than observations).
    """
    fr = filter_results
    Z = fr.design[:, :, 0]  # (1, k)
    d = fr.obs_intercept[:, 0]  # (1,)
    H = fr.obs_cov[:, :, 0]  # (1, 1)
    T = fr.transition[:, :, 0]  # (k, k)
    c = fr.state_intercept[:, 0]  # (k,)
    R = fr.selection[:, :, 0]
    RQR = R @ fr.state_cov[:, :, 0] @ R.T  # (k, k)

    origins = np.asarray(origins, dtype=int)
    a = fr.predicted_state[:, origins + 1].T.copy()  # (n, k)  a[o+1|o]
    P = np.moveaxis(fr.predicted_state_cov[:, :, origins + 1], -1, 0).copy()  # (n, k, k)
    n = len(origins)
    mean = np.empty((n, h))
    var = np.empty((n, h))
    for j in range(h):
        mean[:, j] = a @ Z[0] + d[0]
        var[:, j] = np.einsum("i,nij,j->n", Z[0], P, Z[0]) + H[0, 0]
        a = a @ T.T + c
        P = T @ P @ T.T + RQR
    return Forecast.gaussian(mean, np.sqrt(np.maximum(var, 0.0)), levels)


def forecast_moments(filter_results, origins: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the ``h``-step forecasts, without the observation intercept.

    The same recursions as :func:`forecast_from_states`; regression models with a
    time-varying mean (exogenous or deterministic regressors) add their own mean to
    ``Z a`` instead of the filter's ``obs_intercept``.
    """
    fr = filter_results
    Z = fr.design[0, :, 0]
    H = fr.obs_cov[0, 0, 0]
    T = fr.transition[:, :, 0]
    c = fr.state_intercept[:, 0]
    R = fr.selection[:, :, 0]
    RQR = R @ fr.state_cov[:, :, 0] @ R.T
    origins = np.asarray(origins, dtype=int)
    a = fr.predicted_state[:, origins + 1].T.copy()
    P = np.moveaxis(fr.predicted_state_cov[:, :, origins + 1], -1, 0).copy()
    mean = np.empty((len(origins), h))
    var = np.empty((len(origins), h))
    for j in range(h):
        mean[:, j] = a @ Z
        var[:, j] = np.einsum("i,nij,j->n", Z, P, Z) + H
        a = a @ T.T + c
        P = T @ P @ T.T + RQR
    return mean, np.maximum(var, 0.0)
