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
