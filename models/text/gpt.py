"""A small decoder-only Transformer (GPT), nanoGPT style, in one readable file.

token + position embeddings -> n_layer pre-norm blocks (causal self-attention, MLP)
-> final LayerNorm -> lm_head tied to the token embedding. ``forward(idx, targets)``
returns ``(logits, loss)`` so training and inference share one path; ``generate``
samples with temperature / top-k / top-p and, by default, a KV cache.

The defaults of :class:`GPTConfig` are the P3 reference architecture (nanoGPT's).
The options the speedrun literature (modded-nanogpt) found to buy loss per second
are fields that default to off: rotary position embeddings instead of the learned
table (``rope``), RMS-normalised queries and keys (``qk_norm``), ReLU² instead of
GELU (``mlp="relu2"``) and an output head of its own (``tie_weights=False``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.text.copy_head import CopyHead


@dataclass
class GPTConfig:
    block_size: int = 64  # context length (P3 "baby")
    vocab_size: int = 65  # Tiny Shakespeare has 65 distinct characters
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0  # for pretraining 0 is good, for finetuning try 0.1+
    bias: bool = False  # no biases in Linear/LayerNorm: a bit faster, no worse
    rope: bool = False  # rotary position embeddings (Su et al. 2021) instead of the learned table wpe
    rope_base: float = 10000.0
    qk_norm: bool = False  # RMS-normalise q and k per head: bounded attention logits, larger stable lr
    mlp: str = "gelu"  # gelu (GPT-2) | relu2 (ReLU squared, Primer / modded-nanogpt)
    tie_weights: bool = True  # lm_head shares the token embedding; False gives the head its own matrix
    copy_ngram: int = 0  # > 0: a copy head (models/text/copy_head.py) matching the last copy_ngram tokens; the chat model
    copy_dim: int = 32

    def __post_init__(self):
        assert self.mlp in ("gelu", "relu2"), f"mlp must be gelu or relu2, not {self.mlp!r}"
        assert self.n_embd % self.n_head == 0, "n_embd must be a multiple of n_head"
        assert not self.rope or (self.n_embd // self.n_head) % 2 == 0, "rope needs an even head size"
        assert self.copy_ngram >= 0 and self.copy_dim > 0, "copy_ngram >= 0 and copy_dim > 0"

    def to_dict(self) -> dict:
        return asdict(self)


def rope_tables(config: GPTConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of position x frequency, (block_size, hs/2) each: the rotation of every pair of channels."""
    hs = config.n_embd // config.n_head
    freq = config.rope_base ** (-torch.arange(0, hs, 2, dtype=torch.float32) / hs)  # (hs/2,)
    angle = torch.outer(torch.arange(config.block_size, dtype=torch.float32), freq)  # (T, hs/2)
    return angle.cos(), angle.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the channel pairs (i, i + hs/2) of x (B, nh, T, hs) by position-dependent angles (T, hs/2).

    q·k then depends on positions only through their difference: relative positions for free.
    """
    x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class KVCache:
    """Preallocated keys/values of every layer: (n_layer, B, nh, block_size, hs) each.

    ``pos`` is how many positions are filled; attention in a cached step reads
    keys/values ``[:pos + T]`` instead of recomputing them for the whole prefix.
    """

    def __init__(self, config: GPTConfig, batch: int, device=None, dtype=torch.float32):
        hs = config.n_embd // config.n_head
        shape = (config.n_layer, batch, config.n_head, config.block_size, hs)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0
        if config.copy_ngram:  # the copy head's keys and the tokens it copies from
            self.tokens = torch.zeros(batch, config.block_size, dtype=torch.long, device=device)
            self.copy_e = torch.zeros(batch, config.block_size, config.copy_dim, device=device, dtype=dtype)
            self.copy_h = torch.zeros(batch, config.block_size, config.copy_dim, device=device, dtype=dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        # one fused projection for q, k, v: one matmul instead of three
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.qk_norm = config.qk_norm

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, rope: tuple | None = None
    ) -> torch.Tensor:
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        # (B, T, 3C) -> 3 x (B, nh, T, hs); views, no copies until SDPA needs them
        q, k, v = self.c_attn(x).view(B, T, 3, nh, hs).permute(2, 0, 3, 1, 4).unbind(0)
        if self.qk_norm:
            q, k = F.rms_norm(q, (hs,)), F.rms_norm(k, (hs,))
        if rope is not None:  # cos, sin of this call's positions: (T, hs/2) each
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is None:
            is_causal, mask = True, None
        else:
            p = cache.pos
            cache.k[layer, :, :, p : p + T] = k
            cache.v[layer, :, :, p : p + T] = v
            k = cache.k[layer, :, :, : p + T]  # (B, nh, p+T, hs)
            v = cache.v[layer, :, :, : p + T]
            if p == 0:
                is_causal, mask = True, None  # prefill: plain causal attention
            elif T == 1:
                is_causal, mask = False, None  # one new token sees every cached position
            else:  # T new tokens after p cached ones: query i sees keys <= p + i
                is_causal = False
                mask = torch.ones(T, p + T, dtype=torch.bool, device=x.device).tril(diagonal=p)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # re-assemble heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.relu2 = config.mlp == "relu2"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)  # (B, T, 4C)
        h = F.relu(h).square() if self.relu2 else F.gelu(h)
        return self.dropout(self.c_proj(h))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, rope: tuple | None = None
    ) -> torch.Tensor:
        # pre-norm: the residual stream itself is never normalised, gradients flow straight through
        x = x + self.attn(self.ln_1(x), cache, layer, rope)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        # positions: a learned table (GPT-2), or rotations of q and k (no parameters, not in the state dict)
        self.wpe = None if config.rope else nn.Embedding(config.block_size, config.n_embd)
        if config.rope:
            cos, sin = rope_tables(config)
            self.register_buffer("rope_cos", cos, persistent=False)  # (block_size, hs/2)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self._compiled_blocks: list | None = None  # compile_blocks(): not modules of this one, not in the state dict
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:  # weight tying: the input embedding and the output projection are one matrix
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale residual projections by 1/sqrt(2 * n_layer) so the stream's variance stays put
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        # the chat model's copy head (after the init above: it has its own)
        self.copy = CopyHead(config.vocab_size, config.n_embd, config.copy_ngram, config.copy_dim) if config.copy_ngram else None

    def compile_blocks(self) -> None:
        """``torch.compile`` each block for the training forward (regional compilation).

        Every block has the same code and shapes, so one compiled graph serves all layers:
        a few seconds of compilation on a CPU instead of the whole model's tens. Only
        forwards that build a graph for backward and use no KV cache go through them;
        evaluation, generation and the cache stay eager (no recompilation per length).
        Static shapes: the training windows have one length, one graph (shape-generic
        kernels were slower).
        """
        self._compiled_blocks = [torch.compile(b, dynamic=False) for b in self.h]

    def drop_compiled_blocks(self) -> None:
        """Back to the plain blocks everywhere (a model to copy, fine-tune or serve)."""
        self._compiled_blocks = None

    def _blocks(self, cache: KVCache | None) -> tuple[Iterable[nn.Module], bool]:
        compiled = self._compiled_blocks is not None and cache is None and torch.is_grad_enabled()
        return (self._compiled_blocks if compiled else self.h), compiled

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters (tied weights counted once); position embeddings excluded by default, as nanoGPT."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding and self.wpe is not None else n

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward + backward): 6N + 12 * L * C * T (PaLM appendix B)."""
        c = self.config
        return 6 * self.num_params(non_embedding=False) + 12 * c.n_layer * c.n_embd * c.block_size

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
        loss_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        assert start + T <= self.config.block_size, f"sequence {start + T} > block_size {self.config.block_size}"
        x = self.wte(idx)  # (B, T, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(start, start + T, device=idx.device))  # + (T, C)
        else:
            rope = (self.rope_cos[start : start + T], self.rope_sin[start : start + T])  # (T, hs/2) each
        x = self.drop(x)
        blocks, compiled = self._blocks(cache)
        for i, block in enumerate(blocks):
            x = block(x, cache, 0 if compiled else i, rope)  # the layer index only addresses the cache
        if cache is not None:
            cache.pos += T
        x = self.ln_f(x)
        if targets is None:
            # inference: only the last position's logits are needed
            return self.head(idx, x, cache, start, last_only=True), None  # (B, 1, V)
        logits = self.head(idx, x)  # (B, T, V)
        if loss_mask is None:
            loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(-1), ignore_index=-1)
        else:  # SFT: average only over the positions the mask keeps (assistant tokens)
            per_tok = F.cross_entropy(logits.view(B * T, -1), targets.reshape(-1), ignore_index=-1, reduction="none")
            m = loss_mask.reshape(-1).to(per_tok.dtype)
            loss = (per_tok * m).sum() / m.sum().clamp(min=1.0)
        return logits, loss

    def head(self, idx: torch.Tensor, h: torch.Tensor, cache: KVCache | None = None, start: int = 0,
             last_only: bool = False) -> torch.Tensor:
        """Logits of the next token from final hidden states ``h`` of tokens ``idx`` (the last row only with
        ``last_only``): the output head's, or with a copy head its log-probabilities (they stand for logits)."""
        logits = self.lm_head(h[:, [-1], :] if last_only else h)
        return logits if self.copy is None else self.copy(idx, h, logits, cache, start, last_only)

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """The final-norm hidden states (B, T, C) of a whole sequence: what task, reward and value heads read.

        The same computation as ``forward`` without the cache and the output head.
        """
        B, T = idx.shape
        assert T <= self.config.block_size, f"sequence {T} > block_size {self.config.block_size}"
        x = self.wte(idx)  # (B, T, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))
        else:
            rope = (self.rope_cos[:T], self.rope_sin[:T])
        x = self.drop(x)
        blocks, compiled = self._blocks(None)
        for i, block in enumerate(blocks):
            x = block(x, None, 0 if compiled else i, rope)
        return self.ln_f(x)  # (B, T, C)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        use_cache: bool = True,
        stop_token: int | None = None,
    ) -> torch.Tensor:
        """Append ``max_new_tokens`` sampled tokens to ``idx`` (B, T); returns (B, T + new).

        temperature 0 is greedy (argmax). With the cache each step feeds one token; once
        the sequence outgrows the context the window slides, and positions then shift,
        so both paths recompute the window in full: cached and uncached give the same tokens.
        """
        was_training = self.training
        self.eval()
        gen = torch.Generator(device=idx.device)
        if seed is not None:
            gen.manual_seed(seed)
        else:
            gen.seed()
        bs = self.config.block_size
        cache = None
        if use_cache and idx.size(1) <= bs:
            cache = KVCache(self.config, idx.size(0), device=idx.device, dtype=self.wte.weight.dtype)
        feed = idx[:, -bs:]  # (B, <=bs): what the next forward must see
        for _ in range(max_new_tokens):
            if cache is not None and cache.pos + feed.size(1) > bs:
                cache = None  # context full: fall back to recomputing the sliding window
                feed = idx[:, -bs:]
            logits, _ = self(feed, cache=cache)  # (B, 1, V)
            nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, gen)  # (B, 1)
            idx = torch.cat((idx, nxt), dim=1)
            feed = nxt if cache is not None else idx[:, -bs:]
            if stop_token is not None and bool((nxt == stop_token).all()):
                break
        self.train(was_training)
        return idx


