"""Ingest: fetch each source (upstream when reachable, else the offline mirror), keep a
byte-for-byte copy of what was fetched, and parse it into the long tidy table.

Upstreams: Yahoo Finance through the ``yfinance`` client (market) and the UCI archive
(PM2.5 data sets 381 and 501). The mirror is ``SEQCAST_DATA_MIRROR`` (default
``../shared/data``); which source served each series is recorded beside the table
(``<dataset>.sources.json``), in the run log and in MLflow.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from seqcast.contract import DS, TZ, UNIQUE_ID, US_EMBASSY, Y, mirror_stem
from seqcast.errors import DataValidationError, Failure
from seqcast.paths import data_mirror

log = logging.getLogger(__name__)

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


class SourceUnavailable(RuntimeError):
    pass


# ---------------------------------------------------------------------------- network
def reachable(url_or_host: str, timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to the host? (No network here: False at once.)"""
    host = urlparse(url_or_host).hostname or url_or_host
    try:
        with socket.create_connection((host, 443), timeout=timeout):
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
    dest.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(dest, index=False, na_rep="null")
    return dest


def download_url(url: str, dest: Path, timeout: float) -> Path:
    import urllib.request

    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as fh:  # noqa: S310 (fixed https URLs)
        shutil.copyfileobj(resp, fh)
    return dest


