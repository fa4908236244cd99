"""Frequencies, known answers: the season of each frequency (protocols.md P4), the frequency
inferred from timestamps (weekly, monthly, quarterly, yearly, business days, trading-day
sessions, half-hours, through a daylight-saving change), the grid steps and the timestamps
that continue a series' calendar."""

import numpy as np
import pandas as pd
import pytest

from seqcast import frequency


@pytest.mark.parametrize("freq, season", [("5min", 288), ("30min", 48), ("h", 24), ("D", 7), ("B", 5),
                                          ("W-SUN", 52), ("MS", 12), ("ME", 12), ("QS", 4), ("QE-DEC", 4),
                                          ("YS", 1), ("bh", 8)])
def test_season_of_a_frequency(freq, season):
    assert frequency.season_of(freq) == season


@pytest.mark.parametrize("stamps, freq, sessions", [
    (pd.date_range("2020-01-01", periods=200, freq="30min", tz="Australia/Melbourne"), "30min", False),
    (pd.date_range("2020-03-20", periods=400, freq="h", tz="Europe/Paris"), "h", False),  # through a DST change
    (pd.date_range("2020-03-01", periods=60, freq="D", tz="Europe/Paris"), "D", False),  # local midnights
    (pd.bdate_range("2020-01-01", periods=300), "B", False),
    (pd.bdate_range("2020-01-01", periods=300).delete([5, 40, 41, 100]), "B", True),  # holidays: sessions
    (pd.date_range("1958-03-29", periods=120, freq="W-SAT"), "W-SAT", False),
    (pd.date_range("1990-01-01", periods=40, freq="MS"), "MS", False),
    (pd.date_range("1990-01-31", periods=40, freq="ME"), "ME", False),
    (pd.date_range("1959-03-31", periods=40, freq="QE-DEC"), "QE-DEC", False),
    (pd.date_range("1959-01-01", periods=40, freq="QS-JAN"), "QS-JAN", False),
    (pd.date_range("1700-01-01", periods=300, freq="YS"), "YS-JAN", False),
    (pd.date_range("2021-01-04 09:00", periods=160, freq="bh"), "bh", True),  # business hours
])
def test_inferred_frequency(stamps, freq, sessions):
    found = frequency.infer(stamps)
    assert (found.freq, found.sessions) == (freq, sessions), found.reason


def test_gaps_do_not_hide_the_frequency_and_no_step_is_refused():
    monthly = pd.date_range("2000-01-01", periods=60, freq="MS").delete([7, 8, 30])
    assert frequency.infer(monthly).freq == "MS"
    assert list(frequency.grid_steps(monthly, "MS")[6:9]) == [1, 3, 1]  # two months absent
    scattered = pd.DatetimeIndex(pd.Timestamp("2020-01-01") + pd.to_timedelta(
        np.cumsum(np.random.default_rng(0).integers(1, 500, 50)), unit="min"))
    with pytest.raises(ValueError, match="no regular step"):
        frequency.infer(scattered)


def test_grid_counts_absolute_time_below_a_day_and_local_dates_above():
    hourly = pd.date_range("2020-10-24", periods=72, freq="h", tz="Europe/Paris")  # fall back: a 25-hour day
    assert set(frequency.grid_steps(hourly, "h")[1:]) == {1.0}
    daily = pd.date_range("2020-10-20", periods=10, freq="D", tz="Europe/Paris")  # 24 h and one 25 h step
    assert set(frequency.grid_steps(daily, "D")[1:]) == {1.0}
    assert list(frequency.on_grid(pd.DatetimeIndex(["2020-01-01 10:07", "2020-01-01 11:00"]), "h")) == [False, True]
    assert list(frequency.on_grid(pd.DatetimeIndex(["1958-03-29", "1958-03-30"]), "W-SAT")) == [True, False]


def test_the_next_timestamps_continue_the_calendar():
    last = pd.Timestamp("2019-01-18", tz="Asia/Seoul")  # a Friday
    assert [str(d.date()) for d in frequency.future_index(last, 3, "B")] == ["2019-01-21", "2019-01-22", "2019-01-23"]
    spring = frequency.future_index(pd.Timestamp("2020-03-29 01:00", tz="Europe/Paris"), 2, "h")
    assert [d.strftime("%H:%M%z") for d in spring] == ["03:00+0200", "04:00+0200"]  # 02:00 does not exist
    assert [str(d.date()) for d in frequency.future_index(pd.Timestamp("2020-01-01"), 2, "MS")] == \
        ["2020-02-01", "2020-03-01"]
    assert [d.year for d in frequency.future_index(pd.Timestamp("1988-01-01"), 2, "YS-JAN")] == [1989, 1990]
