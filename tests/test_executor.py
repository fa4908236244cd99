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


def thread_counts(_) -> tuple[set, int]:
    """The threads of every BLAS/OpenMP pool once the models' libraries are loaded, and torch's."""
    import scipy.linalg  # noqa: F401 - statsmodels' BLAS
    import torch
    from threadpoolctl import threadpool_info

    return {(pool["internal_api"], pool["num_threads"]) for pool in threadpool_info()}, torch.get_num_threads()


def counted_or_flaky(item: tuple[str, str]) -> str:
    """``("count", path)``: appends a line to ``path`` (how many times it ran); ``("flaky", path)``: :func:`flaky`."""
    kind, path = item
    if kind == "flaky":
        return flaky(path)
    with open(path, "a") as f:
        f.write("ran\n")
    return "counted"


def test_local_runs_keep_order_in_process_and_finish_every_job_in_processes():
    assert list(executor.run(square, [1, 2, 3])) == [(1, 1), (2, 4), (3, 9)]
    assert sorted(executor.run(square, range(6), workers=2)) == [(i, i * i) for i in range(6)]
    with executor.local_processes(2):  # one pool for several batches
        assert sorted(executor.run(square, [4, 5], workers=2)) == [(4, 16), (5, 25)]
        assert sorted(executor.run(square, [6, 7], workers=2)) == [(6, 36), (7, 49)]
    with pytest.raises(ValueError, match="three is refused"):
        list(executor.run(fail_on_three, [1, 2, 3, 4], workers=2))


def test_each_local_process_runs_one_thread_per_blas_and_openmp_pool():
    """The libraries load in the job, after the pool's initializer: its limit must hold for them too."""
    for _, (pools, torch_threads) in executor.run(thread_counts, [0, 1], workers=2):
        assert {name for name, _ in pools} >= {"openblas", "openmp"}
        assert {n for _, n in pools} == {1} and torch_threads == 1, pools


def test_batches_are_large_first_small_last_and_cover_every_job():
    assert executor.batch_sizes(300, 2) == [75, 57, 42, 32, 24, 18, 13, 10, 8, 6, 4, 4, 4, 3]
    assert executor.batch_sizes(4, 1) == [4] and executor.batch_sizes(0, 2) == []
    for n, workers in [(1, 2), (7, 3), (120, 2), (3000, 8)]:
        sizes = executor.batch_sizes(n, workers)
        assert sum(sizes) == n and sizes == sorted(sizes, reverse=True)
        assert all(size >= 4 for size in sizes[:-1])


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
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId, TaskRunFilter, TaskRunFilterName

    address, _ = cluster
    jobs, params = _jobs(3)  # 6 jobs: batches of 4 and 2 (the batch size fixed)
    local = _scores(run_jobs(jobs, params, 1))
    started = time.time()
    remote = _scores(run_jobs(jobs, params, 1, address, batch=4))
    assert remote == local
    labels = [f"{j.model} · {j.protocol.unique_id}" for j in jobs]
    names = [f"jobs 1-4 of 6 · {labels[0]}", f"jobs 5-6 of 6 · {labels[4]}"]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=names)))
        recent = [r for r in runs if r.start_time and r.start_time.timestamp() >= started - 5]
        assert sorted(r.name for r in recent) == names
        assert {r.state_type.value for r in recent} == {"COMPLETED"}
        deadline, lines = time.time() + 60, []
        while time.time() < deadline and len(lines) < len(jobs):  # the workers send their logs every few seconds
            logs = client.read_logs(LogFilter(task_run_id=LogFilterTaskRunId(any_=[r.id for r in recent])))
            lines = [log.message for log in logs if " done in " in log.message]
            time.sleep(1)
    assert sorted(line.split(" done in ")[0] for line in lines) == sorted(labels)  # a line per job in the UI


@pytest.mark.slow
def test_a_transient_error_is_retried_a_job_error_is_not(cluster):
    address, tmp = cluster
    ledger, marker = str(tmp / "ledger"), str(tmp / "flaky-marker")
    batch = [("count", ledger), ("flaky", marker), ("count", ledger)]
    assert [r for _, r in executor.run(counted_or_flaky, batch, address=address)] == ["counted", "done", "counted"]
    with open(ledger) as f:  # the batch was retried from its flaky job: the first one did not run again
        assert f.read().splitlines() == ["ran", "ran"]
    seen = []
    with pytest.raises(ValueError, match="three is refused"):  # deterministic: no retry, the error as raised
        for item, result in executor.run(fail_on_three, [1, 2, 3, 4], address=address):
            seen.append((item, result))
    assert seen == [(1, 1), (2, 2)]  # the jobs before it in its batch are still results


def test_the_temporary_prefect_api_is_its_own_and_stops_alone(prefect_server, monkeypatch):
    """Without an API, the executor starts a temporary server for its workers; stopping it leaves the process's
    default server (here the session's) running: Prefect keeps one server per port, the default one without."""
    import urllib.request

    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with executor.prefect_api() as url:
            assert url != prefect_server
            with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=30) as resp:
                assert resp.status == 200
    with urllib.request.urlopen(prefect_server.rstrip("/") + "/health", timeout=30) as resp:
        assert resp.status == 200
