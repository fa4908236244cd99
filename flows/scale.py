"""Many series: the backtest's own jobs over every series of a source, through the one executor.

Each (series, model) is one backtest job (tasks/jobs.py: the model from params.yaml, the
series' protocol, metrics and forecasts back as plain data), run in ``backtest.workers``
local processes or, when ``--address`` / ``SEQCAST_DASK_ADDRESS`` names a Dask scheduler,
as Prefect task runs on that cluster (``dask scheduler`` on one host, ``dask worker
tcp://<host>:8786`` on each of the others, every worker with this project installed and the
Prefect API reachable; ``seqcast stack up`` starts one on this machine).

Sources: ``generated`` (a reproducible load: random walks with AR(1) increments, a weekly
cycle and noise, on business days, judged on the daily protocol P2; the stationarity verdict
of each from the stationarity stage's own tests on its training part) or a dataset whose
clean table the pipeline built (every series of it, on the dataset's protocol, with the
stationarity stage's verdicts). The flow logs one MLflow run: the per-series metrics and the
mean of each metric per model, and writes them to ``reports/scale/<source>.json``.

    python -m flows.scale --source generated --n 200 --models naive ets arima [--address tcp://10.0.0.5:8786]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger

from seqcast.contract import DS, UNIQUE_ID, Y
from tasks.jobs import Job, run_jobs

GENERATED = "generated"


def generated_table(n: int, length: int = 400, seed: int = 0) -> pd.DataFrame:
    """``n`` reproducible series as one long table (``unique_id, ds, y``, business days from
    2020-01-01 UTC): level 100 + random walk with AR(1) increments + a cycle of 5 days."""
    rng = np.random.default_rng(seed)
    ds = pd.bdate_range("2020-01-01", periods=length, tz="UTC")
    frames = []
    for i in range(n):
        phi, sigma = rng.uniform(-0.5, 0.5), rng.uniform(0.5, 2.0)
        eps = rng.normal(0.0, sigma, length)
        inc = np.empty(length)
        inc[0] = eps[0]
        for t in range(1, length):
            inc[t] = phi * inc[t - 1] + eps[t]
        cycle = rng.uniform(0, 2) * np.sin(2 * np.pi * np.arange(length) / 5)
        frames.append(pd.DataFrame({UNIQUE_ID: f"gen_{i:05d}", DS: ds, Y: 100.0 + np.cumsum(inc) + cycle}))
    return pd.concat(frames, ignore_index=True)


def generated_entry():
    """The generated series as a dataset: business days, judged on the daily protocol P2
    (the last 20 % the test part, 1 and 5 steps from every origin, MASE by the naive error)."""
    from seqcast.dataset_config import DatasetParams

    return DatasetParams.model_validate({
        "sources": [{"connector": "file", "path": GENERATED, "time": DS, "target": Y}],
        "data": {"frequency": "B"}, "validation": {}, "cleaning": {}, "models": {},
        "protocol": {"name": "P2", "split": {"train_fraction": 0.8}, "season": 5, "mase_season": 1,
                     "tasks": [{"name": "P2a", "horizon": 1, "directional": True},
                               {"name": "P2b", "horizon": 5, "directional": True}], "baseline": "naive"}})


def generated_jobs(n: int, models: list[str], params, length: int = 400, seed: int = 0) -> list[Job]:
    """The jobs of ``n`` generated series x ``models``: P2 on each, its verdict from the
    stationarity stage's tests on its training part (as the pipeline decides ``d``)."""
    from tasks import stationarity
    from tasks.backtest import build_protocol

    sp = params.stationarity
    entry = generated_entry()
    jobs = []
    for _, part in generated_table(n, length, seed).groupby(UNIQUE_ID, sort=False):
        proto = build_protocol(part.reset_index(drop=True), GENERATED, entry, params.backtest.levels)
        verdict = stationarity.analyse(proto.y_train, alpha=sp.alpha, max_d=sp.max_d, max_points=sp.max_points)
        jobs += [Job(proto, model, verdict) for model in models]
    return jobs


