"""Batch forecast with the champion: ``models:/seqcast-<dataset>@champion`` -> table + fan chart.

The champion (see :mod:`tasks.promotion`) was fitted on its protocol's training part;
the observations after that (``train_end``, a tag of the model version) are passed as
new data (the pyfunc updates the state without refitting), and the next ``h`` steps are
forecast from the latest observation — the longest horizon of the dataset's protocol, at
timestamps that continue the series' own calendar (``data.frequency``: trading days skip
weekends, hours run on). The table (``reports/forecast/<dataset>.csv``)
and the fan chart (``.png``, dates on the axis) are written and logged to MLflow
(experiment ``seqcast-<dataset>-forecast``). It is the last stage of ``dvc repro``
(``forecast@<dataset>``, after ``promote@<dataset>``), and the daily deployments run it on
the day's data. The forecast itself is cached by its inputs (model version, data md5,
h), its result persisted as JSON (never pickle): a re-run on the same data skips the
computation.

    python -m flows.forecast --dataset <name> [--h 5] [--alias champion]
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import INPUTS

from seqcast import atomic, domain, frequency
from seqcast.config import load_params
from seqcast.contract import DS, UNIQUE_ID, Y, local_time


class NoChampion(RuntimeError):
    """There is no registered model under the alias asked for: nothing to forecast with."""


def new_observations(series: pd.DataFrame, train_end: str) -> pd.DataFrame:
    """Rows after the model's training history; gaps filled causally (last value carried)."""
    ds = pd.DatetimeIndex(series[DS])
    end = pd.Timestamp(train_end)
    if end.tzinfo is None and ds.tz is not None:
        end = end.tz_localize(ds.tz)
    after = series.loc[ds > end]
    y = after[Y].astype(float).ffill()
    if len(y) and np.isnan(y.iloc[0]):
        y = y.bfill()
    return pd.DataFrame({DS: after[DS].to_numpy(), Y: y.to_numpy()})


@task(name="champion-forecast", cache_policy=INPUTS, persist_result=True, result_serializer="json",
      cache_expiration=timedelta(days=7), timeout_seconds=1800)
def champion_forecast(model_uri: str, table: str, data_md5: str, series_id: str, train_end: str, h: int,
                      freq: str, target_domain: str = "real") -> dict[str, list]:
    """Forecast ``h`` steps after the last observation; cached on (model version, data md5, h).

    Returns plain columns (``{column: values}``, timestamps as ISO strings) so the persisted
    result is JSON. The point and the bounds of a target that cannot be negative are censored at
    0 (``target_domain``, :mod:`seqcast.domain`), as the backtest scored them."""
    import mlflow

    from seqcast.tracking import use_store

    use_store()
    clean = pd.read_parquet(table)
    series = local_time(clean.loc[clean[UNIQUE_ID] == series_id]).reset_index(drop=True)
    new = new_observations(series, train_end)
    model = mlflow.pyfunc.load_model(model_uri)
    stamps = [pd.Timestamp(ts).isoformat() for ts in new[DS]]
    out = model.predict(pd.DataFrame({Y: new[Y].to_numpy(dtype=float), DS: stamps}), params={"h": int(h)})
    if DS in out:  # a model logged with its calendar dates its own answers
        out.insert(0, DS, out.pop(DS))
    else:
        last = pd.Timestamp(series[DS].iloc[-1])
        out.insert(0, DS, [ts.isoformat() for ts in frequency.future_index(last, h, freq)])
    out.insert(0, UNIQUE_ID, series_id)
    out = domain.clip_columns(out, target_domain, [c for c in out.columns if c == "mean" or c[:3] in ("lo-", "hi-")])
    return {col: [v.item() if hasattr(v, "item") else v for v in out[col]] for col in out.columns}


