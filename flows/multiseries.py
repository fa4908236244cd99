"""Multi-series flow: every mirror series on its protocol, serially and in parallel.

``python -m flows.multiseries --dataset market`` builds ``data/multiseries/market.parquet``
from the mirror (ingest parsers), runs the models of ``multiseries.<dataset>`` in
params.yaml on every series (P2 per index, P1 per PM2.5 station), once in this
process and once over a process pool (``multiseries.workers``), checks that both
give the same numbers, and writes ``reports/multiseries/<dataset>.json`` (per-series
metrics, mean MASE per model, serial and parallel wall time) and an MLflow run with the
same content.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor

import mlflow
import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast import tracking
from seqcast.config import load_params
from seqcast.paths import data_mirror
from tasks import multiseries

TASKS = {"market": ["P2a", "P2b"], "pm25": ["P1a", "P1b"]}


@task(name="build-multiseries-table", cache_policy=NO_CACHE)
def build_table(dataset: str) -> str:
    params = load_params()
    table = multiseries.build_table(dataset, data_mirror(), params)
    path = params.path("tidy").parent / "multiseries" / f"{dataset}.parquet"  # data/multiseries/
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path, index=False)
    return str(path)


def _run_one(args: tuple) -> dict:
    series, dataset, models = args
    return multiseries.run_series(series, dataset, models, load_params())


@task(name="run-serial", cache_policy=NO_CACHE, timeout_seconds=3600)
def run_serial(parts: list[pd.DataFrame], dataset: str, models: list[str]) -> tuple[list[dict], float]:
    t0 = time.perf_counter()
    out = [_run_one((p, dataset, models)) for p in parts]
    return out, time.perf_counter() - t0


@task(name="run-parallel", cache_policy=NO_CACHE, timeout_seconds=3600)
def run_parallel(parts: list[pd.DataFrame], dataset: str, models: list[str], workers: int) -> tuple[list[dict], float]:
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:  # no fork under Prefect threads
        out = list(pool.map(_run_one, [(p, dataset, models) for p in parts]))
    return out, time.perf_counter() - t0


def _max_rel_diff(a: list[dict], b: list[dict], key: str) -> float:
    """Largest relative difference of ``key`` between two runs of the same work (optimisers
    threaded through BLAS may differ in the last digits between processes)."""
    worst = 0.0
    for ra, rb in zip(a, b):
        for m, vals in ra["models"].items():
            x, y = vals.get(key), rb["models"].get(m, {}).get(key)
            if isinstance(x, float) and isinstance(y, float) and np.isfinite(x) and np.isfinite(y):
                worst = max(worst, abs(x - y) / max(abs(x), 1e-12))
    return worst


@flow(name="multiseries", log_prints=True)
def multiseries_flow(dataset: str = "market", models: list[str] | None = None, mode: str = "both") -> dict:
    """``mode``: ``serial``, ``parallel`` or ``both`` (the wall-time comparison)."""
    logger = get_run_logger()
    params = load_params()
    models = list(models or getattr(params.multiseries, dataset))
    workers = params.multiseries.workers
    path = build_table(dataset)
    parts = multiseries.split_series(pd.read_parquet(path))
    logger.info("%s: %d series, models %s", dataset, len(parts), models)
    seconds, results = {}, None
    if mode in ("serial", "both"):
        results, seconds["serial"] = run_serial(parts, dataset, models)
    if mode in ("parallel", "both"):
        par, seconds["parallel"] = run_parallel(parts, dataset, models, workers)
        if results is not None:
            diff = _max_rel_diff(results, par, f"{TASKS[dataset][0]}_mase")
            seconds["max_rel_diff_serial_vs_parallel"] = diff
            if diff > 1e-3:
                logger.warning("serial and parallel MASE differ by up to %.2g (relative)", diff)
        results = results or par
    summary = multiseries.summarise(results, TASKS[dataset])
    summary.update({"seconds": seconds, "workers": workers, "models": models, "n_series": len(parts)})
    for m, vals in summary["mean"].items():
        logger.info("%s %-15s mean %s", dataset, m, {k: (round(v, 3) if isinstance(v, float) else v)
                                                      for k, v in vals.items()})
    logger.info("wall time and serial/parallel agreement %s", seconds)
    out = params.path("reports", "multiseries", f"{dataset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, sort_keys=True, default=float) + "\n")
    with tracking.model_run(dataset, "multiseries", "report", run_name=f"multiseries · {dataset}"):
        tracking.log_data_version(pd.read_parquet(path), path, name=f"{dataset}-multiseries")
        mlflow.log_params({"models": ",".join(models), "n_series": len(parts), "workers": workers})
        mlflow.log_metrics({(k if k.startswith("max") else f"seconds_{k}"): v for k, v in seconds.items()})
        mlflow.log_metrics({f"mean_{t}.{m}": v for m, vals in summary["mean"].items()
                            for t, v in vals.items() if t.endswith("_mase") and v is not None})
        rows = [{"series": uid, "model": m, **{k: v for k, v in vals.items() if not isinstance(v, str)}}
                for uid, ms in summary["per_series"].items() for m, vals in ms.items()]
        mlflow.log_table(pd.DataFrame(rows), "per_series.json")
        mlflow.log_dict(summary, "multiseries.json")
    return summary


def main(argv: list[str] | None = None) -> None:
    from seqcast.cli import flow_parser

    parser = flow_parser(__doc__)
    parser.add_argument("--models", nargs="*", help="override multiseries.<dataset> of params.yaml")
    parser.add_argument("--mode", choices=["serial", "parallel", "both"], default="both")
    args = parser.parse_args(argv)
    multiseries_flow(args.dataset, args.models, args.mode)


if __name__ == "__main__":
    main()
