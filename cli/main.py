"""The ``seqcast`` command (see the package's docstring for the commands)."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import cli
from cli import datasets, deploy, report, run

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def benchmarks() -> dict[str, str]:
    """Every benchmark of benchmarks/ with the first line of its docstring."""
    out = {}
    for path in sorted(BENCHMARKS.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        text = path.read_text(encoding="utf-8").lstrip()
        first = text[3:].split("\n", 1)[0].strip().rstrip('"') if text[:3] in ('"""', "'''") else ""
        out[path.stem] = first
    return out


def cmd_validate(args: argparse.Namespace) -> int:
    """Exit 0 when every file is valid, 1 when one breaks a rule, 2 when one is missing."""
    from seqcast.config import load_params

    params = load_params()
    params.dataset(args.dataset)
    return max(_validate_one(Path(p), args.dataset, params) for p in args.paths)


def _validate_one(path: Path, dataset: str, params) -> int:
    from seqcast.errors import DataValidationError
    from tasks.validate import validate_file

    if not path.is_file():
        print(f"seqcast validate: no such file: {path}", file=sys.stderr)
        return 2
    try:
        report = validate_file(path, dataset, params)
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
    known = benchmarks()
    if args.name not in known:
        print(f"seqcast bench: unknown benchmark {args.name!r}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"benchmarks.{args.name}")
    return int(module.main(args.rest) or 0)


def cmd_ui(args: argparse.Namespace) -> int:
    from seqcast.env import child_env
    from seqcast.paths import tracking_uri

    return subprocess.call([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(),
                            "--host", "127.0.0.1", "--port", str(args.port)], env=child_env())


def cmd_stack(args: argparse.Namespace) -> int:
    from seqcast.stack import main as stack_main

    return stack_main(args.rest)


def cmd_chat(args: argparse.Namespace) -> int:
    from flows.text_chat_session import main as chat_main

    return int(chat_main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqcast", description=cli.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run.add_parser(sub)
    datasets.add_parser(sub)
    val = sub.add_parser("validate", help="validate local files with a dataset's suite")
    val.add_argument("paths", nargs="+", metavar="PATH")
    val.add_argument("--dataset", required=True, metavar="NAME", help="a dataset of params.yaml (its connector and rules)")
    val.set_defaults(func=cmd_validate)
    deploy.add_parser(sub)
    report.add_parser(sub)
    listing = "\n".join(f"  {name:<16} {line}" for name, line in benchmarks().items())
    bench = sub.add_parser("bench", help="run a benchmark", formatter_class=argparse.RawDescriptionHelpFormatter,
                           description=f"Run benchmarks/NAME.py with ARGS (NAME --help: its options).\n\n"
                                       f"benchmarks:\n{listing}")
    bench.add_argument("name", metavar="NAME")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)
    ui = sub.add_parser("ui", help="MLflow UI on the pipeline's store")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)
    stack = sub.add_parser("stack", help="the team stack: up, status, down")
    stack.add_argument("rest", nargs=argparse.REMAINDER)
    stack.set_defaults(func=cmd_stack)
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
    except KeyError as err:  # an unknown dataset name
        if "unknown dataset" not in str(err):
            raise
        print(f"seqcast {args.command}: {err.args[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
