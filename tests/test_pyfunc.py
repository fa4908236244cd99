"""A forecaster logged to MLflow reloads as a pyfunc and predicts the same values."""

import mlflow
import numpy as np
import pandas as pd
import pytest

from models.pyfunc import log_forecaster
from models.registry import create
from seqcast import tracking


@pytest.mark.parametrize("name, config", [("naive", {}), ("drift", {}), ("arima", {"p": 2, "d": 0, "q": 1})])
def test_reload_predicts_the_same(name, config, mlflow_store, tmp_path):
    rng = np.random.default_rng(1)
    y = 20 + np.cumsum(rng.normal(size=300)) * 0.2 + rng.normal(size=300)
    model = create(name, season=24, **config).fit(y[:250])
    exp = tracking.ensure_experiment("pyfunc-test")
    with mlflow.start_run(experiment_id=exp):
        uri = log_forecaster(model, tmp_path / "forecaster", (80, 95), 24)
    loaded = mlflow.pyfunc.load_model(uri)
    # conditioned on new observations after the training history, 6 steps
    out = loaded.predict(pd.DataFrame({"y": y[250:260]}), params={"h": 6})
    expected = model.forecast_origins(y, [259], 6)
    np.testing.assert_allclose(out["mean"].to_numpy(), expected.mean[0], rtol=1e-6)
    np.testing.assert_allclose(out["hi-95"].to_numpy(), expected.upper[95][0], rtol=1e-6)
    assert list(out.columns) == ["step", "mean", "lo-80", "hi-80", "lo-95", "hi-95"]


def test_served_intervals_carry_the_backtests_conformal_factors(mlflow_store, tmp_path):
    """The factors the validation-slice check applied to the scored intervals are applied by the
    served model too: its intervals are the ones the logged coverage describes."""
    from models.calibration import rescale

    rng = np.random.default_rng(2)
    y = 50 + np.cumsum(rng.normal(size=200))
    model = create("naive", season=24).fit(y)
    factors = {80: 1.7, 95: 1.0}
    exp = tracking.ensure_experiment("pyfunc-test")
    with mlflow.start_run(experiment_id=exp):
        plain = mlflow.pyfunc.load_model(log_forecaster(model, tmp_path / "a", (80, 95), 24))
        scaled = mlflow.pyfunc.load_model(log_forecaster(model, tmp_path / "b", (80, 95), 24, factors))
    a = plain.predict(pd.DataFrame({"y": []}), params={"h": 4})
    b = scaled.predict(pd.DataFrame({"y": []}), params={"h": 4})
    expected = rescale(model.predict(4, (80, 95)), factors)
    np.testing.assert_allclose(b["mean"], a["mean"])
    np.testing.assert_allclose(b["hi-80"] - b["mean"], 1.7 * (a["hi-80"] - a["mean"]), rtol=1e-9)
    np.testing.assert_allclose(b["lo-95"], expected.lower[95][0], rtol=1e-9)  # still nested around the 80 %
    assert (b["hi-95"] >= b["hi-80"]).all() and (b["lo-95"] <= b["lo-80"]).all()


def test_served_answers_carry_timestamps_and_stay_in_the_domain(mlflow_store, tmp_path):
    """A model logged with its series' calendar dates each step on the series' clock (after the
    last new observation) and never answers below 0 for a non-negative target."""
    y = np.abs(np.random.default_rng(3).normal(3.0, 4.0, size=400))  # near 0: naive's bounds reach below it
    model = create("naive", season=24).fit(y)
    calendar = {"last_ds": "2014-12-31T23:00:00+08:00", "timezone": "Asia/Shanghai", "frequency": "h",
                "domain": "non_negative"}
    exp = tracking.ensure_experiment("pyfunc-test")
    with mlflow.start_run(experiment_id=exp):
        loaded = mlflow.pyfunc.load_model(log_forecaster(model, tmp_path / "c", (80, 95), 24, calendar=calendar))
        unbounded = mlflow.pyfunc.load_model(log_forecaster(model, tmp_path / "d", (80, 95), 24))
    raw = unbounded.predict(pd.DataFrame({"y": [0.5]}), params={"h": 3})
    assert (raw["lo-95"] < 0).all()  # the model alone goes below 0 ...
    out = loaded.predict(pd.DataFrame({"y": [0.5]}), params={"h": 3})
    assert list(out.columns) == ["step", "ds", "mean", "lo-80", "hi-80", "lo-95", "hi-95"]
    assert (out[["mean", "lo-80", "lo-95"]] >= 0).all().all() and (out["lo-95"] == 0).all()  # ... censored at 0
    np.testing.assert_allclose(out["hi-95"], raw["hi-95"])  # bounds above 0 are unchanged
    # one new row without a timestamp: the training end moved one hour on, then the next three hours
    assert list(out["ds"]) == ["2015-01-01T01:00:00+08:00", "2015-01-01T02:00:00+08:00", "2015-01-01T03:00:00+08:00"]
    dated = loaded.predict(pd.DataFrame({"y": [0.5, 0.7], "ds": ["2015-01-02T05:00:00+08:00", "2015-01-02T06:00:00+08:00"]}),
                           params={"h": 2})
    assert list(dated["ds"]) == ["2015-01-02T07:00:00+08:00", "2015-01-02T08:00:00+08:00"]
