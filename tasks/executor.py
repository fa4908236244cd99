"""One way to run many independent jobs: in this process, in local processes, or on a Dask cluster.

:func:`run` takes a module-level function and a list of picklable items and yields
``(item, result)`` as each job finishes, whatever an item holds:

- no cluster, ``workers`` 1: in this process, in order (one BLAS thread: small problems);
- no cluster, ``workers`` k > 1: k spawned processes, one BLAS/OpenMP thread each (no
  oversubscription);
- a cluster (``address``, or ``SEQCAST_DASK_ADDRESS``, e.g. ``tcp://127.0.0.1:8786``): the
  items go in batches, each batch one Prefect task run (``jobs``) submitted through
  prefect-dask's ``DaskTaskRunner``: its state and a line per job are in the Prefect UI; a
  batch that fails on an error of the environment (a lost connection, a full disk) is
  retried by Prefect (the jobs it had finished are not run again), a job's own error is that
  job's failure, and the batches of a worker that dies are rescheduled by the Dask scheduler
  on the others. A Prefect task run and a Dask round trip cost a few hundred milliseconds
  here, whatever the job: batching divides that by the batch size (:func:`batch_sizes`).

Results come back as the function returns them (make them plain data: Dask and the process
pool pickle them). The caller stays the only process that writes anywhere (MLflow, files).
Every Dask worker needs this project importable and ``PREFECT_API_URL`` reachable: the task
runs report to the caller's Prefect API (:func:`report_to`, whatever API a worker reported to before).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import multiprocessing as mp
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE

Item = TypeVar("Item")
ADDRESS_ENV = "SEQCAST_DASK_ADDRESS"
_POOL: contextvars.ContextVar[tuple[int, ProcessPoolExecutor] | None] = contextvars.ContextVar("pool", default=None)


def cluster_address(address: str | None = None) -> str | None:
    """The Dask scheduler to use: ``address``, else ``SEQCAST_DASK_ADDRESS``, else none (local)."""
    return address or os.environ.get(ADDRESS_ENV) or None


def run(fn: Callable[[Item], Any], items: Iterable[Item], workers: int = 1, address: str | None = None,
        label: Callable[[Item], str] = str, batch: int | None = None) -> Iterator[tuple[Item, Any]]:
    """``(item, fn(item))`` as each job finishes; ``label`` names a job in its Prefect task
    run; ``batch`` fixes the cluster's batch size (default: :func:`batch_sizes`)."""
    items = list(items)
    address = cluster_address(address)
    if address:
        yield from _on_cluster(fn, items, address, label, batch)
    elif workers <= 1 or len(items) <= 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):  # small problems: one BLAS thread never spins idle
            for item in items:
                yield item, fn(item)
    else:
        yield from _in_processes(fn, items, workers)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _one_thread() -> None:
    """Each worker owns one core: BLAS and OpenMP pools of one thread (no oversubscription).
    The variables hold for the libraries this process loads later (OpenBLAS and OpenMP read
    them when they load: the job's first import of statsmodels or torch); ``threadpool_limits``
    for those it has already loaded (a spawned process imports the caller's main module first)."""
    from threadpoolctl import threadpool_limits

    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    threadpool_limits(1)


def _new_pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: the parent holds Prefect's threads and an open MLflow store
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_one_thread)


@contextlib.contextmanager
def local_processes(workers: int) -> Iterator[None]:
    """Keep ``workers`` local processes for every :func:`run` with that many workers inside
    (a caller running many batches pays the processes' start and imports once)."""
    with _new_pool(workers) as pool:
        token = _POOL.set((workers, pool))
        try:
            yield
        finally:
            _POOL.reset(token)


def _in_processes(fn, items: list, workers: int) -> Iterator[tuple[Any, Any]]:
    kept = _POOL.get()
    if kept is not None and kept[0] == workers:
        yield from _submit_all(kept[1], fn, items)
    else:
        with _new_pool(workers) as pool:
            yield from _submit_all(pool, fn, items)


def _submit_all(pool: ProcessPoolExecutor, fn, items: list) -> Iterator[tuple[Any, Any]]:
    futures = {pool.submit(fn, item): item for item in items}
    for future in as_completed(futures):
        yield futures[future], future.result()


def batch_sizes(n: int, workers: int, least: int = 4) -> list[int]:
    """The sizes of the batches ``n`` jobs go in on ``workers`` cluster threads, largest first:
    each batch takes a ``1 / (2 workers)`` share of the jobs not yet in a batch, at least
    ``least`` (guided scheduling). Few, large batches pay the per-task-run cost rarely; the
    small last ones keep every worker busy to the end whatever the jobs' durations."""
    sizes, rest = [], n
    while rest > 0:
        size = min(rest, max(least, math.ceil(rest / (2 * max(workers, 1)))))
        sizes.append(size)
        rest -= size
    return sizes


class JobsFailed(Exception):
    """Jobs of a batch raised errors of their own: ``outcomes`` holds, in the batch's order,
    ``(True, result)`` or ``(False, error)`` for every job (the Prefect task run is Failed,
    not retried: a job's own error is deterministic)."""

    def __init__(self, outcomes: list[tuple[bool, Any]], failed: list[str]):
        super().__init__(outcomes, failed)
        self.outcomes, self.failed = outcomes, failed

    def __str__(self) -> str:
        return f"{len(self.failed)} of {len(self.outcomes)} jobs failed: " + "; ".join(self.failed)

    def __repr__(self) -> str:
        return f"JobsFailed({self})"


