"""The team stack for real, started once for this module by `seqcast stack up` as a user types
it: PostgreSQL (Debian's server), MLflow and Prefect servers on it, a Dask scheduler with two
workers and the cpu/gpu Prefect workers, all on 127.0.0.1. Then its faults: a Dask worker
killed mid-backtest, two pipeline runs at once with the MLflow server restarted under them,
PostgreSQL down before a run, and a bounded load on the tracking server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from conftest import ROOT, child_env, copy_project, readme_block
from seqcast import stack as stk

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]  # a stack start on a loaded 2-core machine: minutes
SEQCAST = stk.bin_path("seqcast")
# two cheap pipelines: a dataset each, the reference series only, naive baselines and drift
CHEAP = {"datasets": {ds: {"models": {"run": ["naive", "drift"]}} for ds in ("market", "pm25")},
         "stationarity": {"max_points": 4000}}


def seqcast(args: list[str], env: dict, cwd: Path = ROOT, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([SEQCAST, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def stack():
    """The README's `seqcast stack up` (as typed, in a folder the postgres user can reach and on free
    ports: ``--dir``, ``--auto-ports``); its `seqcast stack down` at the end."""
    if not shutil.which("runuser") and os.geteuid() == 0:
        pytest.fail("runuser (util-linux) is needed to run PostgreSQL as the postgres user")
    root = Path(tempfile.mkdtemp(prefix="seqcast-stack-", dir="/var/tmp"))
    os.chmod(root, 0o711)
    folder = root / "stack"
    env = {**os.environ, "SEQCAST_HOME": str(ROOT)}
    for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "SEQCAST_DASK_ADDRESS"):
        env.pop(key, None)
    readme = {line.split()[2]: line.split()[1:] for line in readme_block("seqcast stack up")}
    assert set(readme) == {"up", "status", "down"}
    try:
        up = seqcast([*readme["up"], "--dir", str(folder), "--auto-ports"], env, timeout=900)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield stk.Stack.open(folder), up.stdout, env
    finally:
        down = seqcast([*readme["down"], "--dir", str(folder)], env, timeout=300)
        shutil.rmtree(root, ignore_errors=True)
        assert down.returncode == 0, down.stderr


def user_env(s: stk.Stack, ws: Path, mirror: Path) -> dict:
    """A project copy's environment with the stack's exports (env.sh) on top."""
    env = child_env(ws, mirror)
    env.update(s.urls)
    return env


def test_up_prints_the_exports_and_every_service_runs_on_loopback(stack):
    s, printed, env = stack
    for key, value in s.urls.items():
        assert f"export {key}={value}" in printed
    assert (s.dir / "env.sh").read_text().count("export ") == 3
    (status_line,) = [line for line in readme_block("seqcast stack up") if " status" in line]
    status = seqcast([*status_line.split()[1:], "--dir", str(s.dir)], env)  # the README's, in the test's folder
    assert status.returncode == 0 and status.stdout.count(" running ") == len(stk.SERVICES), status.stdout
    again = seqcast(["stack", "up", "--dir", str(s.dir)], env)  # idempotent
    assert again.returncode == 0 and "already running" in again.stdout
    pids = {s.pid(name) for name in stk.SERVICES}
    family = {p.pid for pid in pids for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]}
    listening = [c for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN and c.pid in family]
    assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}, listening
    assert s.ports["postgres"] in {c.laddr.port for c in listening}
    with urllib.request.urlopen(s.urls["MLFLOW_TRACKING_URI"] + "/", timeout=30) as page:  # the MLflow UI it serves
        assert page.status == 200 and b"<html" in page.read(2000).lower()


def test_the_password_is_generated_private_and_never_logged(stack):
    s, printed, _ = stack
    assert oct(s.pgpass.stat().st_mode & 0o777) == "0o600" and oct(s.pgpass.parent.stat().st_mode & 0o777) == "0o700"
    password = s.pgpass.read_text().strip().rsplit(":", 1)[1]
    assert len(password) >= 24 and password not in printed
    files = [p for p in s.dir.rglob("*") if p.is_file() and "secret" not in p.parts and "pg" not in p.parts]
    assert not [p for p in files if password.encode() in p.read_bytes()]
    for name in stk.SERVICES:  # no command line of the stack holds it
        for proc in [psutil.Process(s.pid(name)), *psutil.Process(s.pid(name)).children(recursive=True)]:
            assert password not in " ".join(proc.cmdline())
    assert stk.psql(s, "mlflow", "SELECT 1").strip() == "1"
    wrong = subprocess.run([str(stk.pg_bindir() / "psql"), "-h", "127.0.0.1", "-p", str(s.ports["postgres"]), "-U",
                            stk.DB_USER, "-d", "mlflow", "-c", "SELECT 1"], capture_output=True, text=True,
                           env={**os.environ, "PGPASSWORD": "not-the-password", "PGPASSFILE": "/dev/null"})
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr


def _scores(pairs) -> dict:
    return {(j.protocol.unique_id, j.model): {k: "nan" if v != v else v for k, v in r.metrics.items()
                                              if "seconds" not in k} for j, r in pairs}


def test_a_dask_worker_killed_mid_backtest_its_jobs_run_on_the_other(stack):
    import distributed

    from flows.scale import generated_jobs
    from seqcast.config import load_params
    from tasks.jobs import run_jobs

    s, _, _ = stack
    address = s.urls["SEQCAST_DASK_ADDRESS"]
    params = load_params()
    jobs = generated_jobs(8, ["naive", "arima"], params, length=200)
    uninterrupted = _scores(run_jobs(jobs, params, 1))
    with temporary_settings({PREFECT_API_URL: s.urls["PREFECT_API_URL"]}):  # the task runs report to the stack's
        results = run_jobs(jobs, params, 1, address)
        done = [next(results)]
        with distributed.Client(address, timeout=60) as client:
            busy = {w: keys for w, keys in client.processing().items() if keys}
            pids = client.run(os.getpid)  # worker address -> its process
            assert busy, "no job was running when the worker was to be killed"
            victim = next(iter(busy))
            os.kill(pids[victim], signal.SIGKILL)
            done += list(results)
    assert len(done) == len(jobs) and _scores(done) == uninterrupted
    stk.wait_for_workers(address, stk.DASK_WORKERS, timeout=300)  # the nanny started a new worker


def _task_runs(s: stk.Stack, of, n: int, within: float = 120) -> list[str]:
    """The names of the stack's recorded task runs holding ``of`` (one string or several), once there are ``n``
    (events arrive late)."""
    wanted = [of] if isinstance(of, str) else list(of)
    names, waited = [], time.time() + within
    while len(names) < n and time.time() < waited:
        names = [x for x in stk.psql(s, "prefect", "SELECT name FROM task_run").splitlines()
                 if any(w in x for w in wanted)]
        time.sleep(0 if len(names) >= n else 3)
    return names


def test_the_task_runs_reach_the_callers_prefect_api_whatever_the_workers_reported_to_before(stack):
    """A worker's Prefect events client is one per process, bound to the first API it reported to: batches of a
    caller without an API (a temporary server, gone after its run) first, then of the stack's user."""
    import distributed

    from flows.scale import generated_jobs
    from seqcast.config import load_params
    from tasks.executor import batch_sizes
    from tasks.jobs import run_jobs

    def _events_api() -> list[str]:  # in a Dask worker (a local function: sent by value): where its events go
        from prefect.events.worker import EventsWorker

        return [w._client._api_url for w in list(EventsWorker._instances.values())
                if isinstance(w, EventsWorker) and not w._stopped and getattr(w, "_client", None) is not None]

    s, _, _ = stack
    address, params = s.urls["SEQCAST_DASK_ADDRESS"], load_params()
    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # no API: the executor starts its own
        assert len(list(run_jobs(generated_jobs(8, ["naive"], params, length=120), params, 1, address))) == 8
    with distributed.Client(address, timeout=60) as client:
        bound = client.run(_events_api)
    assert len({u for urls in bound.values() for u in urls} - {s.urls["PREFECT_API_URL"]}) >= 1, bound
    jobs = generated_jobs(6, ["drift"], params, length=120)
    with temporary_settings({PREFECT_API_URL: s.urls["PREFECT_API_URL"]}):
        assert len(list(run_jobs(jobs, params, 1, address))) == 6
    batches = _task_runs(s, " of 6 · drift", len(batch_sizes(6, stk.DASK_WORKERS)))
    assert len(batches) == len(batch_sizes(6, stk.DASK_WORKERS)), batches
    with distributed.Client(address, timeout=60) as client:
        assert all(urls == [s.urls["PREFECT_API_URL"]] for urls in client.run(_events_api).values())


