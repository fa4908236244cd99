"""The cleaning policy, explicit and configurable (params.yaml).

- Market: rows whose close is null are dropped; the count is reported.
- PM2.5: gaps of at most ``max_interpolate_hours`` consecutive missing hours are
  linearly interpolated *for model inputs on the training part only* (interpolating
  across a gap in the test period would use the future); longer gaps stay missing
  and are reported. Actuals are never filled: errors are computed only where the
  value was observed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqcast.contract import UNIQUE_ID, Y


def missing_runs(y: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of every run of consecutive NaNs."""
    isna = np.isnan(np.asarray(y, dtype=float))
    if not isna.any():
        return []
    edges = np.diff(np.concatenate([[0], isna.astype(int), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), (ends - starts).tolist()))


def fill_short_gaps(y: np.ndarray, limit: int) -> np.ndarray:
    """Linear interpolation inside gaps of at most ``limit`` points with a value on both sides."""
    y = np.asarray(y, dtype=float).copy()
    for start, length in missing_runs(y):
        end = start + length
        if length <= limit and start > 0 and end < len(y):
            y[start:end] = np.interp(np.arange(start, end), [start - 1, end], [y[start - 1], y[end]])
    return y


def clean_market(tidy: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop the rows whose close is null; return the table and the count per series."""
    null = tidy[Y].isna()
    dropped = tidy.loc[null].groupby(UNIQUE_ID).size().to_dict()
    return tidy.loc[~null].reset_index(drop=True), {str(k): int(v) for k, v in dropped.items()}


def gap_report(tidy: pd.DataFrame, limit: int) -> dict[str, dict[str, int]]:
    """Per series: missing values, gaps short enough to interpolate, longer gaps left missing."""
    report = {}
    for uid, part in tidy.groupby(UNIQUE_ID, sort=False):
        runs = missing_runs(part[Y].to_numpy(dtype=float))
        short = [n for _, n in runs if n <= limit]
        long = [n for _, n in runs if n > limit]
        report[str(uid)] = {
            "missing_values": int(sum(n for _, n in runs)),
            "gaps_interpolated": len(short),
            "hours_interpolated": int(sum(short)),
            "gaps_left_missing": len(long),
            "hours_left_missing": int(sum(long)),
            "longest_gap": int(max((n for _, n in runs), default=0)),
        }
    return report
