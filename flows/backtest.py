"""Backtest flow: every configured forecaster on its dataset's protocol, logged to MLflow.

For each series: build the protocol (P1 or P2), fit and score each model
(``models.run.<dataset>`` in params.yaml), compare each with the naive baseline by a
Diebold–Mariano test, log one MLflow run per model (params, metrics, forecasts,
forecast-vs-actual plot, the model as a pyfunc) under a parent ``backtest`` run that
holds the leaderboard, and write the DVC metrics and plots files.
``python -m flows.backtest --dataset pm25`` is the DVC stage's command.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models.base import Forecaster
from models.pyfunc import log_forecaster
from seqcast import tracking
from seqcast.config import load_params
from tasks import report
from tasks.backtest import BacktestResult, Protocol, dm_against, evaluate
from tasks.series import build_forecaster, protocols, safe_name


@task(name="fit-and-score", cache_policy=NO_CACHE, timeout_seconds=3600)
def fit_and_score(forecaster: Forecaster, proto: Protocol) -> BacktestResult:
    return evaluate(forecaster, proto)


def log_result(result: BacktestResult, dataset: str, table: Path, clean: pd.DataFrame, sources: dict,
               ) -> str:
    """One MLflow run for one (series, model); returns the run id."""
    proto, model = result.protocol, result.forecaster
    name = safe_name(proto.unique_id)
    tags = {"series": proto.unique_id, "protocol": proto.name, "update_method": model.update_method,
            "source": sources.get(proto.unique_id, {}).get("source", "unknown")}
    if model.oracle_exog:
        tags["oracle_exog"] = "true"
    with tracking.model_run(dataset, result.model, model.family, run_name=f"{result.model} · {proto.unique_id}",
                            tags=tags) as run:
        tracking.log_data_version(clean, table, name=f"{dataset}-clean")
        mlflow.log_params({**proto.describe(), **{f"model.{k}": v for k, v in model.describe().items()}})
        mlflow.log_metrics(result.metrics)
        for task_name, frame in result.forecasts.items():
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"forecasts_{task_name}.parquet"
                frame.to_parquet(path, index=False)
                mlflow.log_artifact(str(path), "forecasts")
        tracking.log_figure(report.forecast_figure(result), f"plots/forecast_vs_actual_{name}.png")
        _log_model_extras(model, name)
        with tempfile.TemporaryDirectory() as tmp:
            log_forecaster(model, Path(tmp) / "forecaster", proto.levels, max(t.h for t in proto.tasks))
        return run.info.run_id


def _log_model_extras(model: Forecaster, name: str) -> None:
    """The forecaster's optional hooks: tags, metrics, per-step metrics (epochs), figures."""
    extras = model.log_extras() or {}
    if extras.get("tags"):
        mlflow.set_tags(extras["tags"])
    if extras.get("metrics"):
        mlflow.log_metrics(extras["metrics"])
    for key, value, step in extras.get("step_metrics", []):
        mlflow.log_metric(key, value, step=step)
    for file_name, obj in (extras.get("dicts") or {}).items():  # e.g. an order search record
        mlflow.log_dict(obj, f"diagnostics/{file_name}")
    for file_name, fig in (model.figures() or {}).items():
        tracking.log_figure(fig, f"plots/{Path(file_name).stem}_{name}{Path(file_name).suffix or '.png'}")


@flow(name="backtest", log_prints=True)
def backtest_flow(dataset: str = "market", models: list[str] | None = None) -> dict:
    """Backtest ``models`` (default: ``models.run.<dataset>``) on every series of ``dataset``."""
    tracking.check_store()  # an unreachable MLflow store fails here, before any model is trained
    logger = get_run_logger()
    params = load_params()
    names = list(models or params.models.run[dataset])
    names.sort(key=lambda n: n != "naive")  # the naive baseline first: the others are tested against it
    table = params.path("clean", f"{dataset}.parquet")
    clean = pd.read_parquet(table)
    verdicts = json.loads(params.path("reports", "stationarity", f"{dataset}.json").read_text())
    sources = json.loads(params.path("tidy", f"{dataset}.sources.json").read_text())
    plot_dir = params.path("reports", "plots", dataset)
    plot_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict[str, float]]] = {}

    with tracking.model_run(dataset, "leaderboard", "report", run_name=f"backtest · {dataset}"):
        tracking.log_data_version(clean, table, name=f"{dataset}-clean")
        mlflow.log_params({"models": ",".join(names)})
        for proto in protocols(clean, dataset, params):
            results[proto.unique_id] = {}
            naive: BacktestResult | None = None
            for name in names:
                forecaster = build_forecaster(name, proto, params, verdicts.get(proto.unique_id))
                result = fit_and_score(forecaster, proto)
                if name == "naive":
                    naive = result
                elif naive is not None:
                    result.metrics.update(dm_against(result, naive))
                log_result(result, dataset, table, clean, sources)
                results[proto.unique_id][name] = result.metrics
                report.plot_window(result).to_csv(plot_dir / f"{safe_name(proto.unique_id)}_{name}.csv", index=False)
                first = proto.tasks[0].name
                logger.info("%s/%s %-15s %s MASE %.3f RMSE %.2f | %s MASE %.3f | fit %.1fs", dataset, proto.unique_id,
                            name, first, result.metrics[f"{first}_mase"], result.metrics[f"{first}_rmse"],
                            proto.tasks[1].name, result.metrics[f"{proto.tasks[1].name}_mase"],
                            result.metrics["fit_seconds"])
        board = report.leaderboard(results)
        mlflow.log_table(board, "leaderboard.json")
        tracking.log_figure(report.leaderboard_figure(board, [t.name for t in proto.tasks]), "leaderboard.png")
    report.write_metrics(params.path("reports", "backtest", f"{dataset}.json"),
                         params.path("reports", "metrics", dataset), results)
    return results


def main(argv: list[str] | None = None) -> None:
    from seqcast.cli import flow_parser

    parser = flow_parser(__doc__)
    parser.add_argument("--models", nargs="*", help="override models.run.<dataset>")
    args = parser.parse_args(argv)
    backtest_flow(args.dataset, args.models)


if __name__ == "__main__":
    main()
