"""The ``gpt:`` section of params.yaml (the small GPT, protocols.md P3): its schema.

Read through :func:`seqcast.config.load_params` like every other section (unknown
keys are errors); :func:`load_gpt_params` is a shortcut for ``load_params().gpt``.
"""

from __future__ import annotations

from pathlib import Path

from seqcast.config_base import Section


class ModelParams(Section):
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = False


class TrainParams(Section):
    batch_size: int = 12
    grad_accum: int = 1
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int = 2000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    dtype: str = "auto"
    compile: bool = False
    device: str = "auto"
    threads: int | None = 2


class SampleParams(Section):
    temperatures: list[float] = [0.0, 0.8, 1.0]
    max_new_tokens: int = 300
    top_k: int | None = None
    top_p: float | None = None
    prompt: str = "\n"


class SFTParams(Section):
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


class GPTPaths(Section):
    checkpoints: str = "checkpoints/gpt"
    chat_checkpoints: str = "checkpoints/gpt-chat"
    reports: str = "reports/gpt"


class RegistryParams(Section):
    model: str = "seqcast-gpt"
    chat_model: str = "seqcast-gpt-chat"
    alias: str = "champion"


class LadderParams(Section):
    kn_orders: list[int] = [3, 4, 5, 6, 7]


class GPTParams(Section):
    seed: int = 1337
    tokenizer: str = "char"
    bpe_vocab_size: int = 512
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    ladder: LadderParams = LadderParams()
    sample: SampleParams = SampleParams()
    sft: SFTParams = SFTParams()
    paths: GPTPaths = GPTPaths()
    registry: RegistryParams = RegistryParams()



def load_gpt_params(path: str | Path | None = None) -> GPTParams:
    """The validated ``gpt:`` section of params.yaml."""
    from seqcast.config import load_params

    return load_params(path).gpt