def fan_chart(history: pd.DataFrame, fc: pd.DataFrame, title: str, unit: str = ""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(history[DS], history[Y], color="black", lw=1, label="observed")
    for level, alpha in ((95, 0.2), (80, 0.35)):
        if f"lo-{level}" in fc:
            ax.fill_between(fc[DS], fc[f"lo-{level}"], fc[f"hi-{level}"], color="tab:blue", alpha=alpha,
                            label=f"{level}% interval")
    ax.plot(fc[DS], fc["mean"], color="tab:blue", lw=1.5, marker=".", label="forecast")
    ax.set_title(title)
    ax.set_ylabel(f"{Y} ({unit})" if unit else Y)
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


@flow(name="forecast", log_prints=True)
def forecast_flow(dataset: str, h: int | None = None, alias: str = "champion") -> dict:
    """Load ``models:/seqcast-<dataset>@<alias>``, forecast, write and log the table and the fan chart."""
    import mlflow
    from mlflow import MlflowClient

    from seqcast import tracking
    from tasks.promotion import registered_name

    logger = get_run_logger()
    params = load_params()
    tracking.use_store()
    name = registered_name(dataset)
    try:
        mv = MlflowClient().get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as err:
        raise NoChampion(f"no model {name}@{alias} in the MLflow store {tracking.tracking_uri()}: run the "
                         f"pipeline first (`seqcast run`, or `dvc repro promote@{dataset}`)") from err
    entry = params.dataset(dataset)
    h = int(h or max(t.horizon for t in entry.task_specs()))
    table = params.path("clean", f"{dataset}.parquet")
    md5 = tracking.file_md5(table)
    series_id = mv.tags["series"]
    fc = pd.DataFrame(champion_forecast(f"models:/{name}/{mv.version}", str(table), md5, series_id,
                                        mv.tags["train_end"], h, entry.data.frequency, entry.data.domain))
    fc[DS] = pd.to_datetime(fc[DS].map(pd.Timestamp))
    clean = pd.read_parquet(table)
    history = local_time(clean.loc[clean[UNIQUE_ID] == series_id])[[DS, Y]].tail(max(120, 10 * h))
    out_dir = params.path("reports", "forecast")
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, png = out_dir / f"{dataset}.csv", out_dir / f"{dataset}.png"
    atomic.write_text(csv, fc.to_csv(index=False))
    fig = fan_chart(history, fc, f"{dataset}/{series_id}: {mv.tags.get('model')} (v{mv.version}), {h} steps",
                    entry.data.unit)
    with atomic.atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    with tracking.model_run(dataset, mv.tags.get("model", "?"), "forecast",
                            run_name=f"forecast · {dataset} · {fc[DS].iloc[0]:%Y-%m-%d %H:%M}",
                            experiment=tracking.experiment_name(f"{dataset}-forecast"),
                            tags={"series": series_id, "registered_model": name, "model_version": str(mv.version),
                                  "alias": alias, "data_version": md5}) as run:
        mlflow.log_params({"h": h, "model_uri": f"models:/{name}@{alias}"})
        mlflow.log_artifact(str(csv), "forecast")
        tracking.log_figure(fig, f"forecast/{dataset}_fan_chart.png")
    logger.info("%s: %d-step forecast by %s v%s from %s -> %s", dataset, h, mv.tags.get("model"), mv.version,
                fc[DS].iloc[0], csv)
    return {"forecast_table": str(csv), "fan_chart": str(png), "run_id": run.info.run_id,
            "model_version": str(mv.version), "first": float(fc["mean"].iloc[0])}


def main(argv: list[str] | None = None):
    from flows.entry import flow_parser

    parser = flow_parser(__doc__)
    parser.add_argument("--h", type=int)
    parser.add_argument("--alias", default="champion")
    args = parser.parse_args(argv)
    out = forecast_flow(args.dataset, args.h, args.alias)
    print(out)
    return out


if __name__ == "__main__":
    import sys

    try:
        main()
    except NoChampion as err:  # a clear message, not a traceback: the user has a step to take
        print(f"forecast: {err}", file=sys.stderr)
        sys.exit(1)
