"""Validate flow: a dataset's Great Expectations suites -> its cleaned model inputs.

A failing suite raises before anything downstream runs (DVC stops the pipeline, the
Prefect pipeline flow fails); the Data Docs HTML and a FAILED MLflow run remain to
look at. ``python -m flows.validate --dataset <name>`` is the DVC stage's command.
"""

from __future__ import annotations

import json

import pandas as pd
from prefect import flow, get_run_logger

from seqcast import atomic, tracking
from seqcast.config import load_params
from seqcast.errors import DataValidationError
from tasks import cleaning
from tasks.validate import validate_table


@flow(name="validate", log_prints=True)
def validate_flow(dataset: str) -> str:
    """Validate the tidy table of ``dataset``; write the clean table; return its path."""
    logger = get_run_logger()
    params = load_params()
    entry = params.dataset(dataset)
    table = params.path("tidy", f"{dataset}.parquet")
    sources = json.loads(table.with_suffix(".sources.json").read_text())
    tidy = pd.read_parquet(table)
    docs = params.path("reports", "data_docs", dataset)
    files = list(dict.fromkeys(s["raw"] for s in sources.values()))
    tracking.use_store()
    import mlflow

    with tracking.model_run(dataset, "validate", "data", experiment=tracking.experiment_name(f"{dataset}-data"),
                            tags={**{f"source.{k}": v["source"] for k, v in sources.items()},
                                  # the upstream failed and the mirror served it: say so in the run
                                  **{f"source_warning.{k}": str(v["warning"])[:500] for k, v in sources.items()
                                     if v.get("warning")}}):
        version = tracking.log_data_version(tidy, table, name=f"{dataset}-tidy")
        try:
            report = validate_table(tidy, dataset, entry, files, docs, version=version)
        except DataValidationError as err:
            mlflow.log_text(err.render(), "validation_error.txt")
            if docs.exists():
                mlflow.log_artifacts(str(docs), "data_docs")
            logger.error("%s", err.render())
            raise
        mlflow.log_artifacts(str(docs), "data_docs")
        clean, done = cleaning.clean_table(tidy, entry)
        for uid, steps in done.items():
            report[uid].update(steps)
            logger.info("%s/%s: %s", dataset, uid, ", ".join(f"{k} {v}" for k, v in steps.items()))
        for uid, r in report.items():
            mlflow.log_metrics({f"{k}.{uid.replace('^', '')}": float(v) for k, v in r.items()
                                if isinstance(v, (int, float, bool))})
    out = params.path("clean", f"{dataset}.parquet")
    atomic.write_parquet(out, clean)  # a killed run never leaves half a table behind
    atomic.write_json(params.path("reports", "validation", f"{dataset}.json"), report, sort_keys=True)
    logger.info("%s: valid; clean table %s (%d rows)", dataset, out, len(clean))
    return str(out)


def main(argv: list[str] | None = None):
    from flows.entry import flow_parser

    parser = flow_parser(__doc__)
    return validate_flow(parser.parse_args(argv).dataset)


if __name__ == "__main__":
    main()
