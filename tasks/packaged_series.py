"""Series shipped inside an installed package (statsmodels.datasets), judged by protocols.md P4.

The GPT forecaster's zero-shot checks on frequencies the pipeline's datasets do not have
(weekly, monthly, quarterly, yearly). Such a series is a value with properties, never a
branch on its name: an entry names the loader and its frequency, and the season comes
from the frequency (:func:`season_of`, the P4 table). These series enter no model's
training and no pipeline table; they are read only to be forecast.

:func:`p4_protocol` builds the P4 default of any series: the last 20 % of its steps are the
test part; ``P4a`` rolls one step ahead over it, ``P4b`` forecasts ``h = m`` steps (at least
1, at most half the test part) from origins every ``h`` steps, the last forecast ending at
the last observation; MASE is scaled by the in-sample seasonal-naive MAE (naive when m = 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks import metrics
from tasks.backtest import Protocol, Task

# protocols.md P4: the season of a frequency
SEASONS = {"5min": 288, "30min": 48, "hourly": 24, "daily": 7, "business_daily": 5, "weekly": 52, "monthly": 12,
           "quarterly": 4, "yearly": 1}
TEST_FRACTION = 0.2


def season_of(frequency: str) -> int:
    if frequency not in SEASONS:
        raise ValueError(f"unknown frequency {frequency!r}; known: {', '.join(SEASONS)}")
    return SEASONS[frequency]


@dataclass(frozen=True)
class PackagedSeries:
    name: str
    frequency: str
    load: Callable[[], pd.Series]  # values indexed by timestamp, in time order (NaN where missing)
    transform: str = "none"  # what the GPT forecaster reads (models.gpt_forecaster.transform)
    scale_by: str = "context"  # each context scaled by its own statistics (zero shot: no level to learn)

    @property
    def season(self) -> int:
        return season_of(self.frequency)


def _co2() -> pd.Series:
    from statsmodels.datasets import co2

    return co2.load_pandas().data["co2"]


def _elnino() -> pd.Series:
    from statsmodels.datasets import elnino

    wide = elnino.load_pandas().data.set_index("YEAR")
    values = wide.to_numpy(dtype=float).ravel()  # year by year, January .. December
    return pd.Series(values, index=pd.date_range(f"{int(wide.index[0])}-01-01", periods=len(values), freq="MS"))


def _macro(column: str) -> Callable[[], pd.Series]:
    def load() -> pd.Series:
        from statsmodels.datasets import macrodata

        d = macrodata.load_pandas().data
        index = pd.PeriodIndex.from_fields(year=d["year"].astype(int), quarter=d["quarter"].astype(int), freq="Q")
        return pd.Series(d[column].to_numpy(dtype=float), index=index.to_timestamp())
    return load


def _yearly(module: str, year: str, column: str) -> Callable[[], pd.Series]:
    def load() -> pd.Series:
        import importlib

        d = importlib.import_module(f"statsmodels.datasets.{module}").load_pandas().data
        return pd.Series(d[column].to_numpy(dtype=float), index=pd.to_datetime(d[year].astype(int).astype(str)))
    return load


PACKAGED: tuple[PackagedSeries, ...] = (
    PackagedSeries("co2", "weekly", _co2),
    PackagedSeries("elnino", "monthly", _elnino),
    PackagedSeries("macrodata.realgdp", "quarterly", _macro("realgdp")),
    PackagedSeries("macrodata.cpi", "quarterly", _macro("cpi")),
    PackagedSeries("macrodata.unemp", "quarterly", _macro("unemp")),
    PackagedSeries("sunspots", "yearly", _yearly("sunspots", "YEAR", "SUNACTIVITY")),
    PackagedSeries("nile", "yearly", _yearly("nile", "year", "volume")),
)


def stride_origins(n_train: int, n: int, h: int) -> np.ndarray:
    """Origins every ``h`` steps through the test part, the last forecast ending at the last observation."""
    return np.arange(n - 1 - h, n_train - 2, -h)[::-1]


def p4_protocol(name: str, y: pd.Series, season: int, levels: tuple[int, ...] = (80, 95),
                test_fraction: float = TEST_FRACTION) -> Protocol:
    """P4 of one series (its own split: the last ``test_fraction`` of its steps)."""
    values = y.to_numpy(dtype=float)
    n = len(values)
    n_train = n - int(n * test_fraction)
    h = int(min(max(season, 1), (n - n_train) // 2))
    if h < 1 or n < 2 * season + 2 * h:
        raise ValueError(f"P4 for {name}: {n} steps are too few for season {season} (needs {2 * season + 2 * h})")
    return Protocol(
        name="P4", unique_id=name, ds=pd.DatetimeIndex(y.index), y=values, y_input=values.copy(), n_train=n_train,
        season=season, scale=metrics.mase_scale(values[:n_train], season),
        tasks=[Task("P4a", np.arange(n_train - 1, n - 1), 1)]  # h = 1 (yearly): the h-step task is the same
        + ([Task("P4b", stride_origins(n_train, n, h), h, rule="stride")] if h > 1 else []),
        levels=levels,
    )


def packaged_protocol(series: PackagedSeries, validation: bool = False, levels: tuple[int, ...] = (80, 95)) -> Protocol:
    """The series' P4 protocol; ``validation``: P4 again inside its training part (the test part never read)."""
    y = series.load()
    if validation:
        y = y.iloc[: len(y) - int(len(y) * TEST_FRACTION)]
    return p4_protocol(series.name, y, series.season, levels)
