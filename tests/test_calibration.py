"""Split-conformal calibration of intervals on the validation slice: the factor
is the conformal quantile (known answers), and nothing from the test period chooses it —
change every test-period value and the validation coverage and the factors stay identical."""

import numpy as np
import pandas as pd
import pytest

from models import calibration as conformal
from models.base import Forecast
from models.registry import create
from tasks import metrics
from tasks.backtest import evaluate, holdout_protocol, neighbours_on

from _toy_protocol import hourly_protocol, with_new_test_period


class Settings:  # the fields of backtest.calibration the harness reads
    tasks = ["P1b"]
    fraction = 0.2
    tolerance = 0.03


def test_scale_factor_is_the_conformal_quantile():
    mean = np.zeros(9)
    lower, upper = mean - 1.0, mean + 2.0
    actual = np.array([0.1, -0.2, 0.6, -0.8, 1.0, -1.5, 3.0, -2.5, 8.0])
    # needed factors: 0.05 0.2 0.3 0.8 0.5 1.5 1.5 2.5 4.0 -> sorted; k = ceil(10 * 0.8) = 8th
    np.testing.assert_allclose(np.sort(conformal.needed_scale(actual, mean, lower, upper)),
                               [0.05, 0.2, 0.3, 0.5, 0.8, 1.5, 1.5, 2.5, 4.0])
    assert conformal.scale_factor(actual, mean, lower, upper, 80) == pytest.approx(2.5)
    assert conformal.scale_factor(actual, mean, lower, upper, 95) == pytest.approx(4.0)  # k capped at n
    assert conformal.scale_factor(np.full(3, np.nan), mean[:3], lower[:3], upper[:3], 80) == 1.0


def test_rescaled_intervals_cover_the_slice_and_stay_nested():
    rng = np.random.default_rng(0)
    actual = rng.standard_t(3, size=(500, 1))
    mean = np.zeros_like(actual)
    fc = Forecast(mean, {80: mean - 0.5, 95: mean - 0.6}, {80: mean + 0.5, 95: mean + 0.6})  # far too narrow
    factors = {lv: conformal.scale_factor(actual, mean, fc.lower[lv], fc.upper[lv], lv) for lv in (80, 95)}
    out = conformal.rescale(fc, factors)
    for lv in (80, 95):
        assert metrics.coverage(actual, out.lower[lv], out.upper[lv]) >= lv / 100
    assert (out.lower[95] <= out.lower[80]).all() and (out.upper[95] >= out.upper[80]).all()


def test_holdout_protocol_holds_nothing_after_the_training_end():
    proto = hourly_protocol()
    hold = holdout_protocol(proto, 0.2)
    assert len(hold.y) == len(hold.ds) == proto.n_train and len(hold.X) == proto.n_train
    assert hold.n_train == proto.n_train - int(0.2 * proto.n_train)
    p1b = next(t for t in hold.tasks if t.name == "P1b")
    assert (hold.ds[p1b.origins + 1].hour == 0).all() and p1b.origins.min() >= hold.n_train - 1


@pytest.mark.parametrize("model, kwargs, source", [
    ("naive", {}, "refit before the slice"),
    # its intervals are residual quantiles of that very slice: the check passes them as they are
    ("lightgbm", {"n_estimators": 20, "lags": [1, 2, 24], "windows": [6], "min_data_in_leaf": 10,
                  "val_fraction": 0.2}, "holdout of the fitted model"),
])
def test_test_period_values_choose_nothing(model, kwargs, source):
    proto, changed = hourly_protocol(), with_new_test_period(hourly_protocol())
    checks = []
    for p in (proto, changed):
        result = evaluate(create(model, season=24, **kwargs), p, Settings())
        checks.append(result.calibration["P1b"])
    first, second = checks
    assert first.source == source
    assert first.factors == second.factors and first.val_coverage == second.val_coverage
    if model == "naive":  # the noise jump makes intervals fitted before the slice too narrow there
        assert first.val_coverage[95] < 0.92 and first.factors[95] > 1.0
    else:
        assert first.val_coverage[95] == pytest.approx(0.95, abs=0.03) and first.factors[95] == 1.0


