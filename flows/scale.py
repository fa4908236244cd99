"""Many series at once: fitting mapped over Prefect tasks on a Dask cluster (prefect-dask).

Each task fits one chunk of series with a registered forecaster (default ``arima``, its
configuration from ``params.yaml``) and forecasts ``h`` steps. The task runner is a
``prefect_dask.DaskTaskRunner``: a local cluster (one single-threaded worker process per
core) by default, or an existing Dask scheduler by ``address`` for many machines
(``dask scheduler`` on one host, ``dask worker tcp://<host>:8786`` on each of the others,
every worker with this project installed). Series are chunked (``chunk_size``) so that the
per-task orchestration cost stays small against the fitting.

Sources: ``generated`` (a reproducible load test: random walks with AR(1) increments,
a weekly cycle and noise) or a dataset's clean table (``market``: every configured index,
``pm25``: every configured station).

    python -m flows.scale --source generated --n 200 [--address tcp://10.0.0.5:8786]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import time

import numpy as np
from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

def protocol_season_and_h(source: str) -> tuple[int, int]:
    """The season and horizon of the source's protocol in params.yaml (generated series are daily-like: P2)."""
    from seqcast.config import load_params

    bt = load_params().backtest
    return (bt.p1.season, bt.p1.horizon) if source == "pm25" else (bt.p2.season, bt.p2.horizon)


