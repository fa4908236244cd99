"""``seqcast datasets add|list``: a user's file becomes a dataset of params.yaml; the datasets listed."""

from __future__ import annotations

import argparse
import sys


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def cmd_add(args: argparse.Namespace) -> int:
    from seqcast.errors import DataValidationError
    from tasks.datasets import AddOptions, DatasetRefused, add

    opts = AddOptions(file=args.file, time=args.time, target=args.target, id=args.id, series=_names(args.series),
                      name=args.series_name, freq=args.freq, sessions=args.sessions,
                      covariates=_names(args.covariates) or [], known_covariates=_names(args.known_covariates) or [],
                      horizon=args.horizon, train_end=args.train_end, test_fraction=args.test_fraction,
                      timezone=args.timezone, time_format=args.time_format, separator=args.sep, decimal=args.decimal,
                      domain=args.domain, unit=args.unit or "", models=_names(args.models),
                      every_series=_names(args.every_series), forecast_cron=args.forecast_cron,
                      retrain_cron=args.retrain_cron, schedule_timezone=args.schedule_timezone)
    try:
        proposal = add(args.name, opts, replace=args.replace)
    except DataValidationError as err:
        print(err.render(), file=sys.stderr)
        print(f"seqcast datasets add: {args.name} not added; nothing was written", file=sys.stderr)
        return 1
    except DatasetRefused as err:
        print(f"seqcast datasets add: {err}; nothing was written", file=sys.stderr)
        return 1
    print(f"{args.name}: {proposal.rows} rows, {len(proposal.series)} series "
          f"({', '.join(proposal.series[:10])}{' ...' if len(proposal.series) > 10 else ''})")
    for line in proposal.inferred:
        print(f"  {line}")
    for line in proposal.warnings:
        print(f"  warning: {line}")
    print(f"Written: params.yaml datasets.{args.name}; the file is versioned in {proposal.entry['sources'][0]['path']}"
          f" (DVC).\nRun it: seqcast run --dataset {args.name}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from seqcast.config import load_params
    from tasks.datasets import listing

    rows = listing(load_params())
    cols = ["name", "source", "series", "frequency", "rows", "last run", "champion"]
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(width[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(width[c]) for c in cols))
    return 0


def add_parser(sub) -> None:
    datasets = sub.add_parser("datasets", help="add a dataset from a file; list the datasets")
    verbs = datasets.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add", help="a CSV or Parquet file becomes a dataset of params.yaml",
                           description="Reads the file once, validates it, infers what is not given (frequency, "
                                       "season, horizon, split, domain), prints it and writes the entry into "
                                       "params.yaml (datasets.NAME); the file is snapshotted and versioned by DVC.")
    add.add_argument("name", help="the dataset's name (letters, digits, _ and -)")
    add.add_argument("--file", required=True, help="the CSV or Parquet file")
    add.add_argument("--time", required=True, metavar="COLUMN", help="the timestamp column")
    add.add_argument("--target", required=True, metavar="COLUMN", help="the column to forecast")
    add.add_argument("--id", metavar="COLUMN", help="the series column of a long table (several series)")
    add.add_argument("--series", metavar="A,B", help="keep only these series (the first is the reference series)")
    add.add_argument("--series-name", metavar="NAME", help="the name of a wide table's one series (default: the target)")
    add.add_argument("--freq", help="pandas frequency (5min, 30min, h, D, B, W-SUN, MS, QS, YS); default: inferred")
    add.add_argument("--sessions", action="store_true", default=None,
                     help="observed in sessions (trading days, business hours): the rows are the steps")
    add.add_argument("--covariates", metavar="A,B", help="columns observed with the target (known up to each origin)")
    add.add_argument("--known-covariates", metavar="A,B", help="columns known in advance (calendar, workday flags)")
    add.add_argument("--horizon", type=int, help="steps of the multi-step task (default: one season)")
    split = add.add_mutually_exclusive_group()
    split.add_argument("--train-end", metavar="DATE", help="training ends at this timestamp")
    split.add_argument("--test-fraction", type=float, metavar="F", help="the last F of each series is the test part "
                                                                       "(default 0.2)")
    add.add_argument("--timezone", help="the time zone of naive timestamps (default UTC)")
    add.add_argument("--time-format", metavar="FMT", help="strptime format of the timestamps, e.g. %%d/%%m/%%Y %%H:%%M")
    add.add_argument("--sep", metavar="CHAR", help="CSV separator (default: detected)")
    add.add_argument("--decimal", default=".", metavar="CHAR", help="decimal mark (default .)")
    add.add_argument("--domain", choices=["real", "non_negative", "positive"],
                     help="of the target (default: non_negative when no value is below 0)")
    add.add_argument("--unit", help="of the target, for charts")
    add.add_argument("--models", metavar="A,B", help="models on the reference series (default: backtest.default_models)")
    add.add_argument("--every-series", metavar="A,B", help="models on every series (default: naive, seasonal_naive)")
    add.add_argument("--forecast-cron", metavar="CRON", help="schedule of the daily forecast (seqcast deploy)")
    add.add_argument("--retrain-cron", metavar="CRON", help="schedule of the retrain (seqcast deploy)")
    add.add_argument("--schedule-timezone", metavar="TZ", help="time zone of the cron lines (default: --timezone)")
    add.add_argument("--replace", action="store_true", help="write the entry again when the name exists")
    add.set_defaults(func=cmd_add)
    listed = verbs.add_parser("list", help="every dataset: source, series, frequency, rows, last run, champion")
    listed.set_defaults(func=cmd_list)
