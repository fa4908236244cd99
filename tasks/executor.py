"""One way to run many independent jobs: in this process, in local processes, or on a Dask cluster.

:func:`run` takes a module-level function and a list of picklable items and yields
``(item, result)`` as each job finishes, whatever an item holds:

- no cluster, ``workers`` 1: in this process, in order (one BLAS thread: small problems);
- no cluster, ``workers`` k > 1: k spawned processes, one thread each (no oversubscription);
- a cluster (``address``, or ``SEQCAST_DASK_ADDRESS``, e.g. ``tcp://127.0.0.1:8786``): each
  item is a Prefect task run (``job``) submitted through prefect-dask's ``DaskTaskRunner``:
  its state is in the Prefect UI, a job that fails on an error of the environment (a lost
  connection, a full disk) is retried by Prefect, and the jobs of a worker that dies are
  rescheduled by the Dask scheduler on the others.

Results come back as the function returns them (make them plain data: Dask and the process
pool pickle them). The caller stays the only process that writes anywhere (MLflow, files).
Every Dask worker needs this project importable and ``PREFECT_API_URL`` reachable: the task
runs report to the caller's Prefect API.
"""

from __future__ import annotations

import contextlib
import contextvars
import multiprocessing as mp
import os
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
        label: Callable[[Item], str] = str) -> Iterator[tuple[Item, Any]]:
    """``(item, fn(item))`` as each job finishes; ``label`` names a job's Prefect task run."""
    items = list(items)
    address = cluster_address(address)
    if address:
        yield from _on_cluster(fn, items, address, label)
    elif workers <= 1 or len(items) <= 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):  # small problems: one BLAS thread never spins idle
            for item in items:
                yield item, fn(item)
    else:
        yield from _in_processes(fn, items, workers)


def _one_thread() -> None:
    """Each worker owns one core: BLAS and OpenMP pools of one thread (no oversubscription)."""
    from threadpoolctl import threadpool_limits

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


def _transient(task, task_run, state) -> bool:
    """Retry a job only for an error of its environment; the job's own errors are deterministic."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, (OSError, MemoryError))


@task(name="job", task_run_name="{label}", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=_transient)
def job(fn: Callable[[Any], Any], item: Any, label: str) -> Any:
    """One item on a Dask worker, with one thread per BLAS/OpenMP pool as in the local processes."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return fn(item)


def _on_cluster(fn, items: list, address: str, label) -> Iterator[tuple[Any, Any]]:
    import distributed
    from prefect_dask import DaskTaskRunner

    with prefect_api(), DaskTaskRunner(address=address) as runner:
        futures = {}
        for item in items:
            future = runner.submit(job, {"fn": fn, "item": item, "label": label(item)})
            futures[future.wrapped_future] = (item, future)
        for done in distributed.as_completed(list(futures), loop=runner.client.loop):
            item, future = futures.pop(done)
            yield item, future.result()


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """A Prefect API the Dask workers can reach: the one configured, else a temporary server
    started here for the duration (without one, every worker process would start its own)."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    url = os.environ.get("PREFECT_API_URL") or get_current_settings().api.url
    if url:
        yield url
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start(timeout=180)
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        server.stop()
