"""A user's table: a CSV (any separator) or Parquet file, a local path or an http(s) URL.

The source entry names the columns: ``time`` (the timestamps), ``target`` (the values), ``id``
(the series of a long table; without it the file is one series, named ``name`` or after the
target), and the covariates — observed with the target (``covariates``: weather, known only
up to each forecast origin) or known in advance (``known_covariates``: calendar, workday
flags). Which series the file holds is its ``id`` column; ``series`` may keep a subset.

Timestamps: ISO 8601 with or without a UTC offset (``Z``, ``+09:00``), ``2010/01/01 00:00``,
``Jan 1 2000``, date-only, or any format stated by ``time_format`` (strptime). A day/month
order that no row decides (``01/02/2010``) is refused rather than guessed. Naive timestamps
are local time of ``data.timezone``; a local time that a daylight-saving change skips or
repeats (and no row order resolves) is refused with its lines. Everything the file holds is
read as text first, so every failure names the file's lines.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from seqcast import atomic
from seqcast.contract import DS, TZ, UNIQUE_ID, Y
from seqcast.errors import DataValidationError, Failure
from seqcast.paths import inside, safe_name
from tasks import ingest as fetching
from tasks.parsing import NULL_TOKENS, lines_of, no_rows, numeric, require
from tasks.provenance import set_source
from tasks.textfile import check_text_file

RESERVED = {UNIQUE_ID, DS, Y, TZ, "y_filled"}
OFFSET = r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"
DAY_MONTH = r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2,4})(?:\D|$)"
OPTIONS = "--time/--target/--id/--covariates (datasets.<name>.sources)"


def is_url(path: str) -> bool:
    return urlparse(str(path)).scheme in ("http", "https")


def is_parquet(path: Path) -> bool:
    return Path(path).suffix.lower() in (".parquet", ".pq")


def column_name(column: str) -> str:
    """The internal name of a covariate: lower case, word characters (``Temp (C)`` -> ``temp_c``)."""
    return re.sub(r"\W+", "_", str(column).strip().lower()).strip("_") or "column"


def separator(path: Path, stated: str | None) -> str:
    """The stated separator, else the one csv.Sniffer finds in the first lines (``,`` ``;`` tab ``|``)."""
    if stated:
        return "\t" if stated in ("\\t", "tab") else stated
    from tasks.textfile import open_bytes

    with open_bytes(Path(path)) as fh:
        sample = fh.read(1 << 16).decode("utf-8-sig", errors="replace")
    lines = [ln for ln in sample.splitlines() if ln.strip()][:50]
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
    except csv.Error:
        counts = {sep: lines[0].count(sep) for sep in ",;\t|"}
        return max(counts, key=counts.get) if max(counts.values()) else ","


def text_chunks(path: Path, source, chunk_rows: int | None):
    """The file as text frames (every cell a string, nulls as empty strings), ``chunk_rows`` at a time."""
    path = Path(path)
    if is_parquet(path):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=int(chunk_rows or 1 << 30)):
            frame = batch.to_pandas()
            out = pd.DataFrame(index=frame.index)
            for col in frame.columns:
                values = frame[col]
                if pd.api.types.is_datetime64_any_dtype(values):
                    text = values.map(lambda ts: "" if pd.isna(ts) else ts.isoformat())
                else:
                    text = values.astype("string").fillna("")
                out[str(col)] = text.astype(str)
            yield out
        return
    kw = {"dtype": str, "keep_default_na": False, "encoding": "utf-8-sig", "sep": separator(path, source.separator)}
    if chunk_rows:
        yield from pd.read_csv(path, chunksize=int(chunk_rows), **kw)
    else:
        yield pd.read_csv(path, **kw)


def _fail(dataset: str, path: Path, rule: str, column: str, source_column: str, bad: pd.Series, raw: pd.DataFrame,
          first_line: int, detail: str = "", hint: str = "") -> DataValidationError:
    return DataValidationError(dataset, [str(path)], [Failure(
        rule, column, int(bad.sum()), len(raw), lines_of(raw[[source_column]], bad, first_line), detail,
        source_column=source_column, hint=hint)])


def parse_times(raw: pd.DataFrame, source, path: Path, dataset: str, first_line: int) -> pd.Series:
    """The time column -> naive or UTC timestamps (not yet in the dataset's zone)."""
    col = source.time
    text = raw[col].astype("string").str.strip()
    empty = text.isna() | text.isin(NULL_TOKENS)
    hint = f"state the format with --time-format (datasets.{dataset}.sources: time_format), e.g. %d/%m/%Y %H:%M"
    if empty.any():
        raise _fail(dataset, path, "timestamps present", DS, col, empty, raw, first_line,
                    hint="every row needs its timestamp")
    fmt = source.time_format
    if fmt:
        aware = "%z" in fmt or "%Z" in fmt
        ds = pd.to_datetime(text, format=fmt, errors="coerce", utc=aware)
        bad = ds.isna()
        if bad.any():
            raise _fail(dataset, path, f"timestamps in the format {fmt!r}", DS, col, bad, raw, first_line,
                        hint="fix those rows, or the format (--time-format)")
        return ds
    with_offset = text.str.contains(OFFSET, regex=True)
    if with_offset.any() and not with_offset.all():
        raise _fail(dataset, path, "one kind of timestamp (all with a UTC offset, or none)", DS, col, ~with_offset,
                    raw, first_line, "these rows carry no offset while others do",
                    hint="give every timestamp its offset (or none, with --timezone)")
    aware = bool(with_offset.all())
    parts = text.str.extract(DAY_MONTH)
    dayfirst = False
    if parts[0].notna().any():
        first, second = parts[0].astype(float), parts[1].astype(float)
        if (first > 12).any() and (second > 12).any():
            raise _fail(dataset, path, "one day/month order", DS, col, (first > 12) | (second > 12), raw,
                        first_line, "some rows put the day first, others the month", hint=hint)
        if (first > 12).any():
            dayfirst = True
        elif not (second > 12).any():
            rows = parts[0].notna()
            raise _fail(dataset, path, "unambiguous dates", DS, col, rows, raw, first_line,
                        f"{text[rows].iloc[0]!r} could be day/month or month/day and no row decides", hint=hint)
    ds = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=aware)
    if ds.isna().any():  # not ISO 8601: each row by its own form (slower; dateutil)
        ds = pd.to_datetime(text, format="mixed", dayfirst=dayfirst, errors="coerce", utc=aware)
    bad = ds.isna()
    if bad.any():
        raise _fail(dataset, path, "timestamps that parse (ISO 8601, 2010/01/01 00:00, Jan 1 2000, ...)", DS, col,
                    bad, raw, first_line, hint=hint)
    return ds


