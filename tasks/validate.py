"""Validation with Great Expectations 1.x: one suite per dataset, thresholds from params.yaml.

The suite runs on a *check frame*: the tidy table of one series plus a few derived
columns that turn calendar rules into column rules (``step_hours`` between
consecutive rows, ``gap_days``, ``weekday``, ``null_run`` = length of the run of
missing targets a row belongs to). A failing suite raises
:class:`seqcast.errors.DataValidationError` naming the dataset, the files, the rule,
the column, the count and example rows; Data Docs HTML is written either way.
Raw files are only ever read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqcast.config import Params
from seqcast.contract import DS, UNIQUE_ID, Y, local_time
from seqcast.errors import DataValidationError, Failure
from tasks.cleaning import missing_runs

log = logging.getLogger(__name__)

KINDS = ("market", "pm25")
FLOAT_TYPES = ["float64", "Float64", "float32"]


def check_frame(series: pd.DataFrame) -> pd.DataFrame:
    """One series (in file order) plus the derived columns the calendar rules need."""
    frame = series.reset_index(drop=True).copy()
    ds = frame[DS]
    step = ds.diff()
    frame["step_hours"] = step.dt.total_seconds() / 3600.0
    frame["gap_days"] = step.dt.total_seconds() / 86400.0
    frame["weekday"] = ds.dt.day_of_week
    run = np.zeros(len(frame))
    for start, length in missing_runs(frame[Y].to_numpy(dtype=float)):
        run[start : start + length] = length
    frame["null_run"] = run
    return frame


def expectations(kind: str, params: Params, unique_id: str) -> list[Any]:
    """The suite for one series of a dataset kind."""
    import great_expectations.expectations as gxe

    common = [
        gxe.ExpectColumnToExist(column=UNIQUE_ID),
        gxe.ExpectColumnToExist(column=DS),
        gxe.ExpectColumnToExist(column=Y),
        gxe.ExpectColumnValuesToBeInTypeList(column=Y, type_list=FLOAT_TYPES),
        gxe.ExpectColumnValuesToNotBeNull(column=DS),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=[UNIQUE_ID, DS]),
        # strictly increasing timestamps: every step forward is positive
        gxe.ExpectColumnValuesToBeBetween(column="step_hours", min_value=0, strict_min=True),
    ]
    if kind == "market":
        rules = params.validation.market.for_series(unique_id)
        return common + [
            *[gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True)
              for c in ("open", "high", "low", "close", Y)],
            gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="low", or_equal=True),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="close", or_equal=True),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="close", column_B="low", or_equal=True),
            gxe.ExpectColumnValuesToNotBeNull(column=Y, mostly=1 - rules.max_missing_fraction),
            gxe.ExpectColumnMaxToBeBetween(column="null_run", min_value=0, max_value=rules.max_missing_run),
            gxe.ExpectColumnValuesToBeInSet(column="weekday", value_set=rules.trading_weekdays),
            gxe.ExpectColumnValuesToBeBetween(column="gap_days", min_value=1, max_value=rules.max_gap_days),
        ]
    rules = params.validation.pm25
    return common + [
        gxe.ExpectColumnValuesToBeBetween(column=Y, min_value=rules.min_value, max_value=rules.max_value,
                                          strict_max=True),
        gxe.ExpectColumnValuesToNotBeNull(column=Y, mostly=1 - rules.max_missing_fraction),
        gxe.ExpectColumnMaxToBeBetween(column="null_run", min_value=0, max_value=rules.max_missing_run),
        # the expected calendar: every hour present, none twice
        gxe.ExpectColumnValuesToBeInSet(column="step_hours", value_set=[float(rules.step_hours)]),
    ]


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


def _failure(result, frame: pd.DataFrame) -> Failure:
    config, res = result.expectation_config, result.result or {}
    column = config.kwargs.get("column") or "/".join(
        str(config.kwargs[k]) for k in ("column_A", "column_B", "column_list") if k in config.kwargs) or None
    count = res.get("unexpected_count")
    total = res.get("element_count") or 0
    examples = pd.DataFrame(res.get("partial_unexpected_index_list") or res.get("unexpected_index_list") or [])
    detail = ""
    if "observed_value" in res and res.get("observed_value") is not None:
        detail = f"observed {res['observed_value']}"
        max_value = config.kwargs.get("max_value")
        if column in frame and max_value is not None:
            bad = frame[frame[column] > max_value]
            examples = bad[[UNIQUE_ID, DS, Y, column]].head(5)
            count, total = len(bad), len(frame)
    if count is None:
        count = 0
    elif total and "mostly" in config.kwargs and config.kwargs.get("mostly") is not None:
        detail = f"{count / total:.2%} of rows, allowed {1 - config.kwargs['mostly']:.2%}"
    if not examples.empty and DS in examples:
        keep = [c for c in (UNIQUE_ID, DS, Y, column) if c in examples and c is not None]
        examples = examples[list(dict.fromkeys(keep + list(examples.columns)))]
    return Failure(_rule_name(config), column, int(count), int(total), examples, detail)


def validate_series(frame: pd.DataFrame, kind: str, params: Params, ctx, name: str) -> tuple[bool, list[Failure], dict]:
    import great_expectations as gx

    uid = str(frame[UNIQUE_ID].iloc[0])
    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=expectations(kind, params, uid)))
    asset = ctx.data_sources.add_pandas(f"{name}-source").add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe("all-rows")
    definition = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    checkpoint = ctx.checkpoints.add(gx.Checkpoint(
        name=f"{name}-checkpoint",
        validation_definitions=[definition],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data-docs")] if ctx.get_site_names() else [],
        result_format={"result_format": "SUMMARY", "unexpected_index_column_names": [UNIQUE_ID, DS]},
    ))
    outcome = checkpoint.run(batch_parameters={"dataframe": frame})
    results = list(outcome.run_results.values())[0].results
    failures = [_failure(r, frame) for r in results if not r.success]
    stats = {"expectations": len(results), "failed": len(failures)}
    return outcome.success, failures, stats


def validate_table(tidy: pd.DataFrame, kind: str, params: Params, files: list[str],
                   docs_dir: Path | None = None) -> dict[str, dict]:
    """Validate every series of a tidy table; raise DataValidationError on any failure."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {KINDS}")
    missing = [c for c in (UNIQUE_ID, DS, Y) if c not in tidy.columns]
    if missing:
        raise DataValidationError(kind, files, [Failure("expect_column_to_exist", c, 0, 0, detail="required column missing")
                                                 for c in missing])
    ctx = _context(docs_dir)
    report, failures = {}, []
    for uid, series in tidy.groupby(UNIQUE_ID, sort=False):
        frame = check_frame(local_time(series))  # calendar rules on the series' own clock
        name = f"{kind}-{str(uid).replace('^', '').replace('.', '_')}"
        ok, fails, stats = validate_series(frame, kind, params, ctx, name)
        report[str(uid)] = {"success": bool(ok), "rows": len(frame), "missing_y": int(frame[Y].isna().sum()),
                            "longest_missing_run": int(frame["null_run"].max()), **stats}
        failures += fails
    if docs_dir is not None:
        ctx.build_data_docs()
    if failures:
        raise DataValidationError(kind, files, failures)
    return report


def validate_file(path: Path, kind: str, params: Params) -> dict[str, dict]:
    """``seqcast validate PATH --kind``: parse a local file the way ingest does, then the same suite."""
    from seqcast.contract import US_EMBASSY
    from tasks import ingest

    path = Path(path)
    if kind == "market":
        ticker = path.name.split(".csv")[0]
        tidy = ingest.parse_market_csv(path, ticker, params.market.timezone(ticker))
    else:
        name = path.name
        station = US_EMBASSY if name.startswith("PRSA_data_") else name.split("_")[2] if name.startswith("PRSA_Data_") else path.stem
        tidy = ingest.pm25_frame_from_raw(path, station, params.pm25.timezone)
    return validate_table(tidy, kind, params, [str(path)])
