"""A small hourly P1-shaped protocol for harness tests (calibration, combiner)."""

import numpy as np
import pandas as pd

from tasks import metrics
from tasks.backtest import Protocol, Task, task_origins


def hourly_protocol(n_days: int = 80, train_days: int = 60, seed: int = 1) -> Protocol:
    """A P1-shaped toy: hourly, the noise grows in the last quarter of the training part (so
    intervals fitted before it are too narrow there), P1b origins at 23:00."""
    rng = np.random.default_rng(seed)
    n, n_train = 24 * n_days, 24 * train_days
    ds = pd.date_range("2020-01-01", periods=n, freq="h", tz="Asia/Shanghai")
    sd = np.where(np.arange(n) < int(0.8 * n_train), 0.5, 3.0)
    y = 40 + 5 * np.sin(2 * np.pi * np.arange(n) / 24) + np.cumsum(rng.normal(scale=sd))
    X = np.column_stack([np.cos(np.arange(n) / 7.0), rng.normal(size=n)])
    return Protocol(
        name="P1", unique_id="toy", ds=ds, y=y, y_input=y.copy(), n_train=n_train, season=24,
        scale=metrics.mase_scale(y[:n_train], 24),
        tasks=[Task("P1a", task_origins("every", ds, n_train, n), 1),
               Task("P1b", task_origins("midnight", ds, n_train, n), 24, rule="midnight")],
        X=X, exog_names=["x0", "x1"], dataset="toy", frequency="h", mase_season=24,
    )


def with_new_test_period(proto: Protocol, seed: int = 9) -> Protocol:
    """Every value after the training end replaced: actuals, inputs, exogenous columns."""
    rng = np.random.default_rng(seed)
    y = proto.y.copy()
    y[proto.n_train:] = 1000 + rng.normal(scale=50, size=len(y) - proto.n_train)
    X = proto.X.copy()
    X[proto.n_train:] = rng.normal(scale=10, size=X[proto.n_train:].shape)
    return Protocol(**{**proto.__dict__, "y": y, "y_input": y.copy(), "X": X})
