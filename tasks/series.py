"""Series of a clean table and the protocol each one is judged on."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

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
