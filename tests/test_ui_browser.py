"""The MLflow UI users compare models in, opened in headless Chromium (Debian's
`chromium`, started by the test) on the store the pipeline produced: the compare view of
every model run of a dataset lists each model with its metrics; a screenshot is kept
(reports/screenshots/mlflow-compare-market.png, and in the pytest tmp dir)."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse

import mlflow
import pytest

from _ops import Proc, bin_path, free_port, shared_store, wait_http
from conftest import ROOT

pytestmark = pytest.mark.slow
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    message = "Debian's chromium is not installed (apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def ui(tmp_path_factory, mirror, prefect_server):
    exe = chromium()
    ws, _ = shared_store(tmp_path_factory, mirror)
    port = free_port()
    tmp = tmp_path_factory.mktemp("ui")
    server = Proc([bin_path("mlflow"), "server", "--backend-store-uri", f"sqlite:///{ws / 'mlflow.db'}",
                   "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], tmp / "mlflow.log",
                  env=dict(os.environ, MLFLOW_ENABLE_TELEMETRY="false"), cwd=tmp)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", server, timeout=180)
        yield exe, ws, f"http://127.0.0.1:{port}", tmp
    finally:
        server.stop()


def browse(exe: str, url: str, profile, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=30000",
                           *extra, url], capture_output=True, text=True, timeout=240)


def test_compare_view_lists_every_model_with_its_metrics(ui):
    exe, ws, base, tmp = ui
    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
    try:
        runs = mlflow.search_runs(experiment_names=["seqcast-market"], filter_string="tags.family != 'report'")
    finally:
        mlflow.set_tracking_uri(None)
    assert set(runs["tags.model"]) == {"naive", "drift", "arima"}
    ids = urllib.parse.quote(str(list(runs["run_id"])).replace("'", '"'))
    exps = urllib.parse.quote(str(sorted(set(runs["experiment_id"]))).replace("'", '"'))
    url = f"{base}/#/compare-runs?runs={ids}&experiments={exps}"

    dom = browse(exe, url, tmp / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "Comparing 3 Runs" in html, html[-3000:]
    for _, run in runs.iterrows():
        assert f"{run['tags.model']} · ^KS11" in html  # each model's run name
        assert f"{run['metrics.P2a_mase']:.3f}"[:4] in html  # its P2a MASE in the metrics table
    # the table renders its first rows (alphabetical): the P2a keys; P2b's are further down the virtual list
    for metric in ("P2a_mase", "P2a_cov95", "P2a_rmse"):
        assert metric in html

    shot = tmp / "mlflow-compare-market.png"
    done = browse(exe, url, tmp / "profile-shot", "--window-size=1600,2400", f"--screenshot={shot}")
    assert done.returncode == 0 and shot.stat().st_size > 50_000, done.stderr[-2000:]
    keep = ROOT / "reports" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy2(shot, keep / shot.name)
