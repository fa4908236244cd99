"""The ``models:`` section of params.yaml: one schema per forecaster.

Each forecaster's hyperparameters are a :class:`ForecasterParams` (unknown keys are
errors, values are read-only); the model class declares it as ``Params`` and its
constructor takes one validated object, passed whole (nanoGPT style). The defaults
here are the models' own defaults; params.yaml overlays its values, and a section's
``by_dataset: {<dataset>: {...}}`` block overlays the entries of one
dataset, validated against the same schema.

The core knows every model by name through :data:`MODEL_SCHEMAS` without importing
``models/``; ``models.registry`` refuses a forecaster whose ``Params`` is not the
schema listed here under its name.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from seqcast.config_base import Section
from seqcast.errors import InvalidParam, problem_lines

Trend = Literal["n", "c", "t", "ct"]  # statsmodels: none, constant, linear, both


class ForecasterParams(Section):
    """Base of every forecaster's hyperparameters (the baselines need none)."""


# -- baselines ----------------------------------------------------------------------------
class NaiveParams(ForecasterParams):
    pass


class SeasonalNaiveParams(ForecasterParams):
    pass  # the season is the protocol's (datasets.<name>.protocol.season)


class DriftParams(ForecasterParams):
    pass


# -- ARIMA family --------------------------------------------------------------------------
class ArimaParams(ForecasterParams):
    p: NonNegativeInt = 2
    d: NonNegativeInt = 0  # the pipeline takes it from the stationarity stage
    q: NonNegativeInt = 1
    trend: Trend = "c"  # the pipeline takes it from the stationarity stage
    fit_window: PositiveInt | None = None  # estimate on the last N training points (None: all)
    maxiter: PositiveInt = 200


class SarimaxParams(ForecasterParams):
    """Regression with SARIMA errors (models/sarimax_base.py): the shared keys."""

    p: NonNegativeInt = 1
    d: NonNegativeInt = 0
    q: NonNegativeInt = 0
    P: NonNegativeInt = 0
    D: NonNegativeInt = 0
    Q: NonNegativeInt = 0
    trend: Trend = "c"
    fit_window: PositiveInt | None = 2000  # estimate on the last N training points
    filter_window: PositiveInt | None = 2000  # the Kalman pass starts N points before the first origin
    maxiter: PositiveInt = 50
    transform: Literal["none", "log1p"] = "none"


class AutoArimaParams(SarimaxParams):
    """Stepwise (p, q) search; ``p`` and ``q`` hold the order the search chose once fitted."""

    P: Literal[0] = 0  # no seasonal part
    D: Literal[0] = 0
    Q: Literal[0] = 0
    max_p: NonNegativeInt = 5
    max_q: NonNegativeInt = 5
    criterion: Literal["aic", "aicc", "bic", "hqic"] = "aic"
    max_steps: NonNegativeInt = 30


class SarimaParams(SarimaxParams):
    p: NonNegativeInt = 2
    P: NonNegativeInt = 1
    Q: NonNegativeInt = 1


class SarimaLogParams(SarimaParams):
    transform: Literal["none", "log1p"] = "log1p"


class SarimaxWeatherParams(SarimaParams):
    # weather columns whose hourly change is a regressor (dew point, temperature, pressure)
    change_columns: list[NonNegativeInt] = [0, 1, 2]


class FourierParams(SarimaxParams):
    """Top-``k`` periodogram periods as harmonic terms; ``periods`` holds them once fitted."""

    P: Literal[0] = 0  # no seasonal ARIMA part: the harmonics carry the seasons
    D: Literal[0] = 0
    Q: Literal[0] = 0
    p: NonNegativeInt = 2
    q: NonNegativeInt = 1
    k: PositiveInt = 3
    max_period: float = Field(400.0, gt=0)
    periods: list[float] | None = None


# -- other classical forecasters ---------------------------------------------------------
class EtsParams(ForecasterParams):
    fit_window: PositiveInt | None = 1000
    errors: list[Literal["add", "mul"]] = Field(["add", "mul"], min_length=1)
    trends: list[Literal["add"] | None] = Field([None, "add"], min_length=1)  # "add" is damped
    seasonals: list[Literal["add", "mul"] | None] = Field([None, "add", "mul"], min_length=1)
    criterion: Literal["aic", "aicc", "bic"] = "aicc"
    maxiter: PositiveInt = 200


