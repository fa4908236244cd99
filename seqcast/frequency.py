"""Frequencies: what a series' time step is, its season, its grid and the timestamps after it.

A frequency is a pandas offset alias (``5min``, ``30min``, ``h``, ``D``, ``B``, ``W-SUN``, ``MS``,
``QS-OCT``, ``YS-JAN`` ...). Steps shorter than a day are absolute time: they are counted in UTC,
so a daylight-saving change does not make an hourly series irregular. A day or longer is a date
on the series' own clock: it is counted in local time, so a daily series stays on its midnights
through a daylight-saving change. Series observed in sessions (trading days, business hours) take
the rows as their steps; their frequency says how the calendar goes on after the last row (``B``:
the next weekdays; ``bh``: the next business hours).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

__all__ = ["parse", "is_intraday", "season_of", "grid_steps", "on_grid", "future_index", "infer", "Inferred"]


def parse(freq: str) -> pd.DateOffset:
    """The offset of a pandas alias; an unknown alias is a ValueError naming it."""
    try:
        return to_offset(freq)
    except (ValueError, TypeError):
        raise ValueError(f"not a pandas frequency: {freq!r} (e.g. 5min, 30min, h, D, B, W-SUN, MS, QS, YS)") from None


def is_intraday(freq: str) -> bool:
    """A step shorter than a day (counted in absolute time)."""
    offset = parse(freq)
    try:
        return pd.Timedelta(offset) < pd.Timedelta(days=1)
    except (ValueError, TypeError):  # calendar offsets (month, business day) are a day or longer
        return False


def _rule(freq: str) -> str:
    """The base of an alias without multiple or anchor: ``30min`` -> ``min``, ``W-SUN`` -> ``W``."""
    name = parse(freq).name  # "30min" -> "min", "W-SUN" -> "W-SUN", "QS-OCT" -> "QS-OCT"
    return name.split("-")[0]


def season_of(freq: str) -> int:
    """The seasonal period of a frequency (protocols.md P4): the steps of one day below a day
    (5-minute 288, 30-minute 48, hourly 24), a week of days (7) or of business days (5), a
    year of weeks (52), months (12) or quarters (4); a yearly series has none (1)."""
    offset = parse(freq)
    if is_intraday(freq):
        return max(1, int(round(pd.Timedelta(days=1) / pd.Timedelta(offset))))
    rule, n = _rule(freq), max(1, int(offset.n))
    per = {"D": 7, "B": 5, "C": 5, "W": 52, "ME": 12, "MS": 12, "BME": 12, "BMS": 12, "SME": 24, "SMS": 24,
           "QE": 4, "QS": 4, "BQE": 4, "BQS": 4, "YE": 1, "YS": 1, "BYE": 1, "BYS": 1,
           "bh": 8, "cbh": 8}.get(rule)  # business hours: 09:00-17:00, eight a day
    if per is None:
        raise ValueError(f"no season known for frequency {freq!r}: state the protocol's season")
    return max(1, int(round(per / n)))


def _ns(ds: pd.DatetimeIndex) -> np.ndarray:
    """Nanoseconds since the epoch in absolute time (UTC), whatever the index's unit."""
    utc = ds.tz_convert("UTC").tz_localize(None) if ds.tz is not None else ds
    return utc.as_unit("ns").asi8


