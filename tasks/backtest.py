"""The backtest harness: the protocols of protocols.md, written once, read from a dataset's entry.

A :class:`Protocol` fixes the series, the split, the model inputs and the origins of
each task (``datasets.<name>.protocol``: P1a/P1b for PM2.5, P2a/P2b for the market, P4a/P4b
by default); :func:`evaluate` fits a forecaster on the training part, asks it for the
forecasts at every origin and scores them. Models only implement the
:class:`models.base.Forecaster` interface; nothing here is model- or dataset-specific.

Origins are positions: origin ``o`` means the model knows ``y[:o+1]`` and forecasts
``o+1 .. o+h``. A task's origins follow one rule:

- ``every``: every test step (``n_train-1 .. n-2``), pairs past the end of the data dropped
  (P1a, P2a one step ahead; P2b five steps from every origin);
- ``midnight``: the step before each midnight of the test part, so each forecast starts at
  00:00 (P1b: the 24 hours of each test day);
- ``stride``: every ``h`` steps through the test part, the last forecast ending at the last
  observation (P4's h-step task).

Global models (``Forecaster.uses_panel``) also get the **panel**: the other series of
the same clean table, each cut at this protocol's training end in calendar time
(:func:`panel_until`), so no value from any test period reaches them. The harness hands
it over; models never read data files.

Models that read **neighbours** (``Forecaster.uses_neighbours``, e.g. the CNN-LSTM of Qin
et al. 2019) get the other stations' values on this protocol's own clock over the whole
period (:func:`neighbours_on`, P1 only) as extra exogenous columns named ``nb:<station>``;
like every column of ``X`` they are read causally, ``X[:o+1]`` at origin ``o``.

**Calibration** (:func:`calibrate`): on the reference series, the 80/95 % intervals of the
tasks named in the dataset's ``protocol.calibrate`` are checked on a validation slice carved
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
from seqcast import domain
from seqcast.contract import CUTOFF, DS, HORIZON, TZ, UNIQUE_ID, Y, hi, lo, metric_key
from seqcast.dataset_config import DatasetParams
from tasks import metrics
from tasks.cleaning import fill_short_gaps


@dataclass(frozen=True)
class Task:
    name: str  # "P1a", ...
    origins: np.ndarray
    h: int
    directional: bool = False
    rule: str = "every"  # "every", "midnight" or "stride" (see the module's docstring)


def task_origins(rule: str, ds: pd.DatetimeIndex, n_train: int, n: int, h: int = 1) -> np.ndarray:
    """The origins of a task for a split at ``n_train`` over ``n`` positions."""
    if rule == "every":
        return np.arange(n_train - 1, n - 1)
    if rule == "midnight":  # P1b: 23:00 of the day before each test day
        return np.flatnonzero((ds[:n].hour == 0) & (ds[:n].minute == 0) & (np.arange(n) >= n_train)) - 1
    if rule == "stride":  # every h steps, the last forecast ending at the last observation
        return np.arange(n - 1 - h, n_train - 2, -h)[::-1]
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
    name: str  # "P1", "P2", "P4", ... (the dataset's protocol.name)
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
    dataset: str = ""
    frequency: str = "D"  # the series' step (a pandas alias)
    sessions: bool = False  # the rows are the steps (trading days): positions are no fixed time step
    mase_season: int = 1  # the MASE scale's seasonal naive
    domain: str = "real"  # of the target: "non_negative" and "positive" forecasts stay >= 0
    unit: str = ""  # of the target, on the charts' axes
    plot_steps: int | None = None  # forecast-vs-actual plots: the first N test steps (None: all)
    baseline: str = "naive"  # every model's Diebold-Mariano test is against this model on the same series

    @property
    def train_end(self) -> pd.Timestamp:
        return self.ds[self.n_train - 1]

    @property
    def y_train(self) -> np.ndarray:
        return self.y_input[: self.n_train]

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
            "dataset": self.dataset,
            "series": self.unique_id,
            "train_start": str(self.ds[0]),
            "train_end": str(self.ds[self.n_train - 1]),
            "test_end": str(self.ds[-1]),
            "n_train": self.n_train,
            "n_test": len(self.y) - self.n_train,
            "season": self.season,
            "frequency": self.frequency,
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


class ProtocolError(ValueError):
    """A series that the protocol cannot judge (too short, no test part): the message says why."""


def _split(series: pd.DataFrame, ds: pd.DatetimeIndex, split) -> tuple[pd.DataFrame, pd.DatetimeIndex, int]:
    """The rows up to the test end and the number of training rows."""
    if split.train_fraction is not None:
        return series, ds, int(len(ds) * split.train_fraction)
    tz = str(ds.tz) if ds.tz is not None else None
    train_end = pd.Timestamp(split.train_end, tz=tz)
    if split.test_end is not None:
        keep = ds <= pd.Timestamp(split.test_end, tz=tz)
        series, ds = series.loc[keep], ds[keep]
    return series, ds, int(np.sum(ds <= train_end))


def build_protocol(series: pd.DataFrame, dataset: str, entry: DatasetParams, levels: list[int] | tuple[int, ...],
                   others: list[pd.DataFrame] = ()) -> Protocol:
    """The protocol of one series of a clean table (a slice for one unique_id, in order, on its
    own clock) by its dataset's entry; ``others``: the other series of the table, for the panel
    of global models and, where the protocol asks, as neighbours."""
    uid = str(series[UNIQUE_ID].iloc[0])
    spec = entry.protocol
    split = spec.split_for(uid)
    series, ds, n_train = _split(series, pd.DatetimeIndex(series[DS]), split)
    y = series[Y].to_numpy(dtype=float)
    n, m = len(y), entry.season
    tasks = entry.task_specs(n, n_train)
    h = max(t.horizon for t in tasks)
    where = f"at {split.train_end}" if split.train_end else f"at {split.train_fraction:.0%} of the steps"
    if n_train < 2 * m or n - n_train < h or n < 2 * m + 2 * h:
        raise ProtocolError(f"{spec.name} for {dataset}/{uid}: {n} steps ({n_train} before the split {where}) are "
                            f"too few; the protocol needs at least {2 * m + 2 * h} (2 x season {m} + 2 x horizon "
                            f"{h}), {2 * m} of them before the split and {h} after it")
    limit = entry.cleaning.interpolate_limit
    y_input = y.copy()
    y_input[:n_train] = fill_short_gaps(y[:n_train], limit)
    X, names = _exog_matrix(series.reset_index(drop=True))
    neighbours, neighbour_names = None, []
    if spec.neighbours is not None:
        nb = spec.neighbours
        neighbours, neighbour_names = neighbours_on(ds, list(others), nb.min_train_share, n_train, nb.recent_steps)
    return Protocol(
        name=spec.name,
        unique_id=uid,
        ds=ds,
        y=y,
        y_input=y_input,
        n_train=n_train,
        season=m,
        scale=metrics.mase_scale(y[:n_train], entry.mase_season),
        tasks=[Task(t.name, task_origins(t.origins, ds, n_train, n, t.horizon), t.horizon, t.directional, t.origins)
               for t in tasks],
        levels=tuple(levels),
        X=X,
        exog_names=names,
        panel=panel_until(list(others), ds[n_train - 1], limit),
        neighbours=neighbours,
        neighbour_names=neighbour_names,
        dataset=dataset,
        frequency=entry.data.frequency,
        sessions=entry.data.sessions,
        mase_season=entry.mase_season,
        domain=entry.data.domain,
        unit=entry.data.unit,
        plot_steps=spec.plot_steps,
        baseline=spec.baseline,
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
    tasks = [replace(t, origins=task_origins(t.rule, protocol.ds, n_cut, n, t.h)) for t in protocol.tasks]
    return replace(
        protocol, ds=protocol.ds[:n], y=protocol.y[:n].copy(), y_input=protocol.y_input[:n].copy(), n_train=n_cut,
        scale=metrics.mase_scale(protocol.y[:n_cut], protocol.mase_season), tasks=tasks,
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
    out[key("mase")] = metrics.mase(out[key("mae")], protocol.scale)
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
    on a validation slice from the end of the training part (:func:`calibrate`). Forecasts of a
    target that cannot be negative (``protocol.domain``) are censored at 0 (:mod:`seqcast.domain`)
    before they are scored."""
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
        fc = domain.clip_forecast(fc, protocol.domain)  # a non-negative target: no forecast below 0
        scores, frame = _score(protocol, task, fc, forecaster.name)
        result_metrics.update(scores)
        forecasts[task.name] = frame
        errors[task.name] = frame[[Y, forecaster.name]].to_numpy()
    return BacktestResult(forecaster.name, protocol, forecaster, result_metrics, forecasts, errors, checks)