def _transient(task, task_run, state) -> bool:
    """Retry a batch only for an error of its environment; the jobs' own errors are deterministic."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, (OSError, MemoryError))


_FINISHED: dict[Any, dict[int, tuple[bool, Any]]] = {}  # task run id -> its jobs done before a retry


@task(name="jobs", task_run_name="{label}", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=_transient)
def jobs(fn: Callable[[Any], Any], items: list, labels: list[str], label: str) -> list[tuple[bool, Any]]:
    """A batch of items on a Dask worker, in order, one thread per BLAS/OpenMP pool as in the
    local processes; a line per job in the task run's log. An error of the environment
    (``OSError``, ``MemoryError``) fails the batch, and Prefect retries it from the first job
    not yet done; a job's own error is kept as its outcome and fails the batch at the end."""
    from prefect import get_run_logger
    from prefect.context import TaskRunContext
    from threadpoolctl import threadpool_limits

    logger = get_run_logger()
    context = TaskRunContext.get()
    run_id = context.task_run.id
    done = _FINISHED.setdefault(run_id, {})
    with threadpool_limits(1):
        for i, (item, name) in enumerate(zip(items, labels)):
            if i in done:
                continue
            t0 = time.perf_counter()
            try:
                done[i] = (True, fn(item))
            except (OSError, MemoryError):
                if context.task_run.run_count > context.task.retries:  # the last try: nothing to keep
                    _FINISHED.pop(run_id, None)
                raise
            except Exception as error:  # noqa: BLE001 - the job's own error: its outcome
                done[i] = (False, error)
                logger.error("%s failed: %s: %s", name, type(error).__name__, error)
                continue
            logger.info("%s done in %.2f s", name, time.perf_counter() - t0)
    _FINISHED.pop(run_id, None)
    outcomes = [done[i] for i in range(len(items))]
    failed = [f"{name}: {type(value).__name__}: {value}" for name, (ok, value) in zip(labels, outcomes) if not ok]
    if failed:
        raise JobsFailed(outcomes, failed)
    return outcomes


def _on_cluster(fn, items: list, address: str, label, batch: int | None) -> Iterator[tuple[Any, Any]]:
    import distributed
    from prefect.settings import get_current_settings
    from prefect_dask import DaskTaskRunner
    from prefect_dask.task_runners import PrefectDaskFuture

    with prefect_api(), DaskTaskRunner(address=address) as runner:
        client = runner.client
        client.run(report_to, get_current_settings().api.url)
        sizes = [batch] * math.ceil(len(items) / batch) if batch else batch_sizes(len(items), _threads(client))
        futures, start = {}, 0
        for size in sizes:
            part = items[start:start + size]
            labels = [label(item) for item in part]
            name = f"jobs {start + 1}-{start + len(part)} of {len(items)} · {labels[0]}"
            # its own key: Dask need not hash the items to name the task
            future = client.submit(jobs, key=f"jobs-{uuid.uuid4().hex}", return_type="state",
                                   parameters={"fn": fn, "items": part, "labels": labels, "label": name})
            futures[future] = (part, PrefectDaskFuture(wrapped_future=future, task_run_id=future.task_run_id))
            start += size
        for done in distributed.as_completed(list(futures), loop=client.loop):
            part, future = futures.pop(done)
            outcomes = future.result(raise_on_failure=False)
            if isinstance(outcomes, JobsFailed):
                outcomes = outcomes.outcomes
            elif isinstance(outcomes, BaseException):  # the batch itself failed (retries spent)
                raise outcomes
            for item, (ok, value) in zip(part, outcomes):
                if not ok:
                    raise value
                yield item, value


def report_to(api_url: str | None) -> int:
    """Run on every Dask worker before a caller's batches. Prefect keeps one events client per
    process, bound to the API of the first task run it reported: a worker that ran the batches of
    another caller (another Prefect server, or the temporary one of a run without an API, gone
    since) would send this caller's task runs there. A client bound to another API than
    ``api_url`` is stopped, so that the next task run opens one to its own; returns how many."""
    from prefect.events.worker import EventsWorker

    want = (api_url or "").rstrip("/")
    stale = [w for w in list(EventsWorker._instances.values())
             if isinstance(w, EventsWorker) and not w._stopped
             and (getattr(getattr(w, "_client", None), "_api_url", None) or want).rstrip("/") != want]
    for w in stale:
        w._stop()  # without waiting: what it still held was the other caller's
    return len(stale)


def _threads(client) -> int:
    """The cluster's threads: how many jobs run at once."""
    return sum(client.nthreads().values()) or 1


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """A Prefect API the Dask workers can reach: the one configured, else a temporary server
    started here for the duration (without one, every worker process would start its own)."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    url = os.environ.get("PREFECT_API_URL") or get_current_settings().api.url
    if url:
        yield url
        return
    import socket

    from prefect.server.api.server import SubprocessASGIServer

    with socket.socket() as sock:  # a port of its own: Prefect keeps one server per port, and the one without
        sock.bind(("127.0.0.1", 0))  # a port is the process's default (a flow's, a test harness's): not ours to stop
        port = sock.getsockname()[1]
    server = SubprocessASGIServer(port=port)
    server.start(timeout=180)
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        server.stop()
