"""Series of a clean table, the protocol each one is judged on, and the models to run on it.

A clean table holds every series of a dataset in the order its sources gave them; the first
is the dataset's *reference series*: every model of ``datasets.<name>.models.run`` runs on it
(the full leaderboard), and the models of ``models.every_series`` run on every series (the
multi-series leaderboard).
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from models import registry
from models.base import Forecaster
from seqcast import frequency, paths
from seqcast.config import Params
from seqcast.contract import UNIQUE_ID, local_time
from tasks.backtest import NotApplicable, Protocol, build_protocol


def series_ids(clean: pd.DataFrame) -> list[str]:
    """The series of a clean table in order; the first is the reference series."""
    return [str(u) for u in pd.unique(clean[UNIQUE_ID])]


def split_table(clean: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One frame per series, in the table's order, each on its own clock."""
    return {str(uid): local_time(part).reset_index(drop=True) for uid, part in clean.groupby(UNIQUE_ID, sort=False)}


def protocol_for(uid: str, parts: dict[str, pd.DataFrame], dataset: str, params: Params,
                 panel: bool = True) -> Protocol:
    """The protocol of one series, with the other series of the table as its panel."""
    others = [frame for other, frame in parts.items() if other != uid] if panel else []
    return build_protocol(parts[uid], dataset, params.dataset(dataset), params.backtest.levels, others)


def protocols(clean: pd.DataFrame, dataset: str, params: Params, panel: bool = True) -> Iterator[Protocol]:
    """The protocol of every series of a dataset's clean table, in the table's order."""
    parts = split_table(clean)
    for uid in parts:
        yield protocol_for(uid, parts, dataset, params, panel)


def models_for(uid: str, reference: str, dataset: str, params: Params) -> list[str]:
    """The models backtested on one series: the full list on the reference series, the
    multi-series list on the others; the protocol's baseline first (the others are tested against it)."""
    names = list(params.dataset(dataset).models.every_series)
    if uid == reference:
        names = list(dict.fromkeys([*params.models_run(dataset), *names]))
    elif uid == params.gpt_forecaster_train.held_out.get(dataset) and "gpt_forecaster" in params.models_run(dataset):
        names.append("gpt_forecaster")  # its zero-shot row, beside the models fitted on that series
    baseline = params.dataset(dataset).protocol.baseline
    return sorted(names, key=lambda n: n != baseline)


def safe_name(unique_id: str) -> str:
    """A series id usable in file names and MLflow keys (``^KS11`` -> ``KS11``)."""
    return paths.safe_name(unique_id.replace("^", "").replace("/", "_").replace(" ", "_"), "series id")


def model_config(name: str, proto: Protocol, params: Params, verdict: dict | None) -> dict:
    """A model's configuration from params.yaml (its section, with the ``by_dataset`` entry of
    the protocol's dataset), plus the stationarity verdict when it uses ``d``, the calendar
    (dates only, never values) when it models calendar time, and a combiner's members' own
    configurations."""
    cls = registry.get(name)
    config = params.models.config_for(name, proto.dataset)
    fields = cls.Params.model_fields
    if cls.uses_differencing_order:
        if verdict is None:
            raise KeyError(f"{name} needs the stationarity verdict of {proto.unique_id}; run the stationarity stage")
        config.update(d=verdict["d"], trend=verdict["trend"])
    if getattr(cls, "needs_calendar", False):  # calendar-time models (Prophet)
        config.setdefault("dates", [ts.isoformat() for ts in proto.ds])
        if "freq" in fields:
            config.setdefault("freq", proto.frequency)
    if "calendar_start" in fields and not proto.sessions:  # a regular series: position -> time is exact
        config.setdefault("calendar_start", proto.ds[0].isoformat())
        if "calendar_freq" in fields:
            config.setdefault("calendar_freq", proto.frequency)
    if "member_configs" in fields:
        members = config.get("members", fields["members"].default)
        config["member_configs"] = {m: model_config(m, proto, params, verdict) for m in members}
    if getattr(cls, "needs_series_id", False):  # models that report whether they saw the series (GPT forecaster)
        config.setdefault("series", proto.unique_id)
    return config


def build_forecaster(name: str, proto: Protocol, params: Params, verdict: dict | None) -> Forecaster:
    """A model configured from params.yaml for this protocol (:func:`model_config`); a model that
    cannot judge this series raises :class:`NotApplicable` saying why."""
    cls = registry.get(name)
    if getattr(cls, "needs_calendar", False) and frequency.is_intraday(proto.frequency):
        raise NotApplicable(f"{name} models daily calendar time (its dates are days); the series' step is "
                            f"{proto.frequency}")
    return cls(cls.Params.model_validate(model_config(name, proto, params, verdict)), season=proto.season)
