"""Text columns of a raw file -> typed columns, every failure with its file line numbers.

The connectors read raw files as text (every cell a string) so that nothing is guessed
silently: a required column that is not there is named with the near miss, text in a
numeric column is shown with its lines, a header without rows is said to be one.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pandas as pd

from seqcast.errors import DataValidationError, Failure

NULL_TOKENS = ["null", "NA", "NaN", "nan", "", "N/A", "n/a", "NULL", "None"]


def lines_of(frame: pd.DataFrame, mask: pd.Series, first_line: int) -> pd.DataFrame:
    """The rows of ``mask`` with their file line numbers as the index."""
    ex = frame.loc[mask].copy()
    ex.index = ex.index - frame.index[0] + first_line
    ex.index.name = "line"
    return ex


def numeric(frame: pd.DataFrame, columns: list[str], path: Path, dataset: str, first_line: int = 2,
            internal: dict[str, str] | None = None, decimal: str = ".") -> pd.DataFrame:
    """Strings -> floats; null tokens become NaN, anything else unparsable is an error."""
    failures = []
    out = frame.copy()
    for col in columns:
        text = frame[col].astype("string").str.strip()
        if decimal != ".":
            text = text.str.replace(".", "", regex=False).str.replace(decimal, ".", regex=False)
        values = pd.to_numeric(text.where(~text.isin(NULL_TOKENS)), errors="coerce")
        bad = values.isna() & text.notna() & ~text.isin(NULL_TOKENS)
        if bad.any():
            failures.append(Failure("numeric type (values must parse as numbers or be null/NA)",
                                    (internal or {}).get(col, col), int(bad.sum()), len(frame),
                                    lines_of(frame, bad, first_line), source_column=col,
                                    hint="fix the values in the file (or mark them missing: NA, null, empty)"))
        out[col] = values.astype(float)
    if failures:
        raise DataValidationError(dataset, [str(path)], failures)
    return out


def require(frame: pd.DataFrame, columns: list[str], path: Path, dataset: str,
            internal: dict[str, str] | None = None, option: str = "") -> None:
    """Required columns, named as the file should have them; a near miss is suggested.
    ``option``: the setting that names the columns (said in the message)."""
    found = [str(c) for c in frame.columns]
    missing = [c for c in columns if c not in found]
    other = next((sep for sep in ";\t|" if len(found) == 1 and sep in found[0]), None)
    if missing and other is not None:  # one column that holds them all: not renamed, another separator
        shown = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}[other]
        raise DataValidationError(dataset, [str(path)], [Failure(
            "comma-separated columns", None, 0, 0,
            detail=f"the header reads as one column {found[0][:80]!r}: the file is separated by {shown}, and this "
                   f"layout is read with commas (columns {', '.join(map(repr, columns))})",
            source_column=found[0][:80], hint=f"save the file with commas between its columns, not {shown}")])
    failures = []
    for col in missing:
        spare = [c for c in found if c not in columns]  # a required column that is there is no candidate
        lower = {c.strip().lower(): c for c in spare}
        near = [c for c in spare if col.lower() in c.lower() or c.strip().lower() in col.lower()] or \
            [lower[m] for m in difflib.get_close_matches(col.lower(), list(lower), n=1, cutoff=0.6)]
        hint = f"; did you mean {near[0]!r} (renamed?)" if near else ""
        failures.append(Failure("expect_column_to_exist", (internal or {}).get(col, col), 0, 0,
                                detail=f"required column missing: {col!r}; found {found}{hint}",
                                source_column=col,
                                hint=f"name the file's column{(' with ' + option) if option else ''}"))
    if failures:
        raise DataValidationError(dataset, [str(path)], failures)


def no_rows(path: Path, dataset: str) -> DataValidationError:
    return DataValidationError(dataset, [str(path)], [Failure(
        "at least one data row", None, 0, 0, detail="the file has a header but no data rows",
        hint="the file needs data rows below its header")])
