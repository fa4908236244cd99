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

Models that read **neighbours** (``Forecaster.uses_neighbours``, e.g. the CNN-LSTM of Qin
et al. 2019) get the other stations' values on this protocol's own clock over the whole
period (:func:`neighbours_on`, P1 only) as extra exogenous columns named ``nb:<station>``;
like every column of ``X`` they are read causally, ``X[:o+1]`` at origin ``o``.

**Calibration** (:func:`calibrate`): on the reference series, the 80/95 % intervals of the
tasks named in ``backtest.calibration.tasks`` are checked on a validation slice carved
from the end of the training part (:func:`holdout_protocol`); where a model's coverage
there is off by more than ``tolerance``, its test intervals are rescaled by the split-
conformal factor measured on that slice. Nothing after the training end chooses anything.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from models import calibration as conformal
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
    rule: str = "every"  # "every": each position after the training end; "midnight": the hour before each 00:00


def task_origins(rule: str, ds: pd.DatetimeIndex, n_train: int, n: int) -> np.ndarray:
    """The origins of a task for a split at ``n_train`` over ``n`` positions."""
    if rule == "every":
        return np.arange(n_train - 1, n - 1)
    if rule == "midnight":  # P1b: 23:00 of the day before each test day
        return np.flatnonzero((ds[:n].hour == 0) & (np.arange(n) >= n_train)) - 1
    raise ValueError(f"unknown origin rule {rule!r}")


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
    # the other stations on this protocol's clock over the whole period (n, k): read causally, like X
    neighbours: np.ndarray | None = None
    neighbour_names: list[str] = field(default_factory=list)

    @property
    def train_end(self) -> pd.Timestamp:
        return self.ds[self.n_train - 1]

    @property
    def y_train(self) -> np.ndarray:
        return self.y_input[: self.n_train]

    @property
    def X_train(self) -> np.ndarray | None:
        return None if self.X is None else self.X[: self.n_train]

    def inputs_for(self, forecaster: Forecaster) -> tuple[np.ndarray | None, list[str]]:
        """The exogenous matrix a model reads over the whole period, and its column names:
        ``X`` for models that support exogenous inputs, plus the neighbours for models that
        read them (never for models that do neither)."""
        parts, names = [], []
        if forecaster.supports_exog and self.X is not None:
            parts.append(self.X)
            names += list(self.exog_names)
        if forecaster.uses_neighbours and self.neighbours is not None:
            parts.append(self.neighbours)
            names += list(self.neighbour_names)
        return (np.hstack(parts) if parts else None), names

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
            "neighbours": len(self.neighbour_names),
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
    X, names = _exog_matrix(series.reset_index(drop=True))
    nb = params.backtest.neighbours
    neighbours, neighbour_names = neighbours_on(ds, list(others), nb.min_train_share, n_train, nb.recent_hours)
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
            Task("P1a", task_origins("every", ds, n_train, len(y)), 1),
            Task("P1b", task_origins("midnight", ds, n_train, len(y)), p1.horizon, rule="midnight"),
        ],
        levels=tuple(params.backtest.levels),
        X=X,
        exog_names=names,
        panel=panel_until(list(others), ds[n_train - 1], params.pm25.max_interpolate_hours),
        neighbours=neighbours,
        neighbour_names=neighbour_names,
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
    origins = task_origins("every", ds, n_train, n)
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


def neighbours_on(ds: pd.DatetimeIndex, others: list[pd.DataFrame], min_train_share: float,
                  n_train: int, recent_hours: int | None = None) -> tuple[np.ndarray | None, list[str]]:
    """The other stations' values at this series' own timestamps (NaN where a station has no
    value): an ``(n, k)`` matrix of model inputs, read causally like ``X``. A station observed
    at fewer than ``min_train_share`` of the training hours is left out (the US embassy's
    training years 2010-2013 overlap the multi-site stations only from 2013-03 on), and so is
    one observed at fewer than that share of the last ``recent_hours`` before the training
    end: it has stopped, and a forward-filled stale value is no input (the US embassy ends in
    2014, the multi-site training part in 2016-02). Only training-part hours decide."""
    cols, names = [], []
    for frame in others:
        values = pd.Series(frame[Y].to_numpy(dtype=float), index=pd.DatetimeIndex(frame[DS]).tz_convert(ds.tz))
        values = values[~values.index.duplicated()].reindex(ds).to_numpy(dtype=float)
        if np.mean(~np.isnan(values[:n_train])) < min_train_share:
            continue
        if recent_hours and np.mean(~np.isnan(values[max(n_train - recent_hours, 0):n_train])) < min_train_share:
            continue
        cols.append(values)
        names.append(f"nb:{frame[UNIQUE_ID].iloc[0]}")
    return (np.column_stack(cols) if cols else None), names


