"""The tracking store as a real `mlflow server` on loopback (SQLite backend, artifacts
served from a folder): the backtest flow logs through it, promotion registers the
champion through it, and the champion loads back through it."""

from __future__ import annotations

import os

import mlflow
import pandas as pd
import pytest

from _ops import Proc, bin_path, free_port, shared_store, wait_http

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path, monkeypatch):
    port = free_port()
    db, artifacts = tmp_path / "server.db", tmp_path / "artifacts"
    proc = Proc([bin_path("mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}",
                 "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "1"], tmp_path / "mlflow.log", env=dict(os.environ, MLFLOW_ENABLE_TELEMETRY="false"),
                cwd=tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=180)
        uri = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        yield uri, db, artifacts
    finally:
        mlflow.set_tracking_uri(None)
        proc.stop()


def test_backtest_and_promotion_through_a_tracking_server(server, tmp_path_factory, mirror, prefect_server,
                                                          monkeypatch):
    uri, db, artifacts = server
    ws, _ = shared_store(tmp_path_factory, mirror)  # its clean table and stationarity verdicts
    monkeypatch.setenv("SEQCAST_HOME", str(ws))
    from flows.backtest import backtest_flow
    from tasks.promotion import promote

    backtest_flow("market", ["naive", "drift"])
    runs = mlflow.search_runs(experiment_names=["seqcast-market"], filter_string="tags.family != 'report'")
    assert set(runs["tags.model"]) == {"naive", "drift"}
    assert db.stat().st_size > 0 and any(artifacts.rglob("MLmodel"))  # the server's own store and artifacts
    out = promote("market")
    assert out["promoted"] and out["version"] == 1
    champion = mlflow.pyfunc.load_model("models:/seqcast-market@champion")  # artifacts via the server
    fc = champion.predict(pd.DataFrame({"y": [2000.0]}), params={"h": 2})
    assert len(fc) == 2 and fc["mean"].notna().all()
