import numpy as np
import pytest

from tasks import metrics


def test_point_metrics_ignore_unobserved_actuals():
    actual = np.array([1.0, 2.0, np.nan, 4.0])
    pred = np.array([2.0, 2.0, 100.0, 2.0])
    assert metrics.mae(actual, pred) == pytest.approx(1.0)
    assert metrics.rmse(actual, pred) == pytest.approx(np.sqrt(5 / 3))


def test_mase_scale_uses_observed_seasonal_pairs():
    y = np.array([1.0, 5.0, 2.0, 8.0, np.nan, 9.0])
    # season 2 pairs: (1,2), (5,8), (2,nan) dropped, (8,9) -> |1|,|3|,|1|
    assert metrics.mase_scale(y, 2) == pytest.approx(5 / 3)


def test_coverage_and_direction():
    actual = np.array([1.0, 2.0, 3.0, 4.0])
    assert metrics.coverage(actual, actual - 1, actual + 1) == 1.0
    assert metrics.coverage(actual, actual + 0.5, actual + 1) == 0.0
    ref = np.array([0.0, 3.0, 3.0, 5.0])  # actual moves: up, down, none, down
    pred = np.array([1.0, 4.0, 2.0, 4.0])  # predicted:    up, up,   down, down
    assert metrics.directional_accuracy(actual, pred, ref) == pytest.approx(2 / 3)
    assert np.isnan(metrics.directional_accuracy(actual, ref, ref))  # no move predicted at all


def test_diebold_mariano():
    rng = np.random.default_rng(0)
    actual = rng.normal(size=400)
    good = actual + rng.normal(scale=0.5, size=400)
    bad = actual + rng.normal(scale=2.0, size=400)
    stat, p = metrics.diebold_mariano(actual, good, bad)
    assert stat < 0 and p < 1e-6
    stat, p = metrics.diebold_mariano(actual, good, good + rng.normal(scale=1e-9, size=400))
    assert p > 0.05
