"""The ``gpt_forecaster_train:`` section of params.yaml: the GPT forecaster's training stage.

The architecture and the recipe reuse the text GPT's schemas (:mod:`seqcast.gpt_config`):
one model, two tokenizers. Inference settings (context, samples, transform per dataset)
are the forecaster's own (``models.gpt_forecaster``); the stage reads the same
``context`` and ``transform`` from there, so training and forecasting scale alike.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from seqcast.config_base import Section
from seqcast.gpt_config import ModelParams, TrainParams


class SeriesTokenizerParams(Section):
    n_bins: int = Field(ge=2)
    low: float  # scaled-value range the bins cover; beyond it, the edge bins (clipping)
    high: float
    scaling: Literal["standard", "mean"]


class KernelSynthParams(Section):
    """Gaussian-process series from random compositions of a kernel bank (tasks/kernel_synth.py, Chronos)."""

    n_series: int = Field(ge=0)
    length: int = Field(ge=2)
    max_kernels: PositiveInt  # kernels composed per series: 1 .. max_kernels


class SyntheticParams(Section):
    """Generated series: the lecture's processes (white noise, random walk, AR(1), sinusoids, GBM),
    ``n_series`` of ``length``, and KernelSynth draws."""

    n_series: int = Field(ge=0)
    length: PositiveInt
    seed: int
    kernel_synth: KernelSynthParams


class TSMixupParams(Section):
    """TSMixup (Chronos): a ``prob`` share of the training windows are convex combinations of
    ``k ~ U{1..max_k}`` real-series windows, each standardised by its context, weights ~ Dirichlet(alpha)."""

    prob: float = Field(ge=0, le=1)
    max_k: PositiveInt
    alpha: float = Field(gt=0)


class GPTForecasterTrainParams(Section):
    """A pipeline section: types and bounds here, every value in params.yaml (no default restated).
    ``model`` and ``train`` are the text GPT's schemas, whose defaults are nanoGPT's (the library's);
    params.yaml's values override them."""

    seed: int
    # one series per dataset left out of training entirely (the zero-shot rows); null: none
    held_out: dict[str, str | None]  # dataset -> series
    compare: dict[str, str]  # dataset -> the task of its comparison table (gpt_forecaster_compare)
    horizon: PositiveInt  # the longest forecast: block_size = context + horizon
    # share of training windows drawn from each source (within a dataset: in proportion to length)
    mix: dict[str, float]  # dataset names (their clean tables) and "synthetic"
    # which real series train: every one but the held-out (all), or each dataset's first (reference)
    train_series: Literal["all", "reference"]
    tsmixup: TSMixupParams
    tokenizer: SeriesTokenizerParams
    synthetic: SyntheticParams
    model: ModelParams  # block_size is set from context + horizon
    train: TrainParams
    checkpoint: str
    reports: str

    @model_validator(mode="after")
    def _mix_is_a_distribution(self) -> GPTForecasterTrainParams:
        if any(v < 0 for v in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError("mix: shares must be >= 0 and not all 0")
        return self
