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

DATASETS = ("market", "pm25")

# Exogenous columns of the tidy tables (lower-case versions of the upstream names).
MARKET_COLUMNS = ("open", "high", "low", "close", "adj_close", "volume")  # y == close
PM25_US_EMBASSY_COLUMNS = ("dewp", "temp", "pres", "cbwd", "iws", "is", "ir")
PM25_MULTISITE_COLUMNS = ("pm10", "so2", "no2", "co", "o3", "temp", "pres", "dewp", "rain", "wd", "wspm")

US_EMBASSY = "us_embassy"
# the stations of the UCI multi-site set (dataset 501); "us_embassy" is the single-site set (381)
PM25_MULTISITE_STATIONS = ("Aotizhongxin", "Changping", "Dingling", "Dongsi", "Guanyuan", "Gucheng",
                           "Nongzhanguan", "Shunyi", "Wanliu")
PM25_STATIONS = (US_EMBASSY, *PM25_MULTISITE_STATIONS)

FAMILIES = ("baseline", "classical", "neural", "gpt")


def lo(model: str, level: int) -> str:
    return f"{model}-lo-{level}"


def hi(model: str, level: int) -> str:
    return f"{model}-hi-{level}"


def metric_key(protocol: str, metric: str) -> str:
    """MLflow/DVC metric keys are ``<protocol>_<metric>``, e.g. ``P1a_rmse``."""
    return f"{protocol}_{metric}"


def mirror_stem(ticker: str) -> str:
    """Yahoo symbol -> mirror file stem (``^KS11`` -> ``KS11``; ``^GSPC`` -> ``SP500``)."""
    return {"^GSPC": "SP500"}.get(ticker, ticker.lstrip("^"))


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