def localize(ds: pd.Series, ids: np.ndarray, zone: str, raw: pd.DataFrame, col: str, path: Path,
             dataset: str, first_line: int) -> pd.Series:
    """Naive local times -> the zone, series by series (a repeated hour of a daylight-saving
    change is resolved by the row order); UTC ones -> converted to the zone."""
    if ds.dt.tz is not None:
        return ds.dt.tz_convert(zone)
    out = pd.Series(pd.NaT, index=ds.index, dtype=f"datetime64[us, {zone}]")
    for uid in pd.unique(ids):
        rows = ids == uid
        part = ds[rows]
        try:
            local = part.dt.tz_localize(zone, ambiguous="infer", nonexistent="NaT")
        except (ValueError, TypeError):  # the order does not resolve a repeated hour
            local = part.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
        out[rows] = local.dt.as_unit("us")
    bad = out.isna()
    if bad.any():
        raise _fail(dataset, path, f"local times that exist in {zone}", DS, col, bad, raw, first_line,
                    "a daylight-saving change skips or repeats these local times",
                    hint="give the timestamps with their UTC offset, or in UTC (--timezone UTC)")
    return out


def parse_frame(raw: pd.DataFrame, path: Path, source, data, dataset: str, first_line: int = 2) -> pd.DataFrame:
    """Rows of the file (all text) -> tidy rows ``unique_id, ds, y, <covariates>, tz``."""
    covariates = [*source.covariates, *source.known_covariates]
    named = {source.time: DS, source.target: Y, **({source.id: UNIQUE_ID} if source.id else {}),
             **{c: column_name(c) for c in covariates}}
    require(raw, list(named), path, dataset, named, option=OPTIONS)
    clash = [c for c in covariates if column_name(c) in RESERVED or column_name(c) in {DS, Y}]
    internal = [column_name(c) for c in covariates]
    if clash or len(set(internal)) != len(internal):
        raise DataValidationError(dataset, [str(path)], [Failure(
            "covariate names", None, 0, 0, detail=f"covariates {clash or covariates} collide with "
            f"{sorted(RESERVED)} or with each other once written as {internal}",
            hint="rename the file's columns")])
    if source.id:
        ids = raw[source.id].astype("string").str.strip()
        empty = ids.isna() | (ids == "")
        if empty.any():
            raise _fail(dataset, path, "series id present", UNIQUE_ID, source.id, empty, raw, first_line,
                        hint="every row of a long table names its series")
        ids = ids.to_numpy(dtype=object)
    else:
        ids = np.full(len(raw), source.name or source.target, dtype=object)
    ds = localize(parse_times(raw, source, path, dataset, first_line), ids, data.timezone, raw, source.time,
                  path, dataset, first_line)
    frame = numeric(raw, [source.target], path, dataset, first_line, {source.target: Y}, source.decimal)
    tidy = pd.DataFrame({UNIQUE_ID: pd.array(ids, dtype="string"), DS: ds.array,
                         Y: frame[source.target].to_numpy(dtype=float)})
    for col in covariates:
        try:
            values = numeric(raw, [col], path, dataset, first_line, decimal=source.decimal)[col]
            tidy[column_name(col)] = values.to_numpy(dtype=float)
        except DataValidationError:  # text: a categorical covariate (one-hot encoded as a model input)
            tidy[column_name(col)] = raw[col].astype("string").str.strip().replace("", pd.NA).array
    tidy[TZ] = data.timezone
    mapping = {Y: source.target, DS: source.time, **{column_name(c): c for c in covariates}}
    lines = np.arange(len(tidy)) + first_line
    for uid in pd.unique(tidy[UNIQUE_ID]):
        set_source(tidy, str(uid), path, mapping, lines[tidy[UNIQUE_ID].to_numpy() == uid])
    return tidy