def test_calibration_widens_too_narrow_intervals_to_the_slice_level():
    proto = hourly_protocol()
    raw = evaluate(create("naive", season=24), proto)
    fixed = evaluate(create("naive", season=24), proto, Settings())
    check = fixed.calibration["P1b"]
    assert fixed.metrics["P1b_cov95_raw"] == pytest.approx(raw.metrics["P1b_cov95"])
    assert fixed.metrics["P1b_cov95"] > raw.metrics["P1b_cov95"]
    assert fixed.metrics["P1b_mae"] == pytest.approx(raw.metrics["P1b_mae"])  # points untouched
    assert fixed.metrics["P1b_calib95"] == pytest.approx(check.factors[95])


def test_neighbours_align_on_the_clock_and_skip_short_overlaps():
    ds = pd.date_range("2020-01-01", periods=10, freq="h", tz="Asia/Shanghai")
    near = pd.DataFrame({"unique_id": "a", "ds": ds[2:].tz_convert("UTC"), "y": np.arange(8.0)})
    late = pd.DataFrame({"unique_id": "b", "ds": ds[7:], "y": np.ones(3)})
    values, names = neighbours_on(ds, [near, late], 0.5, n_train=6)
    assert names == ["nb:a"]  # "b" has no value in the 6 training hours
    np.testing.assert_array_equal(values[:, 0], [np.nan, np.nan, 0, 1, 2, 3, 4, 5, 6, 7])
    stopped = pd.DataFrame({"unique_id": "c", "ds": ds[:4], "y": np.ones(4)})  # 4 of 6 training hours, none lately
    assert neighbours_on(ds, [near, stopped], 0.5, n_train=6)[1] == ["nb:a", "nb:c"]
    assert neighbours_on(ds, [near, stopped], 0.5, n_train=6, recent_hours=2)[1] == ["nb:a"]


def test_calibration_table_has_one_row_per_checked_task_and_model():
    from tasks.report import calibration_table

    proto = hourly_protocol()
    results = {m: evaluate(create(m, season=24), proto, Settings()).metrics for m in ("naive", "drift")}
    results["unchecked"] = {"P1b_cov80": 0.8}
    table = calibration_table(results, ["P1a", "P1b"], [80, 95])
    assert list(table["model"]) == ["naive", "drift"] and set(table["task"]) == {"P1b"}
    row = table.iloc[0]
    assert row["cov95_test"] == results["naive"]["P1b_cov95"] and row["factor95"] == results["naive"]["P1b_calib95"]
    assert row["cov95_test_raw"] == results["naive"]["P1b_cov95_raw"]


def test_the_logged_model_serves_the_recalibrated_intervals(mlflow_store, tmp_path):
    """flows.backtest.log_result: a result whose intervals were recalibrated logs a model that
    applies the same factors (tag ``interval_factors``); its forecast is the rescaled one."""
    import json

    import mlflow

    from flows.backtest import log_result

    proto = hourly_protocol()
    fixed = evaluate(create("naive", season=24), proto, Settings())
    factors = fixed.calibration["P1b"].factors
    assert any(f != 1.0 for f in factors.values())
    clean = pd.DataFrame({"unique_id": "toy", "ds": proto.ds, "y": proto.y})
    table = tmp_path / "toy.parquet"
    clean.to_parquet(table, index=False)
    run_id = log_result(fixed, "pm25", table, clean, {})
    run = mlflow.get_run(run_id)
    assert {int(k): v for k, v in json.loads(run.data.tags["interval_factors"]).items()} == factors
    served = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    out = served.predict(pd.DataFrame({"y": []}), params={"h": 24})
    expected = conformal.rescale(fixed.forecaster.predict(24, (80, 95)), factors)
    np.testing.assert_allclose(out["hi-95"], expected.upper[95][0], rtol=1e-9)
    np.testing.assert_allclose(out["lo-80"], expected.lower[80][0], rtol=1e-9)
