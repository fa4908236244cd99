"""The base of every params.yaml schema: unknown keys are errors, values are read-only."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A params.yaml section: unknown keys are errors, values are read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True)
