"""Faults, for real: `dvc repro` killed with SIGKILL and run again; two `seqcast run` at once;
an MLflow store that does not answer; an upstream that fails or is slow (a local HTTP
server); a disk that fills up while artifacts are written (a real tmpfs, and a real file
size limit). Also: a secret in the environment never reaches MLflow or the logs."""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, child_env, copy_project
from seqcast.errors import StoreUnavailable

SEQCAST = str(Path(sys.executable).parent / "seqcast")
SECRET = "seqcast-canary-7f3a9c1e5b2d"  # an AWS-style secret planted in the environment of every run
SMALL = {"_series": {"market": ["^KS11"]}, "datasets": {"market": {"models": {"run": ["naive", "drift"]}}},
         "stationarity": {"max_points": 4000}}


def _env(ws: Path, mirror: Path, prefect_api: str | None = None) -> dict[str, str]:
    env = child_env(ws, mirror, prefect_api)
    env.update(PYTHONUNBUFFERED="1", AWS_SECRET_ACCESS_KEY=SECRET, AWS_ACCESS_KEY_ID="AKIA" + SECRET[-12:].upper())
    return env


def _metrics(folder: Path) -> dict:
    """The metrics files (each model's headline on the reference series: no timings)."""
    return {path.name: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def _repro_until(ws: Path, env: dict, marker: str | None, delay: float, log: list[str]) -> int:
    """`dvc repro backtest@market`; with a marker, SIGKILL its whole process group ``delay``
    seconds after the marker line appears. Returns the exit status (-9 when killed)."""
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "backtest@market"], cwd=ws, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = threading.Event()

    def read():
        for line in proc.stdout:
            log.append(line)
            if marker and marker in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if marker:
        deadline = time.time() + 600
        while not seen.wait(timeout=1) and proc.poll() is None and time.time() < deadline:
            pass  # until the marker, the run's own end (a failure: its log is in the assertion) or 10 minutes
        if seen.is_set() and proc.poll() is None:
            time.sleep(delay)
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            reader.join(timeout=10)
            assert seen.is_set(), f"`dvc repro` ended ({proc.poll()}) before {marker!r}:\n" + "".join(log)[-4000:]
    code = proc.wait(timeout=900)
    reader.join(timeout=10)
    return code


@pytest.fixture(scope="module")
def killed_and_rerun(tmp_path_factory, mirror, prefect_server):
    """A copy of the project whose `dvc repro backtest@market` was killed three times: during
    validation, during the stationarity tests and in the middle of the backtest; then re-run."""
    ws = copy_project(tmp_path_factory.mktemp("sigkill") / "project", SMALL)
    env = _env(ws, mirror, prefect_server)
    log: list[str] = []
    # each kill lands well inside its stage (the stage's process is still starting or working): on an idle
    # machine validation takes ~5 s and the stationarity tests ~2 s, so a later kill could find it done
    kills = [("Running stage 'validate@market'", 1.0), ("Running stage 'stationarity@market'", 0.5),
             ("Running stage 'backtest@market'", 2.0)]
    codes = [_repro_until(ws, env, marker, delay, log) for marker, delay in kills]
    final = _repro_until(ws, env, None, 0, log)
    return ws, env, codes, final, "".join(log)


