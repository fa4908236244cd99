"""Deployments for real: a Prefect server and a process worker on loopback, the project's
prefect.yaml and the datasets' schedules deployed with `seqcast deploy`, two runs triggered
with `prefect deployment run`: the market's retrain (backtest + promotion of a champion)
and its daily flow (DVC stages, push to the local DVC remote, forecast with the champion).
Each must complete and leave its MLflow runs."""

from __future__ import annotations

import json
import subprocess

import mlflow
import pytest
import yaml

from _ops import CHEAP, Proc, bin_path, copy_worktree, free_port, wait_http
from conftest import ROOT, child_env

pytestmark = pytest.mark.slow


def prefect(args, cwd, env, timeout=600):
    return subprocess.run([bin_path("prefect"), "--no-prompt", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_deployments_name_pools_and_schedules_only():
    """prefect.yaml plus one daily and one retrain deployment per scheduled dataset of params.yaml."""
    from cli.deploy import dataset_deployments
    from seqcast.config import load_params

    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pools = config["definitions"]["work_pools"]
    deps = {d["name"]: d for d in [*config["deployments"], *dataset_deployments(load_params(), pools)]}
    assert set(deps) == {"market-daily", "market-retrain", "pm25-daily", "pm25-retrain", "retrain-all", "gpt-train"}
    assert {d["work_pool"]["name"] for d in deps.values()} == {"cpu", "gpu"}
    assert deps["gpt-train"]["work_pool"]["name"] == "gpu" and deps["gpt-train"]["concurrency_limit"] == 1
    assert deps["market-daily"]["schedules"][0] == {"cron": "30 16 * * 1-5", "timezone": "Asia/Seoul",
                                                     "active": True}
    assert deps["market-daily"]["parameters"] == {"dataset": "market"}
    assert deps["pm25-retrain"]["parameters"] == {"datasets": ["pm25"]}
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for d in deps.values():  # routing parameters only (which datasets): no params.yaml value is set from here
        routing = d.get("parameters", {})
        assert set(routing) <= {"dataset", "datasets"}, d["name"]
        chosen = [routing["dataset"]] if "dataset" in routing else routing.get("datasets", [])
        assert set(chosen) <= set(params["datasets"]), d["name"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mirror):
    tmp = tmp_path_factory.mktemp("deploy")
    ws = copy_worktree(tmp / "project", {**CHEAP, "datasets": {"market": {"models": {"run": ["naive", "drift"]}},
                                                               "pm25": {"models": {"run": ["naive"]}}}})
    port = free_port()
    env = child_env(ws, mirror)
    env.update(PREFECT_HOME=str(tmp / "prefect-home"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false",
               PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_WORKER_HEARTBEAT_SECONDS="10")
    procs = []
    try:
        server = Proc([bin_path("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                      tmp / "server.log", cwd=tmp, env=env)
        procs.append(server)
        wait_http(f"http://127.0.0.1:{port}/api/health", server, timeout=240)
        for pool in ("cpu", "gpu"):
            out = prefect(["work-pool", "create", pool, "--type", "process"], ws, env)
            assert out.returncode == 0, out.stdout + out.stderr
        assert prefect(["work-pool", "set-concurrency-limit", "gpu", "1"], ws, env).returncode == 0
        deployed = subprocess.run([bin_path("seqcast"), "deploy"], cwd=ws, env=env, capture_output=True, text=True,
                                  timeout=600)
        assert deployed.returncode == 0, deployed.stdout[-4000:] + deployed.stderr[-4000:]
        worker = Proc([bin_path("prefect"), "worker", "start", "--pool", "cpu", "--type", "process"],
                      tmp / "worker.log", cwd=ws, env=env)
        procs.append(worker)
        yield ws, env, worker, deployed
    finally:
        for p in reversed(procs):
            p.stop()


def run_deployment(name, params, stack):
    ws, env, worker, _ = stack
    args = ["deployment", "run", name, "--watch", "--watch-timeout", "900", "--watch-interval", "3"]
    for key, value in params.items():
        args += ["--param", f"{key}={json.dumps(value)}"]
    out = prefect(args, ws, env, timeout=960)
    assert out.returncode == 0 and "Completed" in out.stdout, (out.stdout[-3000:] + out.stderr[-3000:]
                                                               + "\nworker:\n" + worker.tail())
    return out


def test_deploy_all_registers_every_deployment(stack):
    ws, env, _, deployed = stack
    listed = prefect(["deployment", "ls"], ws, env)
    for name in ("market-daily", "market-retrain", "pm25-daily", "retrain-all", "gpt-train"):
        assert name in listed.stdout, listed.stdout
    inspected = prefect(["deployment", "inspect", "daily/market-daily"], ws, env)
    assert "Asia/Seoul" in inspected.stdout and "'cpu'" in inspected.stdout


def test_retrain_then_daily_forecast_through_the_worker(stack):
    ws = stack[0]
    run_deployment("retrain/market-retrain", {}, stack)
    run_deployment("daily/market-daily", {}, stack)
    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
    try:
        runs = mlflow.search_runs(experiment_names=["seqcast-market"], filter_string="tags.family != 'report'")
        assert set(runs["tags.model"]) == {"naive", "drift"}
        champion = mlflow.MlflowClient().get_model_version_by_alias("seqcast-market", "champion")
        assert champion.tags["model"] in {"naive", "drift"}
        fc = mlflow.search_runs(experiment_names=["seqcast-market-forecast"])
        assert list(fc["status"]) == ["FINISHED"]
        assert fc["tags.model_version"].iloc[0] == str(champion.version)
    finally:
        mlflow.set_tracking_uri(None)
    table = (ws / "reports" / "forecast" / "market.csv").read_text().splitlines()
    assert len(table) == 1 + 5 and table[0].startswith("unique_id,ds,step,mean")
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]  # the deployments ran the DVC stages
    assert {"backtest@market", "promote@market", "forecast@market"} <= set(lock)
    promotion = json.loads((ws / "reports" / "promotion" / "market.json").read_text())
    assert promotion["champion"]["version"] == int(champion.version)
    remote = ws.parent / "seqcast-dvc-remote"
    assert any(remote.rglob("*")), "market-daily pushed nothing to the DVC remote"
