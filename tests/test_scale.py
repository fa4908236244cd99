"""Many series through the backtest's own jobs (flows/scale.py): reproducible generated
series on the daily protocol, verdicts from the stationarity stage's tests, the flow's
leaderboard equal to the jobs run one by one, and `seqcast bench scale` as a user types it
(a small N: the benchmark's own loopback Dask cluster, three executors, identical metrics)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from conftest import ROOT
from flows.scale import generated_entry, generated_jobs, generated_table, mean_metrics
from seqcast.config import load_params
from tasks.jobs import run_jobs


def test_generated_series_are_reproducible_daily_and_judged_on_p2():
    a, b = generated_table(3, 120, seed=3), generated_table(3, 120, seed=3)
    assert a.equals(b) and list(a["unique_id"].unique()) == ["gen_00000", "gen_00001", "gen_00002"]
    assert (a.groupby("unique_id").size() == 120).all() and a["ds"].dt.dayofweek.max() <= 4  # business days
    params = load_params()
    jobs = generated_jobs(2, ["naive", "arima"], params, length=120)
    assert [(j.protocol.unique_id, j.model) for j in jobs] == [("gen_00000", "naive"), ("gen_00000", "arima"),
                                                               ("gen_00001", "naive"), ("gen_00001", "arima")]
    proto = jobs[0].protocol
    assert proto.name == "P2" and proto.n_train == int(120 * generated_entry().protocol.split.train_fraction) == 96
    assert jobs[0].verdict["d"] == 1  # random walks: the stationarity tests difference them once


def test_the_flow_is_the_same_backtest_as_the_jobs(workspace, mlflow_store, prefect_server):
    from flows.scale import scale_flow

    out = scale_flow("generated", ["naive", "drift"], n=3, length=120)
    params = load_params()
    direct = {}
    for job, result in run_jobs(generated_jobs(3, ["naive", "drift"], params, length=120), params, 1):
        direct.setdefault(job.protocol.unique_id, {})[job.model] = result.metrics
    assert out["n_series"] == 3 and out["jobs"] == 6 and out["executor"] == "local"
    for uid, per_model in direct.items():
        for model, metrics in per_model.items():
            assert out["series"][uid][model]["P2a_mase"] == pytest.approx(metrics["P2a_mase"], rel=1e-12)
    assert out["mean"]["naive"]["P2a_mase"] == pytest.approx(np.mean([m["naive"]["P2a_mase"] for m in direct.values()]))
    saved = json.loads((workspace / "reports" / "scale" / "generated.json").read_text())
    assert {m: r["P2b_mase"] for m, r in saved["mean"].items()} == {m: r["P2b_mase"] for m, r in out["mean"].items()}
    import mlflow

    runs = mlflow.search_runs(experiment_names=["seqcast-generated"])
    assert len(runs) == 1
    assert runs["metrics.mean_P2a_mase.naive"].iloc[0] == pytest.approx(out["mean"]["naive"]["P2a_mase"])


def test_mean_metrics_per_model():
    means = mean_metrics({"a": {"m": {"x": 1.0}, "n": {"x": 4.0}}, "b": {"m": {"x": 3.0}}})
    assert means == {"m": {"x": 2.0}, "n": {"x": 4.0}}


@pytest.mark.slow
def test_seqcast_bench_scale_as_typed(tmp_path):
    """The README's command on a small N: three executors, the same metrics on each."""
    from conftest import child_env, mirror_path

    env = child_env(ROOT, mirror_path())
    env["SEQCAST_HOME"] = str(ROOT)
    out = subprocess.run(["seqcast", "bench", "scale", "--n", "4", "--models", "naive", "arima", "--round", "2",
                          "--serial-every", "1", "--probe", "4"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["identical_metrics"] is True
    assert [r["executor"] for r in result["rows"]] == ["local, 1 worker", "local, 2 workers", "dask, 2 workers"]
    assert all(r["jobs"] == 8 for r in result["rows"])
    assert "cluster / local pool at 2 workers" in out.stdout
