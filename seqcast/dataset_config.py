"""A dataset is a value: one entry of the ``datasets:`` mapping of params.yaml.

Every stage reads what it needs of a dataset from its entry, never from its name:

- ``sources`` — where the series come from, each through a connector (:mod:`tasks.connectors`):
  ``yahoo`` (daily OHLCV of exchange symbols), ``uci_prsa`` (the UCI Beijing air-quality
  archives) or ``file`` (a user's CSV or Parquet file, a path or an http(s) URL). Which series a
  source holds, and their time zones, are learnt from the source and checked against it; the
  entry only chooses and overrides.
- ``data`` — what the series are: frequency (a pandas alias), whether they are observed in
  sessions (trading days: the rows are the steps), the time zone of naive timestamps, the
  target's domain and unit.
- ``validation`` — the thresholds of the generic rules every dataset gets, plus the entry's own
  rules (a value ceiling, the OHLC consistency of market data, a largest log change, ...).
- ``cleaning`` — what the clean table does with missing targets.
- ``protocol`` — how the models are judged (protocols.md: P1/P2 for the lecture's datasets,
  P4 by default for a user's): the split, the season, the tasks and their origins.
- ``models`` — which forecasters run: ``run`` on the reference series (the first series),
  ``every_series`` on every series (the multi-series leaderboard).
- ``schedule`` — optional cron schedules of the daily forecast and the weekly retrain.

The six blocks ``sources`` .. ``models`` are required in every entry (DVC declares them as
the params of the stages), ``{}`` takes the defaults of a block.
"""

from __future__ import annotations

import copy
from typing import Annotated, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from pydantic import Field, PositiveInt, create_model, field_validator, model_validator

from seqcast import frequency
from seqcast.config_base import Section
from seqcast.errors import InvalidParam

Domain = Literal["real", "non_negative", "positive"]


def _zone(value: str | None, key: str) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidParam(key, f"unknown time zone {value!r} (an IANA name such as Asia/Seoul or UTC)") from None
    return value


def _checked_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown time zone (an IANA name such as Asia/Seoul or UTC)") from None
    return value


def _date(value: str | None, key: str) -> str | None:
    if value is not None:
        try:
            pd.Timestamp(value)
        except (ValueError, TypeError):
            raise InvalidParam(key, f"not a date (got {value!r})") from None
    return value


# ---------------------------------------------------------------------------- sources
class YahooSource(Section):
    """Daily OHLCV of exchange symbols from Yahoo Finance (``yfinance``), else the mirror."""

    connector: Literal["yahoo"]
    series: list[str] = Field(min_length=1)  # Yahoo symbols, in order
    start: str | None = None  # the window kept (whole days)
    end: str | None = None
    host: str = "query1.finance.yahoo.com"  # the host yfinance talks to (probed before trying)
    mirror_dir: str  # the mirror's folder: <mirror_dir>/<symbol without ^>.csv
    mirror_files: dict[str, str] = {}  # symbols whose mirror file is named otherwise
    # the exchange time zone of a symbol: Yahoo reports it; the mirror's files do not say, so
    # what is written here is used for them (and checked against Yahoo when it answers)
    timezones: dict[str, str] = {}

    @model_validator(mode="after")
    def _window_and_zones(self) -> YahooSource:
        _date(self.start, "start")
        _date(self.end, "end")
        if self.start and self.end and pd.Timestamp(self.start) >= pd.Timestamp(self.end):
            raise InvalidParam("start", f"must come before end (got {self.start!r} >= {self.end!r}): the window "
                                        "is empty")
        for symbol, zone in self.timezones.items():
            _zone(zone, f"timezones.{symbol}")
        return self


class UCIPRSASource(Section):
    """An archive of the UCI "Beijing PM2.5" family (year/month/day/hour columns, ``NA`` nulls):
    the single-site set (one series, named by ``series``) or the multi-site one (one file per
    station, ``{series}`` in ``file``; its stations are the archive's files)."""

    connector: Literal["uci_prsa"]
    url: str  # the zip archive
    file: str  # its CSV member; ``{series}`` stands for the station
    mirror: str  # the same file in the offline mirror (relative path; ``{series}`` as above)
    series: list[str] = Field(min_length=1)


