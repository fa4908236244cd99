"""Validation with Great Expectations 1.x: one suite per rule set, thresholds from the dataset's
entry in params.yaml (``datasets.<name>.validation``; per-series ``overrides`` stated openly).

The suite runs on a *check frame*: the tidy rows of one series plus derived columns
that turn calendar and continuity rules into row rules (``step_hours`` since the
previous row, ``steps`` of the frequency's grid and ``on_grid`` for a regular series,
``gap_days`` for series in sessions, ``weekday``, ``null_run`` = how many missing steps
in a row end here (missing targets and steps absent from the grid), ``log_return`` from
the previous observed value, ``hours_ahead`` of now) and ``line``, the row's line in the
raw file. Derived columns carry state from one
chunk to the next (:class:`Carry`), so a file of any size is validated chunk by chunk
in bounded memory with the same result as in one piece.

Two severities (params.yaml ``validation.*``):

- **errors** — what would corrupt a model: missing columns, text in numbers, duplicate
  or unordered timestamps, timestamps off the frequency's grid, gaps longer than allowed,
  values outside the target's domain or ceiling, absurd changes, dates in the future, too
  many missing targets. Every dataset gets the generic ones; an entry adds its own. They raise :class:`DataValidationError` naming the
  file, the column (internal and as written in the file), the rule, the count and
  example rows with their file line numbers.
- **warnings** — rare quirks of real upstream data under a stated tolerance (GX
  ``mostly``): a session on an unusual weekday, an inconsistent High/Low, a zero open,
  missing targets under the allowed share. Reported (log, the report JSON, MLflow),
  never fatal.

Data Docs HTML is written either way. Raw files are only ever read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqcast import frequency
from seqcast.contract import DS, UNIQUE_ID, Y, local_time
from seqcast.dataset_config import DatasetParams, Rules
from seqcast.errors import DataValidationError, Failure
from tasks import offline_html
from tasks.provenance import expand_runs, provenance

log = logging.getLogger(__name__)

FLOAT_TYPES = ["float64", "Float64", "float32"]
EXAMPLES = 5
DERIVED = {  # derived column -> how it is computed (named in messages beside the file column)
    "step_hours": "hours since the previous row",
    "steps": "steps of the frequency since the previous row",
    "on_grid": "1 when the timestamp lies on the frequency's grid",
    "gap_days": "days since the previous row",
    "weekday": "day of the week, Monday=0",
    "null_run": "consecutive missing steps ending at this row",
    "log_return": "log change from the previous observed value",
    "hours_ahead": "hours after the time of validation",
}


# ---------------------------------------------------------------------------- check frame
@dataclass
class Carry:
    """What one chunk of a series hands to the next: the derived columns continue across."""

    ds: pd.Timestamp | None = None
    y: float = float("nan")  # last observed target
    null_run: float = 0  # the run of missing steps at the last row
    last_missing: bool = False  # whether the last row's target was missing


def _running_nulls(isna: np.ndarray, carry: int) -> np.ndarray:
    """For each row: how many consecutive missing targets end there (0 when observed)."""
    count = np.cumsum(isna)
    last_reset = np.maximum.accumulate(np.where(~isna, count, 0))
    run = (count - last_reset) * isna
    if carry and len(isna):
        leading = np.cumsum(~isna) == 0  # rows before the first observed one continue the run
        run = run + carry * leading
    return run.astype(float)


def _runs_with_gaps(isna: np.ndarray, absent: np.ndarray, carry: Carry) -> np.ndarray:
    """Missing steps in a row ending at each row: a missing target counts one, the grid steps
    absent before a row count too; an observed row with no absent step before it ends a run (0)."""
    run = np.zeros(len(isna))
    previous, previous_nan = carry.null_run, carry.last_missing
    for i in range(len(isna)):
        gap = absent[i]
        start = previous if (previous_nan and (gap or isna[i])) else 0.0
        run[i] = start + gap + isna[i] if (gap or isna[i]) else 0.0
        previous, previous_nan = run[i], bool(isna[i])
    return run


def check_frame(series: pd.DataFrame, data=None, rules: Rules | None = None, carry: Carry | None = None,
                lines: np.ndarray | None = None, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """One series (in file order) plus the derived columns the rules need (``data``: the
    dataset's ``data`` block; without it the series is taken as regular and nothing grid-wise
    is derived)."""
    carry = carry or Carry()
    frame = series.reset_index(drop=True).copy()
    frame.insert(0, "line", np.arange(1, len(frame) + 1) if lines is None else np.asarray(lines))
    ds = frame[DS]
    previous = ds.shift(1)
    if carry.ds is not None and len(frame):
        previous.iloc[0] = carry.ds
    step = (ds - previous).dt.total_seconds()
    frame["step_hours"] = step / 3600.0
    frame["gap_days"] = step / 86400.0
    frame["weekday"] = ds.dt.day_of_week
    y = frame[Y].to_numpy(dtype=float)
    isna = np.isnan(y)
    absent = np.zeros(len(frame))
    if data is not None and not data.sessions:
        index = pd.DatetimeIndex(ds)
        if carry.ds is not None:
            index = pd.DatetimeIndex([carry.ds]).append(index)
        steps = frequency.grid_steps(index, data.frequency)[-len(frame):] if len(frame) else np.empty(0)
        frame["steps"] = steps
        frame["on_grid"] = frequency.on_grid(pd.DatetimeIndex(ds), data.frequency).astype(float)
        absent = np.where(np.isfinite(steps) & (steps > 1), steps - 1, 0.0)
    if absent.any():
        frame["null_run"] = _runs_with_gaps(isna, absent, carry)
    else:
        frame["null_run"] = _running_nulls(isna, carry.null_run if carry.last_missing else 0)
    if rules is not None and rules.max_abs_log_change is not None:
        before = pd.Series(np.concatenate([[carry.y], y[:-1]])).ffill().to_numpy()  # previous observed value
        with np.errstate(divide="ignore", invalid="ignore"):
            frame["log_return"] = np.where((y > 0) & (before > 0), np.log(y / before), np.nan)
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    frame["hours_ahead"] = (ds - now).dt.total_seconds() / 3600.0
    return frame


def carry_after(frame: pd.DataFrame, carry: Carry | None = None) -> Carry:
    carry = carry or Carry()
    if frame.empty:
        return carry
    observed = frame[Y].dropna()
    return Carry(ds=frame[DS].iloc[-1], y=float(observed.iloc[-1]) if len(observed) else carry.y,
                 null_run=float(frame["null_run"].iloc[-1]), last_missing=bool(np.isnan(frame[Y].iloc[-1])))


# ---------------------------------------------------------------------------- the suites
def expectations(rules: Rules, data) -> list[Any]:
    """The suite of one rule set; tolerant rules carry ``mostly``. ``data`` (the dataset's
    ``data`` block) decides the calendar rules and the target's lower bound."""
    import great_expectations.expectations as gxe

    between = gxe.ExpectColumnValuesToBeBetween
    suite = [
        gxe.ExpectColumnToExist(column=UNIQUE_ID),
        gxe.ExpectColumnToExist(column=DS),
        gxe.ExpectColumnToExist(column=Y),
        gxe.ExpectColumnValuesToBeInTypeList(column=Y, type_list=FLOAT_TYPES),
        gxe.ExpectColumnValuesToNotBeNull(column=DS),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=[UNIQUE_ID, DS]),
        # strictly increasing timestamps: every step forward is positive
        between(column="step_hours", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToNotBeNull(column=Y, mostly=1 - rules.max_missing_fraction),
    ]
    if rules.max_missing_run is not None:
        suite.append(between(column="null_run", min_value=0, max_value=rules.max_missing_run))
    suite.append(between(column="hours_ahead", max_value=rules.max_future_hours))
    lower = {"positive": 0, "non_negative": 0}.get(data.domain)
    if lower is not None or rules.max_value is not None:  # the target's domain (and ceiling)
        suite.append(between(column=Y, min_value=lower, max_value=rules.max_value,
                             strict_min=data.domain == "positive", strict_max=rules.max_value is not None))
    if rules.max_abs_log_change is not None:
        suite.append(between(column="log_return", min_value=-rules.max_abs_log_change,
                             max_value=rules.max_abs_log_change))
    if data.sessions:
        if rules.min_gap is not None or rules.max_gap is not None:
            day = pd.Timedelta(days=1)
            suite.append(between(column="gap_days",
                                 min_value=None if rules.min_gap is None else pd.Timedelta(rules.min_gap) / day,
                                 max_value=None if rules.max_gap is None else pd.Timedelta(rules.max_gap) / day))
    else:  # the expected calendar: every timestamp on the grid; at most max_step steps apart
        suite.append(gxe.ExpectColumnValuesToBeInSet(column="on_grid", value_set=[1.0]))
        if rules.max_step is not None:
            suite.append(between(column="steps", min_value=1, max_value=rules.max_step))
    quirk = 1 - rules.max_quirk_fraction  # quirks of real upstream data: tolerated up to max_quirk_fraction
    if rules.ohlc:
        suite += [
            *[between(column=c, min_value=0, strict_min=True, mostly=quirk) for c in ("open", "high", "low")],
            between(column="volume", min_value=0, mostly=quirk),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="low", or_equal=True, mostly=quirk),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="close", or_equal=True, mostly=quirk),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="close", column_B="low", or_equal=True, mostly=quirk),
        ]
    if rules.weekdays is not None:
        suite.append(gxe.ExpectColumnValuesToBeInSet(column="weekday", value_set=rules.weekdays, mostly=quirk))
    return suite


