"""Every value has one home: the schemas carry types and bounds, params.yaml the values.

A pipeline section's schema (everything params.yaml holds except the forecasters' ``models``
sections and the text GPT's ``gpt`` recipe) sets no default for a key params.yaml sets, so no
value of the pipeline is written twice and no code default can drift from the file. The
forecasters' schemas and the GPT's model and training schemas are libraries with their own
defaults (``Arima()`` works without a params.yaml, as ``GPTConfig()`` does); params.yaml's values
override them, and every key a user tunes with ``dvc exp run -S`` is in the file. Two keys that
must agree are checked to agree when the file is read."""

from __future__ import annotations

import pytest
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from seqcast.config import Params, ParamsError, load_params
from seqcast.gpt_config import ModelParams, TrainParams
from seqcast.model_config import ForecasterParams

from conftest import ROOT

LIBRARIES = (ForecasterParams, ModelParams, TrainParams)  # their defaults are the models' own
LIBRARY_SECTIONS = {"models", "gpt"}


def _schema_of(annotation):
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def restated_defaults(schema: type[BaseModel], values: dict, where: str) -> list[str]:
    """Keys of ``values`` whose field in ``schema`` carries a default (a second home)."""
    found = []
    for key, value in values.items():
        field = schema.model_fields.get(key)
        if field is None:
            continue
        sub = _schema_of(field.annotation)
        if sub is not None and issubclass(sub, LIBRARIES):
            continue  # a library's schema inside a pipeline section: its defaults are the library's
        if field.default is not PydanticUndefined or field.default_factory is not None:
            found.append(f"{where}{key}")
        if sub is not None and isinstance(value, dict):
            found += restated_defaults(sub, value, f"{where}{key}.")
    return found


def test_no_pipeline_value_is_written_in_the_schema_and_in_params_yaml():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    pipeline = {k: v for k, v in raw.items() if k not in LIBRARY_SECTIONS}
    assert restated_defaults(Params, pipeline, "") == []


def test_the_finder_sees_a_restated_default():
    """The check above is not vacuous: a schema with a default is caught at any depth."""
    from seqcast.config_base import Section

    class Inner(Section):
        a: int = 1
        b: int

    class Outer(Section):
        inner: Inner
        c: int = 2

    assert restated_defaults(Outer, {"inner": {"a": 1, "b": 2}, "c": 2}, "") == ["inner.a", "c"]


def test_the_forecaster_loads_the_checkpoint_the_training_stage_writes(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = Params.model_validate(raw)
    assert params.models.gpt_forecaster.checkpoint == params.gpt_forecaster_train.checkpoint
    raw["models"]["gpt_forecaster"]["checkpoint"] = "checkpoints/elsewhere/model.pt"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ParamsError, match=r"models\.gpt_forecaster\.checkpoint.*gpt_forecaster_train\.checkpoint"):
        load_params(tmp_path / "params.yaml")
