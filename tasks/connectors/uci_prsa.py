"""The UCI "Beijing PM2.5" archives (PRSA layout), else the offline mirror.

Both archives of the family share a layout: hourly rows with ``year, month, day, hour``, the
target ``pm2.5`` (single site) or ``PM2.5`` (multi-site), weather and pollutant columns, ``NA``
for missing values and, in the multi-site set, a ``station`` column. The source entry names the
archive (``url``), its CSV member (``file``, ``{series}`` standing for a station) and the same
file in the mirror. The stations a source holds are its archive's members (or the mirror's
files): a station the entry names that is not among them is an error that lists them.
Timestamps are local time of the dataset's ``data.timezone``.
"""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from seqcast import atomic
from seqcast.contract import DS, TZ, UNIQUE_ID, Y
from seqcast.errors import DataValidationError, Failure
from seqcast.paths import data_mirror, inside, safe_name
from tasks import ingest as fetching
from tasks.parsing import lines_of, no_rows, numeric, require
from tasks.provenance import set_source
from tasks.textfile import check_text_file, read_csv_chunks

log = logging.getLogger(__name__)

TEXT_COLUMNS = {"cbwd", "wd", "station", "No"}
TIME_PARTS = ["year", "month", "day", "hour"]


def target_column(columns) -> str:
    return "pm2.5" if "pm2.5" in columns else "PM2.5"


def file_columns(raw_columns) -> dict[str, str]:
    """internal column -> the column of the UCI file (``y`` is ``pm2.5`` / ``PM2.5``)."""
    target = target_column(raw_columns)
    out = {Y: target, DS: "/".join(TIME_PARTS)}
    out.update({c.lower(): c for c in raw_columns if c not in {"No", *TIME_PARTS, target, "station"}})
    return out


def parse_frame(raw: pd.DataFrame, path: Path, station: str | None, tz: str, dataset: str,
                first_line: int = 2) -> pd.DataFrame:
    """Rows of a UCI PRSA hourly CSV (all text) -> tidy rows with weather columns.

    ``station=None`` takes the series name from the file's ``station`` column (a file
    holding several stations, one series each); a station named for a file whose
    ``station`` column says another is an error."""
    target = target_column(raw.columns)
    named = {c: i for i, c in file_columns(raw.columns).items()}
    for part in TIME_PARTS:
        named[part] = DS
    require(raw, [*TIME_PARTS, target, *([] if station else ["station"])], path, dataset, named)
    if station and "station" in raw.columns:
        other = raw["station"].astype("string") != station
        if other.any():
            raise DataValidationError(dataset, [str(path)], [Failure(
                f"station column equals {station!r}", "unique_id", int(other.sum()), len(raw),
                lines_of(raw, other, first_line), source_column="station",
                hint="the file holds another station than its name says")])
    numeric_cols = [c for c in raw.columns if c not in TEXT_COLUMNS]
    frame = numeric(raw, numeric_cols, path, dataset, first_line, named)
    parts = frame[TIME_PARTS]
    if parts.isna().any().any():
        bad = parts.isna().any(axis=1)
        raise DataValidationError(dataset, [str(path)], [Failure(
            "timestamp parts present", DS, int(bad.sum()), len(raw), lines_of(raw, bad, first_line),
            source_column="/".join(TIME_PARTS), hint="every row needs its year, month, day and hour")])
    ds = pd.to_datetime(parts.astype(int), errors="coerce")
    if ds.isna().any():
        raise DataValidationError(dataset, [str(path)], [Failure(
            "valid calendar date", DS, int(ds.isna().sum()), len(raw), lines_of(raw, ds.isna(), first_line),
            source_column="/".join(TIME_PARTS), hint="fix the dates in the file")])
    uid = raw["station"].astype("string").to_numpy() if station is None else station
    tidy = pd.DataFrame({UNIQUE_ID: uid, DS: ds.dt.tz_localize(tz).array, Y: frame[target].to_numpy(), TZ: tz})
    for col in raw.columns:
        if col in {"No", *TIME_PARTS, target, "station"}:
            continue
        tidy[col.lower()] = (raw[col].astype("string") if col in TEXT_COLUMNS else frame[col]).array
    lines = np.arange(len(tidy)) + first_line
    for name in pd.unique(tidy[UNIQUE_ID]):
        set_source(tidy, name, path, file_columns(raw.columns), lines[tidy[UNIQUE_ID].to_numpy() == name])
    return tidy


def parse_csv(path: Path, station: str | None, tz: str, dataset: str) -> pd.DataFrame:
    """A UCI PRSA hourly CSV (single- or multi-site, ``.csv`` or ``.csv.gz``) -> tidy rows."""
    path = Path(path)
    check_text_file(path, dataset)
    raw = next(read_csv_chunks(path, None))
    if raw.empty:
        require(raw, [*TIME_PARTS, target_column(raw.columns)], path, dataset)
        raise no_rows(path, dataset)
    return parse_frame(raw, path, station, tz, dataset)


