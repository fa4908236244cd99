"""Series of a clean table, the protocol each one is judged on, and the models to run on it.

A clean table holds every series of a dataset that params.yaml names (``market.tickers``,
``pm25.stations``), in that order; the first is the dataset's *reference series*: every
model of ``models.run.<dataset>`` runs on it (the full leaderboard), and the models of
``backtest.every_series.<dataset>`` run on every series (the multi-series leaderboard).
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from models import registry
from models.base import Forecaster
from seqcast import paths
from seqcast.config import Params
from seqcast.contract import UNIQUE_ID, local_time
from tasks.backtest import Protocol, p1_protocol, p2_protocol


def series_ids(params: Params, dataset: str) -> list[str]:
    """The series of ``dataset`` in params.yaml order; the first is the reference series."""
    return list(params.market.tickers if dataset == "market" else params.pm25.stations)


def split_table(clean: pd.DataFrame, params: Params, dataset: str) -> dict[str, pd.DataFrame]:
    """One frame per series, in params.yaml order (a series params names but the table lacks is an error)."""
    parts = {str(uid): local_time(part).reset_index(drop=True) for uid, part in clean.groupby(UNIQUE_ID, sort=False)}
    wanted = series_ids(params, dataset)
    missing = [s for s in wanted if s not in parts]
    if missing:
        raise KeyError(f"{dataset}: the clean table has no series {missing}; re-run ingest and validate "
                       f"(dvc repro validate@{dataset})")
    return {s: parts[s] for s in wanted}


def protocol_for(uid: str, parts: dict[str, pd.DataFrame], dataset: str, params: Params,
                 panel: bool = True) -> Protocol:
    """The protocol of one series, with the other series of the table as its panel."""
    build = p2_protocol if dataset == "market" else p1_protocol
    return build(parts[uid], params, [frame for other, frame in parts.items() if other != uid] if panel else [])


def protocols(clean: pd.DataFrame, dataset: str, params: Params, panel: bool = True) -> Iterator[Protocol]:
    """P2 for every market series, P1 for every PM2.5 station, in params.yaml order."""
    parts = split_table(clean, params, dataset)
    for uid in parts:
        yield protocol_for(uid, parts, dataset, params, panel)


def models_for(uid: str, dataset: str, params: Params) -> list[str]:
    """The models backtested on one series: the full list on the reference series, the
    multi-series list on the others; the naive baseline first (the others are tested against it)."""
    names = list(params.backtest.every_series[dataset])
    if uid == series_ids(params, dataset)[0]:
        names = list(dict.fromkeys([*params.models.run[dataset], *names]))
    elif uid == params.gpt_forecaster_train.held_out.get(dataset) and "gpt_forecaster" in params.models.run[dataset]:
        names.append("gpt_forecaster")  # its zero-shot row, beside the models fitted on that series
    return sorted(names, key=lambda n: n != "naive")


def safe_name(unique_id: str) -> str:
    """A series id usable in file names and MLflow keys (``^KS11`` -> ``KS11``)."""
    return paths.safe_name(unique_id.replace("^", "").replace("/", "_").replace(" ", "_"), "series id")


def model_config(name: str, proto: Protocol, params: Params, verdict: dict | None) -> dict:
    """A model's configuration from params.yaml (its section, with the ``by_dataset`` entry of
    the protocol's dataset), plus the stationarity verdict when it uses ``d``, the calendar
    (dates only, never values) when it models calendar time, and a combiner's members' own
    configurations."""
    cls = registry.get(name)
    config = params.models.config_for(name, "market" if proto.name == "P2" else "pm25")
    if cls.uses_differencing_order:
        if verdict is None:
            raise KeyError(f"{name} needs the stationarity verdict of {proto.unique_id}; run the stationarity stage")
        config.update(d=verdict["d"], trend=verdict["trend"])
    if getattr(cls, "needs_calendar", False):  # calendar-time models (Prophet)
        config.setdefault("dates", [ts.isoformat() for ts in proto.ds])
    if "calendar_start" in cls.Params.model_fields and proto.name == "P1":  # hourly: position -> time is exact
        config.setdefault("calendar_start", proto.ds[0].isoformat())
    if "member_configs" in cls.Params.model_fields:
        members = config.get("members", cls.Params.model_fields["members"].default)
        config["member_configs"] = {m: model_config(m, proto, params, verdict) for m in members}
    if getattr(cls, "needs_series_id", False):  # models that report whether they saw the series (GPT forecaster)
        config.setdefault("series", proto.unique_id)
    return config


def build_forecaster(name: str, proto: Protocol, params: Params, verdict: dict | None) -> Forecaster:
    """A model configured from params.yaml for this protocol (:func:`model_config`)."""
    cls = registry.get(name)
    return cls(cls.Params.model_validate(model_config(name, proto, params, verdict)), season=proto.season)
