"""Backtest jobs — one (series, model) pair each — run serially or side by side in processes.

The unit of work is :func:`run_job`: build the model from params.yaml and evaluate it on
the series' protocol (a plain function, so a process pool can run it). :func:`run_jobs`
yields results as they finish; the caller (the backtest flow, the benchmark) logs them,
so MLflow is only ever written from one process.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from seqcast.config import Params
from tasks.backtest import BacktestResult, Protocol, Unscored, calibration_for, run_model
from tasks.series import build_forecaster


@dataclass(frozen=True)
class Job:
    protocol: Protocol
    model: str
    verdict: dict | None  # the stationarity verdict of the series (models that use d)
    calibrate: bool = False  # check (and fix) its intervals on the validation slice (the reference series)


def run_job(job: Job, params: Params) -> BacktestResult | Unscored:
    """One model on one series; a model that does not apply or fails comes back as an Unscored."""
    calibration = calibration_for(params, job.protocol.dataset) if job.calibrate else None
    return run_model(lambda name: build_forecaster(name, job.protocol, params, job.verdict), job.model, job.protocol,
                     calibration, params.backtest.on_model_error)


def _one_thread() -> None:
    """Each worker owns one core: BLAS and OpenMP pools of one thread (no oversubscription)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def run_jobs(jobs: list[Job], params: Params, workers: int) -> Iterator[tuple[Job, BacktestResult]]:
    """``(job, result)`` as each job finishes; ``workers`` 1 runs them in this process, in order."""
    if workers <= 1 or len(jobs) <= 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):  # small problems: one BLAS thread never spins idle
            for job in jobs:
                yield job, run_job(job, params)
        return
    # spawn, not fork: the parent holds Prefect's threads and an open MLflow store
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_one_thread) as pool:
        futures = {pool.submit(run_job, job, params): job for job in jobs}
        for future in as_completed(futures):
            yield futures[future], future.result()
