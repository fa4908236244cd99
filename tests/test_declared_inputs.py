"""Models read what they declare: DeepAR+ its covariates (weather up to the origin,
the season's phase), CNN-LSTM-nb the neighbouring stations, LightGBM its calendar; the
harness routes neighbours only to models that read them."""

import numpy as np
import pytest

from models.registry import create, get
from tasks.backtest import Protocol

from _toy_protocol import hourly_protocol

NEURAL_TINY = {"epochs": 1, "max_windows": 256, "hidden": 8, "input_size": 24, "horizon": 6}


def with_neighbours(proto: Protocol) -> Protocol:
    rng = np.random.default_rng(3)
    nb = proto.y[:, None] + rng.normal(scale=2.0, size=(len(proto.y), 2))
    return Protocol(**{**proto.__dict__, "neighbours": nb, "neighbour_names": ["nb:a", "nb:b"]})


@pytest.mark.parametrize("name, columns", [("naive", None), ("cnn_lstm", ["x0", "x1"]),
                                            ("cnn_lstm_nb", ["x0", "x1", "nb:a", "nb:b"]),
                                            ("lightgbm", ["x0", "x1", "nb:a", "nb:b"]),
                                            ("deepar", None), ("deepar_plus", ["x0", "x1"])])
def test_the_harness_routes_weather_and_neighbours_as_declared(name, columns):
    proto = with_neighbours(hourly_protocol())
    X, names = proto.inputs_for(get(name)(season=24))
    assert (X is None and columns is None) or (names == columns and X.shape == (len(proto.y), len(columns)))


def past_weather_changed(X: np.ndarray, origin: int) -> np.ndarray:
    out = X.copy()
    out[origin - 30 : origin + 1, 0] += 5.0
    return out


@pytest.mark.parametrize("name, extra", [("deepar_plus", {"num_samples": 20}), ("cnn_lstm_nb", {"channels": 4})])
def test_models_read_their_covariates_up_to_the_origin(name, extra):
    proto = with_neighbours(hourly_protocol())
    X, names = proto.inputs_for(get(name)(season=24))
    n = proto.n_train
    model = create(name, season=24, **NEURAL_TINY, **extra).fit(proto.y_input[:n], X[:n], exog_names=names)
    origin = np.array([n + 40])
    before = model.forecast_origins(proto.y_input, origin, 6, X=X).mean
    after = model.forecast_origins(proto.y_input, origin, 6, X=past_weather_changed(X, n + 40)).mean
    assert not np.allclose(before, after)  # the weather (column 0) up to the origin is an input


def test_plain_deepar_has_no_covariates_and_deepar_plus_has_weather_and_phase():
    proto = hourly_protocol()
    n = proto.n_train
    plain = create("deepar", season=24, **NEURAL_TINY, num_samples=10).fit(proto.y_input[:n], proto.X[:n])
    plus = create("deepar_plus", season=24, **NEURAL_TINY, num_samples=10).fit(proto.y_input[:n], proto.X[:n],
                                                                           exog_names=proto.exog_names)
    assert plain.n_cov_ == 0 and plus.n_cov_ == 2 + 2  # two weather columns, sin/cos of the hour


def test_lightgbm_calendar_and_strategies():
    proto = hourly_protocol()
    n = proto.n_train
    tiny = {"n_estimators": 20, "lags": [1, 2, 24], "windows": [6], "min_data_in_leaf": 10, "horizon": 6}
    with_cal = create("lightgbm", season=24, **tiny, calendar_start=str(proto.ds[0])).fit(
        proto.y_input[:n], proto.X[:n], exog_names=proto.exog_names)
    names = with_cal.feature_names()
    assert len(names) == with_cal.n_features_ and {"hour", "weekday", "month", "dayofyear"} <= set(names)
    # the calendar columns hold the origin's local hour, weekday, month and day of year
    builder = with_cal.features_
    series = builder.prepare(proto.y_input[:n], proto.X[:n], with_cal.scaler_, builder.calendar(n))
    ends = np.array([30, 31, 200, n - 1])
    feats = builder.features(series, ends)
    stamps = proto.ds[ends]
    for column, values in (("hour", stamps.hour), ("weekday", stamps.dayofweek), ("month", stamps.month),
                           ("dayofyear", stamps.dayofyear)):
        np.testing.assert_array_equal(feats[:, names.index(column)], values)
    assert len(with_cal.boosters_) == 6  # direct: one booster per step
    origins = proto.tasks[1].origins[:3]
    direct = with_cal.forecast_origins(proto.y_input, origins, 24, X=proto.X).mean
    np.testing.assert_array_equal(direct[:, 6:], np.repeat(direct[:, [5]], 18, axis=1))  # past its boosters: held
    rec = create("lightgbm", season=24, **tiny, strategy="recursive").fit(proto.y_input[:n])
    assert len(rec.boosters_) == 1 and "hour" not in rec.feature_names()
    fc = rec.forecast_origins(proto.y_input, origins, 24)
    assert np.isfinite(fc.mean).all() and (np.ptp(fc.mean, axis=1) > 0).all()  # fed back: every step moves
    np.testing.assert_allclose(fc.mean[:, :1], rec.forecast_origins(proto.y_input, origins, 1).mean)
