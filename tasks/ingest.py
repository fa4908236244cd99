"""Ingest: fetch each source (upstream when reachable, else the offline mirror), keep a
byte-for-byte copy of what was fetched, and parse it into the long tidy table.

Upstreams: Yahoo Finance through the ``yfinance`` client (market) and the UCI archive
(PM2.5 data sets 381 and 501). The mirror is ``SEQCAST_DATA_MIRROR`` (default
``../shared/data``); which source served each series is recorded beside the table
(``<dataset>.sources.json``), in the run log and in MLflow.
"""

from __future__ import annotations

import logging
import shutil
import socket
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from seqcast import atomic
from seqcast.contract import DS, TZ, UNIQUE_ID, US_EMBASSY, Y, mirror_stem
from seqcast.errors import DataValidationError, Failure
from seqcast.paths import data_mirror, inside, safe_name
from tasks.provenance import SOURCE, concat_tables, expand_runs, line_runs, set_source
from tasks.textfile import check_text_file, read_csv_chunks

log = logging.getLogger(__name__)

# Default upstreams; params.yaml ``ingest.upstream`` overrides them (tests point them at a local server).
YAHOO_HOST = "query1.finance.yahoo.com"
UCI_PM25_URL = "https://archive.ics.uci.edu/static/public/381/beijing+pm2+5+data.zip"
TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TEXT_FILE = "tinyshakespeare.txt"
UCI_MULTISITE_URL = "https://archive.ics.uci.edu/static/public/501/beijing+multi+site+air+quality+data.zip"
PM25_FILE = "PRSA_data_2010.1.1-2014.12.31.csv"
MULTISITE_PATTERN = "PRSA_Data_{station}_20130301-20170228.csv"

MARKET_COLUMNS = {"Date": DS, "Open": "open", "High": "high", "Low": "low", "Close": "close",
                  "Adj Close": "adj_close", "Volume": "volume"}
NULL_TOKENS = ["null", "NA", "NaN", "nan", ""]


@dataclass
class Fetched:
    unique_id: str
    raw: str  # path of the byte-for-byte copy, relative to the project root when possible
    source: str  # "upstream" or "mirror"
    origin: str  # URL or mirror path
    warning: str = ""  # why the upstream was not used although it was tried (empty when all went well)


class SourceUnavailable(RuntimeError):
    pass


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


def download_market_upstream(ticker: str, start: str | None, end: str | None, dest: Path, timeout: float) -> Path:
    """Daily OHLCV from Yahoo Finance, written in Yahoo's CSV layout."""
    import yfinance as yf

    end_excl = None if end is None else str((pd.Timestamp(end) + pd.Timedelta(days=1)).date())
    frame = yf.download(ticker, start=start, end=end_excl, auto_adjust=False, progress=False,
                        timeout=timeout, multi_level_index=False)
    if frame is None or frame.empty:
        raise SourceUnavailable(f"yfinance returned no rows for {ticker}")
    frame = frame.reset_index()[list(MARKET_COLUMNS)]
    frame["Date"] = pd.to_datetime(frame["Date"]).dt.strftime("%Y-%m-%d")
    atomic.write_text(dest, frame.to_csv(index=False, na_rep="null"))
    return dest


def download_url(url: str, dest: Path, timeout: float) -> Path:
    """GET ``url`` into ``dest`` (atomically: an interrupted download leaves no file)."""
    import urllib.request

    if urlparse(url).scheme not in ("http", "https"):
        raise SourceUnavailable(f"only http(s) upstream URLs are fetched, not {url!r}")
    with atomic.atomic_path(dest) as tmp, open(tmp, "wb") as fh, \
            urllib.request.urlopen(url, timeout=timeout) as resp:  # nosec B310 - scheme checked above
        shutil.copyfileobj(resp, fh)
    return dest


def copy_from_mirror(relative: str, dest: Path) -> Path:
    mirror = data_mirror()
    if mirror is None:
        raise SourceUnavailable("no upstream and no mirror: set SEQCAST_DATA_MIRROR to the mirror folder")
    src = inside(mirror, *relative.split("/"), what="mirror file name")
    if not src.is_file():
        raise SourceUnavailable(f"the mirror {mirror} has no {relative}")
    atomic.copy_file(src, dest)  # byte for byte
    return dest


# ---------------------------------------------------------------------------- parsing
def _lines(frame: pd.DataFrame, mask: pd.Series, first_line: int) -> pd.DataFrame:
    """The rows of ``mask`` with their file line numbers as the index."""
    ex = frame.loc[mask].copy()
    ex.index = ex.index - frame.index[0] + first_line
    ex.index.name = "line"
    return ex


