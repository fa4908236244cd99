"""Yahoo Finance: daily OHLCV of exchange symbols (``yfinance``), else the offline mirror.

Each symbol is fetched into ``<raw>/<stem>.csv`` in Yahoo's CSV layout
(``Date,Open,High,Low,Close,Adj Close,Volume``; nulls as ``null``), the mirror's layout too:
the stem is the symbol without ``^`` unless the source entry's ``mirror_files`` names the
mirror's file otherwise. ``y`` is the close; timestamps are midnights in the exchange's time
zone — the one Yahoo reports for the symbol (kept beside the raw copy, ``<stem>.json``); the
mirror's files do not say, so the entry's ``timezones`` is used for them (and checked against
Yahoo when it answers).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from seqcast import atomic
from seqcast.contract import DS, TZ, UNIQUE_ID, Y
from seqcast.errors import DataValidationError, Failure
from seqcast.paths import inside, safe_name
from tasks import ingest as fetching
from tasks.parsing import lines_of, no_rows, numeric, require
from tasks.provenance import set_source
from tasks.textfile import check_text_file, read_csv_chunks

log = logging.getLogger(__name__)

COLUMNS = {"Date": DS, "Open": "open", "High": "high", "Low": "low", "Close": "close",
           "Adj Close": "adj_close", "Volume": "volume"}
FILE_TO_INTERNAL = {**COLUMNS, "Close": Y}  # a broken Close is a broken target


def stem(symbol: str, source) -> str:
    """The file stem of a symbol's raw copy and mirror file."""
    safe_name(symbol, "ticker")
    return safe_name(source.mirror_files.get(symbol, symbol.lstrip("^")).removesuffix(".csv"), "ticker")


def file_columns() -> dict[str, str]:
    """internal column -> the column of Yahoo's CSV (``y`` is the close)."""
    inv = {internal: col for col, internal in COLUMNS.items()}
    return {Y: "Close", **inv}


def download(symbol: str, start: str | None, end: str | None, dest: Path, timeout: float) -> Path:
    """Daily OHLCV from Yahoo Finance, written in Yahoo's CSV layout; the exchange's time zone
    that Yahoo reports goes beside it (``<stem>.json``)."""
    import yfinance as yf

    end_excl = None if end is None else str((pd.Timestamp(end) + pd.Timedelta(days=1)).date())
    ticker = yf.Ticker(symbol)
    frame = ticker.history(start=start, end=end_excl, auto_adjust=False, timeout=timeout, raise_errors=True)
    if frame is None or frame.empty:
        raise fetching.SourceUnavailable(f"yfinance returned no rows for {symbol}")
    zone = str(frame.index.tz) if frame.index.tz is not None else None
    frame = frame.reset_index().rename(columns={"index": "Date"})[list(COLUMNS)]
    frame["Date"] = pd.to_datetime(frame["Date"]).dt.strftime("%Y-%m-%d")
    atomic.write_text(dest, frame.to_csv(index=False, na_rep="null"))
    atomic.write_json(dest.with_suffix(".json"), {"symbol": symbol, "exchange_timezone": zone})
    return dest


def timezone_of(symbol: str, raw: Path, fetched_from: str, source, data) -> str:
    """The exchange zone: what Yahoo reported for an upstream copy (an entry that says otherwise
    is an error), the entry's ``timezones`` for a mirror copy, else the dataset's zone."""
    stated = source.timezones.get(symbol)
    meta = raw.with_suffix(".json")
    if fetched_from == "upstream" and meta.is_file():
        reported = json.loads(meta.read_text()).get("exchange_timezone")
        if reported and stated and reported != stated:
            raise ValueError(f"{symbol}: params.yaml says its exchange is in {stated}, Yahoo reports {reported}; "
                             f"correct or remove timezones.{symbol}")
        if reported:
            return reported
    if stated:
        return stated
    log.warning("%s: no exchange time zone known (the mirror does not say and timezones does not name it): "
                "%s is used", symbol, data.timezone)
    return data.timezone


