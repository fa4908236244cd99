"""The whole pipeline as one Prefect flow: the stages of ``dvc.yaml``, in DVC's order.

Nothing is written twice: the stage list, their order and their commands come from
``dvc.yaml`` itself (resolved by DVC: ``foreach``, ``${...}`` templating), and each
stage's command — always ``python -m flows.<module> <args>`` — is run in this process
by calling that module's ``main(args)``, so every stage is a subflow of this flow with
the same code and the same ``params.yaml`` as under ``dvc repro``. A failing stage (a
validation error, say) stops the flow before anything downstream runs. Unlike
``dvc repro`` it does not skip up-to-date stages nor write ``dvc.lock``.

    seqcast run --prefect [--dataset NAME] [--targets backtest@NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shlex

from prefect import flow, get_run_logger


def dataset_stages(name: str) -> list[str]:
    """The per-dataset stages of ``name`` in dvc.yaml, in execution order (``ingest@<name>`` ..
    ``forecast@<name>``): what ``seqcast run --dataset`` runs."""
    return [stage for stage, _ in stage_commands(datasets=[name], only_datasets=True)]


def stage_commands(targets: list[str] | None = None, datasets: list[str] | None = None,
                   only_datasets: bool = False) -> list[tuple[str, list[str]]]:
    """``(stage, argv)`` of every stage in execution order: all of dvc.yaml, or ``targets`` and
    what they need; ``datasets`` keeps the per-dataset stages of those datasets (and, unless
    ``only_datasets``, the stages that belong to no dataset)."""
    import networkx as nx
    from dvc.repo import Repo

    from seqcast.config import load_params
    from seqcast.paths import project_root

    known = set(load_params().datasets)
    # from the project root: DVC resolves a repository relative to the working directory's git
    with contextlib.chdir(project_root()), Repo(".") as repo:
        graph = repo.index.graph  # edges: stage -> the stages it depends on
        order = list(reversed(list(nx.topological_sort(graph))))
        if targets:
            wanted = {s for s in order if s.addressing in targets}
            missing = set(targets) - {s.addressing for s in wanted}
            if missing:
                raise KeyError(f"no such stage in dvc.yaml: {sorted(missing)}")
            wanted |= {d for s in wanted for d in nx.descendants(graph, s)}
            order = [s for s in order if s in wanted]
        out = []
        for stage in order:
            name, _, item = stage.addressing.partition("@")
            if datasets is not None and ((item in known and item not in datasets) or
                                         (only_datasets and item not in datasets)):
                continue
            argv = shlex.split(stage.cmd)
            if argv[:1] == ["env"]:  # `env GOMP_SPINCOUNT=... python -m flows.x`: a per-process speed setting
                argv = argv[1:]  # of the training stages; the stages here share this process, so it is skipped
                while argv and "=" in argv[0]:
                    argv = argv[1:]
            if argv[:2] != ["python", "-m"] or not argv[2].startswith("flows."):
                raise ValueError(f"stage {stage.addressing}: its cmd must be `python -m flows.<module> ...`, "
                                 f"got {stage.cmd!r}")
            out.append((stage.addressing, argv[2:]))
        return out


@flow(name="pipeline", log_prints=True)
def pipeline_flow(datasets: list[str] | None = None, targets: list[str] | None = None,
                  only_datasets: bool = False) -> dict:
    """Run the stages of dvc.yaml as subflows (``datasets``/``targets``/``only_datasets`` narrow
    it, as above)."""
    logger = get_run_logger()
    done = {}
    for stage, (module, *args) in stage_commands(targets, datasets, only_datasets):
        logger.info("stage %s: %s %s", stage, module, " ".join(args))
        result = importlib.import_module(module).main(args)
        if isinstance(result, int) and not isinstance(result, bool) and result != 0:
            raise RuntimeError(f"stage {stage} stopped with exit status {result}")
        done[stage] = result
    return done


def main(argv: list[str] | None = None) -> None:
    from seqcast.env import configure

    configure()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", help="only this dataset's stages (a name of params.yaml's datasets)")
    parser.add_argument("--targets", nargs="*", help="dvc.yaml stages (and what they need)")
    args = parser.parse_args(argv)
    pipeline_flow([args.dataset] if args.dataset else None, args.targets, only_datasets=bool(args.dataset))


if __name__ == "__main__":
    main()