def _context(docs_dir: Path | None):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        ctx.add_data_docs_site(site_name="seqcast", site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    return ctx


def _rule_name(config) -> str:
    kwargs = {k: v for k, v in config.kwargs.items() if k not in {"batch_id", "column", "result_format"}}
    args = ", ".join(f"{k}={v}" for k, v in kwargs.items() if v is not None)
    return f"{config.type}({args})"


def _columns_of(config) -> list[str]:
    kw = config.kwargs
    if kw.get("column"):
        return [kw["column"]]
    return [str(kw[k]) for k in ("column_A", "column_B") if k in kw] or [str(c) for c in kw.get("column_list", [])]


# ---------------------------------------------------------------------------- running a suite
@dataclass
class Tally:
    """One expectation's results added up over the chunks of a series."""

    config: Any
    element: int = 0
    unexpected: int = 0
    missing: int = 0
    gx_failed: bool = False
    observed: Any = None
    examples: list[pd.DataFrame] = field(default_factory=list)

    def add(self, result, frame: pd.DataFrame) -> None:
        res = result.result or {}
        if "unexpected_count" not in res:  # table-level rule (column exists, type)
            self.gx_failed |= not result.success
            self.observed = res.get("observed_value", self.observed)
            return
        self.element += int(res.get("element_count") or 0)
        self.unexpected += int(res.get("unexpected_count") or 0)
        self.missing += int(res.get("missing_count") or 0)
        shown = sum(len(e) for e in self.examples)
        if shown < EXAMPLES and res.get("unexpected_count"):
            lines = [row["line"] for row in res.get("partial_unexpected_index_list") or [] if "line" in row]
            rows = frame[frame["line"].isin(lines[: EXAMPLES - shown])]
            keep = [c for c in dict.fromkeys([UNIQUE_ID, DS, Y, *_columns_of(self.config)]) if c in rows]
            self.examples.append(rows.set_index("line")[keep])

    def severity(self) -> str | None:
        """"error", "warning" or None (clean), over the whole series."""
        if not self.element:
            return "error" if self.gx_failed else None
        mostly = self.config.kwargs.get("mostly")
        if mostly is None:
            return "error" if self.unexpected else None
        base = self.element if self.config.type == "expect_column_values_to_not_be_null" else \
            self.element - self.missing
        share = self.unexpected / base if base else 0.0
        if share > 1 - mostly + 1e-12:
            return "error"
        return "warning" if self.unexpected else None

    def failure(self, severity: str, source: dict[str, str], label: str) -> Failure:
        config = self.config
        columns = _columns_of(config)
        column = "/".join(columns) or None
        files = []
        for c in columns:
            if c in DERIVED:
                files.append(f"{source.get(DS, DS)!r} -> {DERIVED[c]}")
            else:
                files.append(repr(source.get(c, c)))
        examples = pd.concat(self.examples) if self.examples else pd.DataFrame()
        examples.index.name = label
        detail = ""
        mostly = config.kwargs.get("mostly")
        if not self.element:
            detail = f"observed {self.observed}"
        elif mostly is not None:
            base = self.element if config.type == "expect_column_values_to_not_be_null" else self.element - self.missing
            detail = f"{self.unexpected / max(base, 1):.2%} of rows, allowed {1 - mostly:.2%}"
        return Failure(_rule_name(config), column, self.unexpected, self.element, examples, detail,
                       source_column="/".join(files), severity=severity)


def _checkpoint(ctx, rules: Rules, data, name: str, docs: bool, source: str | None = None, asset: str | None = None):
    """A GX suite + checkpoint for one rule set (shared by every series with the same rules: GX
    keeps each checkpoint's last batch alive, so one per series would hold a chunk of every
    series of a large file in memory). The Data Docs name its data source ``source`` (the
    dataset) and its asset ``asset`` (the data version)."""
    import great_expectations as gx

    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=expectations(rules, data)))
    asset = ctx.data_sources.add_pandas(source or f"{name} · source").add_dataframe_asset(asset or f"{name} · series")
    batch = asset.add_batch_definition_whole_dataframe("all-rows")
    definition = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    return ctx.checkpoints.add(gx.Checkpoint(
        name=f"{name} · checkpoint", validation_definitions=[definition],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data-docs")] if docs else [],
        result_format={"result_format": "SUMMARY", "unexpected_index_column_names": ["line"],
                       "partial_unexpected_count": 20},
    ))