class FileSource(Section):
    """A user's table: a CSV (any separator) or Parquet file, a path (relative to the project
    root) or an http(s) URL. Wide (one series) or long (an ``id`` column, several series)."""

    connector: Literal["file"]
    path: str
    time: str  # the timestamp column
    target: str  # the value column
    id: str | None = None  # the series column of a long table
    series: list[str] | None = None  # keep only these ids (in this order; default: all, in file order)
    name: str | None = None  # the name of a wide table's one series (default: the target column)
    covariates: list[str] = []  # observed with the target (weather): known only up to each origin
    known_covariates: list[str] = []  # known in advance (calendar, workday flags)
    time_format: str | None = None  # strptime format when the timestamps need one (e.g. %d/%m/%Y %H:%M)
    separator: str | None = None  # CSV separator; detected when not given
    decimal: str = "."


Source = Annotated[Union[YahooSource, UCIPRSASource, FileSource], Field(discriminator="connector")]


# ---------------------------------------------------------------------------- what the data are
class DataParams(Section):
    frequency: str  # pandas alias of the step: 5min, 30min, h, D, B, W-SUN, MS, QS, YS ...
    sessions: bool = False  # observed in sessions (trading days, business hours): the rows are the steps
    timezone: str = "UTC"  # the zone of naive timestamps (a source that knows its zone wins)
    domain: Domain = "real"  # of the target: forecasts of a non-negative target stay >= 0
    unit: str = ""  # of the target, for charts

    @field_validator("frequency")
    @classmethod
    def _a_frequency(cls, v: str) -> str:
        try:
            frequency.parse(v)
        except ValueError:
            raise ValueError("not a pandas frequency (e.g. 5min, 30min, h, D, B, W-SUN, MS, QS, YS)") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _a_zone(cls, v: str) -> str:
        return _checked_zone(v)

    @property
    def season(self) -> int:
        return frequency.season_of(self.frequency)


