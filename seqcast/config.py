"""``params.yaml``, read and validated in one place.

Every stage, flow and benchmark asks :func:`load_params` for its section; the
pydantic models below are the schema (unknown keys are errors, so a typo in
``params.yaml`` fails loudly instead of being ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field, StringConstraints, ValidationError, field_validator, model_validator

from seqcast.config_base import Section, audit
from seqcast.dataset_config import DatasetParams
from seqcast.errors import InvalidParam, ParamsError
from seqcast.gpt_config import GPTParams
from seqcast.gpt_forecaster_config import GPTForecasterTrainParams
from seqcast.model_config import ModelsParams, known_models
from seqcast.paths import project_root

__all__ = ["Section", "Params", "ParamsError", "load_params"]


# The schemas below carry types and bounds; params.yaml carries the values (one home each).
class PathsParams(Section):
    raw: str  # byte-for-byte copies of what ingest fetched
    tidy: str  # long tables
    clean: str  # model inputs after the cleaning policy
    reports: str
    sources: str  # users' files added by `seqcast datasets add` (DVC-tracked snapshots)


class TextSource(Section):
    """The text corpus of the language models (protocols.md P3)."""

    url: str
    mirror: str  # the same file in the offline mirror (relative path)


class IngestParams(Section):
    retries: int = Field(ge=0)
    retry_delay_seconds: list[Annotated[float, Field(ge=0)]]
    timeout_seconds: float = Field(gt=0)
    try_upstream: bool
    text: TextSource


class ValidationParams(Section):
    chunk_rows: int = Field(gt=0)  # seqcast validate streams files in chunks of this many rows


class StationarityParams(Section):
    alpha: float = Field(gt=0, lt=1)
    max_d: int = Field(ge=0)
    nlags: int = Field(gt=0)
    max_points: int = Field(gt=20)


class CalibrationParams(Section):
    """Interval check on a validation slice from the end of the training part (reference series;
    the tasks are each dataset's ``protocol.calibrate``)."""

    fraction: float = Field(gt=0, lt=0.5)  # the slice: the last share of the training part
    tolerance: float = Field(ge=0, lt=1)  # recalibrate where validation coverage is off by more


class BacktestParams(Section):
    levels: list[Annotated[int, Field(gt=0, lt=100)]] = Field(min_length=1)
    calibration: CalibrationParams
    # the models of a dataset whose entry lists none (datasets.<name>.models.run)
    default_models: list[str] = Field(min_length=1)
    workers: int = Field(ge=1)  # processes fitting (series, model) jobs side by side
    on_model_error: Literal["record", "raise"]  # a model that fails: a leaderboard row saying why, or stop

    @field_validator("default_models")
    @classmethod
    def _known_models(cls, names: list[str]) -> list[str]:
        try:
            known_models({"default_models": names})
        except InvalidParam as err:
            raise ValueError(err.message) from None
        return names


class MlflowParams(Section):
    experiment_prefix: str


DATASET_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"  # a file name, a DVC stage item and an MLflow experiment name


class Params(Section):
    paths: PathsParams
    ingest: IngestParams
    datasets: dict[Annotated[str, StringConstraints(pattern=DATASET_NAME)], DatasetParams] = Field(min_length=1)
    validation: ValidationParams
    stationarity: StationarityParams
    backtest: BacktestParams
    models: ModelsParams = ModelsParams()
    mlflow: MlflowParams
    gpt: GPTParams = GPTParams()
    gpt_forecaster_train: GPTForecasterTrainParams

    @model_validator(mode="after")
    def _names_of_datasets(self) -> Params:
        """Every key that names a dataset names one of ``datasets``; every model list names models."""
        known = set(self.datasets)
        for name, entry in self.datasets.items():
            for key, names in (("run", entry.models.run or []), ("every_series", entry.models.every_series)):
                try:
                    known_models({key: names})
                except InvalidParam as err:
                    raise InvalidParam(f"datasets.{name}.models.{key}", str(err).split(": ", 1)[-1]) from None
            try:
                known_models({"baseline": [entry.protocol.baseline]})
            except InvalidParam as err:
                raise InvalidParam(f"datasets.{name}.protocol.baseline", err.message) from None
            listed = entry.series
            if listed is not None:
                unknown = [s for s in entry.validation.overrides if s not in listed]
                if unknown:
                    raise InvalidParam(f"datasets.{name}.validation.overrides",
                                       f"names series the dataset does not have: {unknown}; its series: {listed}")
        for model in self.models.model_fields:
            section = getattr(self.models, model)
            unknown = [d for d in getattr(section, "by_dataset", {}) if d not in known]
            if unknown:
                raise InvalidParam(f"models.{model}.by_dataset", f"names no dataset: {unknown}; datasets: "
                                                                 f"{sorted(known)}")
        for key, names in (("held_out", self.gpt_forecaster_train.held_out),
                           ("compare", self.gpt_forecaster_train.compare),
                           ("mix", {k: v for k, v in self.gpt_forecaster_train.mix.items() if k != "synthetic"})):
            unknown = [d for d in names if d not in known]
            if unknown:
                raise InvalidParam(f"gpt_forecaster_train.{key}", f"names no dataset: {unknown}; datasets: "
                                                                  f"{sorted(known)}")
        loads, writes = self.models.gpt_forecaster.checkpoint, self.gpt_forecaster_train.checkpoint
        if loads is not None and loads != writes:  # two keys that must agree: checked to
            raise InvalidParam("models.gpt_forecaster.checkpoint",
                               f"{loads!r} is not the file the training stage writes "
                               f"(gpt_forecaster_train.checkpoint: {writes!r})")
        return self

    def dataset(self, name: str) -> DatasetParams:
        """The entry of a dataset; an unknown name is a KeyError listing the known ones."""
        try:
            return self.datasets[name]
        except KeyError:
            raise KeyError(f"unknown dataset {name!r}; params.yaml datasets: {', '.join(self.datasets)}") from None

    def models_run(self, name: str) -> list[str]:
        """The models backtested on a dataset's reference series."""
        return list(self.dataset(name).models.run or self.backtest.default_models)

    def path(self, key: str, *parts: str) -> Path:
        """Absolute path of a ``paths`` entry below the project root."""
        return project_root() / getattr(self.paths, key) / Path(*parts)


def load_params(path: str | Path | None = None) -> Params:
    """Read and validate ``params.yaml`` (default: the one at the project root).

    Raises :class:`ParamsError` (one line per problem, each naming the key) so that a
    bad value stops a run before any work starts."""
    path = Path(path) if path else project_root() / "params.yaml"
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
    except yaml.YAMLError as err:
        raise ParamsError(path.name, [f"not valid YAML: {err}"]) from None
    if not isinstance(raw, dict):
        raise ParamsError(path.name, [f"must be a mapping of sections (got {type(raw).__name__})"])
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError.from_validation(path.name, err, Params) from None
    audit(params)  # records the keys this process reads when SEQCAST_PARAMS_AUDIT is set
    return params