@pytest.mark.slow
def test_sigkill_at_any_point_then_repro_gives_the_same_metrics(killed_and_rerun):
    ws, env, codes, final, log = killed_and_rerun
    assert codes == [-signal.SIGKILL] * 3, log[-3000:]
    assert final == 0, log[-3000:]
    reference = _metrics(ROOT / "reports" / "metrics" / "market")  # the committed uninterrupted run
    assert set(reference) >= {"naive.json", "drift.json"}
    got = _metrics(ws / "reports" / "metrics" / "market")
    assert got == {k: reference[k] for k in got} and set(got) == {"naive.json", "drift.json"}
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "backtest@market"], cwd=ws, env=env,
                            capture_output=True, text=True, timeout=300)
    assert "up to date" in status.stdout, status.stdout  # every output is the one dvc.lock records
    leftovers = [p for p in (ws / "data").rglob(".*.tmp-*")] + [p for p in (ws / "reports").rglob(".*.tmp-*")]
    assert leftovers == []  # a killed writer's temporary file never survives as an output
    with sqlite3.connect(ws / "mlflow.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.slow
def test_secret_in_the_environment_never_reaches_mlflow_or_logs(killed_and_rerun):
    """Every run above had AWS_SECRET_ACCESS_KEY set: it is in no MLflow param, tag, metric or
    artifact (the SQLite store and mlruns/ searched byte by byte) and in no log line."""
    ws, _, _, final, log = killed_and_rerun
    assert final == 0
    assert SECRET not in log
    assert SECRET.encode() not in (ws / "mlflow.db").read_bytes()
    artifacts = [p for p in (ws / "mlruns").rglob("*") if p.is_file()]
    assert len(artifacts) > 10  # models, forecasts, plots were logged
    assert not [p for p in artifacts if SECRET.encode() in p.read_bytes()]
    assert not [p for p in (ws / "reports").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]


# ---------------------------------------------------------------------------- two runs at once
@pytest.mark.slow
def test_two_seqcast_runs_at_once(tmp_path, mirror):
    """The second `seqcast run` refuses (naming the holder), a third queues with --wait and
    finds nothing left to do; DVC, MLflow and Prefect stores are intact afterwards."""
    ws = copy_project(tmp_path / "project", SMALL)
    env = _env(ws, mirror)
    target = ["--targets", "validate@market"]
    first = subprocess.Popen([SEQCAST, "run", *target], cwd=ws, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    lock = ws / ".seqcast-run.lock"
    deadline = time.time() + 120
    while time.time() < deadline and not (lock.exists() and str(first.pid) in lock.read_text()):
        time.sleep(0.2)
    second = subprocess.run([SEQCAST, "run", *target], cwd=ws, env=env, capture_output=True, text=True, timeout=120)
    third = subprocess.Popen([SEQCAST, "run", "--wait", "600", *target], cwd=ws, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    out1, _ = first.communicate(timeout=600)
    out3, _ = third.communicate(timeout=600)
    assert first.returncode == 0, out1[-2000:]
    # one temporary Prefect API for the run, not one per stage process (ingest and validate ran)
    apis = re.findall(r"View at (http://127\.0\.0\.1:\d+)/runs/flow-run/", out1)
    assert len(apis) == 2 and len(set(apis)) == 1 and "Starting temporary server" not in out1, out1[-3000:]
    assert second.returncode == 3
    assert "another seqcast run is in progress" in second.stderr and f"pid {first.pid}" in second.stderr
    assert "--wait" in second.stderr and "Traceback" not in second.stderr
    assert third.returncode == 0 and "waiting up to 600 s for the run in progress" in out3, out3[-2000:]
    assert "Running stage" not in out3 and "didn't change" in out3  # the queued run found the work done
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "validate@market"], cwd=ws, env=env,
                            capture_output=True, text=True, timeout=300)
    assert "up to date" in status.stdout
    with sqlite3.connect(ws / "mlflow.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert {s for (s,) in db.execute("select status from runs")} == {"FINISHED"}
    prefect_db = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")) / "prefect.db"
    if prefect_db.exists():
        with sqlite3.connect(f"file:{prefect_db}?mode=ro", uri=True) as db:
            assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"


# ---------------------------------------------------------------------------- MLflow store down
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nobody listens there


def test_unreachable_mlflow_store_fails_before_training(workspace, prefect_server, monkeypatch):
    from flows.backtest import backtest_flow
    from flows.text_gpt import gpt_train_flow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    started = time.time()
    with pytest.raises(StoreUnavailable, match="does not answer.*nothing was trained"):
        backtest_flow("market")  # the stage has no inputs yet: it would fail later, not here
    with pytest.raises(StoreUnavailable, match="does not answer"):
        gpt_train_flow(max_iters=1)
    assert time.time() - started < 60
    assert not (workspace / "checkpoints" / "gpt" / "ckpt.pt").exists()
    silent = socket.socket()  # a server that accepts and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{silent.getsockname()[1]}")
        from seqcast.tracking import check_store

        with pytest.raises(StoreUnavailable, match="timed out"):
            check_store(timeout=1)
    finally:
        silent.close()


# ---------------------------------------------------------------------------- upstream down or slow
class Upstream(http.server.ThreadingHTTPServer):
    """A real HTTP server on 127.0.0.1 playing the UCI archive: failing, slow, or good."""

    def __init__(self, behaviours: list[str], payload: bytes):
        self.behaviours, self.payload, self.requests = behaviours, payload, []
        super().__init__(("127.0.0.1", 0), self.Handler)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            srv = self.server
            srv.requests.append(time.time())
            mode = srv.behaviours[min(len(srv.requests), len(srv.behaviours)) - 1]
            if mode == "slow":
                time.sleep(3)
            if mode in ("fail", "slow"):
                self.send_error(503)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(srv.payload)))
            self.end_headers()
            self.wfile.write(srv.payload)

        def log_message(self, *args):
            pass


