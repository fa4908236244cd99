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
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from benchmarks._packaged import half_hourly_load, monthly_prices, packaged, seasonal, write
from cli.main import main as seqcast
from conftest import child_env, copy_project, readme_block
from seqcast.config import load_params

pytestmark = pytest.mark.slow


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
FORMATS = {  # name -> (table, options, expected lines of the output); prices.csv is separated by ';' 
    "meters": (half_hourly_load(), ["--time", "timestamp", "--target", "demand", "--covariates", "temperature",
                                  "--known-covariates", "workday", "--timezone", "Australia/Melbourne"],
             ["frequency 30min", "season 48", "2880 rows"]),
    "calls": (pd.DataFrame({"t": pd.date_range("2024-05-06", periods=10 * 288, freq="5min").strftime("%Y/%m/%d %H:%M"),
                            "calls": np.random.default_rng(3).poisson(seasonal(2880, 288, 20, 0).clip(1))}),
              ["--time", "t", "--target", "calls"], ["frequency 5min", "season 288", "domain non_negative"]),
    "utc": (pd.DataFrame({"when": pd.date_range("2021-01-01", periods=600, freq="h", tz="UTC")
                          .strftime("%Y-%m-%dT%H:%M:%SZ"), "kw": seasonal(600, 24)}),
            ["--time", "when", "--target", "kw"], ["frequency h", "season 24"]),
    "prices": (monthly_prices(), ["--time", "month", "--target", "close", "--id", "ticker", "--covariates", "volume"],
               ["prices: 360 rows, 3 series (AAA, BBB, CCC)", "frequency MS"]),  # written with ';' (detected)
    "trading": (pd.DataFrame({"day": pd.bdate_range("2019-01-01", periods=700).delete([3, 90, 91, 250, 400])
                              .strftime("%Y-%m-%d"), "close": seasonal(695, 5, 1000, 5)}),
                ["--time", "day", "--target", "close"], ["frequency B in sessions (the rows are the steps)"]),
}


@pytest.mark.parametrize("name", FORMATS)
def test_layouts_and_timestamp_formats(here, name, capsys):
    ws, files = here
    table, options, expected = FORMATS[name]
    path = write(table, files / f"{name}.csv", sep=";" if name == "prices" else ",")
    assert seqcast(["datasets", "add", name, "--file", str(path), *options]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    for line in expected:
        assert line in out, out
    params = load_params(ws / "params.yaml")
    assert name in params.datasets
    if name == "meters":  # the README's own "load" is added by its own test below
        src = params.dataset("meters").sources[0]
        assert src.covariates == ["temperature"] and src.known_covariates == ["workday"]
        assert params.dataset("meters").data.timezone == "Australia/Melbourne"
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
def two_sites() -> pd.DataFrame:
    """The README's example file: 60 days of half-hourly demand of two sites on Melbourne's wall
    clock, across the April fall-back (02:00-03:00 twice)."""
    parts = [half_hourly_load(days_per_block=60, blocks=("2023-03-10",), seed=k).assign(site=site)
             for k, site in enumerate(["north", "south"])]
    return pd.concat(parts, ignore_index=True)[["site", "timestamp", "demand", "temperature", "workday"]]


def test_the_readme_own_data_commands_as_typed(project, tmp_path):
    """The README's "Your own data" commands, as typed (``~`` a home holding data/load.csv): the
    entry, ``seqcast run --dataset load`` through its stages only, every series backtested, a
    champion in the registry, a forecast whose timestamps continue the half-hours across the
    data's end; a second run does nothing; the list; then ``seqcast validate`` on a new file."""
    ws, env, _ = project
    home = tmp_path / "home"
    write(two_sites(), home / "data" / "load.csv")
    env = dict(env, HOME=str(home))
    before = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
    outputs = []
    for line in readme_block("seqcast datasets add load"):
        out = subprocess.run(line, shell=True, cwd=ws, env=env, capture_output=True, text=True, timeout=2400)
        assert out.returncode == 0, f"{line}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
        outputs.append(out.stdout)
    added, run, listed = outputs
    assert "load: 5760 rows, 2 series (north, south)" in added and "frequency 30min" in added
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
    assert {f"{s}@load" for s in ("ingest", "validate", "stationarity", "backtest", "promote", "forecast")} <= set(lock)
    assert {s: v for s, v in lock.items() if not s.endswith("@load")} == before  # its stages only
    board = json.loads((ws / "reports" / "backtest" / "load.json").read_text())
    params = load_params(ws / "params.yaml")
    assert set(board) == {"north", "south"}
    assert set(board["north"]) == set(params.backtest.default_models)
    assert set(board["south"]) == {"naive", "seasonal_naive"}
    assert all(np.isfinite(m["P4a_mase"]) and np.isfinite(m["P4b_mase"]) for m in board["north"].values())
    champion = json.loads((ws / "reports" / "promotion" / "load.json").read_text())["champion"]
    assert champion["model_uri"] == "models:/seqcast-load@champion" and champion["series"] == "north"
    base = board["north"]["seasonal_naive"]["P4b_mase"]
    if any(m["P4b_mase"] < base for m in board["north"].values()):  # the champion does not lose to seasonal naive
        assert board["north"][champion["model"]]["P4b_mase"] <= base
    forecast = pd.read_csv(ws / "reports" / "forecast" / "load.csv")
    stamps = pd.to_datetime(forecast["ds"], utc=True)
    last = pd.Timestamp(two_sites().query("site == 'north'")["timestamp"].iloc[-1]).tz_localize("Australia/Melbourne")
    assert len(forecast) == 48 and stamps.iloc[0] == last + pd.Timedelta(minutes=30)
    assert (stamps.diff().dropna() == pd.Timedelta(minutes=30)).all()
    assert forecast["ds"].iloc[0].endswith("+10:00")  # shown on the series' own clock (Melbourne, winter time)
    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
    try:
        names = {e.name for e in mlflow.search_experiments()}
        assert {"seqcast-load", "seqcast-load-data", "seqcast-load-forecast"} <= names
    finally:
        mlflow.set_tracking_uri(None)
    row = next(line for line in listed.splitlines() if line.startswith("load "))
    assert "file load.csv" in row and " 2 " in row and "30min" in row and " 5760 " in row
    again = subprocess.run(["seqcast", "run", "--dataset", "load"], cwd=ws, env=env, capture_output=True, text=True,
                           timeout=900)
    assert again.returncode == 0 and "Running stage" not in again.stdout, again.stdout[-3000:]
    new = two_sites()
    new.loc[10, "timestamp"] = new.loc[9, "timestamp"]  # a duplicated half-hour at file line 12
    write(new, home / "data" / "new-load.csv")
    (line,) = readme_block("seqcast validate ~/data/new-load.csv")
    out = subprocess.run(line.split("  #")[0], shell=True, cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1 and "expect_compound_columns_to_be_unique" in out.stderr and "\n      12 " in out.stderr
