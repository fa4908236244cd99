"""``seqcast report``: the results tables of docs/ written from the pipeline's reports
(:mod:`tasks.docs_report`); ``--check`` changes nothing and exits 1 when a table is stale."""

from __future__ import annotations

import argparse
import sys


def cmd_report(args: argparse.Namespace) -> int:
    from seqcast.config import load_params
    from seqcast.paths import project_root
    from tasks import docs_report

    params, docs = load_params(), project_root() / "docs"
    if args.check:
        stale = docs_report.stale(docs, params)
        for line in stale:
            print(f"seqcast report: stale table {line}: run `seqcast report`", file=sys.stderr)
        return 1 if stale else 0
    changed = docs_report.write(docs, params)
    print(f"{len(changed)} page(s) rewritten" + (": " + ", ".join(p.name for p in changed) if changed else ""))
    return 0


def add_parser(sub) -> None:
    report = sub.add_parser("report", help="write the docs' results tables from the reports")
    report.add_argument("--check", action="store_true", help="exit 1 when a committed table differs (changes nothing)")
    report.set_defaults(func=cmd_report)
