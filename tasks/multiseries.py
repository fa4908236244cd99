"""Multi-series backtests: every series of the mirror on its protocol (protocols.md, "Multi-series").

- market: every file of ``market/`` (10 indices), windowed to the P2 dates of params.yaml,
  null closes dropped, the P2 split rule per series;
- pm25: every station of ``pm25_multisite/`` (9), the P1 definitions with the
  ``backtest.p1.splits.multisite`` split.

Tables are built with the ingest parsers (:mod:`tasks.ingest`) into
``data/multiseries/<dataset>.parquet``. :func:`run_series` is the unit of work (one
series, every model; a plain function so a process pool can run it); models that use
``d`` get it from the same stationarity test as the stationarity stage.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from models import registry
from seqcast.config import Params
from seqcast.contract import UNIQUE_ID, mirror_stem
from tasks import stationarity
from tasks.backtest import evaluate, p1_protocol, p2_protocol
from tasks.series import build_forecaster
from tasks.cleaning import clean_market
from tasks.ingest import parse_market_csv, parse_pm25_csv, window

METRICS = ("mae", "rmse", "mase", "cov80", "cov95", "dir_acc")


def _ticker(stem: str, params: Params) -> str:
    """Mirror file stem -> ticker (``KS11`` -> ``^KS11``) where params knows it."""
    for ticker in [*params.market.tickers, *params.market.timezones]:
        if mirror_stem(ticker) == stem:
            return ticker
    return stem


def build_table(dataset: str, mirror: Path, params: Params) -> pd.DataFrame:
    """The long table of every mirror series of ``dataset``."""
    frames = []
    if dataset == "market":
        for path in sorted((mirror / "market").glob("*.csv")):
            ticker = _ticker(path.stem, params)
            tidy = parse_market_csv(path, ticker, params.market.timezone(ticker))
            frames.append(window(tidy, params.market.start, params.market.end))
        table, _ = clean_market(pd.concat(frames, ignore_index=True))
        return table
    for path in sorted((mirror / "pm25_multisite").glob("PRSA_Data_*.csv.gz")):
        station = path.name.split("_")[2]
        frames.append(parse_pm25_csv(path, station, params.pm25.timezone))
    return pd.concat(frames, ignore_index=True)


def _protocol(series: pd.DataFrame, dataset: str, params: Params):
    return (p2_protocol if dataset == "market" else p1_protocol)(series.reset_index(drop=True), params)


def run_series(series: pd.DataFrame, dataset: str, models: list[str], params: Params) -> dict:
    """Every model on one series: ``{model: metrics}`` plus the seconds it took."""
    t0 = time.perf_counter()
    proto = _protocol(series, dataset, params)
    verdict = None
    out: dict[str, dict[str, float]] = {}
    for name in models:
        if verdict is None and registry.get(name).uses_differencing_order:
            sp = params.stationarity
            verdict = stationarity.analyse(proto.y_train, alpha=sp.alpha, max_d=sp.max_d,
                                           is_price=dataset == "market", max_points=sp.max_points)
        try:
            result = evaluate(build_forecaster(name, proto, params, verdict), proto)
            out[name] = {k: float(v) for k, v in result.metrics.items()}
        except Exception as exc:  # noqa: BLE001 — one failing (series, model) is reported, not fatal
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return {"unique_id": proto.unique_id, "models": out, "seconds": time.perf_counter() - t0}


def split_series(table: pd.DataFrame) -> list[pd.DataFrame]:
    return [part.reset_index(drop=True) for _, part in table.groupby(UNIQUE_ID, sort=False)]


def summarise(results: list[dict], tasks: list[str]) -> dict:
    """Per-series metrics and the mean MASE per model and task (over series that ran)."""
    per_series = {r["unique_id"]: r["models"] for r in results}
    models = sorted({m for r in results for m in r["models"]})
    mean = {}
    for m in models:
        mean[m] = {}
        for task in tasks:
            vals = [r["models"][m].get(f"{task}_mase") for r in results if m in r["models"]]
            vals = [v for v in vals if v is not None and np.isfinite(v)]
            mean[m][f"{task}_mase"] = float(np.mean(vals)) if vals else None
            mean[m]["series"] = len(vals)
    return {"per_series": per_series, "mean": mean}
