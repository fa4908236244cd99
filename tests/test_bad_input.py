"""Bad input files, tried as a user would: ``seqcast validate PATH --dataset NAME`` (the console
script, in a subprocess) and the pipeline's own path (ingest from a mirror holding the bad
file -> the tidy table on disk -> the validate stage's suite). Each case: a non-zero exit or
a raised DataValidationError, a message naming the file, the column (internal and as written
in the file), the rule and example rows by file line; the raw file untouched; nothing trained.
Also: every real mirror file is accepted whole, its quirks reported as warnings, and a large
file is validated chunk by chunk with the same verdict as in one piece."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from seqcast.config import load_params
from seqcast.errors import DataValidationError
from seqcast.tracking import file_md5
from tasks import ingest
from tasks.validate import validate_file, validate_table

PM25_FILE = "PRSA_data_2010.1.1-2014.12.31.csv"

SEQCAST = str(Path(sys.executable).parent / "seqcast")
W = 1560  # the line of 2016-03-08 in KS11.csv: the P2 window starts here (edits below land inside it)


def _edit_field(lines, line_no, col, value):
    f = lines[line_no - 1].rstrip("\n").split(",")
    f[col] = value
    lines[line_no - 1] = ",".join(f) + "\n"


def _future_rows(lines):
    day = dt.date.today() + dt.timedelta(days=400)
    while day.weekday() > 4:
        day += dt.timedelta(days=1)
    return lines + [f"{day},2000,2010,1990,2005,2005,1000\n"]


def _gap(lines):
    return lines[: W + 40] + lines[W + 60:]  # 20 trading days (four weeks) missing


def _nulls(lines):
    for n in range(W, W + 700, 8):  # one close in 8: 12.5 % of the window, 3.5 % of the file... and
        _edit_field(lines, n, 4, "null")
    for n in range(10, W, 8):  # ... of the rest of the file too: ~12 % overall (allowed 5 %)
        _edit_field(lines, n, 4, "null")
    return lines


def _absurd(lines):
    f = lines[W + 100].split(",")
    _edit_field(lines, W + 101, 4, str(float(f[4]) * 100))  # a close 100 times too large (a typo)
    return lines


# name -> (edit of KS11.csv's lines or bytes, expected fragments of the message)
MARKET_CASES = {
    "empty": (lambda lines: b"", ["rule non-empty file", "the file is empty"]),
    "header_only": (lambda lines: lines[:1], ["at least one data row", "header but no data rows"]),
    "missing_column": (lambda lines: [",".join(x.rstrip("\n").split(",")[:6]) + "\n" for x in lines],
                       ["expect_column_to_exist", "'volume' (file column Volume)", "required column missing"]),
    "renamed_column": (lambda lines: [lines[0].replace(",Close,", ",close_price,")] + lines[1:],
                       ["expect_column_to_exist", "'y' (file column Close)", "did you mean 'close_price'"]),
    "text_in_number": (lambda lines: (_edit_field(lines, W + 10, 4, "12O5.3"), lines)[1],
                       ["numeric type", "'y' (file column Close)", f"\n      {W + 10} ", "12O5.3"]),
    "too_many_nulls": (_nulls, ["expect_column_values_to_not_be_null(mostly=0.95)", "'y' (file column 'Close')",
                                "allowed 5.00%"]),
    "duplicate_timestamp": (lambda lines: lines[: W + 200] + [lines[W + 199]] + lines[W + 200:],
                            ["expect_compound_columns_to_be_unique", "'unique_id/ds'", "strict_min=True) on column 'step_hours'",
                             "'step_hours' (file column 'Date' -> hours since the previous row)", f"\n      {W + 201} "]),
    "unordered_timestamps": (lambda lines: lines[: W + 299] + [lines[W + 300], lines[W + 299]] + lines[W + 301:],
                             ["strict_min=True) on column 'step_hours'",
                              f"\n      {W + 301} "]),
    "gap": (_gap, ["'gap_days' (file column 'Date' -> days since the previous row)", "max_value=11",
                   f"\n      {W + 41} "]),
    "absurd_value": (_absurd, ["'log_return' (file column 'Date' -> log change from the previous observed value", "max_value=0.7",
                               f"\n      {W + 101} "]),
    "future_dates": (_future_rows, ["'hours_ahead'", "hours after the time of validation", "max_value=24"]),
    "latin1": (lambda lines: "".join(lines[:W + 5]).encode() + "2016-03-15,1958.9,1958.9,1935.5,1946.1,1946.1,3587 Bör\n"
               .encode("latin-1") + "".join(lines[W + 6:]).encode(),
               ["UTF-8 text encoding", "not valid UTF-8", f"\n      {W + 6} ", "0xf6", "Bör"]),
    "binary": (lambda lines: _zip_bytes("KS11.csv", "".join(lines).encode()),
               ["text file (CSV)", "not a text file", "a zip archive"]),
}


def _zip_bytes(name, data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name, data)
    return buf.getvalue()


def make_case(mirror: Path, name: str, folder: Path) -> Path:
    edit, _ = MARKET_CASES[name]
    lines = (mirror / "market" / "KS11.csv").read_text().splitlines(keepends=True)
    out = edit(list(lines))
    path = folder / "KS11.csv"
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(out, bytes):
        path.write_bytes(out)
    else:
        path.write_text("".join(out))
    return path


def test_seqcast_validate_refuses_bad_files(mirror, tmp_path):
    """All the cases in one command line (``seqcast validate A B C ... --dataset market``): exit 1,
    one message per file, no traceback."""
    paths = {case: make_case(mirror, case, tmp_path / case) for case in sorted(MARKET_CASES)}
    before = {case: file_md5(p) for case, p in paths.items()}
    out = subprocess.run([SEQCAST, "validate", *map(str, paths.values()), "--dataset", "market"], capture_output=True,
                         text=True, timeout=600, env={**os.environ, "SEQCAST_DATA_MIRROR": str(mirror)})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    messages = out.stderr.split("Validation failed for dataset 'market' (")[1:]
    assert len(messages) == len(paths)
    for case, path in paths.items():
        (message,) = [m for m in messages if m.startswith(f"{path})")]
        for fragment in MARKET_CASES[case][1]:
            assert fragment in message, (case, fragment, message)
        assert file_md5(path) == before[case]  # the raw file is only read


def test_pm25_file_names_its_columns(mirror, tmp_path):
    """PM2.5: a value out of range and a missing hour, named by the file's own columns."""
    lines = (mirror / "pm25" / PM25_FILE).read_text().splitlines(keepends=True)
    f = lines[1000].split(",")
    f[5] = "25000"
    lines[1000] = ",".join(f)
    del lines[3000]
    path = tmp_path / PM25_FILE
    path.write_text("".join(lines))
    out = subprocess.run([SEQCAST, "validate", str(path), "--dataset", "pm25"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 1
    assert "on column 'y' (file column 'pm2.5')" in out.stderr and "\n      1001 " in out.stderr
    assert "'steps' (file column 'year/month/day/hour' -> steps of the frequency since the previous row)" in out.stderr
    assert "\n      3001 " in out.stderr  # the first hour after the missing one, by its file line


# ---------------------------------------------------------------------------- the pipeline's path
PIPELINE_CASES = sorted(set(MARKET_CASES) - {"future_dates"})  # the P2 window ends in 2019: future rows are cut


def test_pipeline_refuses_bad_files(mirror, tmp_path, monkeypatch):
    """Ingest from a mirror holding the bad file, write the tidy table, read it back and run the
    validate stage's suite: every case fails with the same naming, lines from the raw file."""
    monkeypatch.setattr(ingest, "reachable", lambda host, timeout=3.0: False)
    from conftest import copy_project

    ws = copy_project(tmp_path / "project")
    monkeypatch.setenv("SEQCAST_HOME", str(ws))
    params = load_params()
    for case in PIPELINE_CASES:
        bad_mirror = tmp_path / "mirrors" / case
        path = make_case(mirror, case, bad_mirror / "market")
        monkeypatch.setenv("SEQCAST_DATA_MIRROR", str(bad_mirror))
        with pytest.raises(DataValidationError) as err:
            tidy, fetched = ingest.ingest_dataset("market", params, ingest.Downloads(url=None, yahoo=None))
            table = ws / "data" / "tidy" / f"{case}.parquet"
            ingest.write_table(tidy, fetched, table)
            validate_table(pd.read_parquet(table), "market", params.dataset("market"), [f.raw for f in fetched])
        message = str(err.value)
        assert "KS11.csv" in message, case
        for fragment in MARKET_CASES[case][1]:
            assert fragment in message, (case, fragment, message)
        assert file_md5(ws / "data" / "raw" / "market" / "KS11.csv") == file_md5(path), case  # raw: a copy


def test_pipeline_flow_stops_before_training(mirror, tmp_path, monkeypatch, prefect_server):
    """The Prefect pipeline flow on a duplicated day (caught at validation): the flow fails, no
    model experiment exists, the raw file is intact."""
    from conftest import copy_project
    from flows.pipeline import pipeline_flow

    for case, stage in (("duplicate_timestamp", "validate"),):  # ingest-time refusals: test_pipeline_refuses_bad_files
        bad_mirror = tmp_path / "mirrors" / case
        path = make_case(mirror, case, bad_mirror / "market")
        ws = copy_project(tmp_path / f"project-{case}")
        monkeypatch.setenv("SEQCAST_HOME", str(ws))
        monkeypatch.setenv("SEQCAST_DATA_MIRROR", str(bad_mirror))
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        with pytest.raises(DataValidationError) as err:
            pipeline_flow(["market"])
        assert "KS11.csv" in str(err.value) and MARKET_CASES[case][1][0] in str(err.value)
        assert not (ws / "data" / "clean" / "market.parquet").exists()
        mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
        try:
            assert mlflow.get_experiment_by_name("seqcast-market") is None  # no model was trained
        finally:
            mlflow.set_tracking_uri(None)
        assert file_md5(path) == file_md5(make_case(mirror, case, tmp_path / "again" / case)), stage
        if stage == "validate":
            assert file_md5(ws / "data" / "raw" / "market" / "KS11.csv") == file_md5(path)


# ---------------------------------------------------------------------------- real files and quirks
def test_every_mirror_file_is_accepted_whole_with_quirks_as_warnings(mirror):
    """The 10 market files and 10 PM2.5 files, whole (not just the P2/P1 window), pass; their
    quirks (null closes, missing hours) are warnings naming rule, columns and lines."""
    params = load_params()
    warned = {}
    for path in sorted((mirror / "market").glob("*.csv")):
        report = validate_file(path, "market", params)
        (uid,) = report
        assert report[uid]["success"], path
        warned[path.name] = {w["column"] for w in report[uid]["warnings"]}
    assert warned["KS11.csv"] == {"y"} and warned["SP500.csv"] == set()
    assert warned["JKSE.csv"] == {"y"}  # its 7-day null run is allowed by its own override (^JKSE)
    for path in [mirror / "pm25" / PM25_FILE, *sorted((mirror / "pm25_multisite").glob("*.gz"))]:
        report = validate_file(path, "pm25", params)
        (uid,) = report
        assert report[uid]["success"] and report[uid]["warning_count"] == 1, path  # missing PM2.5 hours


def test_rare_off_calendar_session_is_a_warning_not_an_error(mirror, tmp_path):
    """Two Saturday sessions in ~2,470 rows (a real upstream quirk of some index files): accepted
    with a warning naming the weekday rule and the lines; many of them are an error."""
    lines = (mirror / "market" / "N100.csv").read_text().splitlines(keepends=True)
    saturdays = ["2011-01-08", "2011-01-15"]  # placed between their neighbours so the order holds
    for s in saturdays:
        idx = next(i for i, x in enumerate(lines[1:], start=1) if x[:10] > s)
        lines.insert(idx, s + lines[idx][10:])
    path = tmp_path / "N100.csv"
    path.write_text("".join(lines))
    report = validate_file(path, "market", load_params())["^N100"]
    (quirk,) = [w for w in report["warnings"] if w["column"] == "weekday"]
    assert quirk["count"] == 2 and quirk["severity"] == "warning" and "allowed 1.00%" in quirk["detail"]
    assert [lines[n - 1][:10] for n in quirk["example_lines"]] == saturdays


def test_warnings_reach_the_validation_report_and_mlflow(mirror, workspace, prefect_server, monkeypatch):
    """The validate flow writes the warnings into reports/validation/<dataset>.json and MLflow."""
    from flows.ingest import ingest_flow
    from flows.validate import validate_flow

    monkeypatch.setattr(ingest, "reachable", lambda host, timeout=3.0: False)
    ingest_flow("market")
    validate_flow("market")
    report = __import__("json").loads((workspace / "reports" / "validation" / "market.json").read_text())
    (warning,) = report["^KS11"]["warnings"]
    assert warning["column"] == "y" and warning["file_column"] == "'Close'" and warning["count"] == 2
    assert all(1560 <= n <= 2258 for n in warning["example_lines"])  # lines of the raw file, inside the window
    mlflow.set_tracking_uri(f"sqlite:///{workspace / 'mlflow.db'}")
    try:
        run = mlflow.search_runs(experiment_names=["seqcast-market-data"]).iloc[0]
        assert run["tags.validation_warnings"] == "1"
        local = mlflow.artifacts.download_artifacts(run_id=run["run_id"], artifact_path="validation/warnings.json")
        assert "expect_column_values_to_not_be_null" in Path(local).read_text()
    finally:
        mlflow.set_tracking_uri(None)


# ---------------------------------------------------------------------------- a large file
def multi_station_csv(path: Path, stations: int, hours: int, bad_line: int | None = None) -> Path:
    """A UCI multi-site layout file with several stations (one series each), written in blocks."""
    start = pd.Timestamp("2013-03-01")
    rng = np.random.default_rng(0)
    with open(path, "w") as fh:
        fh.write('"No","year","month","day","hour","PM2.5","TEMP","station"\n')
        line = 2
        for s in range(stations):
            ds = start + pd.to_timedelta(np.arange(hours), unit="h")
            pm = rng.gamma(2.0, 40.0, hours).round(1)
            block = pd.DataFrame({"No": np.arange(1, hours + 1), "year": ds.year, "month": ds.month, "day": ds.day,
                                  "hour": ds.hour, "PM2.5": pm, "TEMP": 10.0, "station": f"S{s:04d}"})
            if bad_line is not None and line <= bad_line < line + hours:
                block.iloc[bad_line - line, 4] = block.iloc[bad_line - line - 1, 4]  # a repeated hour
            block.to_csv(fh, header=False, index=False)
            line += hours
    return path


def test_large_file_is_validated_in_chunks_with_the_same_verdict(tmp_path):
    """A multi-station file validated in chunks of 7,000 rows (boundaries inside a series): valid
    as a whole; a repeated hour right after a chunk boundary is found at its file line."""
    params = load_params()
    path = multi_station_csv(tmp_path / "stations.csv", stations=4, hours=10_000)
    report = validate_file(path, "pm25", params, chunk_rows=7_000)
    assert sorted(report) == ["S0000", "S0001", "S0002", "S0003"]
    assert all(r["success"] and r["rows"] == 10_000 for r in report.values())
    bad = multi_station_csv(tmp_path / "bad.csv", stations=4, hours=10_000, bad_line=2 + 7_000)  # a chunk's first row
    with pytest.raises(DataValidationError) as err:
        validate_file(bad, "pm25", params, chunk_rows=7_000)
    text = str(err.value)
    assert "on column 'steps'" in text and "\n      7002 " in text  # a step of 0 hours
    assert "expect_compound_columns_to_be_unique" not in text or "7002" in text
    whole = validate_file(path, "pm25", params, chunk_rows=10**9)
    assert whole == report  # the same verdict and counts in one piece


def test_gzip_and_cli_on_a_valid_file(mirror, tmp_path):
    """A valid gzipped station (exit status of its own: valid, warnings printed) beside a broken
    .gz in one command line: exit 1, the broken one named, no traceback."""
    gz = tmp_path / "PRSA_Data_Dongsi_x.csv.gz"
    with gzip.open(mirror / "pm25_multisite" / "PRSA_Data_Dongsi_20130301-20170228.csv.gz") as fin, \
            gzip.open(gz, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(b"not gzip at all")
    out = subprocess.run([SEQCAST, "validate", str(gz), "--dataset", "pm25"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "Dongsi: valid (35064 rows" in out.stdout and "warning:" in out.stdout
    out = subprocess.run([SEQCAST, "validate", str(gz), str(broken), "--dataset", "pm25"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 1 and "Dongsi: valid (35064 rows" in out.stdout
    assert f"({broken})" in out.stderr and "cannot be decompressed" in out.stderr and "Traceback" not in out.stderr