def generated_series(n: int, length: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` reproducible series: level 100 + random walk with AR(1) increments + weekly cycle."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        phi, sigma = rng.uniform(-0.5, 0.5), rng.uniform(0.5, 2.0)
        eps = rng.normal(0.0, sigma, length)
        inc = np.empty(length)
        inc[0] = eps[0]
        for t in range(1, length):
            inc[t] = phi * inc[t - 1] + eps[t]
        cycle = rng.uniform(0, 2) * np.sin(2 * np.pi * np.arange(length) / 5)
        out[f"gen_{i:05d}"] = 100.0 + np.cumsum(inc) + cycle
    return out


def dataset_series(dataset: str) -> dict[str, np.ndarray]:
    """Every series of a dataset's clean table (model inputs: gap-filled PM2.5, carried forward)."""
    import pandas as pd

    from seqcast.config import load_params

    clean = pd.read_parquet(load_params().path("clean", f"{dataset}.parquet"))
    col = "y_filled" if "y_filled" in clean else "y"
    return {str(uid): g[col].astype(float).ffill().bfill().to_numpy() for uid, g in clean.groupby("unique_id")}


def fit_forecast(model: str, config: dict, season: int, y: np.ndarray, h: int) -> np.ndarray:
    """Fit one series, forecast ``h`` steps; returns the mean forecast."""
    from models import registry

    forecaster = registry.create(model, season=season, **config)
    return forecaster.fit(y).predict(h, (95,)).mean[0]


def fit_chunk(model: str, config: dict, season: int, chunk: dict[str, np.ndarray], h: int) -> dict[str, list]:
    return {uid: fit_forecast(model, config, season, y, h).tolist() for uid, y in chunk.items()}


@task(name="fit-chunk", cache_policy=NO_CACHE, timeout_seconds=3600, retries=1)
def fit_chunk_task(model: str, config: dict, season: int, chunk: dict[str, np.ndarray], h: int) -> dict[str, list]:
    return fit_chunk(model, config, season, chunk, h)


def model_config(model: str, overrides: dict | None = None) -> dict:
    """The model's section of params.yaml (+ ``overrides``); generated series are integrated (d = 1)."""
    from models import registry
    from seqcast.config import load_params

    config = {**load_params().models.config_for(model), **(overrides or {})}
    if registry.get(model).uses_differencing_order:
        config.setdefault("d", 1)
    return config


def chunks(series: dict[str, np.ndarray], size: int) -> list[dict[str, np.ndarray]]:
    items = list(series.items())
    return [dict(items[i:i + size]) for i in range(0, len(items), size)]


def default_chunk_size(n: int, workers: int) -> int:
    return max(1, math.ceil(n / (4 * workers)))  # ~4 tasks per worker: balance vs orchestration cost


def serial_fit(series: dict[str, np.ndarray], model: str = "arima", h: int | None = None,
               season: int | None = None, overrides: dict | None = None) -> dict[str, list]:
    """The baseline: one process, one series after the other, no orchestration (season and h:
    the P2 protocol's unless given)."""
    p_season, p_h = protocol_season_and_h("generated")
    return fit_chunk(model, model_config(model, overrides), season or p_season, series, h or p_h)


def task_runner(address: str | None, n_workers: int | None):
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": n_workers or os.cpu_count() or 1, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


def scale_flow(source: str = "generated", n: int = 100, length: int = 400, model: str = "arima", h: int | None = None,
               chunk_size: int | None = None, address: str | None = None, n_workers: int | None = None,
               seed: int = 0, overrides: dict | None = None) -> dict:
    """Fit every series of ``source`` in parallel; returns forecasts and timings.

    Built per call so the task runner (local cluster or ``address``) is a parameter;
    run it under ``if __name__ == "__main__":`` in scripts (Dask spawns processes).
    """
    workers = n_workers or os.cpu_count() or 1
    season, p_h = protocol_season_and_h(source)
    h = h or p_h

    @flow(name="scale", log_prints=True, task_runner=task_runner(address, workers))
    def _scale(source: str, n: int) -> dict:
        logger = get_run_logger()
        series = generated_series(n, length, seed) if source == "generated" else dataset_series(source)
        config = model_config(model, overrides)
        size = chunk_size or default_chunk_size(len(series), workers)
        t0 = time.perf_counter()
        futures = fit_chunk_task.map(unmapped(model), unmapped(config), unmapped(season),
                                     chunks(series, size), unmapped(h))
        forecasts: dict[str, list] = {}
        for part in futures.result():
            forecasts.update(part)
        seconds = time.perf_counter() - t0
        logger.info("%s: %d series, %d tasks of <= %d, %.1fs (%s)", source, len(series), len(futures), size,
                    seconds, address or f"local cluster, {workers} workers")
        return {"forecasts": forecasts, "seconds": seconds, "tasks": len(futures), "chunk_size": size}

    with _shared_api():
        t0 = time.perf_counter()
        out = _scale(source, n)
        out["seconds_with_cluster_start"] = time.perf_counter() - t0
    return out


@contextlib.contextmanager
def _shared_api():
    """Without ``PREFECT_API_URL`` every Dask worker process would start its own temporary
    Prefect server: start one here and hand its URL to the flow and to the workers (env)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    url = os.environ.get("PREFECT_API_URL") or get_current_settings().api.url
    if url:  # a server already (a deployment's, or a test harness's): the workers use it too
        previous = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = url
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("PREFECT_API_URL", None)
        return

    server = SubprocessASGIServer()
    server.start(timeout=120)
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def main(argv: list[str] | None = None) -> None:
    from seqcast.env import configure

    configure()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="generated", choices=["generated", "market", "pm25"])
    parser.add_argument("--n", type=int, default=100, help="generated series")
    parser.add_argument("--length", type=int, default=400)
    parser.add_argument("--model", default="arima")
    parser.add_argument("--h", type=int, default=5)
    parser.add_argument("--chunk-size", type=int)
    parser.add_argument("--address", help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--workers", type=int, help="local cluster size (default: the CPU count)")
    a = parser.parse_args(argv)
    out = scale_flow(a.source, a.n, a.length, a.model, a.h, a.chunk_size, a.address, a.workers)
    print(f"{len(out['forecasts'])} series in {out['seconds']:.1f}s "
          f"({out['seconds_with_cluster_start']:.1f}s with the cluster start), {out['tasks']} tasks")


if __name__ == "__main__":
    main()
