"""The backtest harness: protocols P1 and P2 of protocols.md, written once.

A :class:`Protocol` fixes the series, the split, the model inputs and the origins of
each sub-protocol (P1a, P1b, P2a, P2b); :func:`evaluate` fits a forecaster on the
training part, asks it for the forecasts at every origin and scores them. Models
only implement the :class:`models.base.Forecaster` interface; nothing here is
model-specific.

Origins are positions: origin ``o`` means the model knows ``y[:o+1]`` and forecasts
``o+1 .. o+h``.

- P1a: every test hour, one step ahead: origins ``n_train-1 .. n-2``.
- P1b: at 00:00 of each test day the next 24 hours (00:00..23:00 of that day), i.e.
  origins at 23:00 of the day before.
- P2a: every test day, one step ahead. P2b: five steps from every test origin
  (``n_train-1 .. n-2``), pairs past the end of the data dropped.

Global models (``Forecaster.uses_panel``) also get the **panel**: the other series of
the same clean table, each cut at this protocol's training end in calendar time
(:func:`panel_until`), so no value from any test period reaches them. The harness hands
it over; models never read data files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.base import Forecast, Forecaster
from seqcast.config import Params
from seqcast.contract import CUTOFF, DS, HORIZON, TZ, UNIQUE_ID, Y, hi, lo, metric_key
from tasks import metrics
from tasks.cleaning import fill_short_gaps


@dataclass(frozen=True)
class Task:
    name: str  # "P1a", ...
    origins: np.ndarray
    h: int
    directional: bool = False


@dataclass(frozen=True)
class PanelSeries:
    """Another series of the same clean table, up to a protocol's training end: model inputs only."""

    unique_id: str
    ds: pd.DatetimeIndex
    y: np.ndarray  # model inputs (the cleaning policy's gap filling applied)
    X: np.ndarray | None = None
    exog_names: tuple[str, ...] = ()


@dataclass
class Protocol:
    name: str  # "P1" or "P2"
    unique_id: str
    ds: pd.DatetimeIndex
    y: np.ndarray  # actuals, NaN where not observed
    y_input: np.ndarray  # model inputs: train gap-filled by the policy; test as observed
    n_train: int
    season: int
    scale: float  # MASE denominator
    tasks: list[Task]
    levels: tuple[int, ...] = (80, 95)
    X: np.ndarray | None = None
    exog_names: list[str] = field(default_factory=list)
    panel: tuple[PanelSeries, ...] = ()  # the other series, cut at this protocol's train end (global models)

    @property
    def train_end(self) -> pd.Timestamp:
        return self.ds[self.n_train - 1]

    @property
    def y_train(self) -> np.ndarray:
        return self.y_input[: self.n_train]

    @property
    def X_train(self) -> np.ndarray | None:
        return None if self.X is None else self.X[: self.n_train]

    def describe(self) -> dict[str, object]:
        return {
            "protocol": self.name,
            "series": self.unique_id,
            "train_start": str(self.ds[0]),
            "train_end": str(self.ds[self.n_train - 1]),
            "test_end": str(self.ds[-1]),
            "n_train": self.n_train,
            "n_test": len(self.y) - self.n_train,
            "season": self.season,
            "panel_series": len(self.panel),
        }


def _exog_matrix(frame: pd.DataFrame) -> tuple[np.ndarray | None, list[str]]:
    """Numeric exogenous columns as floats; text columns (wind direction) one-hot encoded.

    A clean table holds every series of a dataset, so a column another series has and
    this one lacks (multi-site pollutants beside the US embassy's weather) is all
    missing here: such columns are dropped."""
    exog = frame.drop(columns=[c for c in (UNIQUE_ID, DS, Y, TZ, "y_filled") if c in frame])
    exog = exog.loc[:, exog.notna().any()]
    if exog.empty:
        return None, []
    numeric = exog.select_dtypes(include="number")
    categorical = exog.drop(columns=numeric.columns)
    parts = [numeric.astype(float)]
    if not categorical.empty:
        parts.append(pd.get_dummies(categorical.astype("string"), dtype=float))
    X = pd.concat(parts, axis=1)
    return X.to_numpy(dtype=float), [str(c) for c in X.columns]