class SeriesSuite:
    """One series' results of its rules' checkpoint, run chunk by chunk and added up."""

    def __init__(self, checkpoint, data, rules: Rules, uid: str, label: str = ""):
        self.uid, self.data, self.rules, self.checkpoint, self.label = uid, data, rules, checkpoint, label
        self.tallies: list[Tally] | None = None
        self.carry = Carry()
        self.rows = self.missing_y = self.longest_run = 0

    def add(self, series: pd.DataFrame, lines: np.ndarray | None, now: pd.Timestamp) -> None:
        from great_expectations.core.run_identifier import RunIdentifier

        frame = check_frame(series, self.data, self.rules, self.carry, lines, now)
        span = f"lines {frame['line'].iloc[0]}-{frame['line'].iloc[-1]}" if len(frame) else "no rows"
        run = RunIdentifier(run_name=f"{self.label}{self.uid} ({span})", run_time=now.to_pydatetime())
        outcome = self.checkpoint.run(batch_parameters={"dataframe": frame}, run_id=run)
        results = list(outcome.run_results.values())[0].results
        if self.tallies is None:
            self.tallies = [Tally(r.expectation_config) for r in results]
        for tally, result in zip(self.tallies, results):
            tally.add(result, frame)
        self.carry = carry_after(frame, self.carry)
        self.rows += len(frame)
        self.missing_y += int(frame[Y].isna().sum())
        self.longest_run = max(self.longest_run, int(frame["null_run"].max() or 0))

    def outcome(self, source: dict[str, str], label: str) -> tuple[list[Failure], list[Failure], dict]:
        errors, warnings = [], []
        for tally in self.tallies or []:
            severity = tally.severity()
            if severity:
                (errors if severity == "error" else warnings).append(tally.failure(severity, source, label))
        report = {"success": not errors, "rows": self.rows, "missing_y": self.missing_y,
                  "longest_missing_run": self.longest_run, "expectations": len(self.tallies or []),
                  "failed": len(errors), "warning_count": len(warnings),
                  "warnings": [w.to_dict() for w in warnings]}
        return errors, warnings, report


