"""``seqcast run``: the pipeline through DVC (or the Prefect pipeline flow), one run per checkout."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


def cmd_run(args: argparse.Namespace) -> int:
    from seqcast.config import load_params
    from seqcast.paths import project_root, tracking_uri
    from seqcast.runlock import RunLocked, run_lock

    params = load_params()  # a bad params.yaml stops here, before any stage runs (ParamsError, see main)
    if args.dataset:
        params.dataset(args.dataset)  # an unknown name stops here too (KeyError, see main)
    from seqcast.stack import preflight

    if problem := preflight():  # an MLflow store or Prefect API that cannot be used stops here too
        print(f"seqcast run: {problem}", file=sys.stderr)
        return 4
    root = project_root()
    try:
        with run_lock(root, wait_seconds=args.wait):
            code = _run_pipeline(args, root)
    except RunLocked as err:
        print(f"seqcast run: {err}", file=sys.stderr)
        return 3
    if code == 0:
        print(f"\nMLflow store: {tracking_uri()}  (artifacts: {root / 'mlruns'})")
        print(f"Compare the models: seqcast ui   (or: mlflow ui --backend-store-uri {tracking_uri()} "
              f"--host 127.0.0.1 --port 5000)")
        print("Backtest metrics: dvc metrics show --md    Forecast plots: dvc plots show")
    return code


def dvc_command(args: argparse.Namespace) -> list[str]:
    """``dvc repro`` of everything, of ``--targets`` (and what they need), or of one dataset's
    stages only (``-s``, in order: its upstream stages that belong to no dataset are not run)."""
    force = ["--force"] if args.force else []
    if args.dataset:
        from flows.pipeline import dataset_stages

        return [sys.executable, "-m", "dvc", "repro", "--single-item", *force, *dataset_stages(args.dataset)]
    return [sys.executable, "-m", "dvc", "repro", *force, *args.targets]


def _run_pipeline(args: argparse.Namespace, root: Path) -> int:
    from seqcast.env import child_env

    if args.prefect:
        from flows.pipeline import pipeline_flow

        pipeline_flow([args.dataset] if args.dataset else None, args.targets or None, only_datasets=bool(args.dataset))
        return 0
    with _prefect_api(child_env()) as env:
        return subprocess.call(dvc_command(args), cwd=root, env=env)


@contextlib.contextmanager
def _prefect_api(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """``env`` with a Prefect API for every stage of the run. Without one (``PREFECT_API_URL``
    unset) each stage process would start its own temporary server (~8 s per stage, ~2.5 min
    per pipeline); this starts that same temporary server (127.0.0.1, no UI, the profile's
    database) once for the whole run and stops it afterwards. A server you set is used as is."""
    if env.get("PREFECT_API_URL"):
        yield env
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()  # waits for /health (prefect's ephemeral startup timeout, pyproject.toml)
    try:
        yield {**env, "PREFECT_API_URL": server.api_url}
    finally:
        server.stop()


def add_parser(sub) -> None:
    run = sub.add_parser("run", help="run the pipeline (dvc repro)")
    run.add_argument("--dataset", metavar="NAME", help="only this dataset's stages (ingest .. forecast)")
    run.add_argument("--prefect", action="store_true", help="run the Prefect pipeline flow instead of dvc repro")
    run.add_argument("--force", action="store_true", help="dvc repro --force (rerun every stage)")
    run.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                     help="when another run holds the checkout's lock, wait up to SECONDS (default: refuse)")
    run.add_argument("--targets", nargs="*", default=[], metavar="STAGE",
                     help="only these DVC stages (and what they need), e.g. validate@NAME")
    run.set_defaults(func=cmd_run)