class RegimeParams(ForecasterParams):
    k_regimes: int = Field(2, ge=2)
    search_reps: NonNegativeInt = 5
    seed: int = 0


class GbmParams(ForecasterParams):
    """``ewma_lambda`` holds the decay chosen on the training part when ``select_lambda`` is set."""

    n_paths: PositiveInt = 2000
    seed: int = 0
    volatility: Literal["constant", "ewma"] = "constant"
    ewma_lambda: float = Field(0.94, gt=0, lt=1)
    select_lambda: list[float] | None = None

    @field_validator("select_lambda")
    @classmethod
    def _decays(cls, v: list[float] | None) -> list[float] | None:
        for lam in v or []:
            if not 0 < lam < 1:
                raise ValueError(f"every decay must be in (0, 1) (got {lam})")
        return v


class ProphetParams(ForecasterParams):
    dates: list[str] | None = None  # the series' calendar (ISO dates): the backtest fills it in
    freq: str = "B"  # how positions past the calendar continue (the backtest sets the dataset's frequency)
    country_holidays: str | None = None  # e.g. KR: a country's holidays (by_dataset: they belong to a market)
    weekly_seasonality: bool = True
    yearly_seasonality: bool = True
    changepoint_prior_scale: float = Field(0.05, gt=0)  # Prophet's default: how freely the trend bends


class ProphetNativeParams(ProphetParams):
    """Prophet as its users run it: its own forecast and its own sampled intervals, refitted
    every ``refit_every`` origins (the period of Prophet's own cross-validation)."""

    refit_every: PositiveInt = 20
    uncertainty_samples: int = Field(500, ge=100)
    seed: NonNegativeInt = 0  # numpy's legacy seeding refuses negative seeds


# -- gradient boosting and combinations (models/lightgbm_model.py, models/combiner.py) ---
class CalendarKeys(ForecasterParams):
    """Where position 0 of a series sits in time, so a model can compute the calendar of any
    position (dates only, never values); the backtest fills ``calendar_start`` in."""

    calendar: bool = True  # hour, weekday, month and day of year of the origin as features
    calendar_start: str | None = None  # ISO timestamp of position 0 (None: no calendar features)
    calendar_freq: str = "h"  # the step between positions (hourly PM2.5; "B" for trading days)


class LightGBMParams(CalendarKeys):
    """A global LightGBM model: features of the history up to the origin, one booster per step
    (``direct``) or one one-step booster fed back (``recursive``)."""

    strategy: Literal["direct", "recursive"] = "direct"
    horizon: PositiveInt | None = None  # steps with a booster of their own (None: the season)
    lags: list[PositiveInt] = Field([1, 2, 3, 4, 5, 6, 8, 12, 18, 24, 36, 48, 72, 168], min_length=1)
    windows: list[Annotated[int, Field(ge=2)]] = [6, 24, 72, 168]  # rolling mean, sd, min, max ending at the origin
    exog_diffs: list[PositiveInt] = [1, 3, 6]  # change of each exogenous column over these steps, at the origin
    transform: Literal["auto", "log1p", "log", "none"] = "auto"  # auto: log1p when >= 0 and skewed
    objective: Literal["l2", "l1", "huber"] = "l2"
    num_leaves: Annotated[int, Field(ge=2)] = 31
    max_bin: Annotated[int, Field(ge=3)] = 255  # histogram bins per feature (fewer: faster)
    learning_rate: float = Field(0.05, gt=0, le=1)
    n_estimators: PositiveInt = 600  # the most trees; early stopping on the validation slice picks fewer
    early_stopping: PositiveInt = 50
    min_data_in_leaf: PositiveInt = 100
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: NonNegativeFloat = 1.0
    stride: PositiveInt = 1  # training origins of the series itself: every stride-th position
    panel_stride: PositiveInt = 3  # training origins of the panel series
    max_rows: PositiveInt | None = 150_000  # rows per booster (a random subset beyond it)
    val_fraction: float = Field(0.1, gt=0, lt=0.5)  # validation slice: early stopping and intervals
    use_panel: bool = True  # global: also train on the other series (cut at the training end)
    use_neighbours: bool = True  # features of the other stations at the origin (when the harness has them)
    threads: PositiveInt = 1
    seed: int = 0


