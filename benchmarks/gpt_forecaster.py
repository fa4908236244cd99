"""The GPT forecaster's levers, measured on a validation split inside the training periods.

``seqcast bench gpt_forecaster [--variants NAME ...] [--iters N]``: every variant trains
the model from scratch on the series cut *before* a validation window (PM2.5: the last
three months of each station's training part; market: the last 20 % of each index's
training part), then forecasts that window through the harness: P1b on the US-embassy
series and P2a on KOSPI, MASE beside the naive baseline on the same window. No test
period is read, so a lever chosen here is not tuned on the test. The last line is JSON.

Variants (overrides of ``gpt_forecaster_train`` / ``models.gpt_forecaster``):
``default`` (params.yaml), ``mean_scaling`` (Chronos: x / mean|x| over [-15, 15]),
``bins_256`` / ``bins_1024``, ``no_log1p`` (PM2.5 read raw, spikes clipped by the range
only), ``context_48``, ``samples_128`` (the P1b median from 128 sampled paths instead of 32).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import pandas as pd

VARIANTS: dict[str, dict] = {
    "default": {},
    "mean_scaling": {"gpt_forecaster_train": {"tokenizer": {"scaling": "mean", "low": -15.0, "high": 15.0}}},
    "bins_256": {"gpt_forecaster_train": {"tokenizer": {"n_bins": 256}}},
    "bins_1024": {"gpt_forecaster_train": {"tokenizer": {"n_bins": 1024}}},
    "no_log1p": {"models": {"gpt_forecaster": {"by_dataset": {"pm25": {"transform": "none"}}}}},
    "context_48": {"models": {"gpt_forecaster": {"context": 48}}},
    "samples_128": {"models": {"gpt_forecaster": {"n_samples": 128}}},
}
VALIDATION_SPLITS = {"us_embassy": {"train_end": "2013-09-30 23:00", "test_end": "2013-12-31 23:00"},
                     "multisite": {"train_end": "2015-11-30 23:00", "test_end": "2016-02-29 23:00"}}


def merge(base: dict, patch: dict) -> dict:
    for k, v in patch.items():
        base[k] = merge(dict(base.get(k) or {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def validation_setup(params, tables: dict[str, pd.DataFrame]):
    """Params whose P1 splits end before the real training ends, and market tables cut to their training parts."""
    from seqcast.config import Params
    from seqcast.contract import UNIQUE_ID

    # the values params.yaml set, as set: a dump of every field would fill each by_dataset
    # override with None for the keys it leaves alone (and fail validation)
    raw = params.model_dump(mode="json", exclude_unset=True)
    raw["backtest"]["p1"]["splits"] = VALIDATION_SPLITS
    vparams = Params.model_validate(raw)
    frac = params.dataset("market").protocol.split.train_fraction
    table = tables["market"]
    by_series = table.groupby(UNIQUE_ID, sort=False)
    keep = by_series.cumcount() < (by_series[UNIQUE_ID].transform("size") * frac).astype(int)
    return vparams, {"market": table[keep].reset_index(drop=True), "pm25": tables["pm25"]}


def run_variant(name: str, params, tables, iters: int | None) -> dict:
    import torch

    from seqcast.config import Params
    from tasks.backtest import evaluate
    from tasks.gpt_forecaster_train import train_forecaster
    from tasks.series import build_forecaster, protocol_for, split_table

    raw = merge(params.model_dump(mode="json", exclude_unset=True), VARIANTS[name])
    vp = Params.model_validate(raw)
    row: dict = {"variant": name}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ckpt, history = train_forecaster(vp, tables, tmp, iters)
        row["train_s"] = round(time.perf_counter() - t0, 1)
        row.update({k: round(v, 4) for k, v in ckpt["train"].items() if k.endswith("loss")})
        torch.save(ckpt, f"{tmp}/model.pt")
        # scored with the checkpoint this variant just trained (params.yaml's path holds the
        # pipeline's, trained on the whole training parts: the validation window included)
        vp = Params.model_validate(merge(raw, {"models": {"gpt_forecaster": {"checkpoint": f"{tmp}/model.pt"}}}))
        for dataset, task in (("pm25", "P1b"), ("market", "P2a")):
            parts = split_table(tables[dataset])
            uid = next(iter(parts))
            proto = protocol_for(uid, parts, dataset, vp, panel=False)
            proto.tasks[:] = [t for t in proto.tasks if t.name == task]
            t0 = time.perf_counter()
            scored = evaluate(build_forecaster("gpt_forecaster", proto, vp, None), proto)
            gpt = scored.metrics
            naive = evaluate(build_forecaster("naive", proto, vp, None), proto).metrics
            row[f"{task}_eval_s"] = round(time.perf_counter() - t0, 1)
            # the last training time of this series the model read (before the window it is scored on)
            row[f"{task}_trained_until"] = scored.forecaster.meta["series"][uid]["train_end"]
            row[f"{task}_window_start"] = str(proto.ds[proto.n_train])
            for m in ("mase", "cov80", "cov95"):
                row[f"{task}_{m}"] = round(gpt[f"{task}_{m}"], 4)
            row[f"{task}_naive_mase"] = round(naive[f"{task}_mase"], 4)
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    from seqcast.config import load_params
    from tasks.gpt_forecaster_data import training_datasets

    ap = argparse.ArgumentParser(prog="seqcast bench gpt_forecaster", description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--iters", type=int, default=None, help="training iterations (default: params.yaml)")
    a = ap.parse_args(argv)
    params = load_params()
    tables = {d: pd.read_parquet(params.path("clean", f"{d}.parquet")) for d in training_datasets(params)}
    vparams, vtables = validation_setup(params, tables)
    load0 = os.getloadavg()
    rows = [run_variant(v, vparams, vtables, a.iters) for v in a.variants]
    print(json.dumps({"benchmark": "gpt_forecaster", "split": "validation inside the training periods",
                      "loadavg_start": load0, "loadavg_end": os.getloadavg(), "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