def _uci_zip(mirror: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(mirror / "pm25" / "PRSA_data_2010.1.1-2014.12.31.csv", "PRSA_data_2010.1.1-2014.12.31.csv")
    return buf.getvalue()


@pytest.mark.parametrize("behaviours, source", [(["fail"], "mirror"), (["slow"], "mirror"),
                                                (["fail", "good"], "upstream")])
def test_upstream_down_or_slow_retries_then_falls_back(behaviours, source, tmp_path, mirror, prefect_server,
                                                       monkeypatch, caplog):
    server = Upstream(behaviours, _uci_zip(mirror))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/static/public/381/beijing+pm2+5+data.zip"
    try:
        ws = copy_project(tmp_path / "project", {
            "ingest": {"retries": 2, "retry_delay_seconds": [0.2, 0.5], "timeout_seconds": 1},
            "_sources": {"pm25": [{"url": url}]}})
        monkeypatch.setenv("SEQCAST_HOME", str(ws))
        monkeypatch.setenv("SEQCAST_DATA_MIRROR", str(mirror))
        from flows.ingest import ingest_flow

        ingest_flow("pm25")
    finally:
        server.shutdown()
    sources = json.loads((ws / "data" / "tidy" / "pm25.sources.json").read_text())["us_embassy"]
    assert sources["source"] == source
    if source == "mirror":
        assert len(server.requests) == 3  # the first try and two retries
        assert server.requests[2] - server.requests[1] >= 0.5 - 0.05  # with the configured backoff
        assert "failed after its retries" in sources["warning"] and url in sources["warning"]
        assert any("served from the mirror" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    else:
        assert len(server.requests) == 2 and sources["warning"] == "" and sources["origin"] == url
        assert (ws / "data" / "raw" / "pm25" / "beijing+pm2+5+data.zip").is_file()


# ---------------------------------------------------------------------------- disk full
WRITE_METRICS = """
import json, resource, signal, sys
from pathlib import Path
from seqcast.atomic import ArtifactWriteError
from tasks import report
board, metrics = Path(sys.argv[1]), Path(sys.argv[2])
results = {f"S{i:03d}": {m: {"P2a_mae": 1.0 + i, "P2a_rmse": 2.0} for m in ("naive", "drift")} for i in range(2000)}
if len(sys.argv) > 3:  # a real per-process file size limit (SIGXFSZ ignored: the write fails with EFBIG)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
try:
    report.write_metrics(board, metrics, results)
except ArtifactWriteError as err:
    print(err, file=sys.stderr)
    sys.exit(1)
"""


def _previous_version(folder: Path) -> tuple[Path, Path, dict]:
    board, metrics = folder / "backtest" / "market.json", folder / "metrics" / "market"
    metrics.mkdir(parents=True)
    board.parent.mkdir(parents=True)
    board.write_text('{"^KS11": {"naive": {"P2a_mae": 15.06}}}\n')
    (metrics / "naive.json").write_text('{"^KS11": {"P2a_mae": 15.06}}\n')
    return board, metrics, {p: p.read_bytes() for p in (board, metrics / "naive.json")}


def _assert_intact(folder: Path, before: dict, out) -> None:
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr and "previous version, if any, is left intact" in out.stderr
    for path, data in before.items():
        assert path.read_bytes() == data  # the previous versions are untouched
    assert not list(folder.rglob(".*.tmp-*"))  # and no half-written file is left behind


def test_disk_full_while_writing_artifacts_tmpfs(tmp_path):
    """A real 64 KiB tmpfs: the leaderboard does not fit (ENOSPC)."""
    folder = tmp_path / "reports"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the RLIMIT test covers it")
    try:
        board, metrics, before = _previous_version(folder)
        out = subprocess.run([sys.executable, "-c", WRITE_METRICS, str(board), str(metrics)], capture_output=True,
                             text=True, timeout=120, cwd=ROOT)
        _assert_intact(folder, before, out)
        assert "the disk is full" in out.stderr and str(folder) in out.stderr
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_disk_full_while_writing_artifacts_file_size_limit(tmp_path):
    """A real RLIMIT_FSIZE in the writing process: the write fails with EFBIG mid-file."""
    board, metrics, before = _previous_version(tmp_path / "reports")
    out = subprocess.run([sys.executable, "-c", WRITE_METRICS, str(board), str(metrics), "65536"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    _assert_intact(tmp_path / "reports", before, out)
    assert "the file size limit was reached" in out.stderr
