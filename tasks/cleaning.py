"""The cleaning policy, explicit and configurable (``datasets.<name>.cleaning``).

- ``drop_missing`` (series in sessions, e.g. trading days): rows whose target is null are
  dropped — a session without a close is no step; the count is reported.
- otherwise a regular series is put on its frequency's grid (a step absent from the file
  becomes a row with a missing target; the count is reported) and missing targets stay
  missing: gaps of at most ``interpolate_limit`` consecutive steps are linearly interpolated
  *for model inputs on the training part only* (interpolating across a gap in the test period
  would use the future; the protocol does it, :func:`fill_short_gaps`); longer gaps stay
  missing and are reported. ``y_filled`` shows the interpolation on the whole table. Actuals
  are never filled: errors are computed only where the value was observed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqcast import frequency
from seqcast.contract import DS, TZ, UNIQUE_ID, Y, local_time
from tasks.provenance import SOURCE


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


def drop_missing(tidy: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
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
            "steps_interpolated": int(sum(short)),
            "gaps_left_missing": len(long),
            "steps_left_missing": int(sum(long)),
            "longest_gap": int(max((n for _, n in runs), default=0)),
        }
    return report


def onto_grid(tidy: pd.DataFrame, freq: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every series on its frequency's grid, from its first to its last timestamp: an absent
    step becomes a row with a missing target (and missing covariates). Returns the table
    and, per series, how many rows were inserted (none: the table is returned as it is)."""
    inserted, parts = {}, []
    for uid, part in tidy.groupby(UNIQUE_ID, sort=False):
        local = local_time(part)
        stamps = pd.DatetimeIndex(local[DS])
        grid = _grid(stamps, freq)
        missing = grid.difference(stamps)
        inserted[str(uid)] = int(len(missing))
        if len(missing):
            extra = pd.DataFrame({DS: missing})
            extra[UNIQUE_ID] = uid
            if TZ in local:
                extra[TZ] = local[TZ].iloc[0]
            local = pd.concat([local, extra], ignore_index=True).sort_values(DS, kind="stable")
            local[DS] = local[DS].dt.tz_convert(part[DS].dt.tz)
        parts.append(local[part.columns].reset_index(drop=True) if len(missing) else part)
    if not any(inserted.values()):
        return tidy, inserted
    table = pd.concat(parts, ignore_index=True)
    table.attrs = {SOURCE: tidy.attrs.get(SOURCE, {})}
    return table, inserted


def _grid(stamps: pd.DatetimeIndex, freq: str) -> pd.DatetimeIndex:
    steps = frequency.grid_steps(stamps, freq)
    total = int(np.nansum(steps))
    return pd.DatetimeIndex([stamps[0]]).append(frequency.future_index(stamps[0], total, freq))


def clean_table(tidy: pd.DataFrame, entry) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """The dataset's cleaning policy on its tidy table: the clean table and what was done per series."""
    policy = entry.cleaning
    if policy.drop_missing:
        clean, dropped = drop_missing(tidy)
        return clean, {str(uid): {"rows_dropped_null": dropped.get(str(uid), 0)} for uid in pd.unique(tidy[UNIQUE_ID])
                       if dropped.get(str(uid))}
    report: dict[str, dict[str, int]] = {}
    clean = tidy
    if not entry.data.sessions:
        clean, inserted = onto_grid(tidy, entry.data.frequency)
        for uid, n in inserted.items():
            if n:
                report.setdefault(uid, {})["steps_inserted"] = n
    limit = policy.interpolate_limit
    for uid, g in gap_report(clean, limit).items():
        report.setdefault(uid, {}).update(g)
    clean = clean.copy()
    clean["y_filled"] = clean.groupby(UNIQUE_ID, sort=False)[Y].transform(
        lambda s: pd.Series(fill_short_gaps(s.to_numpy(dtype=float), limit), index=s.index))
    return clean, report
