"""Benchmark of the classical forecasters: fit and forecast time on P1 and P2, peak
memory per model, and the wall time of all market series serially vs in parallel.

    seqcast bench classical [--p1 naive arima sarima] [--p2 naive arima ets gbm] [--workers 2]

Each (protocol, model) runs in a fresh process so its peak RSS (``ru_maxrss``) is its
own. Data come straight from the mirror (the ingest parsers), so the benchmark does not
depend on the pipeline's state. The last line printed is one JSON object.
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


def _protocol(name: str):
    from seqcast.config import load_params
    from seqcast.paths import data_mirror
    from tasks.backtest import p1_protocol, p2_protocol
    from tasks.ingest import PM25_FILE, parse_pm25_csv
    from tasks.multiseries import build_table

    params = load_params()
    if name == "P1":
        tidy = parse_pm25_csv(data_mirror() / "pm25" / PM25_FILE, "us_embassy", params.pm25.timezone)
        return p1_protocol(tidy, params), params
    table = build_table("market", data_mirror(), params)
    ks11 = table[table["unique_id"] == "^KS11"].reset_index(drop=True)
    return p2_protocol(ks11, params), params


def _one(protocol_name: str, model: str) -> dict:
    """Fit and forecast one model in this (fresh) process; peak memory included."""
    from models import registry
    from tasks import stationarity
    from tasks.backtest import evaluate

    proto, params = _protocol(protocol_name)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cls = registry.get(model)
    config = params.models.config_for(model)
    if cls.uses_differencing_order:
        v = stationarity.analyse(proto.y_train, is_price=protocol_name == "P2", max_points=params.stationarity.max_points)
        config.update(d=v["d"], trend=v["trend"])
    if getattr(cls, "needs_calendar", False):
        config.setdefault("dates", [ts.isoformat() for ts in proto.ds])
    res = evaluate(cls(cls.Params.model_validate(config), season=proto.season), proto)
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
    from seqcast.config import load_params
    from seqcast.paths import data_mirror
    from tasks.multiseries import build_table, run_series, split_series

    params = load_params()
    parts = split_series(build_table("market", data_mirror(), params))
    t0 = time.perf_counter()
    for p in parts:
        run_series(p, "market", models, params)
    serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(run_series, parts, ["market"] * len(parts), [models] * len(parts), [params] * len(parts)))
    parallel = time.perf_counter() - t0
    return {"n_series": len(parts), "models": models, "serial_s": round(serial, 2), "parallel_s": round(parallel, 2),
            "workers": workers, "speedup": round(serial / parallel, 2)}


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
