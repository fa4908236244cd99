"""The ``gpt:`` section of params.yaml (the small GPT, protocols.md P3): its schema.

Read through :func:`seqcast.config.load_params` like every other section (unknown
keys are errors): ``load_params().gpt``. This module imports only the schema base, so the
configuration has no circle (config -> gpt_config, gpt_forecaster_config -> gpt_config).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from seqcast.config_base import Section
from seqcast.errors import InvalidParam

Pos = Annotated[int, Field(gt=0)]  # a count that must be at least 1
NonNeg = Annotated[int, Field(ge=0)]
Rate = Annotated[float, Field(gt=0)]  # a learning rate or another strictly positive value
Frac = Annotated[float, Field(ge=0, lt=1)]  # dropout, momentum, betas
NonNegF = Annotated[float, Field(ge=0)]


class ModelParams(Section):
    """The architecture (``models.text.gpt.GPTConfig`` less the vocabulary); defaults: the P3 reference "baby"."""

    n_layer: Pos = 4
    n_head: Pos = 4
    n_embd: Pos = 128
    block_size: Pos = 64
    dropout: Frac = 0.0
    bias: bool = False
    rope: bool = False  # rotary position embeddings instead of the learned position table
    qk_norm: bool = False  # RMS-normalised queries and keys
    mlp: Literal["gelu", "relu2"] = "gelu"
    tie_weights: bool = True  # False: the output head has its own matrix

    @model_validator(mode="after")
    def _heads_divide(self) -> "ModelParams":
        if self.n_embd % self.n_head:
            raise InvalidParam("n_embd", f"must be a multiple of n_head {self.n_head} (got {self.n_embd})")
        if self.rope and (self.n_embd // self.n_head) % 2:
            raise InvalidParam("rope", f"needs an even head size (n_embd / n_head), not {self.n_embd // self.n_head}")
        return self


class TrainParams(Section):
    """The training recipe; defaults: nanoGPT's (AdamW 1e-3, cosine to 1e-4 over 2,000 iterations)."""

    batch_size: Pos = 12
    grad_accum: Pos = 1  # micro-batches per optimizer step
    max_iters: Pos = 2000
    optimizer: Literal["adamw", "muon"] = "adamw"  # muon: Muon for hidden matrices, AdamW for the rest
    lr: Rate = 1e-3  # AdamW (with muon: embeddings, head and gains)
    muon_lr: Rate = 0.02  # Muon's lr for the hidden matrices
    muon_momentum: Frac = 0.95
    min_lr: NonNegF = 1e-4  # the schedule ends at min_lr / lr of every group's lr
    schedule: Literal["cosine", "wsd"] = "cosine"  # wsd: warm-up, stable, linear decay over the last cooldown_frac
    warmup_iters: NonNeg = 100
    lr_decay_iters: Pos = 2000  # where the decay ends (~max_iters)
    cooldown_frac: Annotated[float, Field(gt=0, le=1)] = 0.4  # wsd only
    weight_decay: NonNegF = 0.1
    beta1: Frac = 0.9
    beta2: Frac = 0.99  # a bit larger: few tokens per iteration
    grad_clip: NonNegF = 1.0  # 0 disables
    eval_interval: Pos = 250
    eval_iters: Pos = 20
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # bfloat16: autocast
    compile: bool = False  # torch.compile of each block for training (on a CPU: the inductor's C++/OpenMP kernels)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Pos | None = 2  # torch.set_num_threads on a CPU; null leaves it

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


class ServeParams(Section):
    """Sampling defaults of the registered text model (pyfunc ``predict``); each call may override them."""

    temperature: NonNegF = 0.8  # 0: greedy
    max_new_tokens: Pos = 200
    top_k: Pos | None = None  # None: no top-k cut
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None  # None: no nucleus cut
    seed: int = 0


class SampleParams(Section):
    """The samples the GPT stage writes (one per temperature), and the served model's defaults (``serve``)."""

    temperatures: list[NonNegF] = [0.0, 0.8, 1.0]
    max_new_tokens: Pos = 300
    top_k: Pos | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    prompt: str = "\n"
    serve: ServeParams = ServeParams()


