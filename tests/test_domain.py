"""A target that cannot be negative gets no negative forecast: the censoring rule and the harness."""

import numpy as np
import pandas as pd
import pytest

from models.base import Forecast
from models.registry import create
from seqcast import domain
from tasks.backtest import Protocol, Task, evaluate


def test_censoring_at_zero_keeps_what_is_above_and_leaves_a_real_target_alone():
    fc = Forecast(np.array([[-1.0, 2.0]]), {95: np.array([[-5.0, 0.5]])}, {95: np.array([[-0.5, 4.0]])})
    out = domain.clip_forecast(fc, "non_negative")
    np.testing.assert_array_equal(out.mean, [[0.0, 2.0]])
    np.testing.assert_array_equal(out.lower[95], [[0.0, 0.5]])
    np.testing.assert_array_equal(out.upper[95], [[0.0, 4.0]])
    assert domain.clip_forecast(fc, "real") is fc
    assert np.isnan(domain.clip(np.array([np.nan, -1.0]), "positive")[0])
    with pytest.raises(ValueError, match="unknown domain"):
        domain.lower_bound("counts")


def protocol_of(y: np.ndarray, target_domain: str) -> Protocol:
    n = len(y)
    ds = pd.date_range("2020-01-01", periods=n, freq="h")
    return Protocol("P4", "s", ds, y, y.copy(), n_train=n // 2, season=24, scale=1.0,
                    tasks=[Task("P4a", np.arange(n // 2 - 1, n - 1), 1), Task("P4b", np.arange(n // 2 - 1, n - 24, 24), 24)],
                    domain=target_domain)


def test_the_backtest_never_scores_a_negative_forecast_of_a_non_negative_target():
    """Drift and naive intervals reach below 0 near 0; censored, no bound is negative, the coverage is
    not lower and the absolute error not higher than the model's own."""
    rng = np.random.default_rng(0)
    y = np.abs(rng.normal(2.0, 3.0, size=600))
    raw = evaluate(create("drift", season=24), protocol_of(y, "real"))
    cut = evaluate(create("drift", season=24), protocol_of(y, "non_negative"))
    for task in ("P4a", "P4b"):
        frame = cut.forecasts[task]
        bounds = [c for c in frame.columns if c.startswith("drift")]
        assert (frame[bounds] >= 0).all().all()
        assert (raw.forecasts[task][bounds] < 0).any().any()  # the model's own bounds went below 0
        assert cut.metrics[f"{task}_cov95"] >= raw.metrics[f"{task}_cov95"]
        assert cut.metrics[f"{task}_mae"] <= raw.metrics[f"{task}_mae"]
