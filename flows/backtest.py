"""Backtest flow: every configured forecaster on every series of a dataset, logged to MLflow.

One backtest, two leaderboards: ``datasets.<name>.models.run`` runs on the reference series
(the first series of the clean table) and ``models.every_series`` on every series (the
multi-series leaderboard: per-series metrics and mean MASE per model). Each (series, model)
job is fitted and scored on the series' protocol (the dataset's ``protocol``; global models
get the other series, cut at the training end, as their panel), in ``backtest.workers``
processes; this process compares each with the baseline of its series (the protocol's
``baseline``: naive, seasonal naive) by a Diebold–Mariano test and logs one MLflow run per job (params, metrics, forecasts,
forecast-vs-actual plot, the model as a pyfunc) under a parent ``backtest`` run that holds
both leaderboards, then writes the DVC metrics and plots files. A model that does not apply
to a series, or fails on it, is a row of the leaderboard saying why (``unscored``), not a
lost run. ``python -m flows.backtest --dataset <name>`` is the DVC stage's command.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from prefect import flow, get_run_logger

from models.base import Forecaster
from models.pyfunc import log_forecaster
from seqcast import atomic, experiments, tracking
from seqcast.config import load_params
from tasks import report, tables
from tasks.backtest import BacktestResult, BaselineFirst, ProtocolError, Unscored
from tasks.jobs import Job, run_jobs
from tasks.series import models_for, protocol_for, safe_name, split_table


def log_result(result: BacktestResult, dataset: str, table: Path, clean: pd.DataFrame, sources: dict) -> str:
    """One MLflow run for one (series, model); returns the run id."""
    proto, model = result.protocol, result.forecaster
    name = safe_name(proto.unique_id)
    tags = {"series": proto.unique_id, "protocol": proto.name, "update_method": model.update_method,
            "source": sources.get(proto.unique_id, {}).get("source", "unknown")}
    if model.oracle_exog:
        tags["oracle_exog"] = "true"
    if model.uses_panel:
        tags["global_model"] = "true"
    with tracking.model_run(dataset, result.model, model.family, run_name=f"{result.model} · {proto.unique_id}",
                            tags=tags) as run:
        tracking.log_data_version(clean, table, name=f"{dataset}-clean")
        mlflow.log_params({**proto.describe(), **{f"model.{k}": v for k, v in model.describe().items()}})
        mlflow.log_metrics(result.metrics)
        score = tables.score(result.metrics, [t.name for t in proto.tasks])
        if score == score:  # the champion rule's score, the leaderboard view's sort key
            mlflow.log_metric(experiments.SCORE, score)
        for task_name, frame in result.forecasts.items():
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"forecasts_{task_name}.parquet"
                frame.to_parquet(path, index=False)
                mlflow.log_artifact(str(path), "forecasts")
        tracking.log_figure(report.forecast_figure(result), f"plots/forecast_vs_actual_{name}.png")
        _log_model_extras(model, name)
        # the validation-slice factors of the multi-step task (the reference series) travel with the model
        factors = next((c.factors for c in result.calibration.values()), None)
        if factors and any(f != 1.0 for f in factors.values()):
            mlflow.set_tag("interval_factors", json.dumps(factors))
        with tempfile.TemporaryDirectory() as tmp:
            log_forecaster(model, Path(tmp) / "forecaster", proto.levels, max(t.h for t in proto.tasks), factors,
                           calendar=served_calendar(proto))
        return run.info.run_id


def served_calendar(proto) -> dict[str, str]:
    """What the served model needs to date its answers and keep them in the target's domain."""
    calendar = {"last_ds": proto.train_end.isoformat(), "frequency": proto.frequency, "domain": proto.domain}
    if proto.ds.tz is not None:
        calendar["timezone"] = str(proto.ds.tz)
    return calendar


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


