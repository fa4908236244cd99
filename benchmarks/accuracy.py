"""Accuracy experiments of issue 11 that do not belong in ``dvc repro``: model variants on one
series' protocol (the reference series by default), each fitted and scored by the backtest
harness with the validation-slice calibration check, side by side.

    seqcast bench accuracy [--dataset pm25] [--series us_embassy]
        [--variant NAME=MODEL[:JSON overrides]] ...

Without ``--variant`` it measures the questions the issue asks: LightGBM recursive vs direct
for 24 h ahead, LightGBM with and without the neighbouring stations, and the Transformer's
autoregressive vs direct decoding. Overrides are laid over the model's params.yaml
configuration (and validated by its schema). Every choice is judged on the protocol's test
period here, so nothing measured here may flow back into the pipeline's configuration
unless it is also what the validation slice says (``P1b_cov95_val`` etc. and the networks'
early stopping look at the training part only). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

DEFAULT_VARIANTS = [
    "lgb_direct=lightgbm",
    'lgb_recursive=lightgbm:{"strategy": "recursive"}',
    'lgb_no_neighbours=lightgbm:{"use_neighbours": false}',
    "transformer_ar=transformer",
    'transformer_direct=transformer:{"decoding": "direct"}',
]
KEYS = ("P1a_rmse", "P1b_mae", "P1b_cov80", "P1b_cov95", "P1b_cov95_val", "P2a_mase", "P2a_cov80", "P2a_cov95",
        "P2a_cov95_val", "fit_seconds")


def parse_variant(text: str) -> tuple[str, str, dict]:
    name, _, rest = text.partition("=")
    model, _, overrides = (rest or name).partition(":")
    return name, model, json.loads(overrides) if overrides else {}


def run(dataset: str, series: str | None, variants: list[str]) -> dict:
    import pandas as pd

    from models import registry
    from seqcast.config import load_params
    from tasks.backtest import calibration_for, evaluate
    from tasks.series import model_config, protocol_for, split_table

    params = load_params()
    path = params.path("clean", f"{dataset}.parquet")
    if not path.is_file():
        raise SystemExit(f"seqcast bench: no clean table {path}; run `dvc repro validate@{dataset}` first")
    parts = split_table(pd.read_parquet(path))
    uid = series or next(iter(parts))
    proto = protocol_for(uid, parts, dataset, params)
    verdicts_path = params.path("reports", "stationarity", f"{dataset}.json")
    verdict = json.loads(verdicts_path.read_text()).get(uid) if verdicts_path.is_file() else None
    rows = {}
    for text in variants:
        name, model, overrides = parse_variant(text)
        cls = registry.get(model)
        config = {**model_config(model, proto, params, verdict), **overrides}
        forecaster = cls(cls.Params.model_validate(config), season=proto.season)
        t0 = time.perf_counter()
        result = evaluate(forecaster, proto, calibration_for(params, dataset))
        row = {k: round(float(result.metrics[k]), 4) for k in KEYS if k in result.metrics}
        row["wall_seconds"] = round(time.perf_counter() - t0, 1)
        row["loadavg"] = [round(v, 2) for v in os.getloadavg()]
        rows[name] = row
        print(f"{name:24s} " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return {"benchmark": "accuracy", "dataset": dataset, "series": uid, "neighbours": proto.neighbour_names,
            "variants": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seqcast bench accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="pm25", help="a dataset of params.yaml (default: pm25)")
    parser.add_argument("--series", default=None, help="a series of the clean table (default: the reference series)")
    parser.add_argument("--variant", action="append", default=None,
                        help='NAME=MODEL[:JSON overrides], e.g. lgb_rec=lightgbm:{"strategy": "recursive"}')
    args = parser.parse_args(argv)
    out = run(args.dataset, args.series, args.variant or DEFAULT_VARIANTS)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
