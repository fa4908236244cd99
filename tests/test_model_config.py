"""Every forecaster's hyperparameters are a schema in the core: the registry and the schemas
agree, unknown keys are errors, params.yaml overlays the defaults (``by_dataset`` per dataset),
and a saved model reloads with the configuration it was fitted with."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from models import registry
from models.arima import Arima
from seqcast.config import load_params
from seqcast.model_config import MODEL_SCHEMAS, ArimaParams, SarimaParams

ROOT = Path(__file__).resolve().parent.parent


def test_the_core_knows_every_registered_model_by_its_schema():
    models = registry.available()
    assert set(models) == set(MODEL_SCHEMAS)
    for name, cls in models.items():
        assert cls.Params is MODEL_SCHEMAS[name], name


def test_unknown_keys_and_bad_values_are_errors_naming_the_key():
    with pytest.raises(ValidationError, match="hiddden"):
        registry.create("lstm", season=24, hiddden=8)
    with pytest.raises(ValidationError, match="lr"):
        registry.create("lstm", season=24, lr=-0.1)
    with pytest.raises(ValidationError, match="hidden"):  # the baselines take no hyperparameter
        registry.create("naive", hidden=8)
    with pytest.raises(ValidationError, match="P"):  # no seasonal part in the stepwise search
        registry.create("auto_arima", P=1)


def test_a_constructor_takes_its_own_schema_only():
    assert Arima(ArimaParams(p=1), season=5).config.p == 1
    assert Arima().config == ArimaParams()
    with pytest.raises(TypeError, match="ArimaParams"):
        Arima(SarimaParams())
    with pytest.raises(ValidationError):  # the configuration is read-only
        Arima().config.p = 3


def test_params_yaml_overlays_the_defaults_key_by_key():
    """Each value written under models.<name> (and its by_dataset entry) is what the model
    gets; every other key keeps the schema's default."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())["models"]
    params = load_params(ROOT / "params.yaml")
    for name, schema in MODEL_SCHEMAS.items():
        written = dict(raw.get(name) or {})
        by_dataset = written.pop("by_dataset", {})
        for dataset in ("market", "pm25"):
            config = params.models.params_for(name, dataset)
            expected = {**schema().model_dump(), **written, **by_dataset.get(dataset, {})}
            assert config.model_dump() == expected, (name, dataset)


def test_by_dataset_lays_only_its_own_keys_over_the_section():
    models = load_params(ROOT / "params.yaml").models
    assert models.config_for("lstm", "pm25") == {"hidden": 64, "max_windows": None, "epochs": 20, "patience": 3,
                                                 "input_size": 72}
    assert models.config_for("lstm", "market") == {"hidden": 64, "max_windows": None, "epochs": 20, "patience": 3}
    assert models.params_for("lstm", "market").input_size is None  # 2 * season, as before
    assert models.config_for("naive") == {}


def test_save_and_load_round_trip_through_the_schema(tmp_path):
    """What fitting chose (here the stepwise order) is part of the saved configuration."""
    rng = np.random.default_rng(0)
    e = rng.normal(size=400)
    y = 10 + np.convolve(e, [1.0, 0.5], mode="same")
    model = registry.create("auto_arima", season=1, max_p=1, max_q=1, fit_window=None, filter_window=None).fit(y)
    model.save(tmp_path / "m")
    loaded = registry.load(tmp_path / "m")
    assert type(loaded.config) is MODEL_SCHEMAS["auto_arima"] and loaded.config == model.config
    np.testing.assert_allclose(loaded.predict(3).mean, model.predict(3).mean)


def test_a_saved_configuration_with_an_unknown_key_is_refused(tmp_path):
    model = registry.create("naive").fit(np.arange(10.0))
    model.save(tmp_path / "m")
    meta = tmp_path / "m" / "forecaster.json"
    meta.write_text(meta.read_text().replace('"config": {}', '"config": {"window": 3}'))
    with pytest.raises(ValidationError, match="window"):
        registry.load(tmp_path / "m")


def test_params_travel_to_worker_processes():
    """A Params object is pickled when handed to a process pool (the generated sections too)."""
    params = load_params(ROOT / "params.yaml")
    assert pickle.loads(pickle.dumps(params)) == params