def log_unscored(result: Unscored, dataset: str, table: Path, clean: pd.DataFrame) -> None:
    """A run that says why a model has no scores on a series (skipped, or the error it raised)."""
    proto = result.protocol
    with tracking.model_run(dataset, result.model, "unscored", run_name=f"{result.model} · {proto.unique_id}",
                            tags={"series": proto.unique_id, "protocol": proto.name, "unscored": result.kind,
                                  "unscored_reason": result.reason[:5000]}):
        tracking.log_data_version(clean, table, name=f"{dataset}-clean")
        mlflow.log_params(proto.describe())


def describe_leaderboard(dataset: str, reference: str, tasks: list[str], results: dict, unscored: dict | None,
                         baseline: str, levels: tuple[int, ...]) -> None:
    """The parent run's description is the reference series' leaderboard (Markdown); the
    experiment's view *Leaderboard* lists the same runs, sorted by score."""
    run = mlflow.active_run()
    link = experiments.view_link(run.info.experiment_id)
    note = (f"**Leaderboard of {dataset}** on its reference series `{reference}`, best first. `score`: the mean MASE "
            f"over {', '.join(tasks)} (lower is better; the champion rule's score); cov: the share of actuals inside "
            f"the 80 / 95 % intervals; DM p: Diebold-Mariano test of the last task against `{baseline}` (small: "
            f"the difference is real; the MASE says which side). The runs: [Leaderboard view]({link}).\n\n"
            + tables.leaderboard(results, tasks, baseline, levels, unscored))
    mlflow.set_tag(experiments.NOTE_TAG, note[:8000])
    mlflow.MlflowClient().set_experiment_tag(run.info.experiment_id, experiments.VIEW_TAG,
                                             experiments.leaderboard_view(reference, tasks))


def plan(dataset: str, clean: pd.DataFrame, verdicts: dict, params,
         models: list[str] | None = None) -> tuple[list[Job], dict[str, str]]:
    """The jobs of a backtest: per series (the table's order) the models that run on it, naive
    first, and the series the protocol cannot judge with the reason. ``models`` (a quick run):
    only these, on the reference series only."""
    parts = split_table(clean)
    if models is not None:
        parts = dict(list(parts.items())[:1])
    reference = next(iter(parts))
    jobs, unjudged = [], {}
    for uid in parts:
        baseline = params.dataset(dataset).protocol.baseline
        names = models_for(uid, reference, dataset, params) if models is None else \
            sorted(models, key=lambda n: n != baseline)
        if not names:
            continue
        try:
            proto = protocol_for(uid, parts, dataset, params)
        except ProtocolError as err:
            if uid == reference:
                raise  # the reference series is the leaderboard: nothing to judge without it
            unjudged[uid] = str(err)
            continue
        calibrate = uid == reference  # the reference series: the calibration table
        jobs += [Job(proto, name, verdicts.get(uid), calibrate) for name in names]
    return jobs, unjudged


