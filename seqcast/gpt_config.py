"""The ``gpt:`` section of params.yaml (the small GPT, protocols.md P3): its schema.

Read through :func:`seqcast.config.load_params` like every other section (unknown
keys are errors); :func:`load_gpt_params` is a shortcut for ``load_params().gpt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from seqcast.config_base import Section


class ModelParams(Section):
    """The architecture (``models.gpt.GPTConfig`` less the vocabulary); defaults: the P3 reference "baby"."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = False
    rope: bool = False  # rotary position embeddings instead of the learned position table
    qk_norm: bool = False  # RMS-normalised queries and keys
    mlp: Literal["gelu", "relu2"] = "gelu"
    tie_weights: bool = True  # False: the output head has its own matrix


class TrainParams(Section):
    """The training recipe; defaults: nanoGPT's (AdamW 1e-3, cosine to 1e-4 over 2,000 iterations)."""

    batch_size: int = 12
    grad_accum: int = 1  # micro-batches per optimizer step
    max_iters: int = 2000
    optimizer: Literal["adamw", "muon"] = "adamw"  # muon: Muon for hidden matrices, AdamW for the rest
    lr: float = 1e-3  # AdamW (with muon: embeddings, head and gains)
    muon_lr: float = 0.02  # Muon's lr for the hidden matrices
    muon_momentum: float = 0.95
    min_lr: float = 1e-4  # the schedule ends at min_lr / lr of every group's lr
    schedule: Literal["cosine", "wsd"] = "cosine"  # wsd: warm-up, stable, linear decay over the last cooldown_frac
    warmup_iters: int = 100
    lr_decay_iters: int = 2000  # where the decay ends (~max_iters)
    cooldown_frac: float = 0.4  # wsd only
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99  # a bit larger: few tokens per iteration
    grad_clip: float = 1.0  # 0 disables
    eval_interval: int = 250
    eval_iters: int = 20
    dtype: str = "auto"  # auto | float32 | bfloat16 (autocast)
    compile: bool = False  # torch.compile (on a CPU: the inductor's C++/OpenMP kernels)
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = 2  # torch.set_num_threads on a CPU; null leaves it

    def with_(self, **overrides) -> "TrainParams":
        """A validated copy with some values changed."""
        return TrainParams(**{**self.model_dump(), **overrides})


class GPUParams(Section):
    """What the GPT stage changes when it runs on a GPU: a larger configuration (keys of model / train)."""

    model: dict[str, Any] = {}
    train: dict[str, Any] = {}

    @model_validator(mode="after")
    def _known_keys(self) -> "GPUParams":
        for name, section, schema in (("model", self.model, ModelParams), ("train", self.train, TrainParams)):
            unknown = set(section) - set(schema.model_fields)
            if unknown:
                raise ValueError(f"gpt.gpu.{name}: unknown keys {sorted(unknown)}")
        return self


class SampleParams(Section):
    temperatures: list[float] = [0.0, 0.8, 1.0]
    max_new_tokens: int = 300
    top_k: int | None = None
    top_p: float | None = None
    prompt: str = "\n"


class SFTParams(Section):
    """The chat fine-tune with tools (flows/gpt_chat.py), its held-out evaluation and the temperature experiment."""

    block_size: int = 256
    n_conversations: int = 800
    batch_size: int = 8
    max_iters: int = 300
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 20
    eval_interval: int = 100
    eval_iters: int = 10
    max_new_tokens: int = 120
    eval_per_form: int = 4  # held-out questions per question form about the real reports
    eval_worlds: int = 4  # made-up held-out worlds (one question per form each)
    temperatures: list[float] = [1.0, 0.0]  # the temperature experiment (the lecture's slide)
    temperature_runs: int = 5
    temperature_question: str = "Is ^KS11 stationary?"


class HeadsParams(Section):
    """GPT-1 task heads (tasks/gpt_heads.py): speaker of a line, split by speech."""

    n_speakers: int = 10
    test_fraction: float = 0.2  # of the speeches
    max_chars: int = 64  # a line's first characters
    max_train_lines: int = 3000
    batch_size: int = 32
    iters: int = 150  # fine-tune and scratch
    finetune_lr: float = 3e-4
    scratch_lr: float = 1e-3
    lm_coef: float = 0.5  # GPT-1's auxiliary LM loss weight (lambda)
    linear_iters: int = 300
    linear_lr: float = 1e-2


class RLHFParams(Section):
    """Reward model, PPO and DPO on the tool-using chat model (tasks/rlhf.py, ``seqcast bench rlhf``)."""

    n_pairs: int = 400  # preference pairs for training (made-up worlds)
    n_heldout_pairs: int = 100  # for the reward model's pair accuracy (other seeds)
    batch_size: int = 16
    rm_iters: int = 100
    rm_lr: float = 3e-4
    dpo_iters: int = 60
    dpo_lr: float = 5e-5
    dpo_beta: float = 0.1
    ppo_iters: int = 20
    ppo_batch: int = 8  # rollouts per PPO iteration
    ppo_epochs: int = 2  # optimisation passes over each batch of rollouts
    ppo_lr: float = 1e-5
    ppo_temperature: float = 1.0
    kl_coef: float = 0.05
    clip: float = 0.2
    clip_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    max_new_tokens: int = 120
    eval_per_form: int = 4
    eval_worlds: int = 4


class GPTPaths(Section):
    checkpoints: str = "checkpoints/gpt"
    chat_checkpoints: str = "checkpoints/gpt-chat"
    reports: str = "reports/gpt"


class RegistryParams(Section):
    model: str = "seqcast-gpt"
    chat_model: str = "seqcast-gpt-chat"
    alias: str = "champion"


class RecurrentLMParams(Section):
    """A character RNN / LSTM language model rung of the ladder (Elman 1990, Mikolov 2010)."""

    hidden: int = 256
    layers: int = 1
    embd: int = 64
    seq_len: int = 128  # truncated back-propagation through time
    batch_size: int = 32
    lr: float = 3e-3
    max_iters: int = 1500
    grad_clip: float = 1.0
    threads: int = 1  # the two rungs train side by side, one core each


class LadderParams(Section):
    kn_orders: list[int] = [3, 4, 5, 6, 7]
    rnn: RecurrentLMParams = RecurrentLMParams()
    lstm: RecurrentLMParams = RecurrentLMParams()


class GPTParams(Section):
    seed: int = 1337
    tokenizer: str = "char"
    bpe_vocab_size: int = 512
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    gpu: GPUParams = GPUParams()
    ladder: LadderParams = LadderParams()
    sample: SampleParams = SampleParams()
    sft: SFTParams = SFTParams()
    heads: HeadsParams = HeadsParams()
    rlhf: RLHFParams = RLHFParams()
    paths: GPTPaths = GPTPaths()
    registry: RegistryParams = RegistryParams()

    def recipe(self, device: str) -> tuple[ModelParams, TrainParams]:
        """The stage's model and training recipe on ``device`` (cpu / cuda): ``gpu`` overrides on a GPU."""
        if device != "cuda":
            return self.model, self.train
        return (ModelParams(**{**self.model.model_dump(), **self.gpu.model}),
                TrainParams(**{**self.train.model_dump(), **self.gpu.train}))



def load_gpt_params(path: str | Path | None = None) -> GPTParams:
    """The validated ``gpt:`` section of params.yaml."""
    from seqcast.config import load_params

    return load_params(path).gpt
