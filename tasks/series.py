"""Series of a clean table and the protocol each one is judged on."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from models import registry
from models.base import Forecaster
from seqcast.config import Params
from seqcast.contract import UNIQUE_ID
from tasks.backtest import Protocol, p1_protocol, p2_protocol


def protocols(clean: pd.DataFrame, dataset: str, params: Params) -> Iterator[Protocol]:
    """P2 for every market series, P1 for every PM2.5 station, in table order."""
    build = p2_protocol if dataset == "market" else p1_protocol
    for _, series in clean.groupby(UNIQUE_ID, sort=False):
        yield build(series.reset_index(drop=True), params)


def safe_name(unique_id: str) -> str:
    """A series id usable in file names and MLflow keys (``^KS11`` -> ``KS11``)."""
    return unique_id.replace("^", "").replace("/", "_").replace(" ", "_")


def build_forecaster(name: str, proto: Protocol, params: Params, verdict: dict | None) -> Forecaster:
    """A model configured from params.yaml (its section, with the ``by_dataset`` entry of the
    protocol's dataset), plus the stationarity verdict when it uses ``d`` and the calendar
    (dates only, never values) when it models calendar time."""
    cls = registry.get(name)
    config = params.models.config_for(name, "market" if proto.name == "P2" else "pm25")
    if cls.uses_differencing_order:
        if verdict is None:
            raise KeyError(f"{name} needs the stationarity verdict of {proto.unique_id}; run the stationarity stage")
        config.update(d=verdict["d"], trend=verdict["trend"])
    if getattr(cls, "needs_calendar", False):  # calendar-time models (Prophet)
        config.setdefault("dates", [ts.isoformat() for ts in proto.ds])
    return cls(cls.Params.model_validate(config), season=proto.season)