def _numeric(frame: pd.DataFrame, columns: list[str], path: Path, dataset: str, line_offset: int = 2,
             internal: dict[str, str] | None = None) -> pd.DataFrame:
    """Strings -> floats; null tokens become NaN, anything else unparsable is an error."""
    failures = []
    out = frame.copy()
    for col in columns:
        text = frame[col].astype("string").str.strip()
        values = pd.to_numeric(text.where(~text.isin(NULL_TOKENS)), errors="coerce")
        bad = values.isna() & text.notna() & ~text.isin(NULL_TOKENS)
        if bad.any():
            failures.append(Failure("numeric type (values must parse as numbers or be null/NA)",
                                    (internal or {}).get(col, col), int(bad.sum()), len(frame),
                                    _lines(frame, bad, line_offset), source_column=col))
        out[col] = values.astype(float)
    if failures:
        raise DataValidationError(dataset, [str(path)], failures)
    return out


def _require(frame: pd.DataFrame, columns: list[str], path: Path, dataset: str,
             internal: dict[str, str] | None = None) -> None:
    """Required columns, named as the file should have them; a near miss is suggested."""
    import difflib

    found = [str(c) for c in frame.columns]
    failures = []
    for col in columns:
        if col in found:
            continue
        spare = [c for c in found if c not in columns]  # a required column that is there is no candidate
        lower = {c.strip().lower(): c for c in spare}
        near = [c for c in spare if col.lower() in c.lower() or c.strip().lower() in col.lower()] or \
            [lower[m] for m in difflib.get_close_matches(col.lower(), list(lower), n=1, cutoff=0.6)]
        hint = f"; did you mean {near[0]!r} (renamed?)" if near else ""
        failures.append(Failure("expect_column_to_exist", (internal or {}).get(col, col), 0, 0,
                                detail=f"required column missing: {col!r}; found {found}{hint}",
                                source_column=col))
    if failures:
        raise DataValidationError(dataset, [str(path)], failures)


def _no_rows(path: Path, dataset: str) -> DataValidationError:
    return DataValidationError(dataset, [str(path)], [Failure(
        "at least one data row", None, 0, 0, detail="the file has a header but no data rows")])


def market_columns() -> dict[str, str]:
    """internal column -> the column of Yahoo's CSV (``y`` is the close)."""
    inv = {internal: col for col, internal in MARKET_COLUMNS.items()}
    return {Y: "Close", **inv}


MARKET_FILE_TO_INTERNAL = {**MARKET_COLUMNS, "Close": Y}  # a broken Close is a broken target


def parse_market_frame(raw: pd.DataFrame, path: Path, ticker: str, tz: str, first_line: int = 2) -> pd.DataFrame:
    """Rows of Yahoo's daily CSV (all text) -> tidy rows ``unique_id, ds, y`` (= close) + OHLCV."""
    _require(raw, list(MARKET_COLUMNS), path, "market", MARKET_FILE_TO_INTERNAL)
    frame = _numeric(raw, [c for c in MARKET_COLUMNS if c != "Date"], path, "market", first_line,
                     MARKET_FILE_TO_INTERNAL)
    ds = pd.to_datetime(frame["Date"].str.strip(), format="%Y-%m-%d", errors="coerce")
    if ds.isna().any():
        raise DataValidationError("market", [str(path)], [
            Failure("date format YYYY-MM-DD", DS, int(ds.isna().sum()), len(raw), _lines(raw, ds.isna(), first_line),
                    source_column="Date")])
    tidy = frame.rename(columns=MARKET_COLUMNS)
    tidy[DS] = ds.dt.tz_localize(tz)
    tidy.insert(0, UNIQUE_ID, ticker)
    tidy[Y] = tidy["close"]
    tidy[TZ] = tz
    tidy = tidy[[UNIQUE_ID, DS, Y, "open", "high", "low", "close", "adj_close", "volume", TZ]].reset_index(drop=True)
    set_source(tidy, ticker, path, market_columns(), np.arange(len(tidy)) + first_line)
    return tidy


def parse_market_csv(path: Path, ticker: str, tz: str) -> pd.DataFrame:
    """Yahoo daily CSV -> tidy rows ``unique_id, ds, y`` (= close) + OHLCV columns."""
    path = Path(path)
    check_text_file(path, "market")
    raw = next(read_csv_chunks(path, None))
    if raw.empty:
        _require(raw, list(MARKET_COLUMNS), path, "market", MARKET_FILE_TO_INTERNAL)
        raise _no_rows(path, "market")
    return parse_market_frame(raw, path, ticker, tz)


