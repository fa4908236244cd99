"""A user's file becomes a dataset: read once, validated, what was not stated inferred, and an
entry written into params.yaml (``seqcast datasets add``); and the datasets listed.

What is inferred when not given: the frequency from the timestamps (business days, weekly,
monthly ... or the step below a day; trading-day sessions), the season from the frequency
(protocols.md P4), the horizon (one season, at most half the test part), the split (the last
20 % of each series' steps), the target's domain (non-negative when no value is below 0). What
the pipeline could not use is refused with the file's lines and the rule, and nothing is
written. The file is snapshotted into ``paths.sources/<name>/`` and tracked by DVC, so the
dataset is versioned like every other input; ``dvc repro`` picks the new entry up (dvc.yaml
loops over ``datasets``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from seqcast import atomic, frequency
from seqcast.config import DATASET_NAME, Params, load_params
from seqcast.contract import DS, UNIQUE_ID, Y, local_time
from seqcast.dataset_config import DatasetParams, DataParams, FileSource
from seqcast.paths import project_root, safe_name


class DatasetRefused(ValueError):
    """What the pipeline could not use; nothing was written."""


@dataclass
class AddOptions:
    file: str
    time: str
    target: str
    id: str | None = None
    series: list[str] | None = None
    name: str | None = None
    freq: str | None = None
    sessions: bool | None = None
    covariates: list[str] = field(default_factory=list)
    known_covariates: list[str] = field(default_factory=list)
    horizon: int | None = None
    train_end: str | None = None
    test_fraction: float | None = None
    timezone: str | None = None
    time_format: str | None = None
    separator: str | None = None
    decimal: str = "."
    domain: str | None = None
    unit: str = ""
    models: list[str] | None = None
    every_series: list[str] | None = None
    forecast_cron: str | None = None
    retrain_cron: str | None = None
    schedule_timezone: str | None = None


@dataclass
class Proposal:
    name: str
    entry: dict
    inferred: list[str]  # what was inferred, said to the user
    warnings: list[str]
    rows: int
    series: list[str]


def _source(opts: AddOptions, path: str) -> dict:
    src = {"connector": "file", "path": path, "time": opts.time, "target": opts.target}
    optional = {"id": opts.id, "series": opts.series, "name": opts.name, "covariates": opts.covariates or None,
                "known_covariates": opts.known_covariates or None, "time_format": opts.time_format,
                "separator": opts.separator, "decimal": opts.decimal if opts.decimal != "." else None}
    src.update({k: v for k, v in optional.items() if v is not None})
    return src


def _infer_frequency(tidy: pd.DataFrame) -> frequency.Inferred:
    """The frequency of the longest series (every series of a file shares one)."""
    sizes = tidy.groupby(UNIQUE_ID, sort=False).size()
    longest = local_time(tidy.loc[tidy[UNIQUE_ID] == sizes.idxmax()])
    try:
        return frequency.infer(pd.DatetimeIndex(longest[DS]))
    except ValueError as err:
        raise DatasetRefused(f"{err}") from None


def propose(name: str, opts: AddOptions, params: Params) -> tuple[Proposal, pd.DataFrame, Path]:
    """Read and validate the file, infer what was not given; the entry to write (not written)."""
    from tasks.backtest import ProtocolError, build_protocol
    from tasks.cleaning import clean_table
    from tasks.connectors import file as file_connector
    from tasks.validate import Validation

    if not re.match(DATASET_NAME, name):
        raise DatasetRefused(f"a dataset name is letters, digits, '_' and '-' (it names files and stages): {name!r}")
    path = Path(opts.file).expanduser()
    if not path.is_file():
        raise DatasetRefused(f"no such file: {path}")
    inferred, warnings = [], []
    zone = opts.timezone or "UTC"
    if not opts.timezone:
        inferred.append("timezone UTC (naive timestamps are read as UTC; --timezone names their zone)")
    source = FileSource(**_source(opts, str(path.resolve())))
    tidy = file_connector.read_table(path, source, DataParams(frequency=opts.freq or "D", timezone=zone), name)
    series = [str(u) for u in pd.unique(tidy[UNIQUE_ID])]
    if opts.freq:
        freq, sessions = opts.freq, bool(opts.sessions)
    else:
        found = _infer_frequency(tidy)
        freq, sessions = found.freq, found.sessions if opts.sessions is None else opts.sessions
        inferred.append(f"frequency {freq}{' in sessions (the rows are the steps)' if sessions else ''}: "
                        f"{found.reason}")
    try:
        season = frequency.season_of(freq)
    except ValueError as err:
        raise DatasetRefused(str(err)) from None
    inferred.append(f"season {season} (from the frequency {freq})")
    observed = tidy[Y].dropna()
    domain = opts.domain or ("non_negative" if len(observed) and observed.min() >= 0 else "real")
    if not opts.domain:
        inferred.append(f"domain {domain} ({'no value below 0: forecasts stay >= 0' if domain != 'real' else 'values below 0'}"
                        f"; --domain real|non_negative|positive)")
    missing = int(tidy[Y].isna().sum())
    if opts.train_end:
        split = {"train_end": opts.train_end}
    else:
        split = {"train_fraction": round(1 - (opts.test_fraction if opts.test_fraction is not None else 0.2), 10)}
        if opts.test_fraction is None:
            inferred.append("test part: the last 20 % of each series' steps (--test-fraction / --train-end)")
    protocol = {"name": "P4", "split": split}
    if opts.horizon:
        protocol["horizon"] = int(opts.horizon)
    entry = {
        "sources": [_source(opts, "")],  # the path is set to the snapshot below
        "data": {"frequency": freq, "sessions": sessions, "timezone": zone, "domain": domain,
                 **({"unit": opts.unit} if opts.unit else {})},
        "validation": {},
        "cleaning": {"interpolate_limit": season if missing and not sessions else 0,
                     **({"drop_missing": True} if sessions and missing else {})},
        "protocol": protocol,
        "models": {"run": opts.models, "every_series": opts.every_series if opts.every_series is not None else
                   (["naive", "seasonal_naive"] if len(series) > 1 else [])},
    }
    if missing:
        inferred.append(f"{missing} missing targets: " + ("their rows are dropped (sessions)" if sessions else
                        f"gaps up to {season} steps interpolated in the training inputs, longer ones left missing"))
    if opts.forecast_cron or opts.retrain_cron:
        entry["schedule"] = {k: v for k, v in (("forecast", opts.forecast_cron), ("retrain", opts.retrain_cron),
                                               ("timezone", opts.schedule_timezone or zone)) if v}
    checked = DatasetParams.model_validate({**entry, "sources": [_source(opts, str(path.resolve()))]})
    run = Validation(name, checked)  # the generic rules; a DataValidationError names the lines
    run.add(tidy)
    run.finish([str(path)])
    clean, _ = clean_table(tidy, checked)
    parts = {str(u): local_time(p).reset_index(drop=True) for u, p in clean.groupby(UNIQUE_ID, sort=False)}
    for i, (uid, part) in enumerate(parts.items()):
        try:
            proto = build_protocol(part, name, checked, params.backtest.levels)
        except ProtocolError as err:
            if i == 0:
                raise DatasetRefused(f"the reference series (the first) cannot be judged: {err}") from None
            warnings.append(f"{uid} will not be backtested: {err}")
            continue
        if i == 0:
            tasks = ", ".join(f"{t.name} {t.h} step{'s' if t.h > 1 else ''} x {len(t.origins)} origins"
                              for t in proto.tasks)
            inferred.append(f"protocol P4 on {uid}: {proto.n_train} training steps, {len(proto.y) - proto.n_train} "
                            f"test steps; {tasks}")
    models = opts.models or params.backtest.default_models
    inferred.append(f"models on the reference series: {', '.join(models)}"
                    + ("" if opts.models else " (backtest.default_models; --models to choose)"))
    return Proposal(name, entry, inferred, warnings, len(tidy), series), tidy, path


def entry_text(name: str, entry: dict) -> str:
    """The entry as the block-style YAML lines of ``datasets:`` (indented by two)."""
    body = yaml.safe_dump({name: entry}, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    return "".join(f"  {line}\n" if line else "\n" for line in body.splitlines())


def with_entry(text: str, name: str, entry: dict, replace: bool) -> str:
    """params.yaml's text with the entry written at the end of its ``datasets:`` block (an
    existing entry of that name replaced when ``replace``); every other line kept as it is."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if re.match(r"^datasets:\s*(#.*)?$", ln)), None)
    if start is None:
        raise DatasetRefused("params.yaml has no `datasets:` block")
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^[^\s#]", lines[i])), len(lines))
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")) and \
            not lines[end - 1].startswith("    "):
        end -= 1  # keep the blank lines and comments that introduce the next block
    own = next((i for i in range(start + 1, end) if re.match(rf"^  {re.escape(name)}:\s*(#.*)?$", lines[i])), None)
    if own is not None:
        if not replace:
            raise DatasetRefused(f"params.yaml has a dataset {name!r} already (--replace to write it again)")
        stop = next((i for i in range(own + 1, end) if re.match(r"^  [^\s#]", lines[i])), end)
        del lines[own:stop]
        end -= stop - own
    return "".join(lines[:end]) + entry_text(name, entry) + "".join(lines[end:])


def snapshot(path: Path, name: str, params: Params) -> str:
    """The user's file copied into ``paths.sources/<name>/`` and tracked by DVC (``dvc add``);
    returns its path relative to the project root."""
    folder = params.path("sources", safe_name(name, "dataset name"))
    dest = folder / safe_name(path.name, "file name")
    atomic.copy_file(path, dest)
    root = project_root()
    proc = subprocess.run([sys.executable, "-m", "dvc", "add", str(dest.relative_to(root))], cwd=root,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc add {dest} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return str(dest.relative_to(root))


def add(name: str, opts: AddOptions, replace: bool = False) -> Proposal:
    """``seqcast datasets add``: propose, snapshot the file, write the entry (checked first)."""
    params = load_params()
    if name in params.datasets and not replace:
        raise DatasetRefused(f"params.yaml has a dataset {name!r} already (--replace to write it again)")
    proposal, _, path = propose(name, opts, params)
    target = project_root() / "params.yaml"
    original = target.read_text(encoding="utf-8")
    proposal.entry["sources"][0]["path"] = str(params.path("sources", name, path.name).relative_to(project_root()))
    text = with_entry(original, name, proposal.entry, replace)
    with tempfile.TemporaryDirectory() as tmp:  # the new params.yaml must load before it replaces the old one
        trial = Path(tmp) / "params.yaml"
        trial.write_text(text, encoding="utf-8")
        load_params(trial)
    snapshot(path, name, params)
    atomic.write_text(target, text)
    return proposal


def listing(params: Params) -> list[dict]:
    """Per dataset: name, sources, series, frequency, rows of its clean table and its last backtest."""
    import datetime as dt

    rows = []
    for name, entry in params.datasets.items():
        clean = params.path("clean", f"{name}.parquet")
        board = params.path("reports", "backtest", f"{name}.summary.json")
        n_rows = n_series = None
        if clean.is_file():
            import pyarrow.parquet as pq

            n_rows = pq.ParquetFile(clean).metadata.num_rows
            n_series = len(pd.read_parquet(clean, columns=[UNIQUE_ID])[UNIQUE_ID].unique())
        named = entry.series
        last = dt.datetime.fromtimestamp(board.stat().st_mtime).strftime("%Y-%m-%d %H:%M") if board.is_file() else "-"
        sources = ", ".join(s.connector if s.connector != "file" else f"file {Path(s.path).name}"
                            for s in entry.sources)
        champion = "-"
        promotion = params.path("reports", "promotion", f"{name}.json")
        if promotion.is_file():
            champ = (json.loads(promotion.read_text()).get("champion") or {})
            champion = champ.get("model", "-")
        rows.append({"name": name, "source": sources,
                     "series": n_series if n_series is not None else (len(named) if named else "?"),
                     "frequency": entry.data.frequency + (" (sessions)" if entry.data.sessions else ""),
                     "rows": n_rows if n_rows is not None else "-", "last run": last, "champion": champion})
    return rows
