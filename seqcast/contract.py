"""The data contract every flow, task and model shares.

Tables are long (Nixtla style): one row per series and timestamp with
``unique_id``, ``ds`` (timezone-aware), ``y``, ``tz`` (the series' own time zone:
a market table holds exchanges of many zones, so its ``ds`` column is stored in UTC;
:func:`local_time` gives a series back its local clock and calendar) and exogenous columns. Forecasts come
back as ``<model>``, ``<model>-lo-<level>``, ``<model>-hi-<level>`` beside
``cutoff`` (the origin: last timestamp the model knew) and ``ds`` (the target).
"""

from __future__ import annotations

UNIQUE_ID = "unique_id"
DS = "ds"
Y = "y"
TZ = "tz"  # each series' own time zone (a table's ``ds`` column holds one: UTC when its series differ)
CUTOFF = "cutoff"
HORIZON = "h"


def lo(model: str, level: int) -> str:
    return f"{model}-lo-{level}"


def hi(model: str, level: int) -> str:
    return f"{model}-hi-{level}"


def metric_key(protocol: str, metric: str) -> str:
    """MLflow/DVC metric keys are ``<protocol>_<metric>``, e.g. ``P1a_rmse``."""
    return f"{protocol}_{metric}"


def local_time(series):
    """One series of a table (a DataFrame slice) with ``ds`` in the series' own time zone:
    calendars (weekdays, midnights, trading days) are only meaningful there."""
    if TZ not in series.columns or series.empty:
        return series
    zones = series[TZ].unique()
    if len(zones) != 1:
        raise ValueError(f"a series has one time zone; got {list(zones)}")
    out = series.copy()
    out[DS] = out[DS].dt.tz_convert(str(zones[0]))
    return out