@dataclass(frozen=True)
class CalibrationSpec:
    """Which tasks get the interval check (the dataset's ``protocol.calibrate``) and how
    (``backtest.calibration``)."""

    tasks: tuple[str, ...]
    fraction: float
    tolerance: float


def calibration_for(params, dataset: str) -> CalibrationSpec:
    settings = params.backtest.calibration
    return CalibrationSpec(tuple(params.dataset(dataset).calibrated_tasks()), settings.fraction, settings.tolerance)


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
    """Diebold–Mariano p-value of each task against a reference model (the protocol's baseline)."""
    out = {}
    for task in result.protocol.tasks:
        a, b = result.errors[task.name], reference.errors[task.name]
        _, p = metrics.diebold_mariano(a[:, 0], a[:, 1], b[:, 1], h=task.h)
        out[metric_key(task.name, "dm_pvalue")] = p
    return out


@dataclass
class Unscored:
    """A (series, model) job that produced no scores, and why: ``skipped`` when the model does not
    apply to the series (it says why), ``failed`` when it raised. The leaderboard lists it."""

    model: str
    protocol: Protocol
    kind: str  # "skipped" or "failed"
    reason: str


class NotApplicable(RuntimeError):
    """Raised by a model (or the harness) when it cannot judge a series: the message says why."""


