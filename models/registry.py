"""Name -> forecaster class. Loading a saved model only instantiates classes listed here.

Model modules register themselves with ``@register``; :func:`available` imports the
known modules so the registry is complete wherever it is asked.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from models.base import Forecaster
from seqcast.model_config import MODEL_SCHEMAS

_REGISTRY: dict[str, type[Forecaster]] = {}

# modules holding forecasters; each registers its classes on import
MODEL_MODULES = ["models.baselines", "models.arima",
                 "models.neural.simple_rnn", "models.neural.lstm", "models.neural.cnn_lstm",
                 "models.neural.seq2seq_attention", "models.neural.transformer", "models.neural.deepar",
                 # classical forecasters, one per module
                 "models.box_jenkins", "models.sarima", "models.ets", "models.fourier", "models.regime",
                 "models.geometric_brownian_motion", "models.prophet_model",
                 # boosting, combinations
                 "models.lightgbm_model", "models.combiner",
                 # the GPT forecaster (the text GPT over tokenized series)
                 "models.gpt_forecaster"]


def register(cls: type[Forecaster]) -> type[Forecaster]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two forecasters are named {cls.name!r}")
    if MODEL_SCHEMAS.get(cls.name) is not cls.Params:  # params.yaml knows the model through its schema
        raise TypeError(f"forecaster {cls.name!r}: its Params must be seqcast.model_config.MODEL_SCHEMAS"
                        f"[{cls.name!r}], not {cls.Params.__name__}")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> dict[str, type[Forecaster]]:
    for module in MODEL_MODULES:
        importlib.import_module(module)
    return dict(_REGISTRY)


def get(name: str) -> type[Forecaster]:
    models = available()
    if name not in models:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(models))}")
    return models[name]


def create(name: str, season: int = 1, **values: Any) -> Forecaster:
    """A forecaster configured by keyword ``values``, validated by its schema (unknown keys,
    wrong types and out-of-range values raise pydantic's ``ValidationError`` naming the key)."""
    cls = get(name)
    return cls(cls.Params.model_validate(values), season=season)


def load(folder: str | Path) -> Forecaster:
    """Rebuild a forecaster saved by ``Forecaster.save`` (JSON + .npz, never pickle)."""
    folder = Path(folder)
    meta = json.loads((folder / "forecaster.json").read_text())
    cls = get(meta["name"])
    loader = getattr(cls, "load", None)
    if callable(loader):  # families with their own format (e.g. torch weights)
        return loader(folder)
    model = cls(cls.Params.model_validate(meta["config"]), season=meta["season"])
    with np.load(folder / "state.npz", allow_pickle=False) as npz:
        state = {k: npz[k] for k in npz.files}
    model.set_state(state)
    return model
