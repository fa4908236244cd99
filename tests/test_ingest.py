"""Ingest: the mirror when there is no network, upstream when there is (mocked: the
internet is the one thing that cannot run here), byte-for-byte raw copies, tidy tables
with an explicit time zone; which series a source holds is learnt from the source."""

import json

import pandas as pd
import pytest

from conftest import ROOT
from seqcast.config import load_params
from seqcast.tracking import file_md5
from tasks import ingest
from tasks.connectors import uci_prsa, yahoo


def no_retry_task(fn):
    return fn


def downloads(yahoo_task=None, url_task=None) -> ingest.Downloads:
    def never(*args):
        raise AssertionError("no upstream attempt was expected")

    return ingest.Downloads(url=url_task or never, yahoo=yahoo_task or never)


def with_series(params, dataset: str, index: int, names: list[str]):
    """params with the series of one source of a dataset replaced."""
    entry = params.dataset(dataset)
    sources = list(entry.sources)
    sources[index] = sources[index].model_copy(update={"series": names})
    datasets = {**params.datasets, dataset: entry.model_copy(update={"sources": sources})}
    return params.model_copy(update={"datasets": datasets})


def test_symbol_to_mirror_stem():
    source = load_params().dataset("market").sources[0]
    assert yahoo.stem("^KS11", source) == "KS11"
    assert yahoo.stem("005930.KS", source) == "005930.KS"
    assert yahoo.stem("^GSPC", source) == "SP500"  # the mirror's own file name, stated in params.yaml


def test_market_falls_back_to_the_mirror(workspace, mirror, monkeypatch):
    monkeypatch.setattr(ingest, "reachable", lambda host, timeout=3.0: False)
    params = load_params()
    called = []
    tidy, fetched = ingest.ingest_dataset("market", params, downloads(lambda *a: called.append(a)))
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
        dest.with_suffix(".json").write_text(json.dumps({"symbol": ticker, "exchange_timezone": "Asia/Seoul"}))
        return dest

    tidy, fetched = ingest.ingest_dataset("market", params, downloads(fake_download))
    assert fetched[0].source == "upstream" and fetched[0].origin == "query1.finance.yahoo.com"
    assert len(tidy) > 600 and str(tidy["ds"].dt.tz) == "Asia/Seoul"


def test_the_exchange_zone_yahoo_reports_is_used_and_checked(workspace, mirror, monkeypatch):
    """Upstream, the time zone of a symbol is the one Yahoo reports: a symbol params.yaml does not
    know gets it; one that params.yaml places elsewhere is an error naming both."""
    monkeypatch.setattr(ingest, "reachable", lambda host, timeout=3.0: True)

    def reporting(zone):
        def fake(ticker, start, end, dest, timeout):
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes((mirror / "market" / "KS11.csv").read_bytes())
            dest.with_suffix(".json").write_text(json.dumps({"symbol": ticker, "exchange_timezone": zone}))
            return dest
        return fake

    params = with_series(load_params(), "market", 0, ["^KQ11"])  # in no list of this project
    tidy, fetched = ingest.ingest_dataset("market", params, downloads(reporting("Asia/Seoul")))
    assert str(tidy["tz"].iloc[0]) == "Asia/Seoul" and fetched[0].unique_id == "^KQ11"
    with pytest.raises(ValueError, match=r"\^KS11: params.yaml says its exchange is in Asia/Seoul, Yahoo reports "
                                         r"Asia/Tokyo"):
        ingest.ingest_dataset("market", load_params(), downloads(reporting("Asia/Tokyo")))


def test_upstream_failure_falls_back_to_the_mirror(workspace, monkeypatch):
    monkeypatch.setattr(ingest, "reachable", lambda host, timeout=3.0: True)

    def failing(*args):
        raise ConnectionError("upstream down")

    _, fetched = ingest.ingest_dataset("market", load_params(), downloads(failing))
    assert fetched[0].source == "mirror" and "upstream down" in fetched[0].warning