class SFTParams(Section):
    """The chat fine-tune with tools (flows/text_chat.py): data, tokenizer, start, schedule.

    Its training reads no report of the pipeline (made-up worlds only): a new dataset needs no new fine-tune.
    """

    tokenizer: Literal["word", "char"] = "word"  # word: words + copy slots (models/text/word_tokenizer.py)
    init: Literal["pretrained", "scratch"] = "pretrained"  # the pretrained GPT's layers, or the same network fresh
    block_size: Pos = 256
    n_conversations: Pos = 6000
    min_word_count: Pos = 3  # a piece in at least this many training conversations is a word, the rest are copied
    n_slots: Pos = 32  # distinct copied pieces per conversation
    batch_size: Pos = 32
    max_iters: Pos = 600
    lr: Rate = 2e-3
    min_lr: NonNegF = 1e-4
    warmup_iters: NonNeg = 30
    eval_interval: Pos = 200
    eval_iters: Pos = 10
    max_new_tokens: Pos = 60  # of one assistant message (a tool call or an answer)
    constrain_calls: bool = True  # a call's argument the reports do not hold -> the likeliest one they hold
    eval_worlds: NonNeg = 8  # made-up held-out worlds judged after training (one question per kind each)
    copy_ngram: NonNeg = 0  # char tokenizer only: a copy head matching the last copy_ngram tokens (0: none)

    @model_validator(mode="after")
    def _copy_head_is_for_characters(self) -> "SFTParams":
        if self.copy_ngram and self.tokenizer != "char":
            raise ValueError("copy_ngram is the character model's copy head; the word tokenizer copies by its slots")
        return self


class ChatEvalParams(Section):
    """The chat's judgement on the pipeline's real reports (flows/text_chat_eval.py) and the temperature experiment."""

    per_kind: Pos = 10  # questions per question kind, in the trained forms and in the held-out ones each
    out_of_scope: Pos = 20  # held-out questions no tool answers
    temperatures: list[NonNegF] = [1.0, 0.0]  # the temperature experiment (the lecture's slide)
    temperature_runs: Pos = 5
    temperature_question: str = "Is {series} stationary?"  # {series}: the first series of the reports found

    @model_validator(mode="after")
    def _question_names_only_the_series(self) -> "ChatEvalParams":
        try:
            self.temperature_question.format(series="x")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"temperature_question may hold {{series}} and nothing else in braces ({err})") from None
        return self


class HeadsParams(Section):
    """GPT-1 task heads (tasks/text/heads.py): line acceptability (as written / words shuffled) or speaker."""

    task: Literal["acceptability", "speaker"] = "acceptability"
    n_speakers: Annotated[int, Field(ge=2)] = 10
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2  # of the speeches
    max_chars: Pos = 64  # a line's first characters
    max_train_lines: Pos = 3000
    batch_size: Pos = 32
    iters: Pos = 500  # fine-tune and scratch: at most
    epochs: Pos = 10  # passes over the labelled lines (few lines: few steps)
    min_iters: Pos = 30
    finetune_lr: Rate = 1e-3  # chosen on the validation split (tasks/text/heads.py validation_task)
    scratch_lr: Rate = 1e-3
    lm_coef: NonNegF = 0.5  # GPT-1's auxiliary LM loss weight (lambda)
    linear_iters: Pos = 300
    linear_lr: Rate = 1e-2
    reshuffles: Pos = 4  # the likelihood heads: orders of a line's own words it is compared with
    pool: Literal["last", "mean"] = "last"  # what the head reads: the last token's hidden state (GPT-1) or the line's mean
    val_lines: Pos = 1000  # the recipe's validation lines, carved from the labelled (training) lines
    threads: NonNeg = 0  # torch threads of the stage and the bench (0: gpt.train.threads)
    curve_sizes: list[Pos] = [50, 100, 200, 500, 1000, 3000]  # labelled lines (seqcast bench gpt_heads)
    curve_seeds: list[int] = [1, 2, 3]