class CombinerParams(ForecasterParams):
    """A forecast combination of registered models, weighted on a validation slice from the end
    of the training part; ``member_configs`` holds each member's own configuration (the backtest
    fills it from the member's params.yaml section; a member left out runs on its defaults)."""

    members: list[str] = Field(["naive", "seasonal_naive", "drift"], min_length=1)
    method: Literal["inverse_mse", "stack"] = "inverse_mse"  # stack: non-negative least squares, sum 1
    horizon: PositiveInt | None = None  # steps with weights of their own (None: the season)
    val_fraction: float = Field(0.1, gt=0, lt=0.5)  # the slice: weights and intervals
    val_stride: PositiveInt = 1  # every k-th origin of the slice
    member_configs: dict[str, dict[str, Any]] = {}

    @model_validator(mode="after")
    def _known_members(self) -> CombinerParams:
        unknown = [m for m in [*self.members, *self.member_configs] if m not in MODEL_SCHEMAS or m == "combiner"]
        if unknown:
            raise ValueError(f"combiner: unknown or nested members {unknown}")
        return self


# -- neural forecasters (models/neural/) -------------------------------------------------
class NeuralParams(ForecasterParams):
    """What every network shares: windows, scaling and the one training loop."""

    input_size: PositiveInt | None = None  # window length; None -> max(2 * season, 12)
    horizon: PositiveInt | None = None  # outputs per window; None -> season; longer h is recursive
    transform: Literal["auto", "log1p", "none"] = "auto"  # auto: log1p when the train part is >= 0 and skewed
    use_exog: bool = True  # read X (causally: only up to the origin) when the class supports it
    phase_features: Literal["auto"] | bool = "auto"  # sin/cos of the position within the season
    epochs: PositiveInt = 6
    batch_size: PositiveInt = 256
    lr: float = Field(2e-3, gt=0)
    weight_decay: NonNegativeFloat = 1e-4
    loss: Literal["mae", "mse", "huber"] = "mae"  # mae: the median, best for P1 MAE
    clip: float = Field(1.0, gt=0)
    patience: PositiveInt = 2
    val_fraction: float = Field(0.1, gt=0, lt=1)  # validation slice: the last share of the training part
    max_windows: PositiveInt | None = 8192  # training windows sampled per epoch (None: all)
    seed: int = 0
    device: str = "auto"
    # torch.set_num_threads before training (None: leave as set); 1 thread: 40x faster than 2
    # on a shared 2-core CPU (measured)
    threads: PositiveInt | None = 1
    checkpoint_dir: str | None = None  # None -> <tmp>/seqcast-ckpt/<name>-<fingerprint>; resumes if present
    keep_checkpoint: bool = False
    progress: bool | None = None  # tqdm: None -> only on a terminal
    epoch_sleep: NonNegativeFloat = 0.0  # test hook: seconds to wait after each checkpoint


class SimpleRNNParams(NeuralParams):
    """The lecture's net: window 12, one ReLU unit, one step (recursive beyond)."""

    input_size: PositiveInt | None = 12
    horizon: PositiveInt | None = 1
    units: PositiveInt = 1
    epochs: PositiveInt = 5
    lr: float = Field(1e-2, gt=0)
    phase_features: Literal["auto"] | bool = False


class RNNParams(NeuralParams):
    hidden: PositiveInt = 32
    layers: PositiveInt = 2
    dropout: float = Field(0.0, ge=0, lt=1)


class LSTMParams(NeuralParams):
    hidden: PositiveInt = 32
    layers: PositiveInt = 1
    dropout: float = Field(0.0, ge=0, lt=1)
    cell: Literal["torch", "lecture"] = "torch"  # lecture: the gate equations written out


