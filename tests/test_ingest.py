"""Ingest: the mirror when there is no network, upstream when there is (mocked: the
internet is the one thing that cannot run here), byte-for-byte raw copies, tidy tables
with an explicit time zone."""

import json

import pandas as pd
import pytest

from seqcast.config import load_params
from seqcast.contract import mirror_stem
from seqcast.tracking import file_md5
from tasks import ingest


def no_retry_task(fn):
    return fn


def test_ticker_to_mirror_stem():
    assert mirror_stem("^KS11") == "KS11"
    assert mirror_stem("005930.KS") == "005930.KS"
    assert mirror_stem("^GSPC") == "SP500"


def test_market_falls_back_to_the_mirror(workspace, mirror, monkeypatch):
    monkeypatch.setattr(ingest, "reachable", lambda host, timeout=3.0: False)
    params = load_params()
    called = []
    tidy, fetched = ingest.ingest_market(params, lambda *a: called.append(a))
    assert called == []  # no upstream attempt without a network
    assert [f.source for f in fetched] == ["mirror"]
    raw = workspace / fetched[0].raw
    assert file_md5(raw) == file_md5(mirror / "market" / "KS11.csv")  # byte for byte
    assert str(tidy["ds"].dt.tz) == "Asia/Seoul"
    assert tidy["ds"].min() == pd.Timestamp("2016-03-08", tz="Asia/Seoul")
    assert tidy["ds"].max() == pd.Timestamp("2019-01-15", tz="Asia/Seoul")
    assert list(tidy.columns[:3]) == ["unique_id", "ds", "y"]
    assert (tidy["y"].dropna() == tidy["close"].dropna()).all()
    assert tidy["y"].isna().sum() == 2  # the two `null` rows of the lecture window are kept, as NaN


def test_market_uses_upstream_when_reachable(workspace, mirror, monkeypatch, tmp_path):
    monkeypatch.setattr(ingest, "reachable", lambda host, timeout=3.0: True)
    params = load_params()

    def fake_download(ticker, start, end, dest, timeout):  # what yfinance would have written
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((mirror / "market" / "KS11.csv").read_bytes())
        return dest

    tidy, fetched = ingest.ingest_market(params, fake_download)
    assert fetched[0].source == "upstream" and fetched[0].origin == ingest.YAHOO_HOST
    assert len(tidy) > 600


def test_upstream_failure_falls_back_to_the_mirror(workspace, monkeypatch):
    monkeypatch.setattr(ingest, "reachable", lambda host, timeout=3.0: True)

    def failing(*args):
        raise ConnectionError("upstream down")

    _, fetched = ingest.ingest_market(load_params(), failing)
    assert fetched[0].source == "mirror"


def test_pm25_single_site(workspace, monkeypatch):
    monkeypatch.setattr(ingest, "reachable", lambda host, timeout=3.0: False)
    tidy, fetched = ingest.ingest_pm25(load_params(), no_retry_task)
    assert len(tidy) == 43824 and tidy["y"].isna().sum() == 2067
    assert str(tidy["ds"].dt.tz) == "Asia/Shanghai"
    assert tidy["ds"].diff().dropna().eq(pd.Timedelta(hours=1)).all()
    assert {"dewp", "temp", "pres", "cbwd", "iws"} <= set(tidy.columns)
    ingest.write_table(tidy, fetched, workspace / "data" / "tidy" / "pm25.parquet")
    sources = json.loads((workspace / "data" / "tidy" / "pm25.sources.json").read_text())
    assert sources["us_embassy"]["source"] == "mirror"


def test_pm25_multisite_station(mirror):
    path = mirror / "pm25_multisite" / "PRSA_Data_Dongsi_20130301-20170228.csv.gz"
    tidy = ingest.pm25_frame_from_raw(path, "Dongsi", "Asia/Shanghai")
    assert len(tidy) == 35064 and (tidy["unique_id"] == "Dongsi").all()
    assert {"pm10", "no2", "wd", "wspm"} <= set(tidy.columns)


def test_missing_mirror_file_is_a_clear_error(workspace, monkeypatch):
    monkeypatch.setattr(ingest, "reachable", lambda host, timeout=3.0: False)
    params = load_params().model_copy(update={"market": load_params().market.model_copy(update={"tickers": ["^NOPE"]})})
    with pytest.raises(ingest.SourceUnavailable, match="has no market/NOPE.csv"):
        ingest.ingest_market(params, no_retry_task)
