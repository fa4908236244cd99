"""``params.yaml``, read and validated in one place.

Every stage, flow and benchmark asks :func:`load_params` for its section; the
pydantic models below are the schema (unknown keys are errors, so a typo in
``params.yaml`` fails loudly instead of being ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from seqcast.config_base import Section, audit
from seqcast.gpt_config import GPTParams
from seqcast.paths import project_root

__all__ = ["Section", "Params", "load_params"]


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
    timezones: dict[str, str] = {}

    @field_validator("tickers")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("market.tickers must name at least one ticker")
        return v

    def timezone(self, ticker: str) -> str:
        return self.timezones.get(ticker, "UTC")


class PM25Params(Section):
    stations: list[str] = ["us_embassy"]
    timezone: str = "Asia/Shanghai"
    max_interpolate_hours: int = Field(6, ge=0)


class MarketRules(Section):
    max_missing_fraction: float = Field(0.05, ge=0, le=1)
    max_missing_run: int = 5
    max_gap_days: int = 11
    trading_weekdays: list[int] = [0, 1, 2, 3, 4]
    max_quirk_fraction: float = Field(0.01, ge=0, le=1)  # tolerated share of rows breaking a "quirk" rule
    max_abs_log_return: float = Field(0.7, gt=0)  # |log(close_t / close_t-1)| above this is absurd (x2 or /2 a day)
    max_future_hours: float = 24


class MarketValidation(MarketRules):
    overrides: dict[str, dict[str, Any]] = {}

    def for_series(self, unique_id: str) -> MarketRules:
        base = self.model_dump(exclude={"overrides"})
        base.update(self.overrides.get(unique_id, {}))
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
    alpha: float = 0.05
    max_d: int = 2
    nlags: int = 48
    max_points: int = 20000


class Split(Section):
    train_end: str
    test_end: str

    def bounds(self, tz: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        return pd.Timestamp(self.train_end, tz=tz), pd.Timestamp(self.test_end, tz=tz)


class P1Params(Section):
    season: int = 24
    horizon: int = 24
    splits: dict[str, Split]

    def split_for(self, station: str) -> Split:
        return self.splits["us_embassy" if station == "us_embassy" else "multisite"]


class P2Params(Section):
    train_fraction: float = Field(0.8, gt=0, lt=1)
    horizon: int = 5


class BacktestParams(Section):
    levels: list[int] = [80, 95]
    p1: P1Params
    p2: P2Params = P2Params()
    # the multi-series leaderboard: these models run on every series of the dataset
    # (``models.run.<dataset>`` runs on the reference series, the first one)
    every_series: dict[str, list[str]] = {"market": ["naive"], "pm25": ["naive"]}
    workers: int = Field(2, ge=1)  # processes fitting (series, model) jobs side by side


class ArimaParams(Section):
    p: int = 2
    q: int = 1
    fit_window: int | None = 8760
    maxiter: int = 200


class ModelsParams(Section):
    """``models.run.<dataset>`` lists the forecasters to backtest; ``models.<name>`` configures one."""

    model_config = ConfigDict(extra="allow", frozen=True)  # each model family adds its own section
    run: dict[str, list[str]] = {"market": ["naive", "seasonal_naive", "drift", "arima"],
                                 "pm25": ["naive", "seasonal_naive", "drift", "arima"]}
    arima: ArimaParams = ArimaParams()

    def config_for(self, name: str, dataset: str | None = None) -> dict[str, Any]:
        """Keyword arguments for a model: its section of params.yaml, with the entries of
        its optional ``by_dataset.<dataset>`` block laid over it (one model, two protocols)."""
        value = getattr(self, name, None)
        if value is None and self.model_extra:
            value = self.model_extra.get(name)
        config = value.model_dump() if isinstance(value, BaseModel) else dict(value or {})
        overrides = config.pop("by_dataset", None) or {}
        if dataset is not None:
            config.update(overrides.get(dataset, {}))
        return config


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

    def path(self, key: str, *parts: str) -> Path:
        """Absolute path of a ``paths`` entry below the project root."""
        return project_root() / getattr(self.paths, key) / Path(*parts)


def load_params(path: str | Path | None = None) -> Params:
    """Read and validate ``params.yaml`` (default: the one at the project root)."""
    path = Path(path) if path else project_root() / "params.yaml"
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    params = Params.model_validate(raw)
    audit(params)  # records the keys this process reads when SEQCAST_PARAMS_AUDIT is set
    return params
