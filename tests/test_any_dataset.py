"""A user's own data, through the front door: ``seqcast datasets add`` on real series that ship
inside statsmodels (co2 weekly with gaps, macrodata quarterly, sunspots yearly, elnino monthly
turned long) and on generated files of each layout and time-stamp format (long with an id and
covariates, half-hourly across daylight-saving changes, 5-minute, trading days with holidays,
``Z`` offsets, ``2010/01/01 00:00``, ``Jan 01 2000``, semicolons); every refusal with its lines
and nothing written; then ``seqcast run --dataset NAME`` to a champion and a dated forecast, a
second run doing nothing."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from cli.main import main as seqcast
from conftest import child_env, copy_project
from seqcast.config import load_params

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------- files
def packaged(name: str) -> pd.DataFrame:
    """A real series of statsmodels.datasets as a user's table ``date, value``."""
    import statsmodels.api as sm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "co2":  # weekly (W-SAT), 59 missing weeks
            data = sm.datasets.co2.load_pandas().data
            return pd.DataFrame({"date": data.index.strftime("%Y-%m-%d"), "value": data["co2"].to_numpy()})
        if name == "macrodata":  # quarterly real GDP, dated at the quarters' ends
            data = sm.datasets.macrodata.load_pandas().data
            ends = pd.PeriodIndex.from_fields(year=data["year"].astype(int), quarter=data["quarter"].astype(int),
                                              freq="Q").to_timestamp(how="end").normalize()
            return pd.DataFrame({"date": ends.strftime("%Y-%m-%d"), "value": data["realgdp"].to_numpy()})
        if name == "sunspots":  # yearly, the year alone
            data = sm.datasets.sunspots.load_pandas().data
            return pd.DataFrame({"date": data["YEAR"].astype(int).astype(str), "value": data["SUNACTIVITY"]})
        data = sm.datasets.elnino.load_pandas().data  # a year per row, a month per column: turned long
        long = data.melt(id_vars="YEAR", var_name="month", value_name="value")
        long["date"] = pd.to_datetime(long["YEAR"].astype(int).astype(str) + "-" + long["month"], format="%Y-%b")
        long = long.sort_values("date")
        return pd.DataFrame({"date": long["date"].dt.strftime("%Y-%m-%d"), "value": long["value"].to_numpy()})


def write(df: pd.DataFrame, path: Path, sep: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, sep=sep)
    return path