def copy_from_mirror(relative: str, dest: Path) -> Path:
    mirror = data_mirror()
    if mirror is None:
        raise SourceUnavailable("no upstream and no mirror: set SEQCAST_DATA_MIRROR to the mirror folder")
    src = mirror / relative
    if not src.is_file():
        raise SourceUnavailable(f"the mirror {mirror} has no {relative}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)  # byte for byte
    return dest


# ---------------------------------------------------------------------------- parsing
def _numeric(frame: pd.DataFrame, columns: list[str], path: Path, dataset: str, line_offset: int = 2) -> pd.DataFrame:
    """Strings -> floats; null tokens become NaN, anything else unparsable is an error."""
    failures = []
    out = frame.copy()
    for col in columns:
        text = frame[col].astype("string").str.strip()
        values = pd.to_numeric(text.where(~text.isin(NULL_TOKENS)), errors="coerce")
        bad = values.isna() & text.notna() & ~text.isin(NULL_TOKENS)
        if bad.any():
            examples = frame.loc[bad].copy()
            examples.index = examples.index + line_offset
            examples.index.name = "line"
            failures.append(Failure("numeric type (values must parse as numbers or be null/NA)", col,
                                    int(bad.sum()), len(frame), examples))
        out[col] = values.astype(float)
    if failures:
        raise DataValidationError(dataset, [str(path)], failures)
    return out


def _require(frame: pd.DataFrame, columns: list[str], path: Path, dataset: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(dataset, [str(path)], [
            Failure("expect_column_to_exist", c, 0, 0, detail=f"required column missing; found {list(frame.columns)}")
            for c in missing])


def parse_market_csv(path: Path, ticker: str, tz: str) -> pd.DataFrame:
    """Yahoo daily CSV -> tidy rows ``unique_id, ds, y`` (= close) + OHLCV columns."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    _require(raw, list(MARKET_COLUMNS), path, "market")
    frame = _numeric(raw, [c for c in MARKET_COLUMNS if c != "Date"], path, "market")
    ds = pd.to_datetime(frame["Date"], format="%Y-%m-%d", errors="coerce")
    if ds.isna().any():
        ex = raw.loc[ds.isna()].copy()
        ex.index = ex.index + 2
        ex.index.name = "line"
        raise DataValidationError("market", [str(path)], [
            Failure("date format YYYY-MM-DD", "Date", int(ds.isna().sum()), len(raw), ex)])
    tidy = frame.rename(columns=MARKET_COLUMNS)
    tidy[DS] = ds.dt.tz_localize(tz)
    tidy.insert(0, UNIQUE_ID, ticker)
    tidy[Y] = tidy["close"]
    tidy[TZ] = tz
    return tidy[[UNIQUE_ID, DS, Y, "open", "high", "low", "close", "adj_close", "volume", TZ]]


def parse_pm25_csv(path: Path, station: str, tz: str) -> pd.DataFrame:
    """UCI PRSA hourly CSV (single- or multi-site) -> tidy rows with weather columns."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    target = "pm2.5" if "pm2.5" in raw.columns else "PM2.5"
    _require(raw, ["year", "month", "day", "hour", target], path, "pm25")
    text_cols = {"cbwd", "wd", "station", "No"}
    numeric_cols = [c for c in raw.columns if c not in text_cols]
    frame = _numeric(raw, numeric_cols, path, "pm25")
    parts = frame[["year", "month", "day", "hour"]]
    if parts.isna().any().any():
        bad = parts.isna().any(axis=1)
        ex = raw.loc[bad].copy()
        ex.index = ex.index + 2
        ex.index.name = "line"
        raise DataValidationError("pm25", [str(path)], [Failure("timestamp parts present", "year/month/day/hour",
                                                                 int(bad.sum()), len(raw), ex)])
    ds = pd.to_datetime(pd.DataFrame({"year": parts.year, "month": parts.month, "day": parts.day,
                                      "hour": parts.hour}).astype(int), errors="coerce")
    tidy = pd.DataFrame({UNIQUE_ID: station, DS: ds.dt.tz_localize(tz), Y: frame[target], TZ: tz})
    for col in raw.columns:
        if col in {"No", "year", "month", "day", "hour", target, "station"}:
            continue
        tidy[col.lower()] = raw[col].astype("string") if col in text_cols else frame[col]
    return tidy


def _mirror_pm25_path(station: str) -> str:
    if station == US_EMBASSY:
        return f"pm25/{PM25_FILE}"
    return f"pm25_multisite/{MULTISITE_PATTERN.format(station=station)}.gz"


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
        extracted.write_bytes(_unzip_member(raw, name))
        try:
            return parse_pm25_csv(extracted, station, tz)
        finally:
            extracted.unlink(missing_ok=True)
    return parse_pm25_csv(raw, station, tz)


def sources_record(fetched: list[Fetched]) -> dict:
    return {f.unique_id: asdict(f) for f in fetched}


def write_table(tidy: pd.DataFrame, fetched: list[Fetched], table: Path) -> None:
    table.parent.mkdir(parents=True, exist_ok=True)
    tidy.to_parquet(table, index=False)
    table.with_suffix(".sources.json").write_text(json.dumps(sources_record(fetched), indent=2) + "\n")


def window(tidy: pd.DataFrame, start: str | None, end: str | None) -> pd.DataFrame:
    ds = tidy[DS]
    keep = np.ones(len(tidy), dtype=bool)
    if start:
        keep &= ds >= pd.Timestamp(start, tz=ds.dt.tz)
    if end:
        keep &= ds < pd.Timestamp(end, tz=ds.dt.tz) + pd.Timedelta(days=1)
    return tidy.loc[keep].reset_index(drop=True)


# ---------------------------------------------------------------------------- fetching
def fetch_with_fallback(unique_id: str, upstream, mirror_relative: str, dest_upstream: Path, dest_mirror: Path,
                        try_upstream: bool, host: str) -> Fetched:
    """Run ``upstream()`` (a retried Prefect task call) when the host answers; else the mirror."""
    if try_upstream and reachable(host):
        try:
            path = upstream()
            return Fetched(unique_id, _rel(path), "upstream", host)
        except Exception as exc:  # noqa: BLE001 — any upstream failure falls back, loudly
            log.warning("upstream for %s failed after retries (%s); using the mirror", unique_id, exc)
    elif try_upstream:
        log.info("%s is not reachable; using the mirror for %s", host, unique_id)
    path = copy_from_mirror(mirror_relative, dest_mirror)
    return Fetched(unique_id, _rel(path), "mirror", str(data_mirror() / mirror_relative))


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
        stem = mirror_stem(ticker)
        dest = raw_dir / f"{stem}.csv"
        got = fetch_with_fallback(
            ticker,
            lambda t=ticker, d=dest: fetch_task(t, params.market.start, params.market.end, d,
                                                params.ingest.timeout_seconds),
            f"market/{stem}.csv", dest, dest, params.ingest.try_upstream, YAHOO_HOST)
        log.info("market %s: %s (%s)", ticker, got.source, got.origin)
        tidy = parse_market_csv(Path(got.raw) if Path(got.raw).is_absolute() else _root() / got.raw,
                                ticker, params.market.timezone(ticker))
        frames.append(window(tidy, params.market.start, params.market.end))
        fetched.append(got)
    return concat_series(frames), fetched


def concat_series(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One long table from per-series frames; ``ds`` in UTC when their time zones differ (each
    keeps its own in ``tz``: :func:`seqcast.contract.local_time` restores it)."""
    if len({str(f[DS].dt.tz) for f in frames}) > 1:
        frames = [f.assign(**{DS: f[DS].dt.tz_convert("UTC")}) for f in frames]
    return pd.concat(frames, ignore_index=True)


def ingest_pm25(params, fetch_task) -> tuple[pd.DataFrame, list[Fetched]]:
    raw_dir = params.path("raw", "pm25")
    frames, fetched = [], []
    for station in params.pm25.stations:
        url = UCI_PM25_URL if station == US_EMBASSY else UCI_MULTISITE_URL
        mirror_rel = _mirror_pm25_path(station)
        got = fetch_with_fallback(
            station,
            lambda u=url: fetch_task(u, raw_dir / Path(urlparse(u).path).name, params.ingest.timeout_seconds),
            mirror_rel, raw_dir / Path(urlparse(url).path).name, raw_dir / Path(mirror_rel).name,
            params.ingest.try_upstream, urlparse(url).hostname)
        log.info("pm25 %s: %s (%s)", station, got.source, got.origin)
        frames.append(pm25_frame_from_raw(_root() / got.raw, station, params.pm25.timezone))
        fetched.append(got)
    return concat_series(frames), fetched


def ingest_text(params, fetch_task) -> Fetched:
    """The Tiny Shakespeare corpus (P3) -> ``<raw>/text/tinyshakespeare.txt``, byte for byte."""
    dest = params.path("raw", "text", TEXT_FILE)
    return fetch_with_fallback(
        "tinyshakespeare",
        lambda: fetch_task(TINYSHAKESPEARE_URL, dest, params.ingest.timeout_seconds),
        f"text/{TEXT_FILE}", dest, dest, params.ingest.try_upstream, urlparse(TINYSHAKESPEARE_URL).hostname)


def _root() -> Path:
    from seqcast.paths import project_root

    return project_root()
