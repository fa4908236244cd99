"""Weekly retrain and the text models, run through the DVC stages (so every result is in dvc.lock).

``retrain_flow``: per dataset, ingest is forced (the upstream may have new rows), then
``dvc repro forecast@<dataset>`` brings everything downstream up to date — validate,
stationarity, the backtest of every model of params.yaml, champion promotion and the
champion's batch forecast — the very stages a manual ``seqcast run`` runs; a stage whose
inputs did not change is skipped. ``text_models_flow`` does the same for the GPT stages
(the ``gpt-train`` deployment, on the GPU pool).

    python -m flows.retrain [--datasets NAME ...]   (default: every dataset of params.yaml)
"""

from __future__ import annotations

import argparse

from prefect import flow, get_run_logger

from flows.daily import dvc_repro, ingest_stage

TEXT_TARGETS = ["gpt_chat_sft"]  # the last GPT stage: dvc repro brings its upstream (ingest_text, gpt_train)


@flow(name="retrain", log_prints=True)
def retrain_flow(datasets: list[str] | None = None) -> dict:
    """Fresh data, then every downstream stage of each dataset (``dvc repro forecast@<dataset>``;
    ``datasets`` None: every dataset of params.yaml)."""
    import json

    from seqcast.config import load_params

    logger = get_run_logger()
    params = load_params()
    datasets = list(params.datasets) if datasets is None else datasets
    for name in datasets:
        params.dataset(name)  # an unknown name stops here, before any stage runs
    out = {}
    for dataset in datasets:
        ingest_stage(f"ingest@{dataset}")
        dvc_repro(f"forecast@{dataset}")
        decision = json.loads(params.path("reports", "promotion", f"{dataset}.json").read_text())
        logger.info("%s: %s (%s)", dataset, "promoted" if decision["promoted"] else "kept the champion",
                    decision["reason"])
        out[dataset] = decision
    return out


@flow(name="text-models", log_prints=True)
def text_models_flow() -> str:
    """The GPT stages (``dvc repro`` of the chat fine-tune and everything it needs)."""
    return dvc_repro(*TEXT_TARGETS)


def main(argv: list[str] | None = None) -> None:
    from seqcast.env import configure

    configure()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", metavar="NAME", help="datasets of params.yaml (default: all)")
    args = parser.parse_args(argv)
    print(retrain_flow(args.datasets))


if __name__ == "__main__":
    main()
