"""The base of every params.yaml schema: unknown keys are errors, values are read-only.

It can also record which keys a process reads (``SEQCAST_PARAMS_AUDIT=<file>``, set by the
test that runs each DVC stage in a sandbox): every declared params key of a stage must
cover what the stage's code reads, or a changed value would not re-run it.
"""

from __future__ import annotations

import atexit
import json
import os

from pydantic import BaseModel, ConfigDict

AUDIT_ENV = "SEQCAST_PARAMS_AUDIT"


class _Audit:
    """Dotted keys read from params.yaml in this process, written to a file at exit."""

    def __init__(self, path: str) -> None:
        self.path, self.paths, self.read = path, {}, set()
        # tracked sections stay alive: an id is only unique while its object lives, and a
        # params object dropped after a check would hand its ids to unrelated objects
        self.alive: list[BaseModel] = []
        atexit.register(self.write)

    def track(self, section: BaseModel, prefix: str = "") -> None:
        self.paths[id(section)] = prefix
        self.alive.append(section)
        for name in type(section).model_fields:
            value = object.__getattribute__(section, name)
            if isinstance(value, BaseModel):
                self.track(value, f"{prefix}{name}.")
            for key, item in _members(value):  # sections kept in a mapping or a list: datasets.<name>.
                self.track(item, f"{prefix}{name}.{key}.")

    def write(self) -> None:
        with open(self.path, "w", encoding="utf-8") as fh:
            json.dump(sorted(self.read), fh)


_audit: _Audit | None = None


def _members(value) -> list[tuple[str, BaseModel]]:
    """The sections held by a mapping or a list (``datasets``, a dataset's ``sources``)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [(str(k), v) for k, v in items if isinstance(v, BaseModel)]


def audit(root: BaseModel) -> None:
    """Record the keys read below ``root`` when ``SEQCAST_PARAMS_AUDIT`` names a file."""
    global _audit
    path = os.environ.get(AUDIT_ENV)
    if not path:
        return
    if _audit is None or _audit.path != path:
        _audit = _Audit(path)
    _audit.track(root)


class Section(BaseModel):
    """A params.yaml section: unknown keys are errors, values are read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __getattribute__(self, name: str):
        value = object.__getattribute__(self, name)
        if _audit is not None and name in type(self).model_fields and not isinstance(value, BaseModel) \
                and not _members(value):  # sections (also in a mapping or a list) record what is read in them
            prefix = _audit.paths.get(id(self))  # a section read as a whole is recorded by model_dump
            if prefix is not None:
                _audit.read.add(prefix + name)
        return value

    def model_dump(self, **kwargs):  # reading a whole section reads every key of it
        if _audit is not None and id(self) in _audit.paths:
            _audit.read.add(_audit.paths[id(self)].rstrip(".") or "*")
        return super().model_dump(**kwargs)
