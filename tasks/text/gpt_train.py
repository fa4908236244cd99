"""The GPT training loop, shared by pretraining and chat fine-tuning (nanoGPT's train.py as a function).

The recipe is the ``gpt.train`` section itself (:class:`seqcast.gpt_config.TrainParams`):
AdamW (decay on matrices only) or Muon + AdamW, warm-up then cosine or
warm-up–stable–decay, gradient accumulation, clipping, optional bf16 autocast and
``torch.compile``. A checkpoint (plain state dicts + config dicts + RNG states,
``torch.save``) is written at every evaluation, so a killed run resumes where it
stopped and ends exactly where an uninterrupted run on the same seed would have.
Evaluation time is kept out of the step times: ``timing`` and ``train_s`` are
training only.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

from models.text.gpt import GPT, GPTConfig, configure_optimizers
from seqcast.gpt_config import TrainParams

CKPT = "ckpt.pt"
CPU_HZ = 2.2e9  # nominal clock of this machine's CPU (the share of peak is an estimate)


def fp32_peak_flops(threads: int) -> float:
    """FP32 peak of ``threads`` cores: 2 FMA pipes x (16 lanes with AVX-512, else 8 with AVX2) x 2 FLOP."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    lanes = 16 if "avx512f" in flags else 8
    return threads * 2 * lanes * 2 * CPU_HZ


def get_lr(it: int, c: TrainParams) -> float:
    """The AdamW lr at iteration ``it``: linear warm-up, then cosine (or stable + linear cool-down) to min_lr."""
    if it < c.warmup_iters:
        return c.lr * (it + 1) / (c.warmup_iters + 1)
    if it > c.lr_decay_iters:
        return c.min_lr
    if c.schedule == "wsd":  # flat at lr, then a straight line to min_lr over the last cooldown_frac
        start = c.lr_decay_iters * (1 - c.cooldown_frac)
        if it < start:
            return c.lr
        frac = (it - start) / max(1.0, c.lr_decay_iters - start)  # 0 -> 1
        return c.lr + frac * (c.min_lr - c.lr)
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


def build_optimizers(model: GPT, c: TrainParams, device: str) -> list[torch.optim.Optimizer]:
    """AdamW alone, or Muon (hidden matrices) + AdamW (the rest); each group remembers its peak lr."""
    fused = device in ("cpu", "cuda")  # one fused kernel per step instead of a dozen foreach ops
    opts = configure_optimizers(
        model, weight_decay=c.weight_decay, lr=c.lr, betas=(c.beta1, c.beta2), fused=fused,
        muon_lr=c.muon_lr if c.optimizer == "muon" else None, muon_momentum=c.muon_momentum,
    )
    for o in opts:
        for g in o.param_groups:
            g["peak_lr"] = g["lr"]
    return opts


def set_lr(opts: list[torch.optim.Optimizer], it: int, c: TrainParams) -> float:
    """Every group follows the schedule in proportion to its peak lr; returns the AdamW lr."""
    lr = get_lr(it, c)
    for o in opts:
        for g in o.param_groups:
            g["lr"] = g["peak_lr"] * lr / c.lr
    return lr


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
    cfg: TrainParams,
    batch_fn: BatchFn,
    eval_fn: EvalFn,
    out_dir: str | Path,
    *,
    seed: int = 1337,
    resume: bool = True,
    init_state: dict | None = None,
    log_fn: Callable[[dict, int], None] | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    stop_when: Callable[[dict], bool] | None = None,
) -> dict:
    """Train (or resume) and return {model, history, timing, iter_num, train_s, device}.

    The checkpoint is ``out_dir/ckpt.pt``. ``init_state``: weights to start from
    (fine-tuning). ``stop_after``: leave the loop after that many iterations of this
    call (tests of resume without a kill). ``stop_when(metrics)``: leave after an
    evaluation that satisfies it (time to a target loss).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CKPT
    device = pick_device(cfg.device)
    if cfg.threads and device == "cpu":
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)  # batches: its state goes into the checkpoint

    model = GPT(model_cfg)
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(device)
    opts = build_optimizers(model, cfg, device)
    iter_num, history, step_times = 0, [], []  # step_times: seconds per iteration, kept across resumes
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        model.load_state_dict(ckpt["model"])
        for o, s in zip(opts, ckpt["optimizers"]):
            o.load_state_dict(s)
        gen.set_state(ckpt["batch_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        iter_num, history, step_times = ckpt["iter_num"], ckpt["history"], ckpt["step_times"]
        print(f"resumed from {ckpt_path} at iteration {iter_num}")

    if cfg.compile:  # each block compiled once for the training forward; evaluation stays eager
        model.compile_blocks()
    ctx, used_dtype = autocast_for(device, cfg.dtype)
    params = [p for p in model.parameters() if p.requires_grad]

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizers": [o.state_dict() for o in opts],
            "model_args": model_cfg.to_dict(), "train_config": cfg.model_dump(), "seed": seed,
            "iter_num": iter_num, "history": history, "batch_rng": gen.get_state(),
            "torch_rng": torch.get_rng_state(), "step_times": step_times,
        })

    def evaluate() -> dict:
        with ctx:
            metrics = eval_fn(model)
        metrics["lr"] = get_lr(iter_num, cfg)
        history.append({"iter": iter_num, "train_s": sum(step_times), **metrics})
        if log_fn:
            log_fn(metrics, iter_num)
        bar.write(f"iter {iter_num}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return metrics

    def step() -> torch.Tensor:
        for _ in range(cfg.grad_accum):
            x, y, *mask = (t.to(device) for t in batch_fn(gen))
            with ctx:
                _, loss = model(x, y, loss_mask=mask[0] if mask else None)
            (loss / cfg.grad_accum).backward()  # accumulate: the mean over micro-batches
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)
        return loss

    bar = _progress(iter_num, cfg.max_iters, progress)
    done_here, stopped = 0, False
    while iter_num < cfg.max_iters:
        if iter_num % cfg.eval_interval == 0:
            if not (history and history[-1]["iter"] == iter_num):  # a resumed run already has it
                metrics = evaluate()
                stopped = bool(stop_when and stop_when(metrics))
            if iter_num > 0:
                checkpoint()
        if stopped or (stop_after is not None and done_here >= stop_after):
            break
        t0 = time.perf_counter()
        lr = set_lr(opts, iter_num, cfg)
        loss = step()
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
    model.drop_compiled_blocks()  # the model handed back is plain (copies, fine-tunes, serving)
    tokens = cfg.batch_size * cfg.grad_accum * model_cfg.block_size
    timing = step_timing(step_times, tokens)
    return {"model": model, "history": history, "timing": timing | {"dtype": used_dtype},
            "iter_num": iter_num, "train_s": sum(step_times), "device": device}


def step_timing(step_times: list[float], tokens_per_iter: int) -> dict:
    """Median seconds per iteration after the warm-up (the first iterations allocate, compile and cache)."""
    warm = step_times[min(10, len(step_times) // 5) :] or step_times
    med = statistics.median(warm) if warm else float("nan")
    return {"ms_per_iter": med * 1000, "tokens_per_s": tokens_per_iter / med if warm else float("nan")}


def _progress(initial: int, total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(initial=initial, total=total, disable=not enabled, desc="gpt", dynamic_ncols=True, mininterval=1.0)
