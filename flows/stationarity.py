"""Stationarity flow: ADF + KPSS verdicts and the differencing order per series.

Tests run on the *training part* of each series (the protocol's split), because the
chosen ``d`` feeds the models: nothing from the test period may tune them.
Series of a positive target (prices: ``data.domain: positive``) are tested on their log
returns too. ``python -m flows.stationarity --dataset <name>`` is the DVC stage's command.
"""

from __future__ import annotations


import pandas as pd
from prefect import flow, get_run_logger
from threadpoolctl import threadpool_limits

from seqcast import atomic, tracking
from seqcast.config import load_params
from tasks import stationarity
from tasks.backtest import ProtocolError
from tasks.series import protocol_for, safe_name, split_table


@flow(name="stationarity", log_prints=True)
def stationarity_flow(dataset: str) -> dict:
    logger = get_run_logger()
    params = load_params()
    sp = params.stationarity
    positive = params.dataset(dataset).data.domain == "positive"
    table = params.path("clean", f"{dataset}.parquet")
    clean = pd.read_parquet(table)
    out_dir = params.path("reports", "stationarity")
    fig_dir = out_dir / dataset
    fig_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    import mlflow

    with tracking.model_run(dataset, "stationarity", "data", experiment=tracking.experiment_name(f"{dataset}-data")):
        tracking.log_data_version(clean, table, name=f"{dataset}-clean")
        parts = split_table(clean)
        for uid in parts:
            try:
                proto = protocol_for(uid, parts, dataset, params, panel=False)
            except ProtocolError as err:  # too short for the protocol: the backtest leaves it out too
                logger.warning("%s/%s: not tested: %s", dataset, uid, err)
                continue
            name = safe_name(proto.unique_id)
            # one BLAS thread: these regressions are small, and two OpenBLAS threads spinning on a
            # shared 2-core machine made one series take 223 s instead of 34 s (measured under load)
            try:
                with threadpool_limits(1, user_api="blas"):
                    res = stationarity.analyse(proto.y_train, alpha=sp.alpha, max_d=sp.max_d,
                                               is_price=positive, max_points=sp.max_points)
            except ValueError as err:  # too few observed points: models that need d say so in the leaderboard
                logger.warning("%s/%s: not tested: %s", dataset, uid, err)
                continue
            res["sample"] = f"{proto.name} train part: {proto.ds[0]} .. {proto.ds[proto.n_train - 1]}"
            results[proto.unique_id] = res
            logger.info("%s/%s: %s, d=%d (tests agree: %s)", dataset, proto.unique_id, res["verdict"], res["d"],
                        res["tests_agree"])
            fig = stationarity.acf_pacf_figure(proto.y_train, sp.nlags, f"{dataset} {proto.unique_id} (train part)")
            with atomic.atomic_path(fig_dir / f"{name}_acf_pacf.png") as tmp:
                fig.savefig(tmp, dpi=80, format="png")
            tracking.log_figure(fig, f"acf_pacf/{name}.png")
            mlflow.log_metrics({f"d.{name}": res["d"]})
        rows = [{"series": uid, **{k: t[k] for k in ("test", "transform", "regression", "statistic", "pvalue", "lags",
                                                     "rejects")}}
                for uid, r in results.items() for t in r["tests"]]
        mlflow.log_table(pd.DataFrame(rows), "stationarity_tests.json")
        mlflow.log_dict({uid: {k: r[k] for k in ("verdict", "d", "trend", "tests_agree", "sample")}
                         for uid, r in results.items()}, "verdicts.json")
    path = out_dir / f"{dataset}.json"
    atomic.write_json(path, results, sort_keys=True)
    return results


def main(argv: list[str] | None = None):
    from flows.entry import flow_parser

    parser = flow_parser(__doc__)
    return stationarity_flow(parser.parse_args(argv).dataset)


if __name__ == "__main__":
    main()