PM25_TEXT_COLUMNS = {"cbwd", "wd", "station", "No"}
PM25_TIME_PARTS = ["year", "month", "day", "hour"]


def pm25_target(columns) -> str:
    return "pm2.5" if "pm2.5" in columns else "PM2.5"


def pm25_columns(raw_columns) -> dict[str, str]:
    """internal column -> the column of the UCI file (``y`` is ``pm2.5`` / ``PM2.5``)."""
    target = pm25_target(raw_columns)
    out = {Y: target, DS: "/".join(PM25_TIME_PARTS)}
    out.update({c.lower(): c for c in raw_columns if c not in {"No", *PM25_TIME_PARTS, target, "station"}})
    return out


def parse_pm25_frame(raw: pd.DataFrame, path: Path, station: str | None, tz: str, first_line: int = 2) -> pd.DataFrame:
    """Rows of a UCI PRSA hourly CSV (all text) -> tidy rows with weather columns.

    ``station=None`` takes the series name from the file's ``station`` column (a file
    holding several stations, one series each)."""
    target = pm25_target(raw.columns)
    named = {c: i for i, c in pm25_columns(raw.columns).items()}
    for part in PM25_TIME_PARTS:
        named[part] = DS
    _require(raw, [*PM25_TIME_PARTS, target, *([] if station else ["station"])], path, "pm25", named)
    numeric_cols = [c for c in raw.columns if c not in PM25_TEXT_COLUMNS]
    frame = _numeric(raw, numeric_cols, path, "pm25", first_line, named)
    parts = frame[PM25_TIME_PARTS]
    if parts.isna().any().any():
        bad = parts.isna().any(axis=1)
        raise DataValidationError("pm25", [str(path)], [Failure(
            "timestamp parts present", DS, int(bad.sum()), len(raw), _lines(raw, bad, first_line),
            source_column="/".join(PM25_TIME_PARTS))])
    ds = pd.to_datetime(parts.astype(int), errors="coerce")
    if ds.isna().any():
        raise DataValidationError("pm25", [str(path)], [Failure(
            "valid calendar date", DS, int(ds.isna().sum()), len(raw), _lines(raw, ds.isna(), first_line),
            source_column="/".join(PM25_TIME_PARTS))])
    uid = raw["station"].astype("string").to_numpy() if station is None else station
    tidy = pd.DataFrame({UNIQUE_ID: uid, DS: ds.dt.tz_localize(tz).array, Y: frame[target].to_numpy(), TZ: tz})
    for col in raw.columns:
        if col in {"No", *PM25_TIME_PARTS, target, "station"}:
            continue
        tidy[col.lower()] = (raw[col].astype("string") if col in PM25_TEXT_COLUMNS else frame[col]).array
    lines = np.arange(len(tidy)) + first_line
    for name in pd.unique(tidy[UNIQUE_ID]):
        set_source(tidy, name, path, pm25_columns(raw.columns), lines[tidy[UNIQUE_ID].to_numpy() == name])
    return tidy


def parse_pm25_csv(path: Path, station: str, tz: str) -> pd.DataFrame:
    """UCI PRSA hourly CSV (single- or multi-site) -> tidy rows with weather columns."""
    path = Path(path)
    check_text_file(path, "pm25")
    raw = next(read_csv_chunks(path, None))
    if raw.empty:
        _require(raw, [*PM25_TIME_PARTS, pm25_target(raw.columns)], path, "pm25")
        raise _no_rows(path, "pm25")
    return parse_pm25_frame(raw, path, station, tz)


def _mirror_pm25_path(station: str) -> str:
    if station == US_EMBASSY:
        return f"pm25/{PM25_FILE}"
    return f"pm25_multisite/{MULTISITE_PATTERN.format(station=safe_name(station, 'station'))}.gz"


def _unzip_member(archive: Path, name: str) -> bytes:
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
                    return _unzip_member(inner, name)
                except KeyError:
                    continue
                finally:
                    inner.unlink(missing_ok=True)
    raise KeyError(f"{name} not in {archive}")


def pm25_frame_from_raw(raw: Path, station: str, tz: str) -> pd.DataFrame:
    """Parse a raw copy: a CSV, a gzipped CSV, or the UCI zip it came in."""
    if raw.suffix == ".zip":
        name = PM25_FILE if station == US_EMBASSY else MULTISITE_PATTERN.format(station=station)
        extracted = raw.parent / f".{name}"
        atomic.write_bytes(extracted, _unzip_member(raw, name))
        try:
            return parse_pm25_csv(extracted, station, tz)
        finally:
            extracted.unlink(missing_ok=True)
    return parse_pm25_csv(raw, station, tz)


def sources_record(fetched: list[Fetched]) -> dict:
    return {f.unique_id: asdict(f) for f in fetched}


