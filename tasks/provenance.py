"""Provenance of a tidy table: which raw file, which of its columns and which of its lines.

Every tidy table carries, per series, the raw file it came from, the file's own column
names for the internal ones, and the file lines of its rows (run-length encoded) in
``attrs["source"]``. Parquet keeps ``attrs``, so validation messages name the user's
columns (``Close``, ``pm2.5``) and file line numbers even after windowing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SOURCE = "source"


def line_runs(lines: np.ndarray) -> list[list[int]]:
    """[[first_line, count], ...] of consecutive line numbers."""
    lines = np.asarray(lines, dtype=np.int64)
    if not len(lines):
        return []
    breaks = np.flatnonzero(np.diff(lines) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(lines)]])
    return [[int(lines[s]), int(e - s)] for s, e in zip(starts, ends)]


def expand_runs(runs: list[list[int]]) -> np.ndarray:
    if not runs:
        return np.empty(0, dtype=np.int64)
    return np.concatenate([np.arange(start, start + count) for start, count in runs]).astype(np.int64)


def provenance(tidy: pd.DataFrame, uid: str) -> dict:
    """``{"file", "columns", "lines"}`` of one series (empty when the table has none)."""
    return (tidy.attrs.get(SOURCE) or {}).get(str(uid), {})


def set_source(tidy: pd.DataFrame, uid: str, path: Path, columns: dict[str, str], lines: np.ndarray) -> None:
    tidy.attrs[SOURCE] = {**(tidy.attrs.get(SOURCE) or {}),
                          str(uid): {"file": str(path), "columns": columns, "lines": line_runs(lines)}}


def concat_tables(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """``pd.concat`` that keeps every part's provenance."""
    table = pd.concat(frames, ignore_index=True)
    table.attrs = {SOURCE: {k: v for f in frames for k, v in (f.attrs.get(SOURCE) or {}).items()}}
    return table
