"""``seqcast``: the command line.

    seqcast run [--prefect] [--wait S] the whole pipeline (dvc repro; or the Prefect pipeline flow);
                                       one run per checkout at a time (a second refuses, or waits S seconds)
    seqcast validate PATH... --kind K  validate local files with the pipeline's suite
    seqcast bench NAME [ARGS...]       run benchmarks/NAME.py; the last line printed is JSON
    seqcast ui [--port N]              the MLflow UI on the pipeline's store (127.0.0.1)
    seqcast chat [ARGS...]             talk to the fine-tuned GPT
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


def _venv_env() -> dict[str, str]:
    """Environment for child processes: this interpreter's bin first, so `python` in
    dvc.yaml commands is the one seqcast is installed in."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def cmd_run(args: argparse.Namespace) -> int:
    from seqcast.config import load_params
    from seqcast.paths import project_root, tracking_uri
    from seqcast.runlock import RunLocked, run_lock

    load_params()  # a bad params.yaml stops here, before any stage runs (ParamsError, see main)
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
        print("Backtest metrics: dvc metrics show    Forecast plots: dvc plots show")
    return code


def _run_pipeline(args: argparse.Namespace, root: Path) -> int:
    if args.prefect:
        from flows.pipeline import pipeline_flow

        pipeline_flow(args.datasets)
        return 0
    dvc = [sys.executable, "-m", "dvc", "repro", *(["--force"] if args.force else []), *args.targets]
    with _prefect_api(_venv_env()) as env:
        return subprocess.call(dvc, cwd=root, env=env)


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


def cmd_validate(args: argparse.Namespace) -> int:
    """Exit 0 when every file is valid, 1 when one breaks a rule, 2 when one is missing."""
    from seqcast.config import load_params

    params = load_params()
    return max(_validate_one(Path(p), args.kind, params) for p in args.paths)


def _validate_one(path: Path, kind: str, params) -> int:
    from seqcast.errors import DataValidationError
    from tasks.validate import validate_file

    if not path.is_file():
        print(f"seqcast validate: no such file: {path}", file=sys.stderr)
        return 2
    try:
        report = validate_file(path, kind, params)
    except DataValidationError as err:
        print(err.render(), file=sys.stderr)
        return 1
    except OSError as err:  # unreadable (permissions, ...)
        print(f"seqcast validate: cannot read {path}: {err}", file=sys.stderr)
        return 1
    for uid, r in report.items():
        print(f"{path}: {uid}: valid ({r['rows']} rows, {r['expectations']} expectations, "
              f"{r['missing_y']} missing targets, longest missing run {r['longest_missing_run']}, "
              f"{r['warning_count']} warning(s))")
        for w in r["warnings"]:
            print(f"  warning: {w['rule']} on column '{w['column']}' (file column {w['file_column']}): "
                  f"{w['count']} of {w['total']} rows tolerated ({w['detail']}); e.g. lines {w['example_lines']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    try:
        module = importlib.import_module(f"benchmarks.{args.name}")
    except ModuleNotFoundError:
        known = sorted(p.stem for p in Path(__file__).parent.parent.joinpath("benchmarks").glob("*.py")
                       if not p.stem.startswith("_"))
        print(f"seqcast bench: unknown benchmark {args.name!r}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    return int(module.main(args.rest) or 0)


def cmd_ui(args: argparse.Namespace) -> int:
    from seqcast.paths import tracking_uri

    return subprocess.call([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(),
                            "--host", "127.0.0.1", "--port", str(args.port)], env=_venv_env())


def cmd_chat(args: argparse.Namespace) -> int:
    from flows.text_chat_session import main as chat_main

    return int(chat_main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    from seqcast.contract import DATASETS

    parser = argparse.ArgumentParser(prog="seqcast", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole pipeline (dvc repro)")
    run.add_argument("--prefect", action="store_true", help="run the Prefect pipeline flow instead of dvc repro")
    run.add_argument("--force", action="store_true", help="dvc repro --force (rerun every stage)")
    run.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=DATASETS,
                     help="with --prefect: the datasets to run")
    run.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                     help="when another run holds the checkout's lock, wait up to SECONDS (default: refuse)")
    run.add_argument("--targets", nargs="*", default=[], metavar="STAGE",
                     help="only these DVC stages (and what they need), e.g. validate@market")
    run.set_defaults(func=cmd_run)
    val = sub.add_parser("validate", help="validate local files")
    val.add_argument("paths", nargs="+", metavar="PATH")
    val.add_argument("--kind", choices=["market", "pm25"], required=True)
    val.set_defaults(func=cmd_validate)
    bench = sub.add_parser("bench", help="run a benchmark")
    bench.add_argument("name")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)
    ui = sub.add_parser("ui", help="MLflow UI on the pipeline's store")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)
    chat = sub.add_parser("chat", help="chat with the fine-tuned GPT")
    chat.add_argument("rest", nargs=argparse.REMAINDER)
    chat.set_defaults(func=cmd_chat)
    return parser


def main(argv: list[str] | None = None) -> int:
    from seqcast.env import configure
    from seqcast.errors import ParamsError

    configure()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["chat"]:  # chat's own parser reads its options (REMAINDER misses a leading --once)
        return cmd_chat(argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ParamsError as err:  # one line per problem, each naming the key; no traceback
        print(err.render(), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