def holdout_protocol(protocol: Protocol, fraction: float) -> Protocol:
    """The protocol moved back into its own training part: train on the first ``1 - fraction``
    of it, "test" on the rest (the validation slice), with the same task rules. Nothing after
    the training end is in it: this is where calibration (and tuning) may look."""
    n = protocol.n_train
    n_cut = n - max(int(n * fraction), max(t.h for t in protocol.tasks) + 1)
    if n_cut < 2 * protocol.season:
        raise ValueError(f"{protocol.unique_id}: a training part of {n} points leaves no validation slice")
    end = protocol.ds[n_cut - 1]
    panel = tuple(replace(p, ds=p.ds[keep], y=p.y[keep], X=None if p.X is None else p.X[keep])
                  for p in protocol.panel for keep in [np.asarray(p.ds <= end.tz_convert(p.ds.tz))] if keep.sum() >= 2)
    tasks = [replace(t, origins=task_origins(t.rule, protocol.ds, n_cut, n)) for t in protocol.tasks]
    return replace(
        protocol, ds=protocol.ds[:n], y=protocol.y[:n].copy(), y_input=protocol.y_input[:n].copy(), n_train=n_cut,
        scale=metrics.mase_scale(protocol.y[:n_cut], protocol.season), tasks=tasks,
        X=None if protocol.X is None else protocol.X[:n], panel=panel,
        neighbours=None if protocol.neighbours is None else protocol.neighbours[:n],
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
    calibration: dict[str, CalibrationCheck] = field(default_factory=dict)  # task name -> check


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


def fit_on(forecaster: Forecaster, protocol: Protocol) -> Forecaster:
    """Fit on the protocol's training part with the inputs the model declares it reads."""
    X, names = protocol.inputs_for(forecaster)
    return forecaster.fit(protocol.y_train, None if X is None else X[: protocol.n_train],
                          panel=protocol.panel if forecaster.uses_panel else None, exog_names=names)


def forecast_task(forecaster: Forecaster, protocol: Protocol, task: Task) -> Forecast:
    X, _ = protocol.inputs_for(forecaster)
    return forecaster.forecast_origins(protocol.y_input, task.origins, task.h, protocol.levels, X)


def evaluate(forecaster: Forecaster, protocol: Protocol, calibration=None) -> BacktestResult:
    """Fit on the training part, forecast every task's origins, score. ``calibration``
    (``backtest.calibration``): check and, where off, recalibrate the intervals of its tasks
    on a validation slice from the end of the training part (:func:`calibrate`)."""
    unfitted = copy.deepcopy(forecaster) if calibration is not None else None
    t0 = time.perf_counter()
    fit_on(forecaster, protocol)
    result_metrics = {"fit_seconds": time.perf_counter() - t0}
    forecasts, errors, checks = {}, {}, {}
    for task in protocol.tasks:
        t0 = time.perf_counter()
        fc = forecast_task(forecaster, protocol, task)
        result_metrics[metric_key(task.name, "predict_seconds")] = time.perf_counter() - t0
        if calibration is not None and task.name in calibration.tasks:
            check = calibrate(unfitted, forecaster, protocol, task, calibration)
            raw_scores, _ = _score(protocol, task, fc, forecaster.name)
            result_metrics.update({metric_key(task.name, f"cov{lv}_raw"): raw_scores[metric_key(task.name, f"cov{lv}")]
                                   for lv in fc.levels})
            fc = conformal.rescale(fc, check.factors)
            result_metrics.update(check.metrics(task.name))
            checks[task.name] = check
        scores, frame = _score(protocol, task, fc, forecaster.name)
        result_metrics.update(scores)
        forecasts[task.name] = frame
        errors[task.name] = frame[[Y, forecaster.name]].to_numpy()
    return BacktestResult(forecaster.name, protocol, forecaster, result_metrics, forecasts, errors, checks)


@dataclass
class CalibrationCheck:
    """Interval coverage of one model on the validation slice, and the factors applied to its test
    intervals (1.0 where the coverage there was within the tolerance)."""

    val_coverage: dict[int, float]
    factors: dict[int, float]
    source: str  # "holdout of the fitted model" or "refit on the training part before the slice"
    n_pairs: int

    def metrics(self, task: str) -> dict[str, float]:
        out = {}
        for level, cov in self.val_coverage.items():
            out[metric_key(task, f"cov{level}_val")] = cov
            out[metric_key(task, f"calib{level}")] = self.factors[level]
        return out


def calibrate(unfitted: Forecaster, fitted: Forecaster, protocol: Protocol, task: Task, settings) -> CalibrationCheck:
    """Coverage of ``task``'s intervals on the validation slice at the end of the training part,
    and the split-conformal factors for the levels whose coverage there is off by more than
    ``settings.tolerance``. A model that never trained on the slice (its ``holdout_start_``, e.g.
    a network's early-stopping slice) forecasts it as fitted; any other is fitted again on the
    training part before the slice. Only training-part values are read."""
    hold = holdout_protocol(protocol, settings.fraction)
    hold_task = next(t for t in hold.tasks if t.name == task.name)
    start = getattr(fitted, "holdout_start_", None)
    if start is not None and start <= hold.n_train:
        model, source = fitted, "holdout of the fitted model"
    else:
        model, source = fit_on(copy.deepcopy(unfitted), hold), "refit before the slice"
    fc = forecast_task(model, hold, hold_task)
    steps = np.arange(1, hold_task.h + 1)
    target = hold_task.origins[:, None] + steps[None, :]
    actual = np.where(target < len(hold.y), hold.y[np.minimum(target, len(hold.y) - 1)], np.nan)
    val_cov, factors = {}, {}
    for level in fc.levels:
        val_cov[level] = metrics.coverage(actual, fc.lower[level], fc.upper[level])
        off = abs(val_cov[level] - level / 100.0) > settings.tolerance
        factors[level] = conformal.scale_factor(actual, fc.mean, fc.lower[level], fc.upper[level], level) if off else 1.0
    return CalibrationCheck(val_cov, factors, source, int(np.isfinite(actual).sum()))


def dm_against(result: BacktestResult, reference: BacktestResult) -> dict[str, float]:
    """Diebold–Mariano p-value of each task against a reference model (the naive baseline)."""
    out = {}
    for task in result.protocol.tasks:
        a, b = result.errors[task.name], reference.errors[task.name]
        _, p = metrics.diebold_mariano(a[:, 0], a[:, 1], b[:, 1], h=task.h)
        out[metric_key(task.name, "dm_pvalue")] = p
    return out