def test_pm25_single_site(workspace, monkeypatch):
    monkeypatch.setattr(ingest, "reachable", lambda host, timeout=3.0: False)
    tidy, fetched = ingest.ingest_dataset("pm25", load_params(), downloads())
    assert len(tidy) == 43824 and tidy["y"].isna().sum() == 2067
    assert str(tidy["ds"].dt.tz) == "Asia/Shanghai"
    assert tidy["ds"].diff().dropna().eq(pd.Timedelta(hours=1)).all()
    assert {"dewp", "temp", "pres", "cbwd", "iws"} <= set(tidy.columns)
    ingest.write_table(tidy, fetched, workspace / "data" / "tidy" / "pm25.parquet")
    sources = json.loads((workspace / "data" / "tidy" / "pm25.sources.json").read_text())
    assert sources["us_embassy"]["source"] == "mirror"


def test_pm25_multisite_station(mirror):
    path = mirror / "pm25_multisite" / "PRSA_Data_Dongsi_20130301-20170228.csv.gz"
    source = load_params().dataset("pm25").sources[1]
    tidy = uci_prsa.frame_from_raw(path, source.file.format(series="Dongsi"), "Dongsi", "Asia/Shanghai", "pm25",
                                   source)
    assert len(tidy) == 35064 and (tidy["unique_id"] == "Dongsi").all()
    assert {"pm10", "no2", "wd", "wspm"} <= set(tidy.columns)


def test_missing_mirror_file_is_a_clear_error(workspace, monkeypatch):
    monkeypatch.setattr(ingest, "reachable", lambda host, timeout=3.0: False)
    params = with_series(load_params(), "market", 0, ["^NOPE"])
    with pytest.raises(ingest.SourceUnavailable, match="has no market/NOPE.csv"):
        ingest.ingest_dataset("market", params, downloads())


def test_a_station_the_mirror_lacks_names_the_stations_it_holds(workspace, monkeypatch):
    """A real station of the UCI set that the offline mirror does not hold (Tiantan): without a
    network the error lists the mirror's stations, read from its files."""
    monkeypatch.setattr(ingest, "reachable", lambda host, timeout=3.0: False)
    params = with_series(load_params(ROOT / "params.yaml"), "pm25", 1, ["Dongsi", "Tiantan"])
    with pytest.raises(ingest.SourceUnavailable) as err:
        ingest.ingest_dataset("pm25", params, downloads())
    assert "has no pm25_multisite/PRSA_Data_Tiantan_20130301-20170228.csv.gz" in str(err.value)
    assert "it holds the stations Aotizhongxin, Changping, Dingling, Dongsi" in str(err.value)


def test_the_archive_serves_every_station_it_holds(workspace, mirror, monkeypatch, tmp_path):
    """Upstream, the stations are the archive's members: one download serves them all, a station
    the archive holds is read whatever list the project had, one it lacks is named with the others."""
    import gzip
    import zipfile

    monkeypatch.setattr(ingest, "reachable", lambda host, timeout=3.0: True)
    archive = tmp_path / "upstream.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # the archive's layout: a folder of per-station CSVs
        for station in ("Dongsi", "Tiantan"):
            text = gzip.decompress((mirror / "pm25_multisite" /
                                    "PRSA_Data_Dongsi_20130301-20170228.csv.gz").read_bytes()).decode()
            lines = text.splitlines(keepends=True)[:500]
            lines = [lines[0], *[ln.replace('"Dongsi"', f'"{station}"') for ln in lines[1:]]]
            zf.writestr(f"PRSA_Data_20130301-20170228/PRSA_Data_{station}_20130301-20170228.csv", "".join(lines))
    calls = []

    def fake_download(url, dest, timeout):
        calls.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(archive.read_bytes())
        return dest

    params = with_series(load_params(ROOT / "params.yaml"), "pm25", 1, ["Dongsi", "Tiantan"])
    entry = params.dataset("pm25")
    params = params.model_copy(update={"datasets": {**params.datasets, "pm25": entry.model_copy(
        update={"sources": [entry.sources[1]]})}})
    tidy, fetched = ingest.ingest_dataset("pm25", params, downloads(url_task=fake_download))
    assert list(pd.unique(tidy["unique_id"])) == ["Dongsi", "Tiantan"] and len(calls) == 1
    assert {f.source for f in fetched} == {"upstream"}
    params = with_series(params, "pm25", 0, ["Dongsi", "Huairou"])
    with pytest.raises(ingest.SourceUnavailable, match="has no PRSA_Data_Huairou_20130301-20170228.csv; its "
                                                       "stations: Dongsi, Tiantan"):
        ingest.ingest_dataset("pm25", params, downloads(url_task=fake_download))