def members(archive: Path) -> list[str]:
    """The file names inside a (possibly nested) zip archive."""
    names = []
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            if member.endswith(".zip"):
                inner = archive.parent / f".{Path(member).name}"
                atomic.write_bytes(inner, zf.read(member))
                try:
                    names += members(inner)
                finally:
                    inner.unlink(missing_ok=True)
            else:
                names.append(Path(member).name)
    return names


def unzip_member(archive: Path, name: str) -> bytes:
    """Find ``name`` in a (possibly nested) zip archive."""
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            if member.endswith(name):
                return zf.read(member)
        for member in zf.namelist():
            if member.endswith(".zip"):
                inner = Path(archive.parent / Path(member).name)
                inner.write_bytes(zf.read(member))
                try:
                    return unzip_member(inner, name)
                except KeyError:
                    continue
                finally:
                    inner.unlink(missing_ok=True)
    raise KeyError(f"{name} not in {archive}")


def stations_in(names: list[str], pattern: str) -> list[str]:
    """The stations a list of file names holds, read through a ``{series}`` pattern."""
    if "{series}" not in pattern:
        return []
    regex = re.compile("^" + re.escape(pattern).replace(re.escape("{series}"), "(.+?)") + "$")
    return sorted({m.group(1) for n in names if (m := regex.match(n))})


def frame_from_raw(raw: Path, member: str, station: str, tz: str, dataset: str, source) -> pd.DataFrame:
    """Parse a raw copy: the UCI zip it came in (its ``member``), or a (gzipped) CSV."""
    if raw.suffix == ".zip":
        try:
            data = unzip_member(raw, member)
        except KeyError:
            held = stations_in(members(raw), source.file)
            raise fetching.SourceUnavailable(
                f"{dataset}: the archive {source.url} has no {member}"
                + (f"; its stations: {', '.join(held)}" if held else "")) from None
        extracted = raw.parent / f".{member}"
        atomic.write_bytes(extracted, data)
        try:
            return parse_csv(extracted, station, tz, dataset)
        finally:
            extracted.unlink(missing_ok=True)
    return parse_csv(raw, station, tz, dataset)


def _mirror_has(source, station: str) -> None:
    """A station that the mirror lacks is an error listing the stations it holds."""
    path = fetching.mirror_file(source.mirror.format(series=station))
    if path.is_file():
        return
    held = stations_in([p.name for p in path.parent.glob("*")], Path(source.mirror).name)
    raise fetching.SourceUnavailable(
        f"the mirror {data_mirror()} has no {source.mirror.format(series=station)}"
        + (f"; it holds the stations {', '.join(held)}" if held else "")
        + f" (the upstream {source.url} was not used)")


def ingest(dataset: str, source, data, raw_dir: Path, settings, downloads) -> tuple[list, list[pd.DataFrame]]:
    """Every station of the source entry (one archive download serves them all)."""
    frames, fetched = [], []
    archive = inside(raw_dir, Path(urlparse(source.url).path).name, what="upstream file name")
    downloaded: dict[str, Path] = {}

    def upstream() -> Path:
        if source.url not in downloaded:
            downloaded[source.url] = downloads.url(source.url, archive, settings.timeout_seconds)
        return downloaded[source.url]

    for station in source.series:
        safe_name(station, "station")
        mirror_rel = source.mirror.format(series=station)
        try:
            got = fetching.fetch_with_fallback(station, upstream, mirror_rel, raw_dir / Path(mirror_rel).name,
                                             settings.try_upstream, source.url)
        except fetching.SourceUnavailable:
            _mirror_has(source, station)
            raise
        log.info("%s %s: %s (%s)", dataset, station, got.source, got.origin)
        frames.append(frame_from_raw(fetching.absolute(got.raw), source.file.format(series=station), station,
                                     data.timezone, dataset, source))
        fetched.append(got)
    return fetched, frames


def station_of_file(path: Path, source) -> str | None:
    """The station a local file holds by its name (None: the file's own ``station`` column)."""
    for pattern in (Path(source.mirror).name, source.file):
        held = stations_in([path.name], pattern)
        if held:
            return held[0]
    if "{series}" not in source.file and path.name in (source.file, Path(source.mirror).name):
        return source.series[0]
    return None


def read_file(path: Path, source, data, dataset: str, chunk_rows: int):
    """A local PRSA CSV (or the UCI zip), chunk by chunk (``seqcast validate``)."""
    station = station_of_file(path, source)
    if path.suffix == ".zip":
        for name in source.series:
            yield frame_from_raw(path, source.file.format(series=name), name, data.timezone, dataset, source)
        return
    check_text_file(path, dataset)
    first_line = 2
    for raw in read_csv_chunks(path, chunk_rows):
        if raw.empty:
            continue
        raw.index = pd.RangeIndex(first_line, first_line + len(raw))
        has_station = station is None and "station" in raw.columns
        try:
            yield parse_frame(raw, path, None if has_station else (station or path.stem), data.timezone, dataset,
                              first_line)
        except DataValidationError as err:  # handed on: the caller adds up the failures of every chunk
            yield err
        first_line += len(raw)