def test_a_bounded_load_on_the_tracking_server_loses_nothing(stack):
    from benchmarks.stack_load import load

    s, _, _ = stack
    out = load(s.urls["MLFLOW_TRACKING_URI"], clients=4, seconds=10)
    assert out["finished_clients"] == 4 and out["requests"] > 0
    assert out["errors"] == 0 and out["lost"] == 0, out


def _runs(uri: str, dataset: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(f"seqcast-{dataset}")
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


def test_two_runs_at_once_against_the_stack_survive_an_mlflow_restart(stack, tmp_path, mirror):
    """Two `seqcast run` of different datasets at once against the one tracking and Prefect
    server, the MLflow server restarted while they log: both complete (the client retries; a run
    that gave up says so and a second `seqcast run` completes it); every model has exactly one
    finished run under its dataset's last backtest, the champion alias points at one of them,
    nothing half-logged was promoted, and it all lives in PostgreSQL."""
    from mlflow import MlflowClient

    s, _, _ = stack
    uri = s.urls["MLFLOW_TRACKING_URI"]
    work = {ds: copy_project(tmp_path / ds, CHEAP) for ds in ("market", "pm25")}
    envs = {ds: user_env(s, ws, mirror) for ds, ws in work.items()}
    procs = {ds: subprocess.Popen([SEQCAST, "run", "--targets", f"promote@{ds}"], cwd=ws, env=envs[ds],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for ds, ws in work.items()}
    deadline = time.time() + 1500
    while time.time() < deadline and all(p.poll() is None for p in procs.values()):
        if any(_runs(uri, ds) for ds in work):
            break
        time.sleep(2)
    assert any(_runs(uri, ds) for ds in work), "no run reached the tracking server"
    restart_env = {**os.environ, "SEQCAST_HOME": str(ROOT)}
    assert seqcast(["stack", "down", "--dir", str(s.dir), "--service", "mlflow"], restart_env).returncode == 0
    time.sleep(3)  # requests in flight meet a closed port
    assert seqcast(["stack", "up", "--dir", str(s.dir)], restart_env, timeout=600).returncode == 0
    outputs = {ds: p.communicate(timeout=max(60, deadline - time.time()))[0] for ds, p in procs.items()}
    for ds, proc in procs.items():
        if proc.returncode != 0:  # gave up during the restart: a clear message, then the same command completes it
            assert "mlflow" in outputs[ds].lower(), outputs[ds][-3000:]
            again = seqcast(["run", "--targets", f"promote@{ds}"], envs[ds], cwd=work[ds], timeout=1500)
            assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    client = MlflowClient(uri)
    for ds in work:
        runs = _runs(uri, ds)
        parents = [r for r in runs if r.data.tags.get("model") == "leaderboard" and r.info.status == "FINISHED"]
        last = max(parents, key=lambda r: r.info.start_time)
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == last.info.run_id]
        assert sorted(r.data.tags["model"] for r in children) == ["drift", "naive"], outputs[ds][-2000:]
        assert {r.info.status for r in children} == {"FINISHED"}
        assert not [r for r in runs if r.info.status == "RUNNING"]
        champion = client.get_model_version_by_alias(f"seqcast-{ds}", "champion")
        source = client.get_run(champion.run_id)
        assert source.info.status == "FINISHED" and source.data.tags["model"] in {"naive", "drift"}
    in_pg = stk.psql(s, "mlflow", "SELECT count(*) FROM runs WHERE status = 'FINISHED'")
    assert int(in_pg) >= 6
    aliases = stk.psql(s, "mlflow", "SELECT name FROM registered_model_aliases WHERE alias = 'champion'").split()
    assert {"seqcast-market", "seqcast-pm25"} <= set(aliases)
    flows = stk.psql(s, "prefect", "SELECT f.name FROM flow_run r JOIN flow f ON f.id = r.flow_id "
                                   "WHERE r.state_type = 'COMPLETED'").split()
    assert {"backtest", "promote"} <= set(flows)
    # the backtest jobs ran in batches, Prefect task runs on the stack's Dask cluster: the workers report
    # them as events, which the server writes to its tables a little later (polled)
    for ds, ws in work.items():  # a batch is named after its first job: a model on one of the dataset's series
        series = json.loads((ws / "reports" / "backtest" / f"{ds}.json").read_text())
        assert _task_runs(s, [f" · {m} · {x}" for x in series
                                 for m in CHEAP["datasets"][ds]["models"]["run"]], 1), ds


def test_postgres_down_stops_seqcast_run_before_any_training(stack, tmp_path, mirror):
    s, _, env = stack
    ws = copy_project(tmp_path / "project", CHEAP)
    lock = (ws / "dvc.lock").read_text()
    assert seqcast(["stack", "down", "--dir", str(s.dir), "--service", "postgres"], env).returncode == 0
    try:
        started = time.time()
        out = seqcast(["run", "--targets", "backtest@market"], user_env(s, ws, mirror), cwd=ws, timeout=600)
        assert out.returncode == 4, out.stdout[-2000:] + out.stderr[-2000:]
        assert "backend store" in out.stderr and f"port {s.ports['postgres']}" in out.stderr
        assert "nothing was trained" in out.stderr and "Traceback" not in out.stderr
        assert "Running stage" not in out.stdout and time.time() - started < 300
        assert (ws / "dvc.lock").read_text() == lock and not (ws / "mlflow.db").exists()  # no stage ran
    finally:
        up = seqcast(["stack", "up", "--dir", str(s.dir)], env, timeout=600)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    assert seqcast(["stack", "status", "--dir", str(s.dir)], env).returncode == 0
