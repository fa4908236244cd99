"""Train the GPT forecaster: windows of every series' training part + synthetic series, the text GPT's loop.

:func:`train_forecaster` returns the self-describing checkpoint (weights, architecture,
tokenizer, the series seen with their cut dates, the held-out series, the transforms)
and the loss history. The DVC stage (flows/gpt_forecaster.py) hands it the protocols of
the clean tables; the lever benchmark (benchmarks/gpt_forecaster.py) the same protocols
moved back before a validation slice inside each training part.
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.text.gpt import GPT, GPTConfig
from models.series_tokenizer import SeriesTokenizer
from seqcast.config import Params
from tasks.backtest import Protocol
from tasks.gpt_forecaster_data import MODEL, WindowSampler, series_sources, synthetic_sources
from tasks.text.gpt_train import train


def context_length(params: Params) -> int:
    """The forecaster's context (the same for every dataset: one block size)."""
    ctx = {params.models.params_for(MODEL, d).context for d in params.datasets}
    if len(ctx) != 1:
        raise ValueError(f"models.gpt_forecaster.context must be the same for every dataset, got {sorted(ctx)}")
    return ctx.pop()


@torch.no_grad()
def mean_loss(model: GPT, xy: tuple[torch.Tensor, torch.Tensor], batch: int = 64) -> float:
    """Cross-entropy (nats per token) over fixed windows, missing targets excluded."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    tot = n = 0.0
    for i in range(0, xy[0].size(0), batch):
        x, y = (t[i : i + batch].to(device) for t in xy)
        _, loss = model(x, y)
        k = float((y >= 0).sum())
        tot, n = tot + loss.item() * k, n + k
    model.train(was)
    return tot / max(n, 1.0)


def train_forecaster(params: Params, protocols: list[tuple[str, Protocol]], work_dir: str | Path,
                     max_iters: int | None = None, progress: bool = False) -> tuple[dict, list[dict]]:
    """(checkpoint dict, loss history) of a model trained as ``params.gpt_forecaster_train`` says,
    on the training parts of ``protocols`` ((dataset, protocol) pairs)."""
    p = params.gpt_forecaster_train
    datasets = list(dict.fromkeys(d for d, _ in protocols))
    train_src, held_src = series_sources(params, protocols)
    synth = synthetic_sources(p.synthetic)
    context = context_length(params)
    tok = SeriesTokenizer(**p.tokenizer.model_dump())
    block = context + p.horizon
    sampler = WindowSampler(train_src + synth, tok, block, context, p.mix, p.tsmixup)
    print(f"gpt_forecaster: {len(train_src)} series + {len(synth)} synthetic, held out "
          f"{[s.uid for s in held_src]}, block {block}, vocab {tok.vocab_size}")
    tp = p.train if max_iters is None else p.train.with_(max_iters=max_iters, lr_decay_iters=max_iters)
    cfg = GPTConfig(**{**p.model.model_dump(), "block_size": block, "vocab_size": tok.vocab_size})
    evals = {"train_loss": sampler.fixed(256, p.seed + 1)}
    if held_src:  # the held-out series' training parts: how well the model reads series it never saw
        held = WindowSampler(held_src, tok, block, context, {s.group: 1.0 for s in held_src})
        evals["zero_shot_loss"] = held.fixed(256, p.seed + 2)

    def eval_fn(m: GPT) -> dict:
        return {k: mean_loss(m, xy) for k, xy in evals.items()}

    res = train(cfg, tp, lambda g: sampler.batch(g, tp.batch_size), eval_fn, work_dir, seed=p.seed,
                resume=False, progress=progress)
    model = res["model"].cpu().eval()
    last = res["history"][-1]
    summary = {"train_s": res["train_s"], "iters": res["iter_num"], "device": res["device"],
               "n_params": model.num_params(), "tokens_per_s": res["timing"]["tokens_per_s"],
               **{k: float(v) for k, v in last.items() if k.endswith("loss")}}
    ckpt = {
        "model": model.state_dict(), "model_args": cfg.to_dict(), "tokenizer": tok.to_dict(),
        "series": {s.uid: {"dataset": s.group, "train_end": s.train_end, "n_points": len(s.values)}
                   for s in train_src},
        "held_out": {s.group: s.uid for s in held_src}, "synthetic": len(synth),
        "transforms": {d: params.models.params_for(MODEL, d).transform for d in datasets},
        "context": context, "train": summary,
    }
    return ckpt, res["history"]
