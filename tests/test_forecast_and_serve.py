"""The champion at work: the batch forecast flow (table, fan chart, MLflow run, cached
on a re-run) and `mlflow models serve` answering over loopback with the same numbers."""

from __future__ import annotations

import json
import os
import urllib.request

import mlflow
import pandas as pd
import pytest

from _ops import Proc, bin_path, free_port, shared_store, wait_http

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory, mirror, prefect_server):
    return shared_store(tmp_path_factory, mirror)


@pytest.fixture
def in_store(store, monkeypatch):
    ws, _ = store
    monkeypatch.setenv("SEQCAST_HOME", str(ws))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
    yield ws
    mlflow.set_tracking_uri(None)


def test_forecast_flow_writes_table_plot_and_run(in_store, prefect_server):
    from flows.forecast import forecast_flow

    ws = in_store
    out = forecast_flow("market")
    table = pd.read_csv(out["forecast_table"])
    assert list(table.columns) == ["unique_id", "ds", "step", "mean", "lo-80", "hi-80", "lo-95", "hi-95"]
    assert len(table) == 5 and table["ds"].iloc[0].startswith("2019-01-16")  # the trading day after the data end
    assert (table["lo-95"] <= table["lo-80"]).all() and (table["hi-80"] <= table["hi-95"]).all()
    assert (ws / "reports" / "forecast" / "market.png").stat().st_size > 10_000
    run = mlflow.get_run(out["run_id"])
    assert run.data.tags["registered_model"] == "seqcast-market" and run.data.tags["alias"] == "champion"
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(out["run_id"], "forecast")}
    assert {"forecast/market.csv", "forecast/market_fan_chart.png"} <= arts

    state = forecast_flow("market", return_state=True)  # same model version, same data: the task is cached
    again = state.result()
    assert again["first"] == out["first"]
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def task_states():
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(
                any_=[state.state_details.flow_run_id])))
            return {r.name.rsplit("-", 1)[0]: r.state.name for r in runs}

    import asyncio

    assert asyncio.run(task_states())["champion-forecast"] == "Cached"


def test_mlflow_models_serve_answers_with_the_champion(in_store, tmp_path):
    ws = in_store
    port = free_port()
    env_uri = f"sqlite:///{ws / 'mlflow.db'}"
    env = dict(os.environ, MLFLOW_TRACKING_URI=env_uri, PYTHONPATH=str(ws))
    env["PATH"] = bin_path("") + os.pathsep + env.get("PATH", "")  # the scoring server runs `uvicorn`
    serve = Proc([bin_path("mlflow"), "models", "serve", "-m", "models:/seqcast-market@champion", "--env-manager",
                  "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                 tmp_path / "serve.log", env=env, cwd=ws)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", serve, timeout=180)
        body = {"dataframe_split": {"columns": ["y"], "data": [[2100.0], [2110.0]]}, "params": {"h": 3}}
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            served = pd.DataFrame(json.loads(r.read())["predictions"])
    finally:
        serve.stop()
    local = mlflow.pyfunc.load_model("models:/seqcast-market@champion").predict(
        pd.DataFrame({"y": [2100.0, 2110.0]}), params={"h": 3})
    assert list(served["step"]) == [1, 2, 3]
    # each step carries its timestamp: trading days after the training end moved on by the two new rows
    train_end = pd.Timestamp(mlflow.MlflowClient().get_model_version_by_alias("seqcast-market", "champion")
                             .tags["train_end"])
    stamps = [pd.Timestamp(ts) for ts in served["ds"]]
    assert list(served["ds"]) == list(local["ds"]) and all(ts.dayofweek < 5 for ts in stamps)
    assert train_end < stamps[0] < stamps[1] < stamps[2] and stamps[0].utcoffset() == pd.Timedelta(hours=9)
    pd.testing.assert_series_equal(served["mean"], local["mean"], check_names=False)
    pd.testing.assert_series_equal(served["hi-95"], local["hi-95"], check_names=False)