class CNNLSTMParams(NeuralParams):
    channels: PositiveInt = 32
    kernel: PositiveInt = 3
    hidden: PositiveInt = 32


class CNNLSTMNeighboursParams(CNNLSTMParams):
    """Qin et al. 2019 as published: the convolution also reads the neighbouring stations."""

    neighbour_log1p: bool = True  # neighbours on the target's log1p scale before standardising


class Seq2SeqAttnParams(NeuralParams):
    hidden: PositiveInt = 32


class TransformerParams(NeuralParams):
    d_model: PositiveInt = 32
    heads: PositiveInt = 4
    layers: PositiveInt = 1
    ff: PositiveInt = 64
    dropout: float = Field(0.1, ge=0, lt=1)
    decoding: Literal["autoregressive", "direct"] = "autoregressive"

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerParams:
        if self.d_model % self.heads:
            raise InvalidParam("heads", f"must divide d_model={self.d_model} (got {self.heads})")
        return self


class DeepARParams(NeuralParams):
    hidden: PositiveInt = 40
    layers: PositiveInt = 2
    dropout: float = Field(0.1, ge=0, lt=1)
    likelihood: Literal["gaussian", "student_t"] = "student_t"
    num_samples: PositiveInt = 200  # sample paths per origin
    stride: PositiveInt = 12  # between training sequences
    use_panel: bool = True  # global: also train on the panel (the other series, cut at the train end)
    point: Literal["median", "mean"] = "median"
    relative: Literal["auto"] | bool = "auto"  # windows relative to the origin's value (auto: unless log1p)
    covariates: bool = False  # DeepAR+: phase and weather known at the origin beside z_{t-1}


class DeepARPlusParams(DeepARParams):
    covariates: bool = True


# -- the GPT forecaster (models/gpt_forecaster.py) ----------------------------------------
class GPTForecasterParams(ForecasterParams):
    """Inference settings of the GPT forecaster; its weights come from ``checkpoint``.

    ``checkpoint``: the training stage's file (``gpt_forecaster_train.checkpoint``, checked to agree).
    Without one an untrained model of the ``tiny_*`` size is built (the contract tests).
    """

    checkpoint: str | None = None
    series: str | None = None  # the series id (the backtest fills it in): zero_shot when training never saw it
    context: PositiveInt = 72  # points read before each origin (at most block_size - h)
    # what the model reads: y, log(1 + y) (skewed, non-negative) or log returns (prices)
    transform: Literal["none", "log1p", "log_return"] = "none"
    n_samples: PositiveInt = 64  # sampled continuations per origin (h > 1); h = 1 reads the distribution
    quantiles: Literal["samples", "mixture"] = "samples"  # h > 1: of the sampled paths, or of each step's mixture
    scale_by: Literal["context", "history"] = "context"  # statistics that scale the tokens: each context's, or the history's
    temperature: float = Field(1.0, gt=0)
    seed: int = 0
    memory_mb: PositiveInt = 256  # KV-cache budget: origins are sampled in chunks that fit it
    threads: PositiveInt | None = 1  # torch threads while forecasting (None: leave); 1: small batched steps
    # the untrained model built when there is no checkpoint
    tiny_n_layer: PositiveInt = 1
    tiny_n_embd: PositiveInt = 16
    tiny_n_bins: PositiveInt = 64
    tiny_block_size: PositiveInt = 48


MODEL_SCHEMAS: dict[str, type[ForecasterParams]] = {
    "naive": NaiveParams,
    "seasonal_naive": SeasonalNaiveParams,
    "drift": DriftParams,
    "arima": ArimaParams,
    "auto_arima": AutoArimaParams,
    "sarima": SarimaParams,
    "sarima_log": SarimaLogParams,
    "sarimax_weather": SarimaxWeatherParams,
    "ets": EtsParams,
    "fourier": FourierParams,
    "regime": RegimeParams,
    "gbm": GbmParams,
    "prophet": ProphetParams,
    "prophet_native": ProphetNativeParams,
    "simple_rnn": SimpleRNNParams,
    "rnn": RNNParams,
    "lstm": LSTMParams,
    "cnn_lstm": CNNLSTMParams,
    "seq2seq_attn": Seq2SeqAttnParams,
    "transformer": TransformerParams,
    "deepar": DeepARParams,
    "deepar_plus": DeepARPlusParams,
    "cnn_lstm_nb": CNNLSTMNeighboursParams,
    "lightgbm": LightGBMParams,
    "combiner": CombinerParams,
    "gpt_forecaster": GPTForecasterParams,
}


