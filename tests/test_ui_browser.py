"""What a user sees, in headless Chromium (Debian's `chromium`, started by the test) with the
network blocked (every host name resolves to nothing but loopback): the MLflow experiment
list with its descriptions, the Leaderboard view of a backtest experiment (model runs sorted
by score, the headline metrics as columns), the compare view, the Great Expectations Data
Docs index (its list of validations drawn by its own scripts), the `dvc plots show` page (a
drawn chart) and the docs site. Screenshots are kept in reports/screenshots/."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import mlflow
import numpy as np
import pytest

from _ops import Proc, bin_path, free_port, run_py, shared_store, wait_http
from conftest import ROOT
from tasks.offline_html import network_loads

pytestmark = pytest.mark.slow
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--allow-file-access-from-files",
                  # no network: every name resolves to nothing, loopback excepted
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]
SHOTS = ROOT / "reports" / "screenshots"


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
    ws, env = shared_store(tmp_path_factory, mirror)
    port = free_port()
    tmp = tmp_path_factory.mktemp("ui")
    server = Proc([bin_path("mlflow"), "server", "--backend-store-uri", f"sqlite:///{ws / 'mlflow.db'}",
                   "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], tmp / "mlflow.log",
                  env=dict(os.environ, MLFLOW_ENABLE_TELEMETRY="false"), cwd=tmp)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", server, timeout=180)
        yield exe, ws, env, f"http://127.0.0.1:{port}", tmp
    finally:
        server.stop()


def browse(exe: str, url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=30000",
                           *extra, url], capture_output=True, text=True, timeout=240)


def dom_and_shot(exe: str, url: str, tmp: Path, name: str, size: str = "1600,1000") -> str:
    """The page's DOM after its scripts ran, and a screenshot kept as reports/screenshots/<name>.png."""
    dom = browse(exe, url, tmp / f"profile-{name}-dom", f"--window-size={size}", "--dump-dom")  # columns in view
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp / f"{name}.png"
    done = browse(exe, url, tmp / f"profile-{name}-shot", f"--window-size={size}", f"--screenshot={shot}")
    assert done.returncode == 0 and shot.stat().st_size > 20_000, done.stderr[-2000:]
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy2(shot, SHOTS / shot.name)
    return dom.stdout


def drawn_share(png: Path) -> float:
    """The share of a screenshot's pixels that are not (near) white: a page that drew something."""
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]
    return float(np.mean(pixels.min(axis=-1) < 0.9))


def model_runs(ws: Path):
    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
    try:
        return mlflow.search_runs(experiment_names=["seqcast-market"], filter_string="tags.family != 'report'")
    finally:
        mlflow.set_tracking_uri(None)


def test_the_experiment_list_says_what_each_experiment_holds(ui):
    exe, ws, _, base, tmp = ui
    html = dom_and_shot(exe, f"{base}/#/experiments", tmp, "mlflow-experiments")
    assert "seqcast-market" in html and "seqcast-market-data" in html
    assert "Backtests of market: one run per (series, model)" in html
    assert "Data runs of market" in html


def test_the_leaderboard_view_sorts_the_model_runs_by_score(ui):
    exe, ws, _, base, tmp = ui
    runs = model_runs(ws)
    assert set(runs["tags.model"]) == {"naive", "drift", "arima"}
    exp_id = runs["experiment_id"].iloc[0]
    url = f"{base}/#/experiments/{exp_id}/runs?workflowType=machine_learning&viewStateShareKey=leaderboard"
    html = dom_and_shot(exe, url, tmp, "mlflow-leaderboard", "2000,700")
    for column in ("score", "P2a_mase", "P2b_mase", "P2a_cov95", "P2b_cov95"):
        assert f">{column}<" in html, column  # a column header of the table
    ranked = runs.sort_values("metrics.score")["tags.model"].tolist()
    at = [html.index(f"{model} · ^KS11") for model in ranked]
    assert at == sorted(at), (ranked, at)  # best score first
    assert f"{runs['metrics.score'].min():.3f}"[:5] in html
    parent = mlflow.MlflowClient(f"sqlite:///{ws / 'mlflow.db'}").search_runs(
        [exp_id], "tags.family = 'report'")[0]
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("**Leaderboard of market** on its reference series `^KS11`")
    assert f"| `{ranked[0]}` |" in note.splitlines()[4]  # the table's first row is the best model


