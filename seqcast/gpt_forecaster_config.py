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
    n_bins: int = Field(512, ge=2)
    low: float = -6.0  # scaled-value range the bins cover; beyond it, the edge bins (clipping)
    high: float = 6.0
    scaling: Literal["standard", "mean"] = "standard"


class KernelSynthParams(Section):
    """Gaussian-process series from random compositions of a kernel bank (tasks/kernel_synth.py, Chronos)."""

    n_series: int = Field(0, ge=0)
    length: int = Field(256, ge=2)
    max_kernels: PositiveInt = 5  # kernels composed per series: 1 .. max_kernels


class SyntheticParams(Section):
    """Generated series: the lecture's processes (white noise, random walk, AR(1), sinusoids, GBM),
    ``n_series`` of ``length``, and KernelSynth draws."""

    n_series: int = Field(40, ge=0)
    length: PositiveInt = 2000
    seed: int = 7
    kernel_synth: KernelSynthParams = KernelSynthParams()


class TSMixupParams(Section):
    """TSMixup (Chronos): a ``prob`` share of the training windows are convex combinations of
    ``k ~ U{1..max_k}`` real-series windows, each standardised by its context, weights ~ Dirichlet(alpha)."""

    prob: float = Field(0.0, ge=0, le=1)
    max_k: PositiveInt = 3
    alpha: float = Field(1.5, gt=0)


class GPTForecasterTrainParams(Section):
    seed: int = 1337
    # one series per dataset left out of training entirely (the zero-shot rows); null: none
    held_out: dict[str, str | None] = {}  # dataset -> series
    compare: dict[str, str] = {}  # dataset -> the task of its comparison table (gpt_forecaster_compare)
    horizon: PositiveInt = 24  # the longest forecast: block_size = context + horizon
    # share of training windows drawn from each source (within a dataset: in proportion to length)
    mix: dict[str, float] = {"synthetic": 1.0}  # dataset names (their clean tables) and "synthetic"
    # which real series train: every one but the held-out (all), or each dataset's first (reference)
    train_series: Literal["all", "reference"] = "all"
    tsmixup: TSMixupParams = TSMixupParams()
    tokenizer: SeriesTokenizerParams = SeriesTokenizerParams()
    synthetic: SyntheticParams = SyntheticParams()
    model: ModelParams = ModelParams(n_layer=3, n_head=4, n_embd=96, rope=True, qk_norm=True, mlp="relu2",
                                     tie_weights=False)  # block_size is set from context + horizon
    train: TrainParams = TrainParams(batch_size=32, max_iters=400, optimizer="muon", lr=3e-3, muon_lr=0.03,
                                     schedule="wsd", warmup_iters=20, lr_decay_iters=400, eval_interval=100,
                                     eval_iters=4)
    checkpoint: str = "checkpoints/gpt_forecaster/model.pt"
    reports: str = "reports/gpt_forecaster"

    @model_validator(mode="after")
    def _mix_is_a_distribution(self) -> GPTForecasterTrainParams:
        if any(v < 0 for v in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError("mix: shares must be >= 0 and not all 0")
        return self