class Validation:
    """Validate the series of a dataset fed in pieces (whole tables, or chunks of a large file).
    ``version``: the data version the Data Docs name beside the dataset (the table's md5)."""

    def __init__(self, dataset: str, entry: DatasetParams, docs_dir: Path | None = None, version: str = ""):
        self.dataset, self.entry, self.docs_dir = dataset, entry, docs_dir
        self.version = version
        self.ctx = _context(docs_dir)
        self.series: dict[str, SeriesSuite] = {}
        self.checkpoints: dict[str, Any] = {}  # one per distinct rule set
        self.sources: dict[str, dict] = {}
        self.now = pd.Timestamp.now(tz="UTC")

    def _suite_name(self, uid: str) -> str:
        name = self._source_name(uid)
        return f"{name} · data {self.version[:8]}" if self.version else name

    def _source_name(self, uid: str) -> str:
        return f"{self.dataset} · {uid}" if uid in self.entry.validation.overrides else self.dataset

    def add(self, tidy: pd.DataFrame) -> None:
        missing = [c for c in (UNIQUE_ID, DS, Y) if c not in tidy.columns]
        if missing:
            raise DataValidationError(self.dataset, sorted({s.get("file", "?") for s in self.sources.values()}) or
                                      ["(table)"], [Failure("expect_column_to_exist", c, 0, 0,
                                                            detail="required column missing") for c in missing])
        ids = tidy[UNIQUE_ID].astype(str).to_numpy()
        for uid in pd.unique(ids):
            rows = ids == uid
            series = local_time(tidy.loc[rows])  # calendar rules on the series' own clock
            info = provenance(tidy, uid)
            lines = expand_runs(info.get("lines", []))
            if info:
                self.sources[uid] = info
            suite = self.series.get(uid)
            if suite is None:
                rules = self.entry.validation.for_series(uid)
                key = rules.model_dump_json()
                if key not in self.checkpoints:
                    self.checkpoints[key] = _checkpoint(self.ctx, rules, self.entry.data, self._suite_name(uid),
                                                        self.docs_dir is not None, self._source_name(uid),
                                                        f"data {self.version[:8]}" if self.version else "table")
                suite = self.series[uid] = SeriesSuite(self.checkpoints[key], self.entry.data, rules, uid,
                                                       f"{self.dataset} · ")
            if len(lines) != len(series):  # no provenance: positions in the table
                lines = suite.rows + np.arange(1, len(series) + 1)
            suite.add(series, lines, self.now)

    def finish(self, files: list[str]) -> dict[str, dict]:
        """Raise on any error; else the report per series (with its warnings)."""
        if self.docs_dir is not None and self.series:
            self.ctx.build_data_docs()
            offline_html.localize(self.docs_dir)  # the pages' scripts and styles from the site itself
        report, errors, warnings = {}, [], []
        for uid, suite in self.series.items():
            info = self.sources.get(uid, {})
            label = "line" if info else "row"
            errs, warns, report[uid] = suite.outcome(info.get("columns", {}), label)
            errors += errs
            warnings += warns
        if not self.series:
            errors.append(Failure("at least one data row", None, 0, 0, detail="the table has no rows"))
        if errors:
            raise DataValidationError(self.dataset, files, errors, warnings)
        return report