def grid_steps(ds: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """Steps of ``freq`` from each timestamp to the next (NaN for the first): 1 on a regular
    grid, k where k-1 steps are absent, 0 or less for a repeated or backward timestamp."""
    ds = pd.DatetimeIndex(ds)
    if not len(ds):
        return np.empty(0)
    ordinal = _ordinals(ds, freq)
    out = np.empty(len(ds))
    out[0] = np.nan
    out[1:] = np.diff(ordinal)
    return out


def _ordinals(ds: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """The position of each timestamp on the frequency's grid (off-grid ones: where they would go)."""
    offset = parse(freq)
    if is_intraday(freq):  # absolute time: nanoseconds since the epoch over the step
        return np.floor_divide(_ns(ds), pd.Timedelta(offset).value).astype(float)
    local = (ds.tz_localize(None) if ds.tz is not None else ds).as_unit("ns")  # dates on the series' own clock
    grid = pd.date_range(offset.rollback(local.min().normalize()), local.max(), freq=offset).as_unit("ns")
    return np.searchsorted(grid.asi8, local.asi8).astype(float)


def on_grid(ds: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """Which timestamps lie on the frequency's grid (an hourly series at 10:07 does not; a monthly
    ``MS`` series on the 15th does not; a weekly ``W-SUN`` series on a Monday does not)."""
    ds = pd.DatetimeIndex(ds)
    if not len(ds):
        return np.empty(0, dtype=bool)
    offset = parse(freq)
    if is_intraday(freq):
        return np.remainder(_ns(ds), pd.Timedelta(offset).value) == 0
    local = ds.tz_localize(None) if ds.tz is not None else ds
    return np.asarray([offset.is_on_offset(ts) for ts in local]) & (local == local.normalize())


def future_index(last: pd.Timestamp, h: int, freq: str) -> pd.DatetimeIndex:
    """The ``h`` timestamps after ``last`` on the series' calendar (business days skip weekends;
    steps below a day run in absolute time and are shown on the series' own clock)."""
    offset = parse(freq)
    last = pd.Timestamp(last)
    if is_intraday(freq) and last.tz is not None:
        stamps = pd.date_range(last.tz_convert("UTC"), periods=h + 1, freq=offset)[1:]
        return stamps.tz_convert(last.tz)
    if last.tz is not None:  # calendar steps on the local clock
        wall = pd.date_range(last.tz_localize(None), periods=h + 1, freq=offset)[1:]
        return wall.tz_localize(last.tz, ambiguous=True, nonexistent="shift_forward")
    return pd.date_range(last, periods=h + 1, freq=offset)[1:]


class Inferred:
    """What :func:`infer` learnt from the timestamps: the alias, whether the steps are sessions
    (rows at irregular calendar gaps, like trading days), and how sure it is."""

    def __init__(self, freq: str, sessions: bool, share: float, reason: str):
        self.freq, self.sessions, self.share, self.reason = freq, sessions, share, reason

    def __repr__(self) -> str:
        return f"Inferred({self.freq!r}, sessions={self.sessions}, share={self.share:.3f})"


_CALENDAR = [  # (alias, typical step in days, tolerance in days)
    ("W", 7, 0), ("MS", 30.44, 3.1), ("QS", 91.3, 3.1), ("YS", 365.25, 1.1),
]


def infer(ds: pd.DatetimeIndex) -> Inferred:
    """The frequency of a series from its timestamps (one series, increasing): the most common
    step, checked to hold for most rows. Daily rows on weekdays only are business days; daily
    rows with gaps on weekdays too (holidays of an exchange) are sessions of ``B``; weekly rows
    are anchored on their weekday, monthly/quarterly/yearly on the start or end of the period.
    Raises ValueError when no regular step explains the timestamps."""
    ds = pd.DatetimeIndex(ds)
    if len(ds) < 3:
        raise ValueError(f"{len(ds)} timestamps are too few to infer a frequency: state it (--freq)")
    local = ds.tz_localize(None) if ds.tz is not None else ds
    steps = pd.Series(np.diff(_ns(ds))).astype("int64")
    mode = int(steps.mode().iloc[0])
    share = float((steps == mode).mean())
    step = pd.Timedelta(mode, unit="ns")
    if step <= pd.Timedelta(0):
        raise ValueError("the timestamps are not increasing: sort them and remove duplicates first")
    if step < pd.Timedelta(days=1) and share >= 0.5:
        freq = _alias(step)
        gaps = int((steps > mode).sum())
        weekdays_only = set(local.dayofweek) <= {0, 1, 2, 3, 4}
        if gaps and weekdays_only and (pd.Series(local.normalize()).diff().dt.days > 1).any():
            hours = set(local.hour)
            business = step == pd.Timedelta(hours=1) and hours <= set(range(9, 17))
            return Inferred("bh" if business else freq, True, share,
                            f"{freq} steps on weekdays with {gaps} gaps between sessions: the rows are the steps")
        return Inferred(freq, False, share, f"{share:.1%} of the steps are {freq}")
    # a day or longer: on the local clock
    day_steps = pd.Series(np.diff(local.normalize().as_unit("ns").asi8) / 86_400e9)
    dmode = float(day_steps.mode().iloc[0])
    if dmode == 1 or (dmode in (1, 3) and set(local.dayofweek) <= {0, 1, 2, 3, 4}):
        weekdays_only = set(local.dayofweek) <= {0, 1, 2, 3, 4}
        if weekdays_only:
            regular = day_steps.isin([1, 3]) & ((day_steps == 1) | (pd.Series(local.dayofweek[1:]) == 0).to_numpy())
            share_b = float(regular.mean())
            if share_b >= 0.999:
                return Inferred("B", False, share_b, "one row per weekday")
            return Inferred("B", True, share_b, f"weekday sessions with {int((~regular).sum())} longer gaps "
                                                "(holidays): the rows are the steps")
        share_d = float((day_steps == 1).mean())
        if share_d >= 0.5:
            return Inferred("D", False, share_d, f"{share_d:.1%} of the steps are one day")
    for alias, days, tol in _CALENDAR:
        near = (day_steps - days).abs() <= tol if tol else day_steps == days
        if float(near.mean()) >= 0.5:
            return Inferred(_anchor(alias, local), False, float(near.mean()), f"{float(near.mean()):.1%} of the steps "
                                                                               f"are about {days:g} days")
    raise ValueError(f"no regular step: the most common gap ({step}) explains {share:.0%} of the rows; state the "
                     f"frequency (--freq) or clean the timestamps")


def _alias(step: pd.Timedelta) -> str:
    seconds = int(step.total_seconds())
    if seconds % 3600 == 0:
        return "h" if seconds == 3600 else f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return "min" if seconds == 60 else f"{seconds // 60}min"
    return f"{seconds}s"


def _anchor(alias: str, local: pd.DatetimeIndex) -> str:
    """A weekly alias on the rows' weekday; a monthly/quarterly/yearly one at the period's start
    or end, by where the rows fall."""
    if alias == "W":
        day = pd.Series(local.dayofweek).mode().iloc[0]
        return "W-" + ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"][int(day)]
    start = float((local.day == 1).mean())
    end = float(local.is_month_end.mean())
    suffix = "S" if start >= end else "E"
    if alias == "MS":
        return "M" + suffix
    month = pd.Series(local.month).mode().iloc[0]
    months = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    if alias == "QS":  # QS-JAN: quarters start in Jan/Apr/Jul/Oct; QE-DEC: they end in Mar/Jun/Sep/Dec
        first = int(pd.Series(local.month).min())
        anchor = months[(first - 1) % 3 + 9] if suffix == "E" else months[(first - 1) % 3]
        return f"Q{suffix}-{anchor}"
    return f"Y{suffix}-{months[int(month) - 1]}"
