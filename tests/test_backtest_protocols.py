"""The harness reproduces the peers' published baseline figures on the real data
(persistence P1a MAE 11.96 / RMSE 22.14, P1b MAE 49.36 / RMSE 80.81, seasonal naive P1b
MAE 67.67; KOSPI naive P2a MAE 15.06 / RMSE 20.48 / MASE 1.317), the protocols being built
from the datasets' entries of params.yaml; the default protocol P4 of a user's dataset has
known answers (its origins, a pure seasonal pattern forecast exactly by seasonal naive)."""

import numpy as np
import pandas as pd
import pytest

from models.registry import create
from seqcast.config import load_params
from seqcast.contract import DS, TZ, UNIQUE_ID, Y
from seqcast.dataset_config import DatasetParams
from tasks import ingest
from tasks.backtest import ProtocolError, build_protocol, evaluate
from tasks.cleaning import drop_missing
from tasks.connectors import uci_prsa, yahoo


@pytest.fixture(scope="module")
def params():
    return load_params()


@pytest.fixture(scope="module")
def p1(mirror, params):
    tidy = uci_prsa.parse_csv(mirror / "pm25" / "PRSA_data_2010.1.1-2014.12.31.csv", "us_embassy", "Asia/Shanghai",
                              "pm25")
    return build_protocol(tidy, "pm25", params.dataset("pm25"), params.backtest.levels)


@pytest.fixture(scope="module")
def p2(mirror, params):
    tidy = yahoo.parse_csv(mirror / "market" / "KS11.csv", "^KS11", "Asia/Seoul", "market")
    clean, dropped = drop_missing(ingest.window(tidy, "2016-03-08", "2019-01-15"))
    assert dropped == {"^KS11": 2}
    return build_protocol(clean, "market", params.dataset("market"), params.backtest.levels)


def test_p1_split_and_origins(p1):
    assert p1.ds[p1.n_train - 1] == pd.Timestamp("2013-12-31 23:00", tz="Asia/Shanghai")
    assert len(p1.y) - p1.n_train == 8760
    p1a, p1b = p1.tasks
    assert len(p1a.origins) == 8760 and p1a.h == 1
    assert len(p1b.origins) == 365 and p1b.h == 24
    assert (p1.ds[p1b.origins + 1].hour == 0).all()  # each day's forecast starts at 00:00
    # the test part is never gap-filled: actuals and inputs agree there
    np.testing.assert_array_equal(p1.y_input[p1.n_train:], p1.y[p1.n_train:])


@pytest.mark.parametrize("model, task, metric, expected", [
    ("naive", "P1a", "mae", 11.96), ("naive", "P1a", "rmse", 22.14),
    ("naive", "P1b", "mae", 49.36), ("naive", "P1b", "rmse", 80.81),
    ("seasonal_naive", "P1b", "mae", 67.67),
])
def test_p1_baselines_match_peer_figures(p1, model, task, metric, expected):
    result = evaluate(create(model, season=24), p1)
    assert result.metrics[f"{task}_{metric}"] == pytest.approx(expected, abs=0.006)


def test_p2_naive_matches_peer_figures(p2):
    assert p2.n_train == int(len(p2.y) * 0.8)
    result = evaluate(create("naive", season=5), p2)
    m = result.metrics
    assert (round(m["P2a_mae"], 2), round(m["P2a_rmse"], 2), round(m["P2a_mase"], 3)) == (15.06, 20.48, 1.317)
    assert 0.8 < m["P2a_cov95"] < 0.95  # the random walk's interval is too narrow here (issue #3)
    p2b = result.forecasts["P2b"]
    assert p2b["h"].max() == 5 and (p2b["ds"] > p2b["cutoff"]).all()


def test_arima_beats_persistence_on_p1(p1):
    result = evaluate(create("arima", season=24, p=2, d=0, q=1, fit_window=2000), p1)
    assert result.metrics["P1a_rmse"] < 22.14
    assert result.metrics["P1b_mae"] < 49.36
    assert 0.93 < result.metrics["P1b_cov95"] < 0.99


def user_entry(**protocol) -> DatasetParams:
    return DatasetParams.model_validate({
        "sources": [{"connector": "file", "path": "x.csv", "time": "t", "target": "y"}],
        "data": {"frequency": "D"}, "validation": {}, "cleaning": {}, "protocol": {"name": "P4", **protocol},
        "models": {}})


def daily(y: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({UNIQUE_ID: "s", DS: pd.date_range("2020-01-01", periods=len(y), freq="D", tz="UTC"),
                         Y: y.astype(float), TZ: "UTC"})


def test_p4_origins_stride_through_the_test_part_to_the_last_observation():
    """P4 (protocols.md): season 7 from the daily frequency, h = 7, the last 20 % are the test part;
    the h-step origins every 7 steps, the last forecast ending at the last observation."""
    proto = build_protocol(daily(np.arange(200.0)), "d", user_entry(), [80, 95])
    assert (proto.name, proto.season, proto.n_train) == ("P4", 7, 160)
    p4a, p4b = proto.tasks
    assert (p4a.name, p4a.h, len(p4a.origins)) == ("P4a", 1, 40)
    assert p4b.name == "P4b" and p4b.h == 7 and p4b.origins[-1] + 7 == 199
    assert np.all(np.diff(p4b.origins) == 7) and p4b.origins[0] >= proto.n_train - 1
    assert proto.scale == pytest.approx(7.0)  # in-sample seasonal naive MAE of a line of slope 1, season 7


def test_a_pure_seasonal_pattern_is_forecast_exactly_by_seasonal_naive():
    pattern = np.tile([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0], 40) + 10.0
    proto = build_protocol(daily(pattern), "d", user_entry(), [80, 95])
    result = evaluate(create("seasonal_naive", season=proto.season), proto)
    for task in ("P4a", "P4b"):
        frame = result.forecasts[task]
        np.testing.assert_array_equal(frame["seasonal_naive"].to_numpy(), frame[Y].to_numpy())
        assert result.metrics[f"{task}_mae"] == 0.0
    naive = evaluate(create("naive", season=proto.season), proto)
    assert naive.metrics["P4b_mae"] > 1.0


def test_a_series_too_short_for_the_protocol_says_how_many_steps_it_needs():
    with pytest.raises(ProtocolError, match=r"15 steps \(12 before the split at 80% of the steps\) are too few; the "
                                            r"protocol needs at least 16 \(2 x season 7 \+ 2 x horizon 1\), 14 of them "
                                            r"before the split"):
        build_protocol(daily(np.arange(15.0)), "d", user_entry(), [80, 95])
    with pytest.raises(ProtocolError, match="and 30 after it"):
        build_protocol(daily(np.arange(200.0)), "d", user_entry(horizon=30, split={"train_fraction": 0.9}), [80, 95])
