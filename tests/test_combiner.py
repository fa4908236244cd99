"""The forecast combiner: weights by known answers, chosen on the validation
slice of the training part only (every test-period value changed: identical weights and
intervals), inputs routed to the members that read them, and a saved combiner reloads."""

import numpy as np
import pytest

from models.combiner import inverse_mse_weights, stacked_weights
from models.registry import create, load
from tasks.backtest import evaluate

from _toy_protocol import hourly_protocol, with_new_test_period


class Settings:
    tasks = ["P1b"]
    fraction = 0.2
    tolerance = 0.03


def test_inverse_mse_weights_known_answer():
    actual = np.zeros(4)
    preds = np.column_stack([np.array([1.0, -1.0, 1.0, -1.0]), np.array([2.0, -2.0, 2.0, -2.0])])  # MSE 1 and 4
    np.testing.assert_allclose(inverse_mse_weights(preds, actual), [0.8, 0.2])


def test_stacked_weights_recover_a_mixture():
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 200))
    actual = 0.3 * a + 0.7 * b
    np.testing.assert_allclose(stacked_weights(np.column_stack([a, b, c]), actual), [0.3, 0.7, 0.0], atol=1e-8)


@pytest.mark.parametrize("method", ["inverse_mse", "stack"])
def test_weights_and_intervals_ignore_the_test_period(method):
    config = {"members": ["naive", "seasonal_naive", "lightgbm"], "method": method, "val_fraction": 0.2,
              "member_configs": {"lightgbm": {"n_estimators": 20, "lags": [1, 2, 24], "windows": [6],
                                              "min_data_in_leaf": 10}}}
    fitted = []
    for proto in (hourly_protocol(), with_new_test_period(hourly_protocol())):
        result = evaluate(create("combiner", season=24, **config), proto, Settings())
        fitted.append(result)
    first, second = (r.forecaster for r in fitted)
    np.testing.assert_array_equal(first.weights_, second.weights_)
    np.testing.assert_array_equal(first.spread_.q, second.spread_.q)
    assert fitted[0].calibration["P1b"].factors == fitted[1].calibration["P1b"].factors
    assert fitted[0].calibration["P1b"].source == "holdout of the fitted model"
    np.testing.assert_allclose(first.weights_.sum(axis=1), 1.0)
    # the lightgbm member reads the exogenous columns; naive gets none
    assert first.members_[2].n_inputs_ == 2 and first.members_[0].X_ is None


def test_combiner_beats_its_worst_member_and_reloads(tmp_path):
    proto = hourly_protocol()
    config = {"members": ["naive", "seasonal_naive"], "val_fraction": 0.2}
    comb = evaluate(create("combiner", season=24, **config), proto)
    worst = max(evaluate(create(m, season=24), proto).metrics["P1b_mae"] for m in config["members"])
    assert comb.metrics["P1b_mae"] < worst
    model = comb.forecaster
    model.save(tmp_path / "c")
    again = load(tmp_path / "c")
    origins = proto.tasks[1].origins[:5]
    np.testing.assert_allclose(again.forecast_origins(proto.y_input, origins, 24, X=proto.X).mean,
                               model.forecast_origins(proto.y_input, origins, 24, X=proto.X).mean)
