"""The one executor (tasks/executor.py) and the backtest's plain-data results (tasks/jobs.py):
in this process, in local processes and as Prefect task runs on a real Dask scheduler +
worker on loopback, the same jobs give the same metrics; a job's transient error is retried
by Prefect; a fitted forecaster travels as its saved files and reloads to the same forecasts."""

from __future__ import annotations

import io
import os
import time

import matplotlib.image as mpimg
import numpy as np
import pytest

from _ops import Proc, bin_path, free_port, wait_http
from conftest import ROOT
from seqcast.config import load_params
from tasks import executor
from tasks.jobs import FittedModel, Job, run_job, run_jobs


def square(x: int) -> int:
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is refused")
    return x


def flaky(path: str) -> str:
    """Fails with an OSError the first time (a lost connection), then succeeds."""
    if not os.path.exists(path):
        open(path, "w").close()
        raise ConnectionResetError("connection reset by peer")
    return "done"


def test_local_runs_keep_order_in_process_and_finish_every_job_in_processes():
    assert list(executor.run(square, [1, 2, 3])) == [(1, 1), (2, 4), (3, 9)]
    assert sorted(executor.run(square, range(6), workers=2)) == [(i, i * i) for i in range(6)]
    with executor.local_processes(2):  # one pool for several batches
        assert sorted(executor.run(square, [4, 5], workers=2)) == [(4, 16), (5, 25)]
        assert sorted(executor.run(square, [6, 7], workers=2)) == [(6, 36), (7, 49)]
    with pytest.raises(ValueError, match="three is refused"):
        list(executor.run(fail_on_three, [1, 2, 3, 4], workers=2))


def test_the_address_comes_from_the_argument_or_the_environment(monkeypatch):
    monkeypatch.delenv(executor.ADDRESS_ENV, raising=False)
    assert executor.cluster_address() is None
    monkeypatch.setenv(executor.ADDRESS_ENV, "tcp://127.0.0.1:1")
    assert executor.cluster_address() == "tcp://127.0.0.1:1"
    assert executor.cluster_address("tcp://127.0.0.1:2") == "tcp://127.0.0.1:2"


def _jobs(n: int = 2, models=("naive", "arima")):
    from flows.scale import generated_jobs

    params = load_params()
    return generated_jobs(n, list(models), params, length=160), params


def _scores(pairs) -> dict:
    """Metrics by (series, model), timings left out (NaN as a string: it equals itself)."""
    return {(j.protocol.unique_id, j.model): {k: "nan" if v != v else v for k, v in r.metrics.items()
                                              if "seconds" not in k} for j, r in pairs}


def test_a_result_is_plain_data_and_its_model_reloads_to_the_same_forecasts():
    jobs, params = _jobs(1, ["arima"])
    result = run_job(jobs[0], params)
    assert result.protocol is None  # the caller has it: it does not travel back
    fitted = result.forecaster
    assert isinstance(fitted, FittedModel) and set(fitted.files) == {"forecaster.json", "state.npz"}
    assert fitted.describe()["p"] == params.models.arima.p and fitted.family == "classical"
    from tasks.series import build_forecaster

    original = build_forecaster("arima", jobs[0].protocol, params, jobs[0].verdict).fit(jobs[0].protocol.y_train)
    np.testing.assert_allclose(fitted.load().predict(5).mean, original.predict(5).mean, rtol=1e-10)
    np.testing.assert_array_equal(fitted.y_, jobs[0].protocol.y_train)


def test_figures_travel_as_images_pixel_for_pixel():
    from models import registry

    y = 100 + np.cumsum(np.random.default_rng(0).normal(size=300))
    model = registry.create("gbm", season=5, n_paths=200).fit(y)
    png = io.BytesIO()
    next(iter(model.figures().values())).savefig(png, format="png")
    again = io.BytesIO()
    fitted = FittedModel.of(model)
    name, fig = next(iter(fitted.figures().items()))
    fig.savefig(again, format="png")
    assert name.endswith(".png")
    np.testing.assert_array_equal(mpimg.imread(io.BytesIO(png.getvalue())), mpimg.imread(io.BytesIO(again.getvalue())))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, prefect_server):
    """A real `dask scheduler` and one `dask worker` process on loopback, reporting to the session's Prefect API."""
    tmp = tmp_path_factory.mktemp("dask")
    port, dash = free_port(), free_port()
    # the project and this module importable: the transient-error test sends functions defined here
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), PREFECT_API_URL=prefect_server)
    scheduler = Proc([bin_path("dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                      "--dashboard-address", f"127.0.0.1:{dash}"], tmp / "scheduler.log", env=env, cwd=ROOT)
    worker = None
    try:
        wait_http(f"http://127.0.0.1:{dash}/health", scheduler, timeout=120)
        worker = Proc([bin_path("dask"), "worker", f"tcp://127.0.0.1:{port}", "--nworkers", "1", "--nthreads", "1",
                       "--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--host", "127.0.0.1"],
                      tmp / "worker.log", env=env, cwd=ROOT)
        from seqcast.stack import wait_for_workers

        wait_for_workers(f"tcp://127.0.0.1:{port}", 1, timeout=180)
        yield f"tcp://127.0.0.1:{port}", tmp
    finally:
        for p in (worker, scheduler):
            if p is not None:
                p.stop()


@pytest.mark.slow
def test_the_cluster_gives_the_local_metrics_as_prefect_task_runs(cluster, prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    address, _ = cluster
    jobs, params = _jobs(2)
    local = _scores(run_jobs(jobs, params, 1))
    started = time.time()
    remote = _scores(run_jobs(jobs, params, 1, address))
    assert remote == local
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(
            name=TaskRunFilterName(any_=[f"{j.model} · {j.protocol.unique_id}" for j in jobs])))
    recent = [r for r in runs if r.start_time and r.start_time.timestamp() >= started - 5]
    assert sorted(r.name for r in recent) == sorted(f"{j.model} · {j.protocol.unique_id}" for j in jobs)
    assert {r.state_type.value for r in recent} == {"COMPLETED"}


@pytest.mark.slow
def test_a_transient_error_is_retried_a_job_error_is_not(cluster):
    address, tmp = cluster
    marker = str(tmp / "flaky-marker")
    assert list(executor.run(flaky, [marker], address=address)) == [(marker, "done")]
    with pytest.raises(ValueError, match="three is refused"):  # deterministic: no retry, the error as raised
        list(executor.run(fail_on_three, [3], address=address))