def test_compare_view_lists_every_model_with_its_metrics(ui):
    exe, ws, _, base, tmp = ui
    runs = model_runs(ws)
    ids = urllib.parse.quote(str(list(runs["run_id"])).replace("'", '"'))
    exps = urllib.parse.quote(str(sorted(set(runs["experiment_id"]))).replace("'", '"'))
    html = dom_and_shot(exe, f"{base}/#/compare-runs?runs={ids}&experiments={exps}", tmp, "mlflow-compare-market",
                        "1600,2400")
    assert "Comparing 3 Runs" in html, html[-3000:]
    for _, run in runs.iterrows():
        assert f"{run['tags.model']} · ^KS11" in html  # each model's run name
        assert f"{run['metrics.P2a_mase']:.3f}"[:4] in html  # its P2a MASE in the metrics table
    for metric in ("P2a_mase", "P2a_cov95", "P2a_rmse"):
        assert metric in html


def test_the_data_docs_render_their_validations_with_no_network(ui):
    exe, ws, _, _, tmp = ui
    site = ws / "reports" / "data_docs" / "market"
    for page in site.rglob("*.html"):
        assert network_loads(page.read_text(encoding="utf-8")) == [], page
    html = dom_and_shot(exe, (site / "index.html").as_uri(), tmp, "data-docs-market")
    assert 'data-index="0"' in html  # bootstrap-table (a local copy) drew the rows
    assert "market · ^KS11 (lines" in html  # the run: dataset, series, lines of the file
    assert "market · data " in html  # the suite: the dataset and its data version
    assert "No matching records found" not in html
    assert drawn_share(SHOTS / "data-docs-market.png") > 0.05


def test_dvc_plots_draw_their_charts_with_no_network(ui):
    exe, ws, env, _, tmp = ui
    out = tmp / "dvc_plots"
    run_py(["-m", "dvc", "plots", "show", "--out", str(out)], ws, env)
    page = out / "index.html"
    source = page.read_text(encoding="utf-8")
    assert network_loads(source) == [] and "<img" in source and "KS11_arima.svg" in source
    svg = (ws / "reports" / "charts" / "market" / "KS11_arima.svg").read_text(encoding="utf-8")
    assert "index points" in svg and "<path" in svg  # the unit on the axis, a drawn line
    dom_and_shot(exe, page.as_uri(), tmp, "dvc-plots", "1400,1200")
    assert drawn_share(SHOTS / "dvc-plots.png") > 0.03


def test_the_docs_site_reads_offline(ui):
    exe, _, _, _, tmp = ui
    site = tmp / "site"
    subprocess.run([bin_path("mkdocs"), "build", "--strict", "--site-dir", str(site)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    html = dom_and_shot(exe, (site / "results.html").as_uri(), tmp, "docs-results")
    assert "<table" in html and "DM p vs naive" in html and "<code>combiner</code>" in html


def test_the_champion_fan_chart_for_the_readme(ui):
    """The forecast stage on the store's champion: the fan chart (dates, unit) kept beside the screenshots."""
    _, ws, env, _, _ = ui
    run_py(["-m", "flows.forecast", "--dataset", "market"], ws, env)
    chart = ws / "reports" / "forecast" / "market.png"
    header = (ws / "reports" / "forecast" / "market.csv").read_text().splitlines()[0]
    assert header == "unique_id,ds,step,mean,lo-80,hi-80,lo-95,hi-95"
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy2(chart, SHOTS / "fan-chart-market.png")
    assert drawn_share(SHOTS / "fan-chart-market.png") > 0.02