def run_model(forecaster_of, name: str, protocol: Protocol, calibration=None,
              on_error: str = "record") -> BacktestResult | Unscored:
    """Build (``forecaster_of(name)``) and evaluate one model on one protocol; a model that does
    not apply, or that fails (``on_error="record"``), comes back as an :class:`Unscored`."""
    try:
        return evaluate(forecaster_of(name), protocol, calibration)
    except NotApplicable as err:
        return Unscored(name, protocol, "skipped", str(err))
    except Exception as err:  # noqa: BLE001 — one model's failure is a row of the leaderboard, not a lost run
        if on_error == "raise":
            raise
        import traceback

        detail = "".join(traceback.format_exception_only(type(err), err)).strip()
        return Unscored(name, protocol, "failed", detail[:2000])


class BaselineFirst:
    """Results in the order they finish, handed on once the baseline of their series (its
    protocol's ``baseline``: naive, seasonal naive) is scored — each model's Diebold–Mariano test
    is against it; a series without a baseline job, or whose baseline produced no scores, hands
    its results on as they come."""

    def __init__(self, jobs) -> None:
        self.expected = {j.protocol.unique_id for j in jobs if j.model == j.protocol.baseline}
        self.baselines: dict[str, BacktestResult] = {}
        self.waiting: list[BacktestResult] = []

    def add(self, result: BacktestResult | Unscored) -> list[BacktestResult | Unscored]:
        uid = result.protocol.unique_id
        if result.model == result.protocol.baseline:
            self.expected.discard(uid)
            if isinstance(result, BacktestResult):
                self.baselines[uid] = result
            ready = [r for r in self.waiting if r.protocol.unique_id == uid]
            self.waiting = [r for r in self.waiting if r.protocol.unique_id != uid]
            return [result, *[self._tested(r) for r in ready]]
        if isinstance(result, BacktestResult) and uid in self.expected:
            self.waiting.append(result)
            return []
        return [self._tested(result)]

    def _tested(self, result):
        baseline = self.baselines.get(result.protocol.unique_id)
        if isinstance(result, BacktestResult) and baseline is not None and result.model != baseline.model:
            result.metrics.update(dm_against(result, baseline))
        return result

    def rest(self) -> list[BacktestResult]:
        out, self.waiting = [self._tested(r) for r in self.waiting], []
        return out
