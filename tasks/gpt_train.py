"""The GPT training loop, shared by pretraining and chat fine-tuning (nanoGPT's train.py as a function).

AdamW (decay on matrices only), linear warm-up + cosine decay, gradient
accumulation, clipping, optional bf16 autocast and ``torch.compile``; a checkpoint
(plain state dicts + config dicts + RNG states, ``torch.save``) at every evaluation,
so a killed run resumes where it stopped and ends exactly where an uninterrupted
run on the same seed would have.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from models.gpt import GPT, GPTConfig, configure_optimizer

CKPT = "ckpt.pt"
# FP32 peak of this machine's CPU per core: 64 FLOP/cycle (2 AVX-512 FMA pipes x 16 lanes x 2) at 2.2 GHz
PEAK_FLOP_PER_CYCLE, CPU_HZ = 64, 2.2e9


def fp32_peak_flops(threads: int) -> float:
    return threads * PEAK_FLOP_PER_CYCLE * CPU_HZ


@dataclass
class TrainConfig:
    batch_size: int = 12
    grad_accum: int = 1  # micro-batches per optimizer step
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4  # cosine decays to this (~lr/10 per Chinchilla)
    warmup_iters: int = 100
    lr_decay_iters: int = 2000  # ~max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99  # a bit larger: few tokens per iteration
    grad_clip: float = 1.0  # 0 disables
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337
    dtype: str = "auto"  # auto | float32 | bfloat16 (autocast)
    compile: bool = False
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch.set_num_threads on CPU; None leaves it
    extra: dict = field(default_factory=dict)  # free-form, logged with the config


def get_lr(it: int, c: TrainConfig) -> float:
    """Linear warm-up, then cosine from lr down to min_lr at lr_decay_iters, then flat."""
    if it < c.warmup_iters:
        return c.lr * (it + 1) / (c.warmup_iters + 1)
    if it > c.lr_decay_iters:
        return c.min_lr
    ratio = (it - c.warmup_iters) / max(1, c.lr_decay_iters - c.warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return c.min_lr + coeff * (c.lr - c.min_lr)


def pick_device(name: str = "auto") -> str:
    if name != "auto":
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def autocast_for(device: str, dtype: str):
    """bf16 autocast on CUDA when supported; on CPU only when asked (fp32 was faster on this CPU)."""
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    if dtype == "bfloat16":
        return torch.autocast(device_type=device, dtype=torch.bfloat16), "bfloat16"
    return nullcontext(), "float32"


def save_checkpoint(path: Path, state: dict) -> None:
    """Write then rename: a kill during the write leaves the previous checkpoint intact."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


BatchFn = Callable[[torch.Generator], tuple]  # gen -> (x, y) or (x, y, loss_mask)
EvalFn = Callable[[torch.nn.Module], dict]  # model -> {"train_loss": .., "val_loss": ..}


def train(
    model_cfg: GPTConfig,
    cfg: TrainConfig,
    batch_fn: BatchFn,
    eval_fn: EvalFn,
    out_dir: str | Path,
    *,
    resume: bool = True,
    init_state: dict | None = None,
    log_fn: Callable[[dict, int], None] | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train (or resume) and return {model, history, timing, iter_num}; the checkpoint is ``out_dir/ckpt.pt``.

    ``init_state``: weights to start from (fine-tuning). ``stop_after``: leave the loop
    after that many iterations of this call (tests of resume without a kill).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CKPT
    device = pick_device(cfg.device)
    if cfg.threads and device == "cpu":
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)  # batches: its state goes into the checkpoint

    model = GPT(model_cfg)
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(device)
    fused = device in ("cpu", "cuda")  # one fused kernel per step instead of a dozen foreach ops
    optimizer = configure_optimizer(model, cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), fused=fused)
    iter_num, history, step_times = 0, [], []  # step_times: seconds per iteration, kept across resumes
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["batch_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        iter_num, history, step_times = ckpt["iter_num"], ckpt["history"], ckpt["step_times"]
        print(f"resumed from {ckpt_path} at iteration {iter_num}")

    step_model = torch.compile(model) if cfg.compile else model  # the state dict comes from `model`
    ctx, used_dtype = autocast_for(device, cfg.dtype)

    def checkpoint() -> None:
        save_checkpoint(
            ckpt_path,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "model_args": model_cfg.to_dict(),
                "train_config": asdict(cfg),
                "iter_num": iter_num,
                "history": history,
                "batch_rng": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "step_times": step_times,
            },
        )

    def evaluate() -> None:
        with ctx:
            metrics = eval_fn(model)
        metrics["lr"] = get_lr(iter_num, cfg)
        history.append({"iter": iter_num, **metrics})
        if log_fn:
            log_fn(metrics, iter_num)
        bar.write(f"iter {iter_num}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

    bar = _progress(iter_num, cfg.max_iters, progress)
    done_here = 0
    while iter_num < cfg.max_iters:
        if iter_num % cfg.eval_interval == 0:
            if not (history and history[-1]["iter"] == iter_num):  # a resumed run already has it
                evaluate()
            if iter_num > 0:
                checkpoint()
        if stop_after is not None and done_here >= stop_after:
            break
        t0 = time.perf_counter()
        lr = get_lr(iter_num, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr
        for _ in range(cfg.grad_accum):
            x, y, *mask = (t.to(device) for t in batch_fn(gen))
            with ctx:
                _, loss = step_model(x, y, loss_mask=mask[0] if mask else None)
            (loss / cfg.grad_accum).backward()  # accumulate: the mean over micro-batches
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        step_times.append(time.perf_counter() - t0)
        iter_num += 1
        done_here += 1
        bar.update(1)
        if iter_num % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.1e}")
    if iter_num >= cfg.max_iters:
        if not (history and history[-1]["iter"] == iter_num):
            evaluate()
        checkpoint()
    bar.close()
    warm = step_times[min(10, len(step_times) // 5) :] or step_times  # skip warm-up iterations
    med = statistics.median(warm) if warm else float("nan")
    tokens = cfg.batch_size * cfg.grad_accum * model_cfg.block_size
    timing = {"ms_per_iter": med * 1000, "tokens_per_s": tokens / med if warm else float("nan"), "dtype": used_dtype}
    return {"model": model, "history": history, "timing": timing, "iter_num": iter_num, "device": device}


def _progress(initial: int, total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(initial=initial, total=total, disable=not enabled, desc="gpt", dynamic_ncols=True, mininterval=1.0)


def train_config(p, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` from the validated ``gpt:`` section (``p``: GPTParams) and overrides."""
    return TrainConfig(seed=p.seed, **{**p.train.model_dump(), **overrides})
