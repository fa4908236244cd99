"""Each classical model, logged to MLflow as a pyfunc, reloads and predicts the same values."""

import mlflow
import numpy as np
import pandas as pd
import pytest

from models.pyfunc import log_forecaster
from models.registry import create

HOURLY = {  # small, fast configurations of the PM2.5-side models
    "auto_arima": {"max_p": 2, "max_q": 1, "fit_window": 300, "filter_window": None},
    "sarima": {"p": 1, "q": 0, "P": 1, "Q": 0, "fit_window": 300, "filter_window": None},
    "sarimax_weather": {"p": 1, "q": 0, "P": 0, "Q": 0, "fit_window": 300, "filter_window": None},
    "fourier": {"k": 2, "p": 1, "q": 0, "fit_window": 300, "filter_window": None, "max_period": 100},
    "ets": {"fit_window": 300, "errors": ["add"], "trends": [None], "seasonals": ["add"]},
}
DAILY = {  # market-side models on a price series
    "regime": {"k_regimes": 2},
    "gbm": {"n_paths": 500, "volatility": "ewma"},
    "prophet": {"yearly_seasonality": False},
    "prophet_native": {"yearly_seasonality": False, "uncertainty_samples": 200},
}


def hourly(n=400, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = 80 + 20 * np.sin(2 * np.pi * t / 24) + np.cumsum(rng.normal(scale=1.0, size=n)) + rng.normal(size=n)
    X = np.column_stack([np.sin(2 * np.pi * t / 24) + rng.normal(scale=0.1, size=n), rng.normal(size=n)])
    return y, X


def prices(n=400, seed=1):
    rng = np.random.default_rng(seed)
    return 2000 * np.exp(np.cumsum(rng.normal(0.0003, 0.01, n)))


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    return mlflow.create_experiment("classical-reload", artifact_location=tmp_path.as_uri())


@pytest.mark.parametrize("name", [*HOURLY, *DAILY])
def test_reload_predicts_the_same(name, store, tmp_path):
    if name in HOURLY:
        y, X = hourly()
        model = create(name, season=24, **HOURLY[name])
    else:
        y, X = prices(), None
        model = create(name, season=5, **DAILY[name])
    model.fit(y[:300], X[:300] if model.supports_exog else None)
    with mlflow.start_run(experiment_id=store):
        uri = log_forecaster(model, tmp_path / "forecaster", (80, 95), 6)
    loaded = mlflow.pyfunc.load_model(uri)
    out = loaded.predict(pd.DataFrame({"y": np.empty(0)}), params={"h": 6})
    expected = model.predict(6, (80, 95))
    np.testing.assert_allclose(out["mean"].to_numpy(), expected.mean[0], rtol=1e-6)
    np.testing.assert_allclose(out["lo-95"].to_numpy(), expected.lower[95][0], rtol=1e-6)
    np.testing.assert_allclose(out["hi-80"].to_numpy(), expected.upper[80][0], rtol=1e-6)
    if not model.supports_exog:  # conditioned on new observations: the model's own update
        out = loaded.predict(pd.DataFrame({"y": y[300:310]}), params={"h": 3})
        np.testing.assert_allclose(out["mean"].to_numpy(), model.forecast_origins(y, [309], 3).mean[0], rtol=1e-6)