def seasonal(n: int, period: int, level: float = 100.0, noise: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return level + 10 * np.sin(2 * np.pi * t / period) + noise * rng.standard_normal(n)


def half_hourly_load() -> pd.DataFrame:
    """Electricity demand every 30 minutes on Melbourne's wall clock, across the April fall-back
    (02:00-03:00 twice) and the October spring-forward (02:00-03:00 skipped)."""
    frames = []
    for start in ("2023-03-20", "2023-09-20"):
        utc = pd.date_range(pd.Timestamp(start, tz="Australia/Melbourne"), periods=30 * 48, freq="30min")
        local = utc.tz_localize(None)  # what a meter's export holds: local times, a repeated hour in April
        frames.append(pd.DataFrame({"timestamp": local.strftime("%Y-%m-%d %H:%M"),
                                    "demand": seasonal(len(utc), 48, 4000, 50, seed=len(frames)).round(1),
                                    "temperature": (20 + 5 * np.sin(np.arange(len(utc)) / 48)).round(2),
                                    "workday": (local.dayofweek < 5).astype(int)}))
    return pd.concat(frames, ignore_index=True)


def monthly_prices() -> pd.DataFrame:
    """Monthly closes of three tickers in one long table, semicolon-separated, ``Jan 01 2000`` dates."""
    months = pd.date_range("2005-01-01", periods=120, freq="MS")
    rows = []
    for i, ticker in enumerate(["AAA", "BBB", "CCC"]):
        close = 50 * np.exp(np.cumsum(np.random.default_rng(i).normal(0.005, 0.04, len(months))))
        rows.append(pd.DataFrame({"month": months.strftime("%b %d %Y"), "ticker": ticker, "close": close.round(3),
                                  "volume": np.random.default_rng(10 + i).integers(1000, 5000, len(months))}))
    return pd.concat(rows, ignore_index=True).sort_values(["month", "ticker"], key=lambda c: pd.to_datetime(c)
                                                          if c.name == "month" else c)


@pytest.fixture(scope="module")
def project(tmp_path_factory, mirror, prefect_server):
    tmp = tmp_path_factory.mktemp("any-dataset")
    ws = copy_project(tmp / "project")
    return ws, child_env(ws, mirror, prefect_server), tmp / "files"


@pytest.fixture
def here(project, monkeypatch):
    """In-process commands act on the project copy."""
    ws, _, files = project
    monkeypatch.setenv("SEQCAST_HOME", str(ws))
    monkeypatch.chdir(ws)
    return ws, files


def entry(ws: Path, name: str) -> dict:
    return yaml.safe_load((ws / "params.yaml").read_text())["datasets"][name]


# ---------------------------------------------------------------------------- real packaged series
@pytest.mark.parametrize("name, freq, season, rows", [("co2", "W-SAT", 52, 2284), ("macrodata", "QE-DEC", 4, 203),
                                                      ("sunspots", "YS-JAN", 1, 309), ("elnino", "MS", 12, 732)])
def test_packaged_series_are_added_as_typed(project, name, freq, season, rows):
    """``seqcast datasets add NAME --file F --time date --target value`` (the console script): the
    frequency and season inferred (known answers), the entry written and loadable, the file
    snapshotted and tracked by DVC."""
    ws, env, files = project
    path = write(packaged(name), files / f"{name}.csv")
    out = subprocess.run(["seqcast", "datasets", "add", name, "--file", str(path), "--time", "date", "--target",
                          "value"], cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{name}: {rows} rows, 1 series" in out.stdout
    assert f"frequency {freq}" in out.stdout and f"season {season} (from the frequency {freq})" in out.stdout
    written = entry(ws, name)
    assert written["data"]["frequency"] == freq and written["protocol"] == {"name": "P4",
                                                                            "split": {"train_fraction": 0.8}}
    assert written["sources"][0]["path"] == f"data/sources/{name}/{name}.csv"
    assert (ws / "data" / "sources" / name / f"{name}.csv.dvc").is_file()
    params = load_params(ws / "params.yaml")
    assert params.dataset(name).season == season
    if name == "co2":  # its missing weeks: interpolated in training inputs up to one season
        assert "59 missing targets" in out.stdout and written["cleaning"]["interpolate_limit"] == 52


# ---------------------------------------------------------------------------- formats and layouts
FORMATS = {  # name -> (table, options, expected lines of the output)
    "load": (half_hourly_load(), ["--time", "timestamp", "--target", "demand", "--covariates", "temperature",
                                  "--known-covariates", "workday", "--timezone", "Australia/Melbourne"],
             ["frequency 30min", "season 48", "2880 rows"]),
    "calls": (pd.DataFrame({"t": pd.date_range("2024-05-06", periods=10 * 288, freq="5min").strftime("%Y/%m/%d %H:%M"),
                            "calls": np.random.default_rng(3).poisson(seasonal(2880, 288, 20, 0).clip(1))}),
              ["--time", "t", "--target", "calls"], ["frequency 5min", "season 288", "domain non_negative"]),
    "utc": (pd.DataFrame({"when": pd.date_range("2021-01-01", periods=600, freq="h", tz="UTC")
                          .strftime("%Y-%m-%dT%H:%M:%SZ"), "kw": seasonal(600, 24)}),
            ["--time", "when", "--target", "kw"], ["frequency h", "season 24"]),
    "trading": (pd.DataFrame({"day": pd.bdate_range("2019-01-01", periods=700).delete([3, 90, 91, 250, 400])
                              .strftime("%Y-%m-%d"), "close": seasonal(695, 5, 1000, 5)}),
                ["--time", "day", "--target", "close"], ["frequency B in sessions (the rows are the steps)"]),
}


@pytest.mark.parametrize("name", FORMATS)
def test_layouts_and_timestamp_formats(here, name, capsys):
    ws, files = here
    table, options, expected = FORMATS[name]
    path = write(table, files / f"{name}.csv")
    assert seqcast(["datasets", "add", name, "--file", str(path), *options]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    for line in expected:
        assert line in out, out
    params = load_params(ws / "params.yaml")
    assert name in params.datasets
    if name == "load":
        src = params.dataset("load").sources[0]
        assert src.covariates == ["temperature"] and src.known_covariates == ["workday"]
        assert params.dataset("load").data.timezone == "Australia/Melbourne"
    if name == "trading":
        assert params.dataset("trading").data.sessions


# ---------------------------------------------------------------------------- refusals
def hourly(n: int = 1000) -> pd.DataFrame:
    return pd.DataFrame({"time": pd.date_range("2020-01-01", periods=n, freq="h").strftime("%Y-%m-%d %H:%M"),
                         "value": seasonal(n, 24).round(3)})


def edited(df: pd.DataFrame, row: int, column: str, value) -> pd.DataFrame:
    out = df.copy()
    out[column] = out[column].astype(object)
    out.loc[row, column] = value
    return out


REFUSED = {  # name -> (table, options, fragments of the message)
    "missing_column": (hourly(), ["--time", "time", "--target", "valeu"],
                       ["required column missing: 'valeu'", "did you mean 'value'"]),
    "unparseable_dates": (edited(hourly(), 99, "time", "2020-13-45 00:00"), ["--time", "time", "--target", "value"],
                          ["timestamps that parse", "\n      101 ", "--time-format"]),
    "ambiguous_dates": (pd.DataFrame({"d": (days := pd.date_range("2010-01-01", "2010-12-31"))[days.day <= 12]
                                      .strftime("%m/%d/%Y"), "v": 1.0}),  # no field above 12 decides the order
                        ["--time", "d", "--target", "v"], ["could be day/month or month/day"]),
    "duplicate_time": (pd.concat([hourly().iloc[:501], hourly().iloc[500:]], ignore_index=True),
                       ["--time", "time", "--target", "value"], ["expect_compound_columns_to_be_unique", "\n      503 "]),
    "out_of_order": (hourly().iloc[[*range(300), 301, 300, *range(302, 1000)]].reset_index(drop=True),
                     ["--time", "time", "--target", "value"], ["on column 'step_hours'", "\n      303 "]),
    "irregular_for_the_stated_frequency": (edited(hourly(), 400, "time", "2020-01-17 16:07"),
                                           ["--time", "time", "--target", "value", "--freq", "h"],
                                           ["on column 'on_grid'", "\n      402 "]),
    "text_in_the_target": (edited(hourly(), 49, "value", "12O"), ["--time", "time", "--target", "value"],
                           ["numeric type", "\n      51 ", "12O"]),
    "too_short": (pd.DataFrame({"week": pd.date_range("2020-01-05", periods=100, freq="W-SUN").strftime("%Y-%m-%d"),
                                "sales": seasonal(100, 52)}), ["--time", "week", "--target", "sales"],
                  ["100 steps (80 before the split", "the protocol needs at least 124 (2 x season 52 + 2 x horizon 10)"]),
    "horizon_longer_than_the_test_part": (hourly(), ["--time", "time", "--target", "value", "--horizon", "300"],
                                          ["and 300 after it"]),
}


@pytest.mark.parametrize("name", REFUSED)
def test_what_the_pipeline_cannot_use_is_refused_and_nothing_is_written(here, name, capsys):
    ws, files = here
    table, options, fragments = REFUSED[name]
    path = write(table, files / f"{name}.csv")
    before = (ws / "params.yaml").read_text()
    assert seqcast(["datasets", "add", name, "--file", str(path), *options]) == 1
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, err
    assert "Traceback" not in err and "nothing was written" in err
    assert (ws / "params.yaml").read_text() == before and not (ws / "data" / "sources" / name).exists()


# ---------------------------------------------------------------------------- end to end
def test_a_long_file_goes_to_a_champion_and_a_dated_forecast(project):
    """Three tickers in one semicolon-separated long file with a covariate: ``datasets add``, then
    ``seqcast run --dataset prices`` (only its stages), every series backtested, a champion in the
    registry, a forecast whose dates continue the months; a second run does nothing."""
    ws, env, files = project
    path = write(monthly_prices(), files / "prices.csv", sep=";")
    before = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
    add = subprocess.run(["seqcast", "datasets", "add", "prices", "--file", str(path), "--time", "month", "--target",
                          "close", "--id", "ticker", "--covariates", "volume"], cwd=ws, env=env, capture_output=True,
                         text=True, timeout=600)
    assert add.returncode == 0, add.stdout + add.stderr
    assert "prices: 360 rows, 3 series (AAA, BBB, CCC)" in add.stdout and "frequency MS" in add.stdout
    run = subprocess.run(["seqcast", "run", "--dataset", "prices"], cwd=ws, env=env, capture_output=True, text=True,
                         timeout=1800)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
    assert {f"{s}@prices" for s in ("ingest", "validate", "stationarity", "backtest", "promote", "forecast")} <= set(lock)
    assert {s: v for s, v in lock.items() if not s.endswith("@prices")} == before  # its stages only
    board = json.loads((ws / "reports" / "backtest" / "prices.json").read_text())
    params = load_params(ws / "params.yaml")
    assert set(board) == {"AAA", "BBB", "CCC"}
    assert set(board["AAA"]) == set(params.backtest.default_models)
    assert set(board["BBB"]) == {"naive", "seasonal_naive"}
    assert all(np.isfinite(m["P4a_mase"]) and np.isfinite(m["P4b_mase"]) for m in board["AAA"].values())
    promotion = json.loads((ws / "reports" / "promotion" / "prices.json").read_text())
    champion = promotion["champion"]
    assert champion["model_uri"] == "models:/seqcast-prices@champion" and champion["series"] == "AAA"
    base = board["AAA"]["seasonal_naive"]["P4b_mase"]
    if any(m["P4b_mase"] < base for m in board["AAA"].values()):  # the champion does not lose to seasonal naive
        assert board["AAA"][champion["model"]]["P4b_mase"] <= base
    forecast = pd.read_csv(ws / "reports" / "forecast" / "prices.csv")
    assert list(forecast["ds"].str[:10]) == [f"2015-{m:02d}-01" for m in range(1, 13)]  # the months after Dec 2014
    assert (ws / "reports" / "forecast" / "prices.png").is_file()
    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
    try:
        names = {e.name for e in mlflow.search_experiments()}
        assert {"seqcast-prices", "seqcast-prices-data", "seqcast-prices-forecast"} <= names
    finally:
        mlflow.set_tracking_uri(None)
    again = subprocess.run(["seqcast", "run", "--dataset", "prices"], cwd=ws, env=env, capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0 and "Running stage" not in again.stdout, again.stdout[-3000:]
    listed = subprocess.run(["seqcast", "datasets", "list"], cwd=ws, env=env, capture_output=True, text=True,
                            timeout=300)
    row = next(line for line in listed.stdout.splitlines() if line.startswith("prices "))
    assert "file prices.csv" in row and " 3 " in row and "MS" in row and " 360 " in row