def known_models(lists: dict[str, list[str]]) -> dict[str, list[str]]:
    """Checks that every name of each list is a forecaster (a dataset's ``models.run`` and
    ``models.every_series``, ``backtest.default_models``)."""
    for dataset, names in lists.items():
        unknown = [n for n in names if n not in MODEL_SCHEMAS]
        if unknown:
            raise InvalidParam(dataset, f"unknown model {unknown[0]!r}; known: {', '.join(MODEL_SCHEMAS)}")
    return lists


def _override(schema: type[ForecasterParams]) -> type[Section]:
    """A ``by_dataset`` entry: any of the schema's keys, each checked as in the schema; the
    entry laid over its section is validated as a whole (see ``_Models``)."""
    fields = {}
    for name, field in schema.model_fields.items():
        entry = copy.copy(field)  # same type and bounds; absent unless given
        entry.default, entry.default_factory = None, None
        fields[name] = (field.annotation, entry)
    return _public(create_model(f"{schema.__name__}Override", __base__=Section, __module__=__name__, **fields))


def _yaml_section(schema: type[ForecasterParams]) -> type[ForecasterParams]:
    """How a model's schema is written in params.yaml: its keys plus ``by_dataset``."""
    return _public(create_model(f"{schema.__name__}Section", __base__=schema, __module__=__name__,
                                by_dataset=(dict[str, _override(schema)], {})))


def _public(cls: type) -> type:
    """A generated class as an attribute of this module, so that pickle finds it (a Params
    object travels to worker processes)."""
    globals()[cls.__name__] = cls
    return cls


class _Models(Section):
    """``models.<name>`` configures one forecaster (which ones run is each dataset's ``models``)."""

    @model_validator(mode="after")
    def _overrides_validate(self) -> _Models:
        """A ``by_dataset`` entry laid over its section must be a valid configuration (its
        keys are checked one by one already; this adds the rules across keys, e.g. a
        transformer's heads dividing its width)."""
        for name in MODEL_SCHEMAS:
            for dataset in getattr(self, name).by_dataset:
                try:
                    self.params_for(name, dataset)
                except ValidationError as err:
                    raise InvalidParam(f"{name}.by_dataset.{dataset}", "; ".join(problem_lines(err, MODEL_SCHEMAS[name]))) from None
        return self

    def config_for(self, name: str, dataset: str | None = None) -> dict[str, Any]:
        """The keyword values params.yaml gives a model: its section, with the entries of its
        ``by_dataset.<dataset>`` block laid over it (one model, two protocols). Keys not
        written there are left out, so the model's own defaults apply."""
        if name not in MODEL_SCHEMAS:
            raise KeyError(f"unknown model {name!r}; known: {', '.join(MODEL_SCHEMAS)}")
        section = getattr(self, name)
        config = section.model_dump(include=section.model_fields_set - {"by_dataset"})
        override = section.by_dataset.get(dataset) if dataset is not None else None
        if override is not None:
            config.update(override.model_dump(include=override.model_fields_set))
        return config

    def params_for(self, name: str, dataset: str | None = None, **values: Any) -> ForecasterParams:
        """The validated configuration of a model (``values``: keys the pipeline sets, e.g. ``d``)."""
        return MODEL_SCHEMAS[name].model_validate({**self.config_for(name, dataset), **values})


# one field per model, typed by its schema (adding a model = one line in MODEL_SCHEMAS)
_SECTIONS = {name: _yaml_section(schema) for name, schema in MODEL_SCHEMAS.items()}
ModelsParams = create_model("ModelsParams", __base__=_Models, __module__=__name__,
                            **{name: (section, section()) for name, section in _SECTIONS.items()})
