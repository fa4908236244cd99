"""The target's domain (a dataset's ``data.domain``) and what it means for a forecast.

``real``: any value. ``non_negative`` (PM2.5, electricity load, counts) and ``positive``
(prices): the target never goes below 0, so neither may a forecast of it. Models that work
on log prices (``gbm``, ``regime``) are above 0 by construction; models on ``log(1 + y)``
(``sarima_log``, ``fourier``, ``lightgbm``'s and the GPT forecaster's ``log1p``) only above
-1. So the harness, the pipeline's forecast and the served model take every model's
predictive distribution **censored at 0**: each quantile ``q`` becomes ``max(q, 0)`` — the
point (a median or mean) and every interval bound alike. For a target that cannot be
negative this never lowers coverage (an actual ``y >= 0`` above a bound below 0 is also
above 0) and never raises an absolute error (``|y - max(m, 0)| <= |y - m|``).

Only numpy here: the core imports nothing above it, so a forecast is any object with
``mean``, ``lower`` and ``upper`` (``models.base.Forecast``) or a table of columns.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

DOMAINS = ("real", "non_negative", "positive")
_LOWER = {"real": None, "non_negative": 0.0, "positive": 0.0}


def lower_bound(domain: str) -> float | None:
    """The least value a forecast of a target in ``domain`` may take (None: no bound)."""
    try:
        return _LOWER[domain]
    except KeyError:
        raise ValueError(f"unknown domain {domain!r}: one of {', '.join(DOMAINS)}") from None


def clip(values: Any, domain: str) -> Any:
    """``values`` censored at the domain's lower bound (unchanged for ``real``; NaN stays NaN)."""
    low = lower_bound(domain)
    if low is None:
        return values
    return np.maximum(values, low) if np.ndim(values) else (values if values != values else max(values, low))


def clip_forecast(fc: Any, domain: str) -> Any:
    """A forecast (``mean``, ``lower``, ``upper``) with its point and every bound censored at the
    domain's lower bound: the quantiles of the predictive distribution censored there."""
    if lower_bound(domain) is None:
        return fc
    return replace(fc, mean=clip(fc.mean, domain),
                   lower={lv: clip(v, domain) for lv, v in fc.lower.items()},
                   upper={lv: clip(v, domain) for lv, v in fc.upper.items()})


def clip_columns(table: Any, domain: str, columns: list[str]) -> Any:
    """A DataFrame with ``columns`` (the point and the bounds) censored at the lower bound."""
    if lower_bound(domain) is None:
        return table
    out = table.copy()
    for col in columns:
        if col in out:
            out[col] = clip(out[col].to_numpy(dtype=float), domain)
    return out
