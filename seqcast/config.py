"""``params.yaml``, read and validated in one place.

Every stage, flow and benchmark asks :func:`load_params` for its section; the
pydantic models below are the schema (unknown keys are errors, so a typo in
``params.yaml`` fails loudly instead of being ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from seqcast.config_base import Section, audit
from seqcast.contract import PM25_STATIONS
from seqcast.errors import InvalidParam, ParamsError
from seqcast.gpt_config import GPTParams
from seqcast.gpt_forecaster_config import GPTForecasterTrainParams
from seqcast.model_config import Dataset, ModelsParams, known_models
from seqcast.paths import project_root

__all__ = ["Section", "Params", "ParamsError", "load_params"]


def _window(start: str | None, end: str | None, start_key: str, end_key: str) -> None:
    """Both dates parse and ``start`` comes before ``end`` (a window with something in it)."""
    bounds = {}
    for key, value in ((start_key, start), (end_key, end)):
        if value is not None:
            try:
                bounds[key] = pd.Timestamp(value)
            except (ValueError, TypeError):
                raise InvalidParam(key, f"not a date (got {value!r})") from None
    if len(bounds) == 2 and bounds[start_key] >= bounds[end_key]:
        raise InvalidParam(start_key, f"must come before {end_key} (got {start!r} >= {end!r}): the window is empty")


class PathsParams(Section):
    raw: str = "data/raw"
    tidy: str = "data/tidy"
    clean: str = "data/clean"
    reports: str = "reports"


class UpstreamParams(Section):
    """Where the upstream sources are (tests point them at a local server)."""

    yahoo: str = "query1.finance.yahoo.com"  # the host yfinance talks to (probed before trying)
    pm25: str = "https://archive.ics.uci.edu/static/public/381/beijing+pm2+5+data.zip"
    pm25_multisite: str = "https://archive.ics.uci.edu/static/public/501/beijing+multi+site+air+quality+data.zip"
    text: str = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


class IngestParams(Section):
    retries: int = 3
    retry_delay_seconds: list[float] = [2, 5, 15]
    timeout_seconds: float = 60
    try_upstream: bool = True
    upstream: UpstreamParams = UpstreamParams()


class MarketParams(Section):
    tickers: list[str] = ["^KS11"]
    start: str | None = "2016-03-08"
    end: str | None = "2019-01-15"
    timezones: dict[str, str] = {"^KS11": "Asia/Seoul"}  # the known tickers: exchange time zone

    @field_validator("tickers")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must name at least one ticker")
        return v

    @model_validator(mode="after")
    def _known_tickers_and_a_window(self) -> MarketParams:
        for ticker in self.tickers:
            if ticker not in self.timezones:
                raise InvalidParam("tickers", f"unknown ticker {ticker!r}: a ticker must be listed in "
                                   f"market.timezones (the known tickers with their exchange time zone); "
                                   f"known: {', '.join(self.timezones) or 'none'}")
        _window(self.start, self.end, "start", "end")
        return self

    def timezone(self, ticker: str) -> str:
        return self.timezones.get(ticker, "UTC")


class PM25Params(Section):
    stations: list[str] = ["us_embassy"]
    timezone: str = "Asia/Shanghai"
    max_interpolate_hours: int = Field(6, ge=0)

    @field_validator("stations")
    @classmethod
    def _known_stations(cls, stations: list[str]) -> list[str]:
        if not stations:
            raise ValueError("must name at least one station")
        for station in stations:
            if station not in PM25_STATIONS:
                raise ValueError(f"unknown station {station!r}; known: {', '.join(PM25_STATIONS)}")
        return stations


class MarketRules(Section):
    max_missing_fraction: float = Field(0.05, ge=0, le=1)
    max_missing_run: int = 5
    max_gap_days: int = 11
    trading_weekdays: list[int] = [0, 1, 2, 3, 4]
    max_quirk_fraction: float = Field(0.01, ge=0, le=1)  # tolerated share of rows breaking a "quirk" rule
    max_abs_log_return: float = Field(0.7, gt=0)  # |log(close_t / close_t-1)| above this is absurd (x2 or /2 a day)
    max_future_hours: float = 24


class MarketValidation(MarketRules):
    overrides: dict[str, MarketRules] = {}  # per series: only the keys given replace the rules above

    def for_series(self, unique_id: str) -> MarketRules:
        base = self.model_dump(exclude={"overrides"})
        override = self.overrides.get(unique_id)
        if override is not None:
            base.update(override.model_dump(include=override.model_fields_set))
        return MarketRules(**base)


class PM25Validation(Section):
    min_value: float = 0
    max_value: float = 2000
    max_missing_fraction: float = Field(0.10, ge=0, le=1)
    max_missing_run: int = 400
    step_hours: int = 1
    max_future_hours: float = 24


class ValidationParams(Section):
    market: MarketValidation = MarketValidation()
    pm25: PM25Validation = PM25Validation()
    chunk_rows: int = Field(500_000, gt=0)  # seqcast validate streams files in chunks of this many rows


class StationarityParams(Section):
    alpha: float = Field(0.05, gt=0, lt=1)
    max_d: int = 2
    nlags: int = 48
    max_points: int = 20000


class Split(Section):
    train_end: str
    test_end: str

    @model_validator(mode="after")
    def _a_window(self) -> Split:
        _window(self.train_end, self.test_end, "train_end", "test_end")
        return self

    def bounds(self, tz: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        return pd.Timestamp(self.train_end, tz=tz), pd.Timestamp(self.test_end, tz=tz)


class P1Params(Section):
    season: int = Field(24, ge=1)
    horizon: int = Field(24, ge=1)
    splits: dict[Literal["us_embassy", "multisite"], Split]

    def split_for(self, station: str) -> Split:
        return self.splits["us_embassy" if station == "us_embassy" else "multisite"]


class P2Params(Section):
    train_fraction: float = Field(0.8, gt=0, lt=1)
    season: int = Field(5, ge=1)  # a trading week, for the seasonal models (seasonal naive, ...)
    horizon: int = Field(5, ge=1)


class CalibrationParams(Section):
    """Interval check on a validation slice from the end of the training part (reference series)."""

    tasks: list[str] = ["P1b", "P2a"]  # the sub-protocols whose intervals are checked
    fraction: float = Field(0.1, gt=0, lt=0.5)  # the slice: the last share of the training part
    tolerance: float = Field(0.03, ge=0, lt=1)  # recalibrate where validation coverage is off by more


class NeighboursParams(Section):
    """The other stations handed to models that read neighbours (P1)."""

    min_train_share: float = Field(0.5, ge=0, le=1)  # a station observed at fewer training hours is left out
    recent_hours: int = Field(720, ge=1)  # ... or at fewer of the last hours before the training end (it stopped)


class BacktestParams(Section):
    levels: list[Annotated[int, Field(gt=0, lt=100)]] = Field([80, 95], min_length=1)
    p1: P1Params
    p2: P2Params = P2Params()
    calibration: CalibrationParams = CalibrationParams()
    neighbours: NeighboursParams = NeighboursParams()
    # the multi-series leaderboard: these models run on every series of the dataset
    # (``models.run.<dataset>`` runs on the reference series, the first one)
    every_series: dict[Dataset, list[str]] = {"market": ["naive"], "pm25": ["naive"]}
    workers: int = Field(2, ge=1)  # processes fitting (series, model) jobs side by side

    @field_validator("every_series")
    @classmethod
    def _known_models(cls, lists: dict[str, list[str]]) -> dict[str, list[str]]:
        return known_models(lists)


class MlflowParams(Section):
    experiment_prefix: str = "seqcast"


class Params(Section):
    paths: PathsParams = PathsParams()
    ingest: IngestParams = IngestParams()
    market: MarketParams = MarketParams()
    pm25: PM25Params = PM25Params()
    validation: ValidationParams = ValidationParams()
    stationarity: StationarityParams = StationarityParams()
    backtest: BacktestParams
    models: ModelsParams = ModelsParams()
    mlflow: MlflowParams = MlflowParams()
    gpt: GPTParams = GPTParams()
    gpt_forecaster_train: GPTForecasterTrainParams = GPTForecasterTrainParams()

    @model_validator(mode="after")
    def _overrides_name_known_tickers(self) -> Params:
        unknown = [t for t in self.validation.market.overrides if t not in self.market.timezones]
        if unknown:
            raise InvalidParam("validation.market.overrides", f"unknown tickers {unknown}: an override names a "
                               f"ticker of market.timezones")
        return self

    def path(self, key: str, *parts: str) -> Path:
        """Absolute path of a ``paths`` entry below the project root."""
        return project_root() / getattr(self.paths, key) / Path(*parts)


def load_params(path: str | Path | None = None) -> Params:
    """Read and validate ``params.yaml`` (default: the one at the project root).

    Raises :class:`ParamsError` (one line per problem, each naming the key) so that a
    bad value stops a run before any work starts."""
    path = Path(path) if path else project_root() / "params.yaml"
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
    except yaml.YAMLError as err:
        raise ParamsError(path.name, [f"not valid YAML: {err}"]) from None
    if not isinstance(raw, dict):
        raise ParamsError(path.name, [f"must be a mapping of sections (got {type(raw).__name__})"])
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError.from_validation(path.name, err, Params) from None
    audit(params)  # records the keys this process reads when SEQCAST_PARAMS_AUDIT is set
    return params