def sample_next(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row from logits (B, V): greedy at temperature 0, else top-k / nucleus sampling."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    logits = logits / temperature
    if top_k is not None and top_k > 0:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < v[:, [-1]], float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)  # (B, V)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # drop a token once the mass *before* it already reaches top_p (keeps at least one)
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= top_p
        drop = drop_sorted.scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=gen)  # (B, 1)


def configure_optimizer(
    model: nn.Module, weight_decay: float, lr: float, betas: tuple[float, float], fused: bool | None = None
) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay on matrices only (not on norms, biases).

    Embeddings are matrices too and decay, as in nanoGPT (the tied lm_head shares one).
    """
    return _adamw([p for p in model.parameters() if p.requires_grad], weight_decay, lr, betas, fused)


def _adamw(params: list, weight_decay: float, lr: float, betas: tuple[float, float], fused: bool | None):
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    kwargs = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **kwargs)


def configure_optimizers(
    model: GPT,
    weight_decay: float,
    lr: float,
    betas: tuple[float, float],
    fused: bool | None = None,
    muon_lr: float | None = None,
    muon_momentum: float = 0.95,
) -> list[torch.optim.Optimizer]:
    """[AdamW] as nanoGPT, or with ``muon_lr`` [Muon, AdamW] as modded-nanogpt.

    Muon takes the 2-D matrices inside the blocks (q|k|v split into its three blocks);
    AdamW keeps what is not a hidden linear map: token (and position) embeddings, the
    output head, and the norms' gains.
    """
    if muon_lr is None:
        return [configure_optimizer(model, weight_decay, lr, betas, fused)]
    from models.text.muon import Muon

    hidden = {id(p) for p in model.h.parameters() if p.dim() == 2}
    qkv = [b.attn.c_attn.weight for b in model.h]
    other_hidden = [p for p in model.h.parameters() if p.dim() == 2 and all(p is not q for q in qkv)]
    rest = [p for p in model.parameters() if id(p) not in hidden and p.requires_grad]
    muon = Muon([{"params": qkv, "blocks": 3}, {"params": other_hidden}], lr=muon_lr, momentum=muon_momentum)
    return [muon, _adamw(rest, weight_decay, lr, betas, fused)]


def grow_model(base: GPT, vocab_size: int, block_size: int, seed: int, copy_ngram: int = 0) -> GPT:
    """A copy of ``base`` with more token rows and positions; new rows start as GPT-2 init (N(0, 0.02)).

    Used by the chat fine-tune (new special tokens, a longer context). Token rows (and an
    untied head's rows) and learned positions copy over row for row; with rotary
    positions there is no table to grow, the rotations extend to any length. A copy head
    (``copy_ngram`` > 0, :mod:`models.text.copy_head`) is new and starts from its own init.
    """
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{**base.config.to_dict(), "vocab_size": vocab_size, "block_size": block_size,
                             "copy_ngram": copy_ngram}))
    sd = model.state_dict()
    for k, v in base.state_dict().items():
        if k in ("wte.weight", "lm_head.weight", "wpe.weight"):
            sd[k][: v.size(0)] = v
        else:
            sd[k] = v
    model.load_state_dict(sd)
    return model


def transfer_body(base: GPT, vocab_size: int, block_size: int, seed: int) -> GPT:
    """A GPT with a new vocabulary on the layers of ``base``: its blocks, final norm and (learned) positions
    copy over; token embeddings and the output head start as GPT-2 init (N(0, 0.02)).

    Used by the word-level chat model: the pretrained character vocabulary does not carry over, the
    layers that read and write the residual stream do.
    """
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{**base.config.to_dict(), "vocab_size": vocab_size, "block_size": block_size,
                             "copy_ngram": 0}))
    sd = model.state_dict()
    for k, v in base.state_dict().items():
        if k.startswith(("h.", "ln_f.")):
            sd[k] = v
        elif k == "wpe.weight":
            n = min(v.size(0), sd[k].size(0))
            sd[k][:n] = v[:n]
    model.load_state_dict(sd)
    return model


def model_from_checkpoint(ckpt: dict) -> GPT:
    """A GPT from a checkpoint dict (``model_args`` + ``model``): no outside knowledge needed."""
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    return model
