"""Many series through the one executor: 1 local worker, 2 local workers and a Dask cluster, in one run.

    seqcast bench scale [--n 1000] [--models naive ets arima] [--round 100] [--serial-every 5]
                        [--address tcp://host:8786]

The backtest's own jobs (tasks/jobs.py; flows/scale.py builds them): ``--n`` generated series
(length ``--length``) x ``--models``, each model configured by params.yaml, on the daily
protocol P2. Unless ``--address`` names a cluster, a ``dask scheduler`` and ``dask worker
--nworkers 2 --nthreads 1`` are started on 127.0.0.1 (and a temporary Prefect API when
``PREFECT_API_URL`` is unset), so each cluster job is a Prefect task run on Dask.

The series are cut into rounds of ``--round`` series; each round runs through every
executor, the order rotating from round to round, so that the load of a shared machine
falls on all of them alike (1 local worker only every ``--serial-every``-th round: it is
the slow one; its jobs/s is measured on those rounds). A job times itself inside the
worker (the compute); the orchestration overhead per job is ``(workers x wall - compute) /
jobs``: submission, transfer of the job and of its plain-data result, the Prefect task run,
idle workers at the end of a round. The metrics of every job must be identical on every
executor. On the cluster the jobs go in batches (tasks/executor.py: one Prefect task run
per batch); the orchestration probe also runs its jobs one task run each, as a reference.
Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from tasks.jobs import Job, run_job

LOCAL1, LOCAL2, CLUSTER = "local, 1 worker", "local, 2 workers", "dask, 2 workers"
PER_JOB = "dask, a task run per job"  # the probe only: batches of one job, as a reference


def timed_job(job: Job, params):
    """One backtest job and the seconds it took inside its worker, one thread per BLAS/OpenMP pool
    on every executor (the local processes and the cluster's batches set it too; in this process
    the executor limits BLAS only)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        t0 = time.perf_counter()
        result = run_job(job, params)
        return result, time.perf_counter() - t0