def write_table(tidy: pd.DataFrame, fetched: list[Fetched], table: Path) -> None:
    """The tidy table (with its provenance) and ``<dataset>.sources.json``, each written atomically."""
    atomic.write_parquet(table, tidy)
    atomic.write_json(table.with_suffix(".sources.json"), sources_record(fetched))


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


# ---------------------------------------------------------------------------- fetching
def fetch_with_fallback(unique_id: str, upstream, mirror_relative: str, dest_upstream: Path, dest_mirror: Path,
                        try_upstream: bool, host: str) -> Fetched:
    """Run ``upstream()`` (a retried Prefect task call) when the host answers; else the mirror."""
    warning = ""
    if try_upstream and reachable(host):
        try:
            path = upstream()
            return Fetched(unique_id, _rel(path), "upstream", host)  # host: the URL (or Yahoo's host)
        except Exception as exc:  # noqa: BLE001 — any upstream failure falls back, loudly
            warning = f"upstream {host} failed after its retries ({type(exc).__name__}: {exc}); served from the mirror"
            log.warning("%s: %s", unique_id, warning)
    elif try_upstream:
        log.info("%s is not reachable; using the mirror for %s", host, unique_id)
    path = copy_from_mirror(mirror_relative, dest_mirror)
    return Fetched(unique_id, _rel(path), "mirror", str(data_mirror() / mirror_relative), warning)


def _rel(path: Path) -> str:
    from seqcast.paths import project_root

    try:
        return str(Path(path).resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def ingest_market(params, fetch_task) -> tuple[pd.DataFrame, list[Fetched]]:
    """All configured tickers -> one tidy table (windowed) and where each came from."""
    raw_dir = params.path("raw", "market")
    frames, fetched = [], []
    for ticker in params.market.tickers:
        stem = safe_name(mirror_stem(safe_name(ticker, "ticker")), "ticker")
        dest = inside(raw_dir, f"{stem}.csv", what="ticker")
        got = fetch_with_fallback(
            ticker,
            lambda t=ticker, d=dest: fetch_task(t, params.market.start, params.market.end, d,
                                                params.ingest.timeout_seconds),
            f"market/{stem}.csv", dest, dest, params.ingest.try_upstream, params.ingest.upstream.yahoo)
        log.info("market %s: %s (%s)", ticker, got.source, got.origin)
        tidy = parse_market_csv(Path(got.raw) if Path(got.raw).is_absolute() else _root() / got.raw,
                                ticker, params.market.timezone(ticker))
        frames.append(window(tidy, params.market.start, params.market.end))
        fetched.append(got)
    return concat_series(frames), fetched


def concat_series(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One long table from per-series frames; ``ds`` in UTC when their time zones differ (each
    keeps its own in ``tz``: :func:`seqcast.contract.local_time` restores it). Provenance kept."""
    if len({str(f[DS].dt.tz) for f in frames}) > 1:
        frames = [f.assign(**{DS: f[DS].dt.tz_convert("UTC")}) for f in frames]
    return concat_tables(frames)


def ingest_pm25(params, fetch_task) -> tuple[pd.DataFrame, list[Fetched]]:
    raw_dir = params.path("raw", "pm25")
    upstream = params.ingest.upstream
    frames, fetched = [], []
    for station in params.pm25.stations:
        url = upstream.pm25 if station == US_EMBASSY else upstream.pm25_multisite
        mirror_rel = _mirror_pm25_path(station)
        dest = inside(raw_dir, Path(urlparse(url).path).name, what="upstream file name")
        got = fetch_with_fallback(
            station, lambda u=url, d=dest: fetch_task(u, d, params.ingest.timeout_seconds),
            mirror_rel, dest, raw_dir / Path(mirror_rel).name, params.ingest.try_upstream, url)
        log.info("pm25 %s: %s (%s)", station, got.source, got.origin)
        frames.append(pm25_frame_from_raw(_root() / got.raw, station, params.pm25.timezone))
        fetched.append(got)
    return concat_series(frames), fetched


def ingest_text(params, fetch_task) -> Fetched:
    """The Tiny Shakespeare corpus (P3) -> ``<raw>/text/tinyshakespeare.txt``, byte for byte."""
    dest = params.path("raw", "text", TEXT_FILE)
    url = params.ingest.upstream.text
    return fetch_with_fallback(
        "tinyshakespeare", lambda: fetch_task(url, dest, params.ingest.timeout_seconds),
        f"text/{TEXT_FILE}", dest, dest, params.ingest.try_upstream, url)


def _root() -> Path:
    from seqcast.paths import project_root

    return project_root()
