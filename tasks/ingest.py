"""Ingest: every source of a dataset (upstream when reachable, else the offline mirror, or a
user's file), a byte-for-byte copy of what was fetched, and one long tidy table.

The connectors (:mod:`tasks.connectors`) know the sources; this module knows how fetching
goes: probe the upstream host, run the (retried) download, fall back to the mirror loudly,
keep the raw copy. The mirror is ``SEQCAST_DATA_MIRROR`` (default ``../shared/data``); which
source served each series is recorded beside the table (``<dataset>.sources.json``), in the
run log and in MLflow.
"""

from __future__ import annotations

import logging
import shutil
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from seqcast import atomic
from seqcast.contract import DS, UNIQUE_ID
from seqcast.paths import data_mirror, inside, project_root
from tasks import connectors
from tasks.provenance import SOURCE, concat_tables, expand_runs, line_runs

log = logging.getLogger(__name__)


@dataclass
class Fetched:
    unique_id: str
    raw: str  # path of the byte-for-byte copy, relative to the project root when possible
    source: str  # "upstream", "mirror" or "file"
    origin: str  # URL, mirror path or the user's file
    warning: str = ""  # why the upstream was not used although it was tried (empty when all went well)


class SourceUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Downloads:
    """The download steps a flow hands the connectors (Prefect tasks with its retry policy)."""

    url: Callable[[str, Path, float], Path]  # (url, dest, timeout) -> dest
    yahoo: Callable[[str, str | None, str | None, Path, float], Path]  # (symbol, start, end, dest, timeout)


# ---------------------------------------------------------------------------- network
def reachable(url_or_host: str, timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to the host (the URL's port, else 443)? No network: False at once."""
    parsed = urlparse(url_or_host)
    host = parsed.hostname or url_or_host
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def download_url(url: str, dest: Path, timeout: float) -> Path:
    """GET ``url`` into ``dest`` (atomically: an interrupted download leaves no file)."""
    import urllib.request

    if urlparse(url).scheme not in ("http", "https"):
        raise SourceUnavailable(f"only http(s) upstream URLs are fetched, not {url!r}")
    with atomic.atomic_path(dest) as tmp, open(tmp, "wb") as fh, \
            urllib.request.urlopen(url, timeout=timeout) as resp:  # nosec B310 - scheme checked above
        shutil.copyfileobj(resp, fh)
    return dest


def mirror_file(relative: str) -> Path:
    """A file of the offline mirror (checked to stay inside it)."""
    mirror = data_mirror()
    if mirror is None:
        raise SourceUnavailable("no upstream and no mirror: set SEQCAST_DATA_MIRROR to the mirror folder")
    return inside(mirror, *relative.split("/"), what="mirror file name")


def copy_from_mirror(relative: str, dest: Path) -> Path:
    src = mirror_file(relative)
    if not src.is_file():
        raise SourceUnavailable(f"the mirror {data_mirror()} has no {relative}")
    atomic.copy_file(src, dest)  # byte for byte
    return dest


def fetch_with_fallback(unique_id: str, upstream, mirror_relative: str, dest_mirror: Path,
                        try_upstream: bool, host: str) -> Fetched:
    """Run ``upstream()`` (a retried Prefect task call) when the host answers; else the mirror."""
    warning = ""
    if try_upstream and reachable(host):
        try:
            path = upstream()
            return Fetched(unique_id, relative(path), "upstream", host)  # host: the URL (or Yahoo's host)
        except Exception as exc:  # noqa: BLE001 — any upstream failure falls back, loudly
            warning = f"upstream {host} failed after its retries ({type(exc).__name__}: {exc}); served from the mirror"
            log.warning("%s: %s", unique_id, warning)
    elif try_upstream:
        log.info("%s is not reachable; using the mirror for %s", host, unique_id)
    path = copy_from_mirror(mirror_relative, dest_mirror)
    return Fetched(unique_id, relative(path), "mirror", str(data_mirror() / mirror_relative), warning)


def relative(path: Path) -> str:
    """A path relative to the project root when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def absolute(path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else project_root() / path


# ---------------------------------------------------------------------------- tables
def window(tidy: pd.DataFrame, start: str | None, end: str | None) -> pd.DataFrame:
    """The rows inside ``start``..``end`` (whole days); the provenance follows the rows kept."""
    ds = tidy[DS]
    keep = np.ones(len(tidy), dtype=bool)
    if start:
        keep &= (ds >= pd.Timestamp(start, tz=ds.dt.tz)).to_numpy()
    if end:
        keep &= (ds < pd.Timestamp(end, tz=ds.dt.tz) + pd.Timedelta(days=1)).to_numpy()
    out = tidy.loc[keep].reset_index(drop=True)
    source = {}
    ids = tidy[UNIQUE_ID].astype(str).to_numpy()
    for uid, info in (tidy.attrs.get(SOURCE) or {}).items():
        rows = ids == uid
        lines = expand_runs(info.get("lines", []))
        if len(lines) == rows.sum():
            source[uid] = {**info, "lines": line_runs(lines[keep[rows]])}
    out.attrs = {SOURCE: source}
    return out


def concat_series(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One long table from per-series frames; ``ds`` in UTC when their time zones differ (each
    keeps its own in ``tz``: :func:`seqcast.contract.local_time` restores it). Provenance kept."""
    if len({str(f[DS].dt.tz) for f in frames}) > 1:
        frames = [f.assign(**{DS: f[DS].dt.tz_convert("UTC")}) for f in frames]
    return concat_tables(frames)


def sources_record(fetched: list[Fetched]) -> dict:
    return {f.unique_id: asdict(f) for f in fetched}


def write_table(tidy: pd.DataFrame, fetched: list[Fetched], table: Path) -> None:
    """The tidy table (with its provenance) and ``<dataset>.sources.json``, each written atomically."""
    atomic.write_parquet(table, tidy)
    atomic.write_json(table.with_suffix(".sources.json"), sources_record(fetched))


# ---------------------------------------------------------------------------- a dataset
def ingest_dataset(name: str, params, downloads: Downloads) -> tuple[pd.DataFrame, list[Fetched]]:
    """Every source of dataset ``name`` -> one tidy table and where each series came from.
    Two sources naming the same series is an error (a table holds each series once)."""
    entry = params.dataset(name)
    raw_dir = params.path("raw", name)
    frames, fetched = [], []
    for source in entry.sources:
        got, parts = connectors.get(source.connector).ingest(name, source, entry.data, raw_dir, params.ingest,
                                                             downloads)
        fetched += got
        frames += parts
    ids = [f.unique_id for f in fetched]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"{name}: series {twice} come from more than one source; a series is named once")
    if not frames:
        raise SourceUnavailable(f"{name}: its sources hold no series")
    return concat_series(frames), fetched


def ingest_text(params, fetch_task) -> Fetched:
    """The text corpus (P3) -> ``<raw>/text/<file>``, byte for byte."""
    text = params.ingest.text
    dest = params.path("raw", "text", Path(text.mirror).name)
    return fetch_with_fallback("text", lambda: fetch_task(text.url, dest, params.ingest.timeout_seconds),
                               text.mirror, dest, params.ingest.try_upstream, text.url)
