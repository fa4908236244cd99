"""Weekly retrain: backtest every configured model of each dataset, then promote.

The backtest is the existing :func:`flows.backtest.backtest_flow` (one MLflow run per
(series, model)); promotion applies the rule written down in :mod:`tasks.promotion`
(the best model by the protocol's MASE, ties by coverage, becomes ``champion`` only
when it beats the current one on the same protocol). The stages the backtest needs
(ingest -> validate -> stationarity) are brought up to date with ``dvc repro`` first,
so a re-run skips everything whose inputs did not change.

    python -m flows.retrain --datasets market pm25 [--models naive arima] [--families neural] [--force-promotion]
"""

from __future__ import annotations

import argparse

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.backtest import backtest_flow
from flows.daily import dvc_repro
from seqcast.contract import DATASETS
from tasks import promotion


def select_models(dataset: str, models: list[str] | None, families: list[str] | None) -> list[str]:
    """``models`` or ``models.run.<dataset>`` from params.yaml, kept to ``families`` when given."""
    from models import registry
    from seqcast.config import load_params

    names = list(models or load_params().models.run[dataset])
    if families:
        names = [n for n in names if registry.get(n).family in families]
    return names


@task(name="promote", cache_policy=NO_CACHE, timeout_seconds=300, retries=2, retry_delay_seconds=5)
def promote_task(dataset: str, force: bool = False) -> dict:
    return promotion.promote(dataset, force=force)


@flow(name="retrain", log_prints=True)
def retrain_flow(datasets: list[str] = list(DATASETS), models: list[str] | None = None,
                 families: list[str] | None = None, force_promotion: bool = False) -> dict:
    """Backtest ``models`` (default: ``models.run.<dataset>``, optionally only those of ``families``,
    e.g. ``["neural"]`` on the GPU pool) on each dataset, then promote among every model's latest run."""
    logger = get_run_logger()
    out = {}
    for dataset in datasets:
        names = select_models(dataset, models, families)
        if not names:
            logger.info("%s: no model of families %s in models.run.%s", dataset, families, dataset)
            continue
        dvc_repro(f"stationarity@{dataset}")
        backtest_flow(dataset, names)
        decision = promote_task(dataset, force_promotion)
        logger.info("%s: %s (%s)", dataset, "promoted" if decision["promoted"] else "kept the champion",
                    decision["reason"])
        out[dataset] = decision
    return out


def main(argv: list[str] | None = None) -> None:
    from seqcast.env import configure

    configure()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--models", nargs="*")
    parser.add_argument("--families", nargs="*", help="only models of these families (baseline, classical, neural)")
    parser.add_argument("--force-promotion", action="store_true")
    args = parser.parse_args(argv)
    print(retrain_flow(args.datasets, args.models, args.families, args.force_promotion))


if __name__ == "__main__":
    main()