@flow(name="backtest", log_prints=True)
def backtest_flow(dataset: str, models: list[str] | None = None) -> dict:
    """Backtest every series of ``dataset`` (``models`` overrides both model lists, for quick runs)."""
    tracking.check_store()  # an unreachable MLflow store fails here, before any model is trained
    logger = get_run_logger()
    params = load_params()
    table = params.path("clean", f"{dataset}.parquet")
    clean = pd.read_parquet(table)
    verdicts = json.loads(params.path("reports", "stationarity", f"{dataset}.json").read_text())
    sources = json.loads(params.path("tidy", f"{dataset}.sources.json").read_text())
    plot_dir = params.path("reports", "plots", dataset)
    plot_dir.mkdir(parents=True, exist_ok=True)
    jobs, unjudged = plan(dataset, clean, verdicts, params, models)
    for uid, why in unjudged.items():
        logger.warning("%s/%s: not backtested: %s", dataset, uid, why)
    reference = jobs[0].protocol.unique_id
    results: dict[str, dict[str, dict[str, float]]] = {}
    unscored: dict[str, dict[str, dict[str, str]]] = {}

    def record(result: BacktestResult | Unscored) -> None:
        proto = result.protocol
        if isinstance(result, Unscored):
            log_unscored(result, dataset, table, clean)
            unscored.setdefault(proto.unique_id, {})[result.model] = {"kind": result.kind, "reason": result.reason}
            logger.warning("%s/%s %-15s %s: %s", dataset, proto.unique_id, result.model, result.kind, result.reason)
            return
        log_result(result, dataset, table, clean, sources)
        results.setdefault(proto.unique_id, {})[result.model] = result.metrics
        if proto.unique_id == reference:  # forecast-vs-actual plots of the reference series (dvc plots)
            atomic.write_text(plot_dir / f"{safe_name(proto.unique_id)}_{result.model}.csv",
                              report.plot_window(result).to_csv(index=False))
        first, second = proto.tasks[0].name, proto.tasks[1].name
        logger.info("%s/%s %-15s %s MASE %.3f RMSE %.2f | %s MASE %.3f | fit %.1fs", dataset, proto.unique_id,
                    result.model, first, result.metrics[f"{first}_mase"], result.metrics[f"{first}_rmse"], second,
                    result.metrics[f"{second}_mase"], result.metrics["fit_seconds"])

    with tracking.model_run(dataset, "leaderboard", "report", run_name=f"backtest · {dataset}"):
        tracking.log_data_version(clean, table, name=f"{dataset}-clean")
        mlflow.log_params({"reference_series": reference, "n_series": len({j.protocol.unique_id for j in jobs}),
                           "n_jobs": len(jobs), "workers": params.backtest.workers,
                           "models": ",".join(dict.fromkeys(j.model for j in jobs))})
        logger.info("%s: %d jobs over %d series in %d processes", dataset, len(jobs),
                    len({j.protocol.unique_id for j in jobs}), params.backtest.workers)
        order = BaselineFirst(jobs)  # each model's DM test is against its series' baseline
        for _, result in run_jobs(jobs, params, params.backtest.workers):
            for ready in order.add(result):
                record(ready)
        for ready in order.rest():
            record(ready)
        tasks = [t.name for t in jobs[0].protocol.tasks]
        board = report.leaderboard(results, unscored)
        summary = report.series_summary(results, tasks)
        summary["series"] = [u for u in dict.fromkeys(j.protocol.unique_id for j in jobs) if u in results]
        summary.update(reference=reference, unscored=unscored, unjudged=unjudged)
        mlflow.log_table(board, "leaderboard.json")
        mlflow.log_dict(summary, "multiseries.json")
        calib = report.calibration_table(results.get(reference, {}), tasks, list(params.backtest.levels))
        if len(calib):  # coverage at every level, validation slice vs test, before/after conformal factors
            mlflow.log_table(calib, "calibration.json")
            logger.info("%s calibration (validation slice -> test):\n%s", dataset, calib.to_string(index=False))
        mlflow.log_metrics({f"mean_{t}.{m}": v for m, row in summary["mean"].items() for t, v in row.items()
                            if t.endswith("_mase") and v is not None})
        scored = board[board["series"] == reference]
        if "note" in scored:
            scored = scored[scored["note"].isna()]
        tracking.log_figure(report.leaderboard_figure(scored, tasks), "leaderboard.png")
        describe_leaderboard(dataset, reference, tasks, results.get(reference, {}), unscored.get(reference),
                             params.dataset(dataset).protocol.baseline, tuple(params.backtest.levels))
    if reference not in results:
        raise RuntimeError(f"{dataset}: no model has scores on the reference series {reference}: "
                           f"{unscored.get(reference)}")
    report.write_metrics(params.path("reports", "backtest", f"{dataset}.json"),
                         params.path("reports", "metrics", dataset), results, reference, tasks)
    report.write_summary(params.path("reports", "backtest", f"{dataset}.summary.json"), summary)
    return results


def main(argv: list[str] | None = None):
    from flows.entry import flow_parser

    parser = flow_parser(__doc__)
    parser.add_argument("--models", nargs="*", help="a quick run: only these models, on the reference series only")
    args = parser.parse_args(argv)
    return backtest_flow(args.dataset, args.models)


if __name__ == "__main__":
    main()
