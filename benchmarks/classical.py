"""Benchmark of the classical forecasters: fit and forecast time on P1 and P2, peak
memory per model, and the wall time of all market series serially vs in parallel.

    seqcast bench classical [--p1 naive arima sarima] [--p2 naive arima ets gbm] [--workers 2]

Each (protocol, model) runs in a fresh process so its peak RSS (``ru_maxrss``) is its
own. Data are the pipeline's clean, validated tables (``data/clean/<dataset>.parquet``;
``dvc repro validate@market validate@pm25`` makes them), and the all-series run is the
backtest's own job runner (:mod:`tasks.jobs`) over every market series, once in this
process and once over ``--workers`` processes. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor

P1_DEFAULT = ["naive", "seasonal_naive", "arima", "sarima"]
P2_DEFAULT = ["naive", "arima", "auto_arima", "ets", "regime", "gbm", "prophet"]
MARKET_DEFAULT = ["naive", "arima", "gbm"]


def clean_table(dataset: str, params):
    """The pipeline's clean table of ``dataset`` (the one data path); a clear error when missing."""
    import pandas as pd

    path = params.path("clean", f"{dataset}.parquet")
    if not path.is_file():
        raise SystemExit(f"seqcast bench: no clean table {path}; run `dvc repro validate@{dataset}` first")
    return pd.read_parquet(path)


def _protocol(name: str):
    """The protocol of the dataset's reference series, with the other series as its panel."""
    from seqcast.config import load_params
    from tasks.series import protocol_for, split_table

    params = load_params()
    dataset = "pm25" if name == "P1" else "market"
    parts = split_table(clean_table(dataset, params))
    return protocol_for(next(iter(parts)), parts, dataset, params), params


def _one(protocol_name: str, model: str) -> dict:
    """Fit and forecast one model in this (fresh) process; peak memory included."""
    from models import registry
    from tasks import stationarity
    from tasks.backtest import evaluate
    from tasks.series import build_forecaster

    proto, params = _protocol(protocol_name)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cls = registry.get(model)
    verdict = None
    if cls.uses_differencing_order:
        verdict = stationarity.analyse(proto.y_train, is_price=proto.domain == "positive",
                                       max_points=params.stationarity.max_points)
    res = evaluate(build_forecaster(model, proto, params, verdict), proto)
    m = res.metrics
    tasks = [t.name for t in proto.tasks]
    return {"protocol": protocol_name, "model": model, "fit_s": round(m["fit_seconds"], 3),
            **{f"{t}_predict_s": round(m[f"{t}_predict_seconds"], 3) for t in tasks},
            **{f"{t}_mase": round(m[f"{t}_mase"], 4) for t in tasks},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "data_rss_mb": round(base_rss / 1024, 1)}


def _isolated(protocol_name: str, model: str) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_one, protocol_name, model).result()


def _market_series(models: list[str], workers: int) -> dict:
    """Every market series x ``models`` through the backtest's job runner: serial vs ``workers``
    processes, and the largest relative MASE difference between the two (should be ~0)."""
    from seqcast.config import load_params
    from tasks.jobs import Job, run_jobs
    from tasks.series import protocol_for, split_table

    params = load_params()
    parts = split_table(clean_table("market", params))
    verdicts_path = params.path("reports", "stationarity", "market.json")
    verdicts = json.loads(verdicts_path.read_text()) if verdicts_path.is_file() else {}
    jobs = [Job(protocol_for(uid, parts, "market", params), m, verdicts.get(uid)) for uid in parts for m in models]
    timings, mase = {}, {}
    for label, n in (("serial", 1), ("parallel", workers)):
        t0 = time.perf_counter()
        mase[label] = {(j.protocol.unique_id, j.model): r.metrics["P2a_mase"] for j, r in run_jobs(jobs, params, n)}
        timings[label] = time.perf_counter() - t0
    diff = max(abs(mase["serial"][k] - mase["parallel"][k]) / max(abs(mase["serial"][k]), 1e-12) for k in mase["serial"])
    return {"n_series": len(parts), "models": models, "serial_s": round(timings["serial"], 2),
            "parallel_s": round(timings["parallel"], 2), "workers": workers,
            "speedup": round(timings["serial"] / timings["parallel"], 2), "max_rel_diff_mase": diff}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seqcast bench classical", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--p1", nargs="*", default=P1_DEFAULT, help="models timed on P1 (PM2.5 hourly)")
    parser.add_argument("--p2", nargs="*", default=P2_DEFAULT, help="models timed on P2 (KOSPI daily)")
    parser.add_argument("--market-models", nargs="*", default=MARKET_DEFAULT, help="models of the all-series run")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv or [])
    rows = []
    print(f"{'protocol':8} {'model':16} {'fit s':>8} {'predict s (a / b)':>20} {'MASE (a / b)':>16} {'peak MB':>8}")
    for proto, models in (("P1", args.p1), ("P2", args.p2)):
        for model in models:
            try:
                r = _isolated(proto, model)
            except Exception as exc:  # noqa: BLE001 — report and go on
                r = {"protocol": proto, "model": model, "error": f"{type(exc).__name__}: {exc}"}
                print(f"{proto:8} {model:16} failed: {r['error']}", flush=True)
                rows.append(r)
                continue
            a, b = ("P1a", "P1b") if proto == "P1" else ("P2a", "P2b")
            print(f"{proto:8} {model:16} {r['fit_s']:8.2f} {r[f'{a}_predict_s']:9.2f} / {r[f'{b}_predict_s']:8.2f} "
                  f"{r[f'{a}_mase']:7.3f} / {r[f'{b}_mase']:6.3f} {r['peak_rss_mb']:8.0f}", flush=True)
            rows.append(r)
    market = _market_series(args.market_models, args.workers) if args.market_models else {}
    if market:
        print(f"all {market['n_series']} market series x {market['models']}: serial {market['serial_s']:.1f} s, "
              f"parallel ({market['workers']} workers) {market['parallel_s']:.1f} s", flush=True)
    print(json.dumps({"benchmark": "classical", "models": rows, "market_series": market}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