def p1_protocol(series: pd.DataFrame, params: Params, others: list[pd.DataFrame] = ()) -> Protocol:
    """P1 for one PM2.5 series (a clean-table slice for one unique_id, hourly, in order);
    ``others``: the other stations of the table, for the panel of global models."""
    uid = str(series[UNIQUE_ID].iloc[0])
    p1 = params.backtest.p1
    ds = pd.DatetimeIndex(series[DS])
    train_end, test_end = p1.split_for(uid).bounds(str(ds.tz))
    keep = ds <= test_end
    series, ds = series.loc[keep], ds[keep]
    y = series[Y].to_numpy(dtype=float)
    n_train = int(np.sum(ds <= train_end))
    if n_train < 2 * p1.season or n_train >= len(y):
        raise ValueError(f"P1 for {uid}: no usable train/test split at {train_end} .. {test_end}")
    y_input = y.copy()
    y_input[:n_train] = fill_short_gaps(y[:n_train], params.pm25.max_interpolate_hours)
    # P1b origins: 23:00 of the day before each test day
    test_days = np.flatnonzero((ds.hour == 0) & (np.arange(len(ds)) >= n_train))
    X, names = _exog_matrix(series.reset_index(drop=True))
    return Protocol(
        name="P1",
        unique_id=uid,
        ds=ds,
        y=y,
        y_input=y_input,
        n_train=n_train,
        season=p1.season,
        scale=metrics.mase_scale(y[:n_train], p1.season),
        tasks=[
            Task("P1a", np.arange(n_train - 1, len(y) - 1), 1),
            Task("P1b", test_days - 1, p1.horizon),
        ],
        levels=tuple(params.backtest.levels),
        X=X,
        exog_names=names,
        panel=panel_until(list(others), ds[n_train - 1], params.pm25.max_interpolate_hours),
    )


def p2_protocol(series: pd.DataFrame, params: Params, others: list[pd.DataFrame] = ()) -> Protocol:
    """P2 for one market series (a clean-table slice: null closes already dropped);
    ``others``: the other indices of the table, for the panel of global models."""
    uid = str(series[UNIQUE_ID].iloc[0])
    p2 = params.backtest.p2
    ds = pd.DatetimeIndex(series[DS])
    y = series[Y].to_numpy(dtype=float)
    n = len(y)
    n_train = int(n * p2.train_fraction)
    if n_train < 10 or n - n_train < p2.horizon:
        raise ValueError(f"P2 for {uid}: {n} rows are too few for an {p2.train_fraction:.0%} split")
    origins = np.arange(n_train - 1, n - 1)
    X, names = _exog_matrix(series.reset_index(drop=True))
    return Protocol(
        name="P2",
        unique_id=uid,
        ds=ds,
        y=y,
        y_input=y.copy(),
        n_train=n_train,
        season=p2.season,  # a trading week, for the seasonal naive baseline
        scale=metrics.mase_scale(y[:n_train], 1),
        tasks=[Task("P2a", origins, 1, directional=True), Task("P2b", origins, p2.horizon, directional=True)],
        levels=tuple(params.backtest.levels),
        X=X,
        exog_names=names,
        panel=panel_until(list(others), ds[n_train - 1], 0),
    )


def panel_until(others: list[pd.DataFrame], end: pd.Timestamp, gap_limit: int) -> tuple[PanelSeries, ...]:
    """The other series of a table, each cut at ``end`` (inclusive, calendar time): what a
    global model may train on beside the protocol's own training part. Gaps of at most
    ``gap_limit`` points are filled as the protocol fills its own training part."""
    panel = []
    for frame in others:
        ds = pd.DatetimeIndex(frame[DS])
        keep = ds <= end.tz_convert(ds.tz) if ds.tz is not None else ds <= end.tz_localize(None)
        part = frame.loc[keep].reset_index(drop=True)
        if len(part) < 2 or part[Y].notna().sum() < 2:
            continue
        X, names = _exog_matrix(part)
        panel.append(PanelSeries(str(part[UNIQUE_ID].iloc[0]), pd.DatetimeIndex(part[DS]),
                                 fill_short_gaps(part[Y].to_numpy(dtype=float), gap_limit), X, tuple(names)))
    return tuple(panel)


