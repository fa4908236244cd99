"""Users' tables to try seqcast on: real series that ship inside statsmodels, turned into the
files a user would have, and generated tables of the layouts a user's data come in. Used by
``seqcast bench datasets`` and by the tests of ``seqcast datasets add``."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

PACKAGED = ("co2", "macrodata", "sunspots", "elnino")


def packaged(name: str) -> pd.DataFrame:
    """A real series of statsmodels.datasets as a user's table ``date, value``: co2 (weekly, 59
    missing weeks), macrodata (quarterly real GDP, dated at the quarters' ends), sunspots (yearly,
    the year alone), elnino (a year per row and a month per column, turned long)."""
    import statsmodels.api as sm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "co2":
            data = sm.datasets.co2.load_pandas().data
            return pd.DataFrame({"date": data.index.strftime("%Y-%m-%d"), "value": data["co2"].to_numpy()})
        if name == "macrodata":
            data = sm.datasets.macrodata.load_pandas().data
            ends = pd.PeriodIndex.from_fields(year=data["year"].astype(int), quarter=data["quarter"].astype(int),
                                              freq="Q").to_timestamp(how="end").normalize()
            return pd.DataFrame({"date": ends.strftime("%Y-%m-%d"), "value": data["realgdp"].to_numpy()})
        if name == "sunspots":
            data = sm.datasets.sunspots.load_pandas().data
            return pd.DataFrame({"date": data["YEAR"].astype(int).astype(str), "value": data["SUNACTIVITY"]})
        if name == "elnino":
            data = sm.datasets.elnino.load_pandas().data
            long = data.melt(id_vars="YEAR", var_name="month", value_name="value")
            long["date"] = pd.to_datetime(long["YEAR"].astype(int).astype(str) + "-" + long["month"], format="%Y-%b")
            long = long.sort_values("date")
            return pd.DataFrame({"date": long["date"].dt.strftime("%Y-%m-%d"), "value": long["value"].to_numpy()})
    raise KeyError(f"unknown packaged series {name!r}; known: {', '.join(PACKAGED)}")


def seasonal(n: int, period: int, level: float = 100.0, noise: float = 1.0, seed: int = 0) -> np.ndarray:
    """A level, a sine of ``period`` steps and Gaussian noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return level + 10 * np.sin(2 * np.pi * t / period) + noise * rng.standard_normal(n)


def half_hourly_load(days_per_block: int = 30, blocks: tuple[str, ...] = ("2023-03-20", "2023-09-20"),
                     seed: int = 0) -> pd.DataFrame:
    """Electricity demand every 30 minutes on Melbourne's wall clock (what a meter's export holds:
    local times; across the April fall-back 02:00-03:00 comes twice, across the October spring-forward
    it is skipped), with the temperature (observed) and a workday flag (known in advance). The demand
    follows the day's cycle, the temperature and the weekday."""
    frames = []
    rng = np.random.default_rng(seed)
    for k, start in enumerate(blocks):
        utc = pd.date_range(pd.Timestamp(start, tz="Australia/Melbourne"), periods=days_per_block * 48, freq="30min")
        local = utc.tz_localize(None)
        t = np.arange(len(utc))
        temperature = 18 + 6 * np.sin(2 * np.pi * (t - 28) / 48) + np.cumsum(rng.normal(0, 0.05, len(t)))
        workday = (local.dayofweek < 5).astype(int)
        demand = 4000 + 600 * np.sin(2 * np.pi * (t - 14) / 48) + 40 * np.abs(temperature - 18) + 300 * workday \
            + rng.normal(0, 60, len(t))
        frames.append(pd.DataFrame({"timestamp": local.strftime("%Y-%m-%d %H:%M"), "demand": demand.round(1),
                                    "temperature": temperature.round(2), "workday": workday}))
    return pd.concat(frames, ignore_index=True)


def monthly_prices(n_months: int = 120) -> pd.DataFrame:
    """Monthly closes of three tickers in one long table (``Jan 01 2005`` dates), with the volume."""
    months = pd.date_range("2005-01-01", periods=n_months, freq="MS")
    rows = []
    for i, ticker in enumerate(["AAA", "BBB", "CCC"]):
        close = 50 * np.exp(np.cumsum(np.random.default_rng(i).normal(0.005, 0.04, len(months))))
        rows.append(pd.DataFrame({"month": months.strftime("%b %d %Y"), "ticker": ticker, "close": close.round(3),
                                  "volume": np.random.default_rng(10 + i).integers(1000, 5000, len(months))}))
    table = pd.concat(rows, ignore_index=True)
    order = np.lexsort((table["ticker"].to_numpy(), pd.to_datetime(table["month"], format="%b %d %Y").to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def write(df: pd.DataFrame, path: Path, sep: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, sep=sep)
    return path