def _keep(tidy: pd.DataFrame, source, path: Path, dataset: str) -> pd.DataFrame:
    """The series the entry keeps, in its order (a named series the file lacks is an error)."""
    from tasks.provenance import concat_tables

    held = [str(u) for u in pd.unique(tidy[UNIQUE_ID])]
    wanted = source.series or held
    missing = [s for s in wanted if s not in held]
    if missing:
        raise fetching.SourceUnavailable(f"{dataset}: {path} holds no series {missing}; its {source.id or 'series'}: "
                                       f"{', '.join(held[:20])}{' ...' if len(held) > 20 else ''}")
    ids = tidy[UNIQUE_ID].astype(str).to_numpy()
    parts = []
    for uid in wanted:
        part = tidy.loc[ids == uid].reset_index(drop=True)
        part.attrs = {"source": {uid: tidy.attrs["source"][uid]}}
        parts.append(part)
    return concat_tables(parts)


def read_table(path: Path, source, data, dataset: str) -> pd.DataFrame:
    """The whole file -> the tidy table of the series it keeps."""
    path = Path(path)
    if not is_parquet(path):
        check_text_file(path, dataset)
    raw = next(text_chunks(path, source, None))
    if raw.empty:
        require(raw, [source.time, source.target], path, dataset, option=OPTIONS)
        raise no_rows(path, dataset)
    raw.index = pd.RangeIndex(2, 2 + len(raw))
    return _keep(parse_frame(raw, path, source, data, dataset, 2), source, path, dataset)


def ingest(dataset: str, source, data, raw_dir: Path, settings, downloads) -> tuple[list, list[pd.DataFrame]]:
    """The file (downloaded, or copied byte for byte from its path) -> its series."""
    name = safe_name(Path(urlparse(source.path).path).name if is_url(source.path) else Path(source.path).name,
                     "file name")
    dest = inside(raw_dir, name, what="file name")
    if is_url(source.path):
        if not (settings.try_upstream and fetching.reachable(source.path)):
            raise fetching.SourceUnavailable(f"{dataset}: {source.path} is not reachable")
        downloads.url(source.path, dest, settings.timeout_seconds)
        kind, origin = "upstream", source.path
    else:
        src = fetching.absolute(source.path)
        if not src.is_file():
            raise fetching.SourceUnavailable(f"{dataset}: no such file: {src}")
        atomic.copy_file(src, dest)
        kind, origin = "file", str(src)
    tidy = read_table(dest, source, data, dataset)
    fetched = [fetching.Fetched(str(uid), fetching.relative(dest), kind, origin) for uid in pd.unique(tidy[UNIQUE_ID])]
    return fetched, [tidy]


def read_file(path: Path, source, data, dataset: str, chunk_rows: int):
    """The file, chunk by chunk (``seqcast validate``), every row with its file line."""
    path = Path(path)
    if not is_parquet(path):
        check_text_file(path, dataset)
    first_line = 2
    for raw in text_chunks(path, source, chunk_rows):
        if raw.empty:
            require(raw, [source.time, source.target], path, dataset, option=OPTIONS)
            continue
        raw.index = pd.RangeIndex(first_line, first_line + len(raw))
        try:
            tidy = parse_frame(raw, path, source, data, dataset, first_line)
        except DataValidationError as err:  # handed on: the caller adds up the failures of every chunk
            yield err
        else:
            if source.series:
                tidy = tidy.loc[tidy[UNIQUE_ID].isin(source.series)].reset_index(drop=True)
            yield tidy
        first_line += len(raw)
