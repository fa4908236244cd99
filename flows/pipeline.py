"""The whole pipeline as one Prefect flow: ingest -> validate -> stationarity -> backtest.

The same stage flows DVC runs one by one (``dvc.yaml``), composed here as subflows so a
Prefect deployment (or ``seqcast run --prefect``) runs them in order with the same
``params.yaml``. A failing validation stops the dataset before any model is trained.
"""

from __future__ import annotations

import argparse

from prefect import flow, get_run_logger

from flows.backtest import backtest_flow
from flows.ingest import ingest_flow
from flows.stationarity import stationarity_flow
from flows.validate import validate_flow
from seqcast.contract import DATASETS


@flow(name="pipeline", log_prints=True)
def pipeline_flow(datasets: list[str] = list(DATASETS)) -> dict:
    logger = get_run_logger()
    summary = {}
    for dataset in datasets:
        ingest_flow(dataset)
        validate_flow(dataset)
        stationarity_flow(dataset)
        summary[dataset] = backtest_flow(dataset)
        logger.info("%s: done", dataset)
    return summary


def main(argv: list[str] | None = None) -> None:
    from seqcast.env import configure

    configure()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=DATASETS)
    pipeline_flow(parser.parse_args(argv).datasets)


if __name__ == "__main__":
    main()