class RLHFParams(Section):
    """Reward model, PPO and DPO on the tool-using chat model (tasks/text/rlhf.py, ``seqcast bench rlhf``)."""

    seeds: list[int] = [1, 2, 3]  # each seed: its own SFT start (sft_iters), pairs, reward model, PPO, DPO
    sft_iters: NonNeg = 150  # the SFT model preference tuning starts from (gpt.sft's recipe, fewer steps); 0: the stage's
    n_pairs: Pos = 400  # rule-made preference pairs for training (made-up worlds)
    n_sampled_pairs: NonNeg = 400  # pairs from the SFT model's own right and wrong samples
    samples_per_prompt: Pos = 4
    sample_temperature: Rate = 1.0
    greedy_sample: bool = True  # the first of a prompt's samples is the greedy answer: the one it is judged by
    n_heldout_pairs: Pos = 100  # for the reward model's pair accuracy (other seeds)
    batch_size: Pos = 16
    rm_iters: Pos = 100
    rm_lr: Rate = 3e-4
    dpo_pairs: Literal["all", "sampled"] = "sampled"  # DPO's pairs: the model's own mistakes, or + the rule-made
    dpo_iters: Pos = 120
    dpo_lr: Rate = 2e-4
    dpo_beta: Rate = 0.1
    rpo_alpha: NonNegF = 10.0  # RPO's weight of the SFT term (the chosen answers' mean negative log-likelihood)
    dpo_variants: list[Literal["dpo", "dpo_norm", "ipo", "rpo", "sft_chosen"]] = ["dpo", "dpo_norm", "ipo", "rpo",
                                                                                 "sft_chosen"]
    ppo_iters: Pos = 20
    ppo_batch: Pos = 8  # rollouts per PPO iteration
    ppo_epochs: Pos = 2  # optimisation passes over each batch of rollouts
    ppo_lr: Rate = 1e-5
    ppo_ptx_coef: NonNegF = 3.0  # PPO-ptx: + this x the NLL of the chosen answers in every update (0: no PPO-ptx row)
    ppo_ptx_lr: Rate = 1e-4  # PPO-ptx's own step size and iterations (the supervised term holds a larger step)
    ppo_ptx_iters: Pos = 40
    ppo_temperature: Rate = 1.0
    kl_coef: NonNegF = 0.05
    kl_estimator: Literal["k1", "k3"] = "k3"  # PPO's per-token penalty: k3 is never negative
    clip: Rate = 0.2
    clip_value: Rate = 0.2
    vf_coef: NonNegF = 0.1
    gamma: Annotated[float, Field(ge=0, le=1)] = 1.0
    lam: Annotated[float, Field(ge=0, le=1)] = 0.95
    max_new_tokens: Pos = 60
    eval_per_kind: Pos = 3  # held-out questions per kind and phrasing family, per made-up world set
    eval_worlds: NonNeg = 12  # made-up held-out worlds (one question per kind each, trained and unseen forms)


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

    hidden: Pos = 256
    layers: Pos = 1
    embd: Pos = 64
    seq_len: Pos = 128  # truncated back-propagation through time
    batch_size: Pos = 32
    lr: Rate = 3e-3
    max_iters: Pos = 1500
    grad_clip: NonNegF = 1.0
    threads: Pos = 1  # the two rungs train side by side, one core each


class LadderParams(Section):
    kn_orders: list[Pos] = [3, 4, 5, 6, 7]
    rnn: RecurrentLMParams = RecurrentLMParams()
    lstm: RecurrentLMParams = RecurrentLMParams()


class GPTParams(Section):
    seed: int = 1337
    tokenizer: Literal["char", "bpe"] = "char"
    bpe_vocab_size: Annotated[int, Field(ge=256)] = 512
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    gpu: GPUParams = GPUParams()
    ladder: LadderParams = LadderParams()
    sample: SampleParams = SampleParams()
    sft: SFTParams = SFTParams()
    chat_eval: ChatEvalParams = ChatEvalParams()
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
