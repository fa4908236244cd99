"""Source connectors: whatever a source holds -> the long tidy table, once.

A connector knows one kind of source — its transport (an upstream with the offline mirror
behind it, or a user's file) and its layout (columns, time stamps, nulls) — and nothing of the
pipeline after it. Each module offers the same two functions:

- ``ingest(dataset, source, data, raw_dir, settings, downloads) -> (fetched, frames)``: fetch
  every series the source entry names (byte-for-byte raw copies under ``raw_dir``) and parse
  them into tidy frames ``unique_id, ds, y, <covariates>, tz`` with their provenance;
- ``read_file(path, source, data, dataset, chunk_rows) -> iterator of tidy frames``: parse a
  local copy chunk by chunk (``seqcast validate``), with the file's line numbers.

Which series a source holds and their time zones are learnt from the source (the archive's
members, the mirror's files, the file's id column, the exchange zone Yahoo reports) and the
entry's names are checked against them.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

CONNECTORS = {"yahoo": "tasks.connectors.yahoo", "uci_prsa": "tasks.connectors.uci_prsa",
              "file": "tasks.connectors.file"}


def get(name: str) -> ModuleType:
    """The module of a connector (imported when first used)."""
    try:
        return import_module(CONNECTORS[name])
    except KeyError:
        raise KeyError(f"unknown connector {name!r}; known: {', '.join(CONNECTORS)}") from None