@contextlib.contextmanager
def loopback_cluster(workers: int, log_dir: Path):
    """A ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, each worker one thread."""
    from seqcast import stack

    ports = stack.free_ports(2)
    env = stack.worker_env(stack.project_root())
    procs = []
    try:
        procs.append(stack.spawn([stack.bin_path("dask"), "scheduler", "--host", "127.0.0.1", "--port",
                                  str(ports[0]), "--dashboard-address", f"127.0.0.1:{ports[1]}"],
                                 log_dir / "scheduler.log", env))
        address = f"tcp://127.0.0.1:{ports[0]}"
        procs.append(stack.spawn([stack.bin_path("dask"), "worker", address, "--nworkers", str(workers),
                                  "--nthreads", "1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                                  "--host", "127.0.0.1"],
                                 log_dir / "workers.log", env))
        stack.wait_for_workers(address, workers, timeout=300)
        yield address
    finally:
        for proc in reversed(procs):
            stack.terminate(proc.pid)


def rounds(jobs: list[Job], size: int) -> list[list[Job]]:
    series = list(dict.fromkeys(j.protocol.unique_id for j in jobs))
    groups = [set(series[i:i + size]) for i in range(0, len(series), size)]
    return [[j for j in jobs if j.protocol.unique_id in group] for group in groups]


def run_round(jobs: list[Job], params, workers: int, address: str | None, batch: int | None = None
              ) -> tuple[float, float, dict]:
    from tasks import executor
    from tasks.jobs import label

    fn = functools.partial(timed_job, params=params)
    t0 = time.perf_counter()
    compute, metrics = 0.0, {}
    for job, (result, seconds) in executor.run(fn, jobs, workers, address, label, batch):
        compute += seconds
        metrics[(job.protocol.unique_id, job.model)] = result.metrics
    return time.perf_counter() - t0, compute, metrics


def main(argv: list[str] | None = None) -> int:
    from flows.scale import generated_jobs
    from seqcast.config import load_params
    from seqcast.env import configure
    from tasks.executor import local_processes, prefect_api

    configure()
    parser = argparse.ArgumentParser(prog="seqcast bench scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--models", nargs="+", default=["naive", "ets", "arima"])
    parser.add_argument("--length", type=int, default=400)
    parser.add_argument("--round", type=int, default=100, help="series per round")
    parser.add_argument("--serial-every", type=int, default=5, help="1 local worker on every k-th round only")
    parser.add_argument("--address", help="an existing Dask scheduler (its workers' count: --cluster-workers)")
    parser.add_argument("--cluster-workers", type=int, default=2)
    parser.add_argument("--probe", type=int, default=200, help="jobs of --probe-model timing the orchestration alone")
    parser.add_argument("--probe-model", default="naive")
    args = parser.parse_args(argv)
    params = load_params()
    t0 = time.perf_counter()
    jobs = generated_jobs(args.n, args.models, params, args.length)
    plan_s = time.perf_counter() - t0
    print(f"{len(jobs)} jobs ({args.n} series x {', '.join(args.models)}) planned in {plan_s:.1f}s", flush=True)
    totals = {name: {"wall": 0.0, "compute": 0.0, "jobs": 0} for name in (LOCAL1, LOCAL2, CLUSTER)}
    workers = {LOCAL1: 1, LOCAL2: 2, CLUSTER: args.cluster_workers}
    mismatches = 0
    probe = {name: {"wall": 0.0, "compute": 0.0, "jobs": 0} for name in (*totals, PER_JOB)}
    workers[PER_JOB] = args.cluster_workers
    probe_jobs = [j for j in jobs if j.model == args.probe_model][:args.probe]
    with tempfile.TemporaryDirectory() as tmp, prefect_api() as api, contextlib.ExitStack() as stack_:
        os.environ["PREFECT_API_URL"] = api  # the cluster's workers report there too
        address = args.address or stack_.enter_context(loopback_cluster(args.cluster_workers, Path(tmp)))
        t_pool = time.perf_counter()
        stack_.enter_context(local_processes(2))  # started once, as the cluster's workers are
        warm = rounds(jobs, 2)[0]
        run_round(warm, params, 2, None)  # imports and a first fit in every process
        pool_start_s = time.perf_counter() - t_pool
        run_round(warm, params, args.cluster_workers, address)

        def measure(name: str, part: list[Job], into: dict) -> dict:
            wall, compute, metrics = run_round(part, params, workers[name],
                                               address if name in (CLUSTER, PER_JOB) else None,
                                               1 if name == PER_JOB else None)
            into[name]["wall"] += wall
            into[name]["compute"] += compute
            into[name]["jobs"] += len(part)
            return {k: {m: "nan" if v != v else v for m, v in row.items() if "seconds" not in m}  # NaN == NaN here
                    for k, row in metrics.items()}

        for name in (LOCAL1, LOCAL2, CLUSTER, PER_JOB):  # orchestration alone: jobs that take a millisecond
            measure(name, probe_jobs, probe)
        for i, part in enumerate(rounds(jobs, args.round)):
            names = [LOCAL2, CLUSTER] + ([LOCAL1] if i % args.serial_every == 0 else [])
            names = names[i % len(names):] + names[:i % len(names)]
            seen = {name: measure(name, part, totals) for name in names}
            first = next(iter(seen.values()))
            mismatches += sum(m != first for m in seen.values())
            line = "  ".join(f"{n} {seen_rate(totals[n]):.2f} jobs/s" for n in names)
            print(f"round {i + 1}: {len(part)} jobs  {line}", flush=True)
        for name in (PER_JOB, CLUSTER, LOCAL2, LOCAL1):
            measure(name, probe_jobs, probe)
    rows = []
    base = seen_rate(totals[LOCAL1])
    for name, t in totals.items():
        rate = seen_rate(t)
        overhead = (workers[name] * t["wall"] - t["compute"]) / t["jobs"] if t["jobs"] else float("nan")
        p = probe[name]
        probe_ms = 1000 * (workers[name] * p["wall"] - p["compute"]) / p["jobs"]
        rows.append({"executor": name, "jobs": t["jobs"], "wall_s": round(t["wall"], 1), "jobs_per_s": round(rate, 3),
                     "compute_ms_per_job": round(1000 * t["compute"] / max(t["jobs"], 1), 1),
                     "overhead_ms_per_job": round(1000 * overhead, 1), "speedup_vs_1": round(rate / base, 2),
                     "probe_overhead_ms_per_job": round(probe_ms, 1)})
    print(f"\n{'executor':18} {'jobs':>6} {'wall s':>8} {'jobs/s':>8} {'fit ms/job':>11} {'overhead ms/job':>16} "
          f"{'speed-up':>9} {'overhead, ' + args.probe_model + ' jobs':>22}")
    for r in rows:
        print(f"{r['executor']:18} {r['jobs']:>6} {r['wall_s']:>8.1f} {r['jobs_per_s']:>8.3f} "
              f"{r['compute_ms_per_job']:>11.1f} {r['overhead_ms_per_job']:>16.1f} {r['speedup_vs_1']:>8.2f}x "
              f"{r['probe_overhead_ms_per_job']:>19.1f} ms")
    p = probe[PER_JOB]
    per_job_ms = 1000 * (workers[PER_JOB] * p["wall"] - p["compute"]) / p["jobs"]
    print(f"{PER_JOB:18} overhead, {args.probe_model} jobs: {per_job_ms:.1f} ms (batches of one job)")
    ratio = rows[2]["jobs_per_s"] / rows[1]["jobs_per_s"]
    per_worker_hour = 3600 * rows[2]["jobs_per_s"] / args.cluster_workers / len(args.models)
    print(f"cluster / local pool at 2 workers: {ratio:.3f}; local pool start {pool_start_s:.1f}s per call; "
          f"metrics identical on every executor: {mismatches == 0}")
    print(f"one cluster worker: {per_worker_hour:.0f} series/h x ({', '.join(args.models)})")
    print(json.dumps({"benchmark": "scale", "n_series": args.n, "models": args.models, "length": args.length,
                      "round": args.round, "serial_every": args.serial_every, "probe": len(probe_jobs), "rows": rows,
                      "cluster_over_local_pool": round(ratio, 3), "pool_start_s": round(pool_start_s, 2),
                      "probe_overhead_ms_per_job_one_job_batches": round(per_job_ms, 1),
                      "series_per_hour_per_worker": round(per_worker_hour), "identical_metrics": mismatches == 0,
                      "plan_s": round(plan_s, 1), "cpu_count": os.cpu_count(),
                      "load_avg_1m": round(os.getloadavg()[0], 2), "python": sys.version.split()[0]}))
    return 0 if mismatches == 0 else 1


def seen_rate(t: dict) -> float:
    return t["jobs"] / t["wall"] if t["wall"] else float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