@dataclass
class BacktestResult:
    model: str
    protocol: Protocol
    forecaster: Forecaster
    metrics: dict[str, float]
    forecasts: dict[str, pd.DataFrame]  # task name -> long frame
    errors: dict[str, np.ndarray]  # task name -> aligned (actual, prediction) pairs, for DM tests


def _score(protocol: Protocol, task: Task, fc: Forecast, model: str) -> tuple[dict[str, float], pd.DataFrame]:
    steps = np.arange(1, task.h + 1)
    target = task.origins[:, None] + steps[None, :]  # (n, h)
    valid = target < len(protocol.y)
    tgt = np.where(valid, target, 0)
    actual = np.where(valid, protocol.y[tgt], np.nan)
    key = lambda m: metric_key(task.name, m)  # noqa: E731
    out = {
        key("mae"): metrics.mae(actual, fc.mean),
        key("rmse"): metrics.rmse(actual, fc.mean),
    }
    out[key("mase")] = out[key("mae")] / protocol.scale
    for level in fc.levels:
        out[key(f"cov{level}")] = metrics.coverage(actual, fc.lower[level], fc.upper[level])
    if task.directional:
        reference = np.broadcast_to(protocol.y_input[task.origins][:, None], actual.shape)
        out[key("dir_acc")] = metrics.directional_accuracy(actual, fc.mean, reference)
    frame = pd.DataFrame({
        UNIQUE_ID: protocol.unique_id,
        CUTOFF: np.repeat(protocol.ds[task.origins], task.h),
        DS: protocol.ds[tgt.ravel()],
        HORIZON: np.tile(steps, len(task.origins)),
        Y: actual.ravel(),
        model: fc.mean.ravel(),
    })
    for level in fc.levels:
        frame[lo(model, level)] = fc.lower[level].ravel()
        frame[hi(model, level)] = fc.upper[level].ravel()
    frame = frame.loc[valid.ravel()].reset_index(drop=True)
    return out, frame


def evaluate(forecaster: Forecaster, protocol: Protocol) -> BacktestResult:
    """Fit on the training part, forecast every task's origins, score."""
    t0 = time.perf_counter()
    forecaster.fit(protocol.y_train, protocol.X_train if forecaster.supports_exog else None,
                   panel=protocol.panel if forecaster.uses_panel else None)
    result_metrics = {"fit_seconds": time.perf_counter() - t0}
    forecasts, errors = {}, {}
    for task in protocol.tasks:
        t0 = time.perf_counter()
        fc = forecaster.forecast_origins(
            protocol.y_input, task.origins, task.h, protocol.levels,
            protocol.X if forecaster.supports_exog else None,
        )
        result_metrics[metric_key(task.name, "predict_seconds")] = time.perf_counter() - t0
        scores, frame = _score(protocol, task, fc, forecaster.name)
        result_metrics.update(scores)
        forecasts[task.name] = frame
        errors[task.name] = frame[[Y, forecaster.name]].to_numpy()
    return BacktestResult(forecaster.name, protocol, forecaster, result_metrics, forecasts, errors)


def dm_against(result: BacktestResult, reference: BacktestResult) -> dict[str, float]:
    """Diebold–Mariano p-value of each task against a reference model (the naive baseline)."""
    out = {}
    for task in result.protocol.tasks:
        a, b = result.errors[task.name], reference.errors[task.name]
        _, p = metrics.diebold_mariano(a[:, 0], a[:, 1], b[:, 1], h=task.h)
        out[metric_key(task.name, "dm_pvalue")] = p
    return out