def parse_frame(raw: pd.DataFrame, path: Path, symbol: str, tz: str, dataset: str, first_line: int = 2) -> pd.DataFrame:
    """Rows of Yahoo's daily CSV (all text) -> tidy rows ``unique_id, ds, y`` (= close) + OHLCV."""
    require(raw, list(COLUMNS), path, dataset, FILE_TO_INTERNAL)
    frame = numeric(raw, [c for c in COLUMNS if c != "Date"], path, dataset, first_line, FILE_TO_INTERNAL)
    ds = pd.to_datetime(frame["Date"].str.strip(), format="%Y-%m-%d", errors="coerce")
    if ds.isna().any():
        raise DataValidationError(dataset, [str(path)], [
            Failure("date format YYYY-MM-DD", DS, int(ds.isna().sum()), len(raw),
                    lines_of(raw, ds.isna(), first_line), source_column="Date",
                    hint="Yahoo's CSV layout writes dates as YYYY-MM-DD; fix the file")])
    tidy = frame.rename(columns=COLUMNS)
    tidy[DS] = ds.dt.tz_localize(tz)
    tidy.insert(0, UNIQUE_ID, symbol)
    tidy[Y] = tidy["close"]
    tidy[TZ] = tz
    tidy = tidy[[UNIQUE_ID, DS, Y, "open", "high", "low", "close", "adj_close", "volume", TZ]].reset_index(drop=True)
    set_source(tidy, symbol, path, file_columns(), np.arange(len(tidy)) + first_line)
    return tidy


def parse_csv(path: Path, symbol: str, tz: str, dataset: str) -> pd.DataFrame:
    """Yahoo daily CSV -> tidy rows ``unique_id, ds, y`` (= close) + OHLCV columns."""
    path = Path(path)
    check_text_file(path, dataset)
    raw = next(read_csv_chunks(path, None))
    if raw.empty:
        require(raw, list(COLUMNS), path, dataset, FILE_TO_INTERNAL)
        raise no_rows(path, dataset)
    return parse_frame(raw, path, symbol, tz, dataset)


def ingest(dataset: str, source, data, raw_dir: Path, settings, downloads) -> tuple[list, list[pd.DataFrame]]:
    """Every symbol of the source entry, windowed to ``start``..``end``."""
    frames, fetched = [], []
    for symbol in source.series:
        name = stem(symbol, source)
        dest = inside(raw_dir, f"{name}.csv", what="ticker")
        got = fetching.fetch_with_fallback(
            symbol,
            lambda s=symbol, d=dest: downloads.yahoo(s, source.start, source.end, d, settings.timeout_seconds),
            f"{source.mirror_dir}/{name}.csv", dest, settings.try_upstream, source.host)
        if got.source == "mirror":
            dest.with_suffix(".json").unlink(missing_ok=True)  # a zone reported earlier is not this copy's
        log.info("%s %s: %s (%s)", dataset, symbol, got.source, got.origin)
        raw = fetching.absolute(got.raw)
        tidy = parse_csv(raw, symbol, timezone_of(symbol, raw, got.source, source, data), dataset)
        frames.append(fetching.window(tidy, source.start, source.end))
        fetched.append(got)
    return fetched, frames


def symbol_of_file(path: Path, source) -> str:
    """The symbol a local file stands for (its stem, through ``mirror_files`` and ``^``)."""
    name = path.name.split(".csv")[0]
    return next((s for s in source.series if stem(s, source) == name), name)


def read_file(path: Path, source, data, dataset: str, chunk_rows: int):
    """A local Yahoo-layout CSV, chunk by chunk (``seqcast validate``)."""
    symbol = symbol_of_file(path, source)
    tz = source.timezones.get(symbol, data.timezone)
    check_text_file(path, dataset)
    first_line = 2
    for raw in read_csv_chunks(path, chunk_rows):
        if raw.empty:
            require(raw, list(COLUMNS), path, dataset, FILE_TO_INTERNAL)
            continue
        raw.index = pd.RangeIndex(first_line, first_line + len(raw))
        try:
            yield parse_frame(raw, path, symbol, tz, dataset, first_line)
        except DataValidationError as err:  # handed on: the caller adds up the failures of every chunk
            yield err
        first_line += len(raw)
