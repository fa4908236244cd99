"""One contract, every registered forecaster: shapes, interval order, the vectorised
origins path equals the generic walk, no future value leaks in, save/load round trip.

Models that need a small configuration to run quickly declare it as the class
attribute ``tiny_config`` (validated by the model's schema like any configuration).
"""

import numpy as np
import pytest

from models import registry
from models.base import Forecaster

MODELS = sorted(registry.available())


def series(n: int = 400, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = 50 + 10 * np.sin(2 * np.pi * t / 24) + np.cumsum(rng.normal(scale=0.5, size=n)) + rng.normal(size=n)
    y[[50, 51, 52, 305]] = np.nan  # missing values, one inside the forecast range
    return y


def make(name: str) -> Forecaster:
    return registry.create(name, season=24, **registry.get(name).tiny_config)


@pytest.fixture(params=MODELS)
def fitted(request):
    y = series()
    model = make(request.param).fit(y[:300])
    return model, y


def test_predict_shapes_and_interval_order(fitted):
    model, _ = fitted
    fc = model.predict(6, (80, 95))
    assert fc.mean.shape == (1, 6) and np.isfinite(fc.mean).all()
    assert (fc.lower[95] <= fc.lower[80] + 1e-9).all() and (fc.lower[80] <= fc.mean + 1e-9).all()
    assert (fc.mean <= fc.upper[80] + 1e-9).all() and (fc.upper[80] <= fc.upper[95] + 1e-9).all()


def test_vectorised_origins_equal_the_generic_walk(fitted):
    model, y = fitted
    origins = np.arange(299, 330, 3)
    fast = model.forecast_origins(y, origins, 4)
    slow = Forecaster.forecast_origins(model, y, origins, 4)
    np.testing.assert_allclose(fast.mean, slow.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast.upper[95], slow.upper[95], rtol=1e-5, atol=1e-6)


def test_no_future_value_leaks(fitted):
    model, y = fitted
    origins = np.array([299, 310, 320])
    before = model.forecast_origins(y, origins, 3).mean
    shocked = y.copy()
    shocked[321:] += 1000.0  # everything after the last origin changes
    shocked[311:321] -= 500.0  # and everything after the second origin
    after = model.forecast_origins(shocked, origins, 3).mean
    np.testing.assert_allclose(after[:2], before[:2])


def test_save_and_load_predict_the_same(fitted, tmp_path):
    model, y = fitted
    model.save(tmp_path / "m")
    loaded = registry.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict(5).mean, model.predict(5).mean, rtol=1e-6)
    np.testing.assert_allclose(loaded.forecast_origins(y, [299, 305], 2).mean,
                               model.forecast_origins(y, [299, 305], 2).mean, rtol=1e-6)


def test_update_appends_without_refit():
    y = series()
    model = make("arima").fit(y[:300])
    params_before = model.params_.copy()
    model.update(y[300:310])
    np.testing.assert_array_equal(model.params_, params_before)
    np.testing.assert_allclose(model.predict(2).mean, model.forecast_origins(y, [309], 2).mean)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        registry.get("nope")