def publish_warnings(report: dict[str, dict]) -> None:
    """Put the tolerated quirks where a scheduled run's user sees them: the log (Prefect shows
    it) and the active MLflow run (tag ``validation_warnings``, ``validation/warnings.json``)."""
    import mlflow

    warnings = {uid: r.get("warnings", []) for uid, r in report.items()}
    for uid, items in warnings.items():
        for w in items:
            log.warning("%s: tolerated quirk: %s on column %s (file column %s): %d of %d rows (%s); lines %s",
                        uid, w["rule"], w["column"], w["file_column"], w["count"], w["total"], w["detail"],
                        w["example_lines"])
    if mlflow.active_run() is None:
        return
    mlflow.set_tag("validation_warnings", str(sum(len(w) for w in warnings.values())))
    if any(warnings.values()):
        mlflow.log_dict(warnings, "validation/warnings.json")


def validate_table(tidy: pd.DataFrame, dataset: str, entry: DatasetParams, files: list[str],
                   docs_dir: Path | None = None, version: str = "") -> dict[str, dict]:
    """Validate every series of a tidy table by its dataset's rules; raise DataValidationError on
    any error.

    The report per series lists the tolerated quirks under ``warnings``; they are also
    logged and, inside an MLflow run, tagged and logged as ``validation/warnings.json``."""
    run = Validation(dataset, entry, docs_dir, version)
    run.add(tidy)
    report = run.finish(files)
    publish_warnings(report)
    return report


