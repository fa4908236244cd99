"""Promote flow: the champion of a dataset in the MLflow registry, by the written-down rule.

Reads the latest backtest run of every model on the dataset's reference series, applies
:func:`tasks.promotion.decide` and, on promotion, registers ``seqcast-<dataset>`` with the
alias ``champion`` (see :mod:`tasks.promotion`). The decision is written to
``reports/promotion/<dataset>.json``, the stage's output, so ``dvc repro`` re-runs it
whenever the backtest changes. ``python -m flows.promote --dataset <name>`` is the DVC
stage's command.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from seqcast import atomic
from seqcast.config import load_params
from tasks import promotion


@task(name="promote", cache_policy=NO_CACHE, timeout_seconds=300, retries=2, retry_delay_seconds=5)
def promote_task(dataset: str, force: bool = False) -> dict:
    return promotion.promote(dataset, force=force)


@flow(name="promote", log_prints=True)
def promote_flow(dataset: str, force: bool = False) -> dict:
    logger = get_run_logger()
    params = load_params()
    decision = promote_task(dataset, force)
    champion = promotion.champion_summary(dataset)
    out = {**decision, "champion": champion}
    atomic.write_json(params.path("reports", "promotion", f"{dataset}.json"), out, sort_keys=True, default=str)
    logger.info("%s: %s (%s); champion %s", dataset, "promoted" if decision["promoted"] else "kept the champion",
                decision["reason"], champion)
    return out


def main(argv: list[str] | None = None):
    from flows.entry import flow_parser

    parser = flow_parser(__doc__)
    parser.add_argument("--force", action="store_true", help="promote the best candidate whatever the champion")
    args = parser.parse_args(argv)
    return promote_flow(args.dataset, args.force)


if __name__ == "__main__":
    main()
