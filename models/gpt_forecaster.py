"""The GPT forecaster: the project's text GPT (models/text/gpt.py) reading tokenized series.

Trained once, across every series of both datasets plus generated ones, by the
``gpt_forecaster_train`` stage (flows/gpt_forecaster.py), which writes a self-describing
checkpoint: weights, architecture, tokenizer, the series it saw with their cut dates and
the series it held out. ``fit`` loads that file (``torch.load(weights_only=True)``) and
reads nothing else; the history it is handed only feeds the contexts.

At an origin the last ``context`` values (forward-filled, transformed) are scaled by their
own statistics (``scale_by: history``: by those of the fitted history, as training scaled
that series) and tokenized (models/series_tokenizer.py). For one step ahead the
categorical distribution of the next token *is* the forecast: the median and the interval
ends are its quantiles (interpolated inside a bin). For ``h`` steps, ``n_samples``
continuations are sampled: every origin's context is run once (prefill), its KV cache is
copied to its samples, and all origins x samples then advance one token per forward pass.
The median of the sampled paths is the point forecast, their empirical quantiles the
intervals; ``quantiles: mixture`` takes them instead from the mixture,
over the sampled prefixes, of the model's distribution at each step (no sampling noise in
the quantiles: the Rao-Blackwell estimate of the same marginal). A horizon longer than the block slides: the last
``context`` tokens are read again and sampling goes on. The random numbers of an origin
come from ``(seed, origin position)``, so a forecast does not depend on which other
origins share its batch: the batched path equals the one-origin-at-a-time walk (the
contract test).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import torch

from models.base import Forecast, Forecaster, Levels, ffill
from models.text.gpt import GPT, GPTConfig, KVCache
from models.registry import register
from models.series_tokenizer import SeriesTokenizer
from seqcast.model_config import GPTForecasterParams


@register
class GPTForecaster(Forecaster):
    name = "gpt_forecaster"
    Params = GPTForecasterParams
    family = "gpt"
    tiny_config: ClassVar[dict[str, Any]] = {"n_samples": 16, "context": 32}
    update_method = "contexts read the new observations; weights fixed (no refit)"
    needs_series_id: ClassVar[bool] = True  # the backtest fills in ``series`` (zero-shot tag)

    def __init__(self, config: GPTForecasterParams | None = None, *, season: int = 1) -> None:
        super().__init__(config, season=season)
        self.model: GPT | None = None
        self.tok: SeriesTokenizer | None = None
        self.meta: dict[str, Any] = {}

    # -- fitting: load the trained model ------------------------------------------------
    def _fit(self, y: np.ndarray, X: np.ndarray | None) -> None:
        if self.model is None:  # a reloaded model keeps its weights
            self._load()
        # ``scale_by: history``: every context is scaled by the statistics of the fitted history
        # (the training part), as training scaled the series; they keep the series' level in the tokens
        z = model_inputs(ffill(y), self.config.transform)[0]
        self.history_stats_ = self.tok.stats(z[None, :], centered=self.config.transform != "log_return")

    def _load(self) -> None:
        c = self.config
        if c.checkpoint is None:
            torch.manual_seed(c.seed)
            tok = SeriesTokenizer(n_bins=c.tiny_n_bins)
            cfg = GPTConfig(block_size=c.tiny_block_size, vocab_size=tok.vocab_size, n_layer=c.tiny_n_layer,
                            n_head=2, n_embd=c.tiny_n_embd, rope=True, qk_norm=True, mlp="relu2", tie_weights=False)
            self._set(GPT(cfg).state_dict(), cfg.to_dict(), tok.to_dict(), {"untrained": True})
            return
        ckpt = torch.load(c.checkpoint, map_location="cpu", weights_only=True)
        meta = {k: ckpt.get(k) for k in ("series", "held_out", "train", "transforms")}
        self._set(ckpt["model"], ckpt["model_args"], ckpt["tokenizer"], meta)

    def _set(self, state: dict, model_args: dict, tokenizer: dict, meta: dict) -> None:
        self.model = GPT(GPTConfig(**model_args))
        self.model.load_state_dict(state)
        self.model.eval()
        self.tok = SeriesTokenizer.from_dict(tokenizer)
        self.meta = {**meta, "model_args": dict(model_args), "tokenizer": self.tok.to_dict()}

    @property
    def zero_shot(self) -> bool:
        """True when the checkpoint's training never saw this series (it was held out)."""
        seen = self.meta.get("series") or {}
        return bool(self.config.series) and not self.meta.get("untrained") and self.config.series not in seen

    # -- forecasting -----------------------------------------------------------------------
    def _predict(self, h: int, levels: Levels, X_future: np.ndarray | None) -> Forecast:
        return self._forecast(self.y_, np.array([len(self.y_) - 1]), h, levels)

    def _update(self, y_new: np.ndarray, X_new: np.ndarray | None) -> None:
        pass  # the weights stay; contexts read the extended history

    def forecast_origins(self, y, origins, h, levels=(80, 95), X=None) -> Forecast:
        self._check_fitted()
        origins = np.asarray(origins, dtype=int)
        if len(origins) == 0:
            return super().forecast_origins(y, origins, h, levels, X)
        return self._forecast(np.asarray(y, dtype=float), origins, int(h), tuple(levels))

    def _contexts(self, y: np.ndarray, origins: np.ndarray) -> tuple[np.ndarray, ...]:
        """Token ids (n, C) of each origin's last C model inputs, their loc, scale (n,) and the
        level (n,) the forecasts continue from (``log_return``: the log of the last value)."""
        C = min(self.config.context, self.model.config.block_size - 1)  # past the block, sampling slides
        z, level = model_inputs(ffill(y), self.config.transform)
        padded = np.concatenate([np.full(C, np.nan), z])  # origins earlier than C see missing tokens
        idx = origins[:, None] + 1 + np.arange(C)[None, :]  # (n, C) positions in `padded`
        ctx = padded[idx]
        if self.config.scale_by == "history":
            loc, scale = (np.repeat(v, len(ctx)) for v in self.history_stats_)
        else:
            loc, scale = self.tok.stats(ctx, centered=self.config.transform != "log_return")
        return self.tok.encode(ctx, loc, scale), loc, scale, level[origins]

    def _forecast(self, y: np.ndarray, origins: np.ndarray, h: int, levels: Levels) -> Forecast:
        ids, loc, scale, last = self._contexts(y, origins)
        qs = quantile_levels(levels)
        tf = self.config.transform
        with torch_threads(self.config.threads), torch.inference_mode():
            if h == 1:  # quantiles of the input, mapped through a monotone inverse: quantiles of y
                probs = self._next_bin_probs(ids)  # (n, K)
                z = categorical_quantiles(probs, qs, self.tok.low, self.tok.width) * scale[:, None] + loc[:, None]
                vals = inverse(z[:, :, None], last[:, None, None], tf)  # (n, q, 1)
            elif self.config.quantiles == "mixture":  # each step's distribution given each sampled prefix
                vals = np.empty((len(ids), len(qs), h))

                def on_step(rows: slice, j: int, probs: np.ndarray, drawn: np.ndarray) -> None:
                    vals[rows, :, j] = self._mixture_step(probs, drawn, loc[rows], scale[rows], last[rows], qs)

                self._sample_paths(ids, origins, h, on_step)
            else:  # whole paths back to y first (returns accumulate), then their quantiles
                z = self.tok.decode(self._sample_paths(ids, origins, h), loc, scale)  # (n, S, h)
                paths = inverse(z, last[:, None, None], tf)
                vals = np.moveaxis(np.quantile(paths, qs, axis=1), 0, 1)  # (n, q, h)
        mean = vals[:, 0]
        lower = {lv: vals[:, 1 + 2 * i] for i, lv in enumerate(levels)}
        upper = {lv: vals[:, 2 + 2 * i] for i, lv in enumerate(levels)}
        return Forecast(mean, lower, upper)

    def _logits(self, ids: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        """Next-bin logits (B, n_bins) at the last position (the missing token is never predicted)."""
        logits, _ = self.model(ids, cache=cache)  # (B, 1, V)
        return logits[:, -1, : self.tok.n_bins].float() / self.config.temperature

    def _chunk(self, rows_per_origin: int, length: int) -> int:
        """Origins per chunk so that the KV cache of the chunk stays within ``memory_mb``."""
        c = self.model.config
        per_row = 2 * c.n_layer * length * c.n_embd * 4  # bytes of keys + values of one row
        return max(1, int(self.config.memory_mb * 2**20 // (per_row * rows_per_origin)))

    def _next_bin_probs(self, ids: np.ndarray) -> np.ndarray:
        """The categorical distribution (n, K) of the next bin of every context."""
        out = []
        step = self._chunk(1, ids.shape[1])
        for i in range(0, len(ids), step):
            out.append(self._logits(torch.from_numpy(ids[i : i + step]), None).softmax(-1).double().numpy())  # (b, K)
        probs = np.vstack(out)
        return probs / probs.sum(axis=1, keepdims=True)

    def _mixture_step(self, probs: np.ndarray, drawn: np.ndarray, loc: np.ndarray, scale: np.ndarray,
                      last: np.ndarray, qs: np.ndarray) -> np.ndarray:
        """Values (b, q) at one step: the quantiles of the mixture over the S sampled prefixes of
        the model's distribution for that step, probs (b, S, K); drawn (b, S, j): the prefixes' bins.

        The sampled bins themselves are one draw from each of these distributions: their
        empirical quantiles carry the sampling noise of S draws, the mixture's do not (the
        Rao-Blackwell estimate of the same marginal)."""
        tf = self.config.transform
        if tf != "log_return":  # y of a step depends on that step's bin alone
            mix = probs.mean(axis=1)  # (b, K)
            z = categorical_quantiles(mix, qs, self.tok.low, self.tok.width) * scale[:, None] + loc[:, None]
            return inverse(z[:, :, None], last[:, None, None], tf)[:, :, 0]  # (b, q)
        # returns accumulate: a prefix's past bins shift where its next bin lands
        zc = self.tok.centers[None, :] * scale[:, None] + loc[:, None]  # (b, K) every bin's value, scaled back
        prefix = self.tok.decode(drawn, loc, scale).sum(axis=2) if drawn.shape[2] else np.zeros(drawn.shape[:2])
        atoms = np.exp(last[:, None, None] + prefix[:, :, None] + zc[:, None, :]).reshape(len(probs), -1)  # (b, S*K)
        w = probs.reshape(len(probs), -1) / probs.shape[1]
        order = np.argsort(atoms, axis=1)
        v, cw = np.take_along_axis(atoms, order, 1), np.take_along_axis(w, order, 1).cumsum(axis=1)
        pos = np.stack([(cw < q * cw[:, -1:]).sum(axis=1) for q in qs], axis=1).clip(max=v.shape[1] - 1)
        return np.take_along_axis(v, pos, 1)

    def _sample_paths(self, ids: np.ndarray, origins: np.ndarray, h: int, on_step=None) -> np.ndarray:
        """Sampled bin ids (n, S, h): prefill each context once, then all origins x samples step together.

        A horizon longer than the block leaves room for slides: once the block is full, the
        last C tokens (context and samples so far, on the origin's scale) are read again
        and sampling goes on from there (the oldest values drop out, as in Chronos).
        ``on_step(rows, j, probs (b, S, K), drawn (b, S, j))``: called at every step with the
        distribution each sample draws its next bin from.
        """
        S, C = self.config.n_samples, ids.shape[1]
        seg = min(h, self.model.config.block_size - C)  # steps sampled per pass through the block
        cfg = replace(self.model.config, block_size=C + seg)  # the cache needs C + seg positions, not the block
        out = np.empty((len(ids), S, h), dtype=np.int64)
        step = self._chunk(S, C + seg)
        for i in range(0, len(ids), step):
            part = torch.from_numpy(ids[i : i + step])  # (b, C)
            b = part.size(0)
            u = np.stack([np.random.default_rng([self.config.seed, int(o)]).random((S, h))
                          for o in origins[i : i + step]])  # (b, S, h): the origin's own draws
            uu = torch.from_numpy(u.reshape(b * S, h))
            pre = KVCache(cfg, b)
            logits = self._logits(part, pre).repeat_interleave(S, dim=0)  # (b*S, K)
            cache = KVCache(cfg, b * S)
            cache.k[:, :, :, :C], cache.v[:, :, :, :C] = (t[:, :, :, :C].repeat_interleave(S, dim=1)
                                                          for t in (pre.k, pre.v))
            cache.pos = C
            drawn = torch.empty(b * S, h, dtype=torch.long)
            for j in range(h):
                if j and j % seg == 0:  # the block is full: read the last C tokens again
                    seq = torch.cat([part.repeat_interleave(S, dim=0), drawn[:, :j]], dim=1)[:, -C:]
                    cache = KVCache(cfg, b * S)
                    logits = self._logits(seq, cache)
                probs = logits.softmax(-1).double()  # (b*S, K)
                if on_step is not None:
                    on_step(slice(i, i + b), j, probs.view(b, S, -1).numpy(), drawn[:, :j].reshape(b, S, j).numpy())
                cdf = probs.cumsum(-1)
                nxt = torch.searchsorted(cdf, uu[:, j : j + 1] * cdf[:, -1:]).clamp(max=self.tok.n_bins - 1)
                drawn[:, j : j + 1] = nxt
                if (j + 1) % seg and j + 1 < h:
                    logits = self._logits(nxt, cache)
            out[i : i + b] = drawn.view(b, S, h).numpy()
        return out

    # -- persistence: the weights travel with the saved model (no checkpoint file needed) ----
    def get_state(self) -> dict[str, np.ndarray]:
        state = super().get_state()
        if self.model is not None:
            for k, v in self.model.state_dict().items():
                state[f"w.{k}"] = v.numpy()
            state["meta"] = np.frombuffer(json.dumps(self.meta).encode(), dtype=np.uint8)
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        meta = json.loads(bytes(state["meta"]).decode())
        weights = {k[2:]: torch.from_numpy(np.array(v)) for k, v in state.items() if k.startswith("w.")}
        self._set(weights, meta.pop("model_args"), meta.pop("tokenizer"), meta)
        self.fit(state["y"], state.get("X"))

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.model is not None:
            a = self.model.config
            out.update({"n_layer": a.n_layer, "n_embd": a.n_embd, "block_size": a.block_size,
                        "n_bins": self.tok.n_bins, "scaling": self.tok.scaling, "n_params": self.model.num_params()})
        return out

    def log_extras(self) -> dict[str, Any]:
        tags = {"zero_shot": "true" if self.zero_shot else "false"}
        held = self.meta.get("held_out") or {}
        if held:
            tags["held_out"] = ",".join(str(v) for v in held.values())
        return {"tags": tags}


def model_inputs(y: np.ndarray, transform: str) -> tuple[np.ndarray, np.ndarray]:
    """(what the model reads, the level forecasts continue from), both aligned with y.

    ``log1p``: log(1 + y) (skewed, non-negative series); ``log_return``: log y_t - log y_{t-1}
    (a price: a 1 % move is the same token at any level), the level being log y_t.
    """
    if transform == "log1p":
        z = np.log1p(np.maximum(y, 0.0))
        return z, z
    if transform == "log_return":
        lv = np.log(np.maximum(y, 1e-12))
        return np.concatenate([[np.nan], np.diff(lv)]), lv
    return y, y


def inverse(z: np.ndarray, last: np.ndarray, transform: str) -> np.ndarray:
    """Model outputs z (..., h) back to y; ``last``: the level at the origin (broadcast)."""
    if transform == "log1p":
        return np.expm1(z)
    if transform == "log_return":
        return np.exp(last + np.cumsum(z, axis=-1))
    return z


def quantile_levels(levels: Levels) -> np.ndarray:
    """[0.5, lo_1, hi_1, lo_2, hi_2, ...]: the median, then each central interval's ends."""
    qs = [0.5]
    for lv in levels:
        qs += [0.5 - lv / 200.0, 0.5 + lv / 200.0]
    return np.array(qs)


def categorical_quantiles(probs: np.ndarray, qs: np.ndarray, low: float, width: float) -> np.ndarray:
    """Quantiles (n, q) of a piecewise-uniform density: bin k of width ``width`` from ``low`` holds probs[:, k].

    Inside the bin where the CDF crosses q the value is interpolated linearly, so the
    median moves smoothly with the probabilities instead of jumping from centre to centre.
    """
    probs = probs / probs.sum(axis=1, keepdims=True)
    cdf = np.cumsum(probs, axis=1)  # (n, K)
    rows = np.arange(len(probs))
    out = np.empty((len(probs), len(qs)))
    for j, q in enumerate(qs):
        k = (cdf < q).sum(axis=1).clip(max=probs.shape[1] - 1)  # first bin whose CDF reaches q
        below = np.where(k > 0, cdf[rows, k - 1], 0.0)
        p = np.maximum(probs[rows, k], 1e-300)
        out[:, j] = low + width * (k + np.clip((q - below) / p, 0.0, 1.0))
    return out


@contextmanager
def torch_threads(n: int | None):
    """torch's intra-op threads set to ``n`` for the block, restored after (None: unchanged)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