# ---------------------------------------------------------------------------- validation
class Rules(Section):
    """The rules of a dataset. Generic ones hold for every dataset (the columns, float targets,
    unique and strictly increasing timestamps on the frequency's grid, missing targets, dates in
    the future); the others apply where the entry sets them."""

    max_missing_fraction: float = Field(0.10, ge=0, le=1)  # share of missing targets (below: a warning)
    max_missing_run: PositiveInt | None = None  # longest run of missing steps (rows or absent steps)
    max_future_hours: float = 24  # timestamps later than now + this are an error
    max_step: PositiveInt | None = None  # regular series: the most grid steps between two rows (1: none absent)
    min_gap: str | None = None  # series in sessions: the shortest and the longest gap between two rows
    max_gap: str | None = None
    max_value: float | None = None  # targets must stay below it (the lower bound comes from data.domain)
    max_abs_log_change: float | None = Field(None, gt=0)  # |log(y_t / y_t-1)| above this is absurd
    ohlc: bool = False  # open/high/low/close/volume consistency (tolerated quirks)
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] | None = None  # sessions on these weekdays (quirk)
    max_quirk_fraction: float = Field(0.01, ge=0, le=1)  # tolerated share of rows with a quirk

    @field_validator("min_gap", "max_gap")
    @classmethod
    def _a_timedelta(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                pd.Timedelta(v)
            except (ValueError, TypeError):
                raise ValueError(f"not a time span (got {v!r}; e.g. 1D, 11D, 90min)") from None
        return v


def _every_key_optional(rules: type[Section], name: str, doc: str) -> type[Section]:
    """``rules`` with every key optional and unset by default, its bounds kept: the keys one
    series states (a rule added to ``rules`` can be overridden at once)."""
    fields = {}
    for key, info in rules.model_fields.items():
        optional = copy.copy(info)
        optional.default, optional.default_factory = None, None
        optional.annotation = info.annotation | None
        fields[key] = (optional.annotation, optional)
    return create_model(name, __base__=Section, __doc__=doc, **fields)


RulesOverride = _every_key_optional(Rules, "RulesOverride",
                                    "The rules of one series that differ from its dataset's (only the keys given).")


class ValidationRules(Rules):
    overrides: dict[str, RulesOverride] = {}  # per series, stated openly

    def for_series(self, unique_id: str) -> Rules:
        base = self.model_dump(exclude={"overrides"})
        override = self.overrides.get(unique_id)
        if override is not None:
            base.update(override.model_dump(include=override.model_fields_set))
        return Rules(**base)


class CleaningParams(Section):
    """Missing targets: dropped (series in sessions whose missing rows are no step), or kept
    as missing with short gaps interpolated in the model inputs of the training part only
    (interpolating across a gap in the test period would use the future)."""

    drop_missing: bool = False
    interpolate_limit: int = Field(0, ge=0)  # steps


# ---------------------------------------------------------------------------- protocol
class SplitParams(Section):
    """Where training ends: a date (the test part runs to ``test_end``, or to the end), or a
    share of each series' steps."""

    train_end: str | None = None
    test_end: str | None = None
    train_fraction: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _one_rule(self) -> SplitParams:
        if (self.train_end is None) == (self.train_fraction is None):
            raise InvalidParam("split", "give either train_end (a date) or train_fraction (a share of the steps)")
        if self.train_fraction is not None and self.test_end is not None:
            raise InvalidParam("test_end", "goes with train_end, not with train_fraction")
        _date(self.train_end, "train_end")
        _date(self.test_end, "test_end")
        if self.train_end and self.test_end and pd.Timestamp(self.train_end) >= pd.Timestamp(self.test_end):
            raise InvalidParam("train_end", f"must come before test_end (got {self.train_end!r} >= "
                                            f"{self.test_end!r}): the window is empty")
        return self


class TaskParams(Section):
    """One task of a protocol. Origins: ``every`` test step (rolling); ``midnight``: the step
    before each midnight of the test part (a day-ahead forecast from 00:00); ``stride``: every
    ``horizon`` steps, the last forecast ending at the last observation (P4)."""

    name: str = Field(pattern=r"^[A-Za-z0-9]+$")  # metric keys are <name>_<metric>
    horizon: PositiveInt
    origins: Literal["every", "midnight", "stride"] = "every"
    directional: bool = False  # score the sign of the predicted change from the origin


class NeighboursParams(Section):
    """The other series of the table as inputs (``nb:<series>``) of models that read them."""

    min_train_share: float = Field(0.5, ge=0, le=1)  # left out when observed at fewer training steps
    recent_steps: PositiveInt = 720  # ... or at fewer of the last steps before the training end (it stopped)


class ProtocolParams(Section):
    name: str = Field("P4", pattern=r"^[A-Za-z0-9]+$")
    split: SplitParams = SplitParams(train_fraction=0.8)
    series_splits: dict[str, SplitParams] = {}  # series whose split differs
    season: PositiveInt | None = None  # default: from the frequency (hourly 24, daily 7, monthly 12, ...)
    mase_season: PositiveInt | None = None  # the MASE scale's seasonal naive (default: the season)
    horizon: PositiveInt | None = None  # P4's h-step task (default: one season, at most half the test part)
    tasks: list[TaskParams] | None = None  # default: P4a (1 step, every origin) and P4b (h steps, stride h)
    calibrate: list[str] | None = None  # tasks whose intervals are checked on a validation slice (default: the last)
    neighbours: NeighboursParams | None = None  # null: no neighbour inputs
    plot_steps: PositiveInt | None = None  # forecast-vs-actual plots: the first N test steps (default: all)
    baseline: str = "seasonal_naive"  # every model's Diebold-Mariano test is against it (P1/P2: naive)

    def split_for(self, unique_id: str) -> SplitParams:
        return self.series_splits.get(unique_id, self.split)

    @model_validator(mode="after")
    def _tasks(self) -> ProtocolParams:
        names = [t.name for t in self.tasks or []]
        if len(set(names)) != len(names):
            raise InvalidParam("tasks", f"task names must differ (got {names})")
        if self.tasks is not None and self.horizon is not None:
            raise InvalidParam("horizon", "is the default P4 task's; with tasks listed, give each its horizon")
        if self.calibrate and self.tasks is not None:
            unknown = [c for c in self.calibrate if c not in names]
            if unknown:
                raise InvalidParam("calibrate", f"names no task of the protocol: {unknown} (tasks: {names})")
        return self


class ModelLists(Section):
    run: list[str] | None = None  # on the reference series (default: backtest.default_models)
    every_series: list[str] = []  # on every series


class ScheduleParams(Section):
    """Prefect schedules (``seqcast deploy``): cron lines in ``timezone``."""

    forecast: str | None = None  # the daily forecast with the champion
    retrain: str | None = None  # fresh data, backtest, promotion
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _a_zone(cls, v: str) -> str:
        return _checked_zone(v)

    @field_validator("forecast", "retrain")
    @classmethod
    def _a_cron(cls, v: str | None) -> str | None:
        if v is not None and len(v.split()) != 5:
            raise ValueError(f"a cron line has five fields (minute hour day month weekday), got {v!r}")
        return v


class DatasetParams(Section):
    sources: list[Source] = Field(min_length=1)
    data: DataParams
    validation: ValidationRules
    cleaning: CleaningParams
    protocol: ProtocolParams
    models: ModelLists
    schedule: ScheduleParams | None = None

    @property
    def season(self) -> int:
        return self.protocol.season or self.data.season

    @property
    def mase_season(self) -> int:
        return self.protocol.mase_season or self.season

    @model_validator(mode="after")
    def _consistent(self) -> DatasetParams:
        if self.data.sessions and self.validation.max_step is not None:
            raise InvalidParam("validation.max_step", "counts grid steps of a regular series; series in sessions "
                                                      "take min_gap/max_gap")
        if not self.data.sessions and (self.validation.min_gap or self.validation.max_gap):
            raise InvalidParam("validation.max_gap", "is a rule of series in sessions (data.sessions: true); a "
                                                     "regular series takes max_step")
        if self.cleaning.drop_missing and not self.data.sessions:
            raise InvalidParam("cleaning.drop_missing", "drops rows, which leaves holes in a regular series; it is "
                                                        "for series in sessions (data.sessions: true)")
        midnight = [t.name for t in self.protocol.tasks or [] if t.origins == "midnight"]
        if midnight and not frequency.is_intraday(self.data.frequency):
            raise InvalidParam("protocol.tasks", f"{midnight}: midnight origins need steps shorter than a day "
                                                 f"(frequency {self.data.frequency})")
        return self

    def task_specs(self, n: int | None = None, n_train: int | None = None) -> list[TaskParams]:
        """The protocol's tasks; the default P4 tasks take their horizon from the season,
        at most half of a test part of ``n - n_train`` steps."""
        if self.protocol.tasks is not None:
            return list(self.protocol.tasks)
        h = self.protocol.horizon or self.season
        if n is not None and n_train is not None and self.protocol.horizon is None:
            h = max(1, min(h, (n - n_train) // 2))
        return [TaskParams(name=f"{self.protocol.name}a", horizon=1, origins="every"),
                TaskParams(name=f"{self.protocol.name}b", horizon=h, origins="stride")]

    def calibrated_tasks(self) -> list[str]:
        if self.protocol.calibrate is not None:
            return list(self.protocol.calibrate)
        return [self.task_specs()[-1].name]

    @property
    def series(self) -> list[str] | None:
        """The series the entry names, in order (None when a file source holds them all)."""
        names: list[str] = []
        for src in self.sources:
            listed = getattr(src, "series", None)
            if isinstance(src, FileSource) and listed is None:
                if src.id is None:
                    names.append(src.name or src.target)
                    continue
                return None
            names += list(listed or [])
        return names