def dataset_jobs(dataset: str, models: list[str], params) -> list[Job]:
    """Every series of a dataset's clean table x ``models``, with the stationarity stage's verdicts."""
    from tasks.series import protocol_for, split_table

    clean = pd.read_parquet(params.path("clean", f"{dataset}.parquet"))
    verdicts = json.loads(params.path("reports", "stationarity", f"{dataset}.json").read_text())
    parts = split_table(clean)
    return [Job(protocol_for(uid, parts, dataset, params), model, verdicts.get(uid))
            for uid in parts for model in models]


def mean_metrics(metrics: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The mean of every metric over the series, per model."""
    rows = [{"model": model, **values} for per_model in metrics.values() for model, values in per_model.items()]
    return {model: {k: float(v) for k, v in group.drop(columns="model").mean().items()}
            for model, group in pd.DataFrame(rows).groupby("model", sort=False)}


@flow(name="scale", log_prints=True)
def scale_flow(source: str = GENERATED, models: list[str] | None = None, n: int = 100, length: int = 400,
               seed: int = 0, address: str | None = None) -> dict:
    """Backtest ``models`` (default ``naive, ets, arima``) on every series of ``source``."""
    from seqcast import atomic, tracking
    from seqcast.config import load_params

    tracking.check_store()
    logger = get_run_logger()
    params = load_params()
    models = models or ["naive", "ets", "arima"]
    if source == GENERATED:
        jobs = generated_jobs(n, models, params, length, seed)
    else:
        jobs = dataset_jobs(source, models, params)
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    t0 = time.perf_counter()
    for job, result in run_jobs(jobs, params, params.backtest.workers, address):
        if not hasattr(result, "metrics"):  # a model that does not apply to the series, or failed on it
            logger.warning("%s %s: %s: %s", job.protocol.unique_id, job.model, result.kind, result.reason)
            continue
        metrics.setdefault(job.protocol.unique_id, {})[job.model] = result.metrics
    seconds = time.perf_counter() - t0
    means = mean_metrics(metrics)
    summary = {"source": source, "n_series": len(metrics), "models": models, "jobs": len(jobs),
               "seconds": round(seconds, 2), "jobs_per_second": round(len(jobs) / seconds, 3),
               "executor": address or "local", "mean": means, "series": metrics}
    with tracking.model_run(source, "leaderboard", "report", run_name=f"scale · {source}",
                            tags={"executor": summary["executor"]}):
        import mlflow

        mlflow.log_params({"n_series": len(metrics), "n_jobs": len(jobs), "models": ",".join(models)})
        mlflow.log_metrics({f"mean_{k}.{model}": v for model, row in means.items() for k, v in row.items()
                            if k.endswith("_mase")})
        mlflow.log_metrics({"seconds": seconds, "jobs_per_second": len(jobs) / seconds})
        mlflow.log_dict(summary, "scale.json")
    atomic.write_text(params.path("reports", "scale", f"{source}.json"), json.dumps(summary, indent=1))
    logger.info("%s: %d series x %d models, %d jobs in %.1fs (%.2f jobs/s, %s)", source, len(metrics), len(models),
                len(jobs), seconds, len(jobs) / seconds, summary["executor"])
    for model, row in means.items():
        tasks = sorted(k for k in row if k.endswith("_mase"))
        logger.info("  %-10s %s", model, "  ".join(f"{k} {row[k]:.3f}" for k in tasks))
    return summary


def main(argv: list[str] | None = None) -> None:
    from seqcast.env import configure

    configure()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=GENERATED, help="'generated' or a dataset whose clean table exists")
    parser.add_argument("--models", nargs="+", default=["naive", "ets", "arima"])
    parser.add_argument("--n", type=int, default=100, help="generated series")
    parser.add_argument("--length", type=int, default=400, help="points per generated series")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--address", help="a Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: SEQCAST_DASK_ADDRESS)")
    a = parser.parse_args(argv)
    scale_flow(a.source, a.models, a.n, a.length, a.seed, a.address)


if __name__ == "__main__":
    main()