# ---------------------------------------------------------------------------- local files
def source_for_file(path: Path, entry: DatasetParams):
    """The source entry a local file belongs to: the one whose files it is named like, else the first."""
    from tasks.connectors import uci_prsa, yahoo

    for source in entry.sources:
        if source.connector == "uci_prsa" and (uci_prsa.station_of_file(path, source) or path.suffix == ".zip"):
            return source
        if source.connector == "yahoo" and path.name.split(".csv")[0] in {yahoo.stem(s, source) for s in source.series}:
            return source
        if source.connector == "file" and Path(source.path).name == path.name:
            return source
    return entry.sources[0]


def validate_file(path: Path, dataset: str, params, chunk_rows: int | None = None) -> dict[str, dict]:
    """``seqcast validate PATH --dataset NAME``: parse a local file the way the dataset's ingest
    does (its connector), then the same suite, streaming ``chunk_rows`` rows at a time
    (``validation.chunk_rows``): bounded memory."""
    from tasks import connectors

    path = Path(path)
    entry = params.dataset(dataset)
    source = source_for_file(path, entry)
    reader = connectors.get(source.connector).read_file(path, source, entry.data, dataset,
                                                        chunk_rows or params.validation.chunk_rows)
    run = Validation(dataset, entry)
    parse_errors: list[Failure] = []
    rows = 0
    try:
        for part in reader:  # a chunk's parse failures come as an error value: every chunk is read
            if isinstance(part, DataValidationError):
                parse_errors = _merge(parse_errors, part.failures)
                if any(f.rule == "expect_column_to_exist" for f in part.failures):
                    break  # the header is wrong: every chunk would say the same
                continue
            rows += len(part)
            if not parse_errors:
                run.add(part)
    except DataValidationError as err:  # the file itself (empty, binary, not UTF-8, a broken zip member)
        parse_errors = _merge(parse_errors, err.failures)
    if parse_errors:
        raise DataValidationError(dataset, [str(path)], parse_errors)
    if rows == 0:
        raise DataValidationError(dataset, [str(path)], [Failure(
            "at least one data row", None, 0, 0, detail="the file has a header but no data rows",
            hint="the file needs data rows below its header")])
    return run.finish([str(path)])


def _merge(known: list[Failure], new: list[Failure]) -> list[Failure]:
    """Parse failures of several chunks: counts added, the first examples kept."""
    out = list(known)
    for f in new:
        same = next((k for k in out if (k.rule, k.column, k.source_column) == (f.rule, f.column, f.source_column)), None)
        if same is None:
            out.append(f)
        else:
            same.count += f.count
            same.total += f.total
            if len(same.examples) < EXAMPLES:
                same.examples = pd.concat([same.examples, f.examples]).head(EXAMPLES)
    return out
