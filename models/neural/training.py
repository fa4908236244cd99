"""The one training loop of every network, with its checkpoints.

:func:`train` runs AdamW with gradient clipping over windows ``(x, target, mask)``,
evaluates the loss on a validation set after each epoch and stops early when it has not
improved for ``patience`` epochs; the best weights are kept. Seeds are fixed: the
shuffling and the dropout of epoch ``e`` are functions of ``seed`` and ``e`` only, so a
resumed run is bit-identical on CPU. After every epoch the state (weights, optimizer,
best weights, history) is written atomically to a checkpoint; a run that finds its
checkpoint (same model, configuration and data: :func:`fingerprint`) resumes from it after
a kill. tqdm shows progress on a terminal; on CUDA the forward runs under bf16 autocast.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seqcast.model_config import NeuralParams

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "seconds")
# configuration keys that do not change what is learnt: not part of the checkpoint's key
RUN_ONLY_KEYS = {"progress", "checkpoint_dir", "keep_checkpoint", "epoch_sleep", "device", "threads"}


def pick_device(choice: str = "auto") -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; nothing on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def n_params(net: nn.Module | None) -> tuple[int, int]:
    """(total, trainable) in the Keras sense: parameters plus float buffers (BatchNorm statistics)."""
    if net is None:
        return 0, 0
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for b in net.buffers() if b.is_floating_point())
    return trainable + frozen + buffers, trainable


# -- checkpoints --------------------------------------------------------------------------------
def fingerprint(name: str, season: int, config: NeuralParams, data: np.ndarray) -> str:
    """The checkpoint's key: the model, its configuration (less run-only keys) and the data."""
    h = hashlib.sha256(json.dumps({"name": name, "season": season, "config": config.model_dump(exclude=RUN_ONLY_KEYS)},
                                  sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(np.nan_to_num(data, nan=-1.2345)).tobytes())
    return h.hexdigest()[:16]


def checkpoint_path(folder: str | Path | None, name: str, key: str) -> Path:
    """``<folder>/<name>-<key>.pt``; no folder: ``<tmp>/seqcast-ckpt``."""
    folder = folder or Path(tempfile.gettempdir()) / "seqcast-ckpt"
    return Path(folder) / f"{name}-{key}.pt"


def atomic_save(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# -- the loop ------------------------------------------------------------------------------------
@dataclass
class TrainingRun:
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch (HISTORY_KEYS)
    seconds: float = 0.0  # time spent in epochs (this process)
    windows_per_second: float = 0.0
    resumed_from: int | None = None  # the epoch of the checkpoint it resumed from


def train(net: nn.Module, loss_fn: LossFn, train_set, val_set, config: NeuralParams, device: torch.device,
          checkpoint: Path, desc: str = "") -> TrainingRun:
    """Train ``net`` in place on ``train_set`` (x, target, mask arrays), early-stopped on
    ``val_set``; ``net`` ends with the best weights, in eval mode."""
    from tqdm.auto import tqdm

    c = config
    seed = int(c.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=float(c.lr), weight_decay=float(c.weight_decay))
    run = TrainingRun()
    start, best, best_state, bad = _resume(checkpoint, net, opt, device, run)
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in train_set]
    vtensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in val_set]
    n = len(tensors[0])
    per_epoch = min(n, int(c.max_windows or n))
    seen = 0
    bar = tqdm(range(start, int(c.epochs)), desc=desc, disable=None if c.progress is None else not c.progress,
               leave=False)
    for epoch in bar:
        if bad >= int(c.patience):
            break
        t0 = time.perf_counter()
        torch.manual_seed(seed * 100_003 + epoch)  # dropout etc.: a function of (seed, epoch)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=gen)[:per_epoch]
        train_loss = _epoch(net, loss_fn, opt, tensors, order, int(c.batch_size), float(c.clip), device)
        seen += per_epoch
        val_loss = evaluate_loss(net, loss_fn, vtensors, device)
        seconds = time.perf_counter() - t0
        run.seconds += seconds
        run.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "seconds": seconds})
        if val_loss < best - 1e-6:
            best, bad = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
        atomic_save({
            "model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "best": best,
            "bad": bad, "best_model": best_state,
            "history": torch.tensor([[h[k] for k in HISTORY_KEYS] for h in run.history], dtype=torch.float64),
        }, checkpoint)
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        if float(c.epoch_sleep):
            time.sleep(float(c.epoch_sleep))
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    run.windows_per_second = seen / run.seconds if run.seconds else 0.0
    if not c.keep_checkpoint:
        checkpoint.unlink(missing_ok=True)
    return run


def _resume(checkpoint: Path, net: nn.Module, opt: torch.optim.Optimizer, device: torch.device,
            run: TrainingRun) -> tuple[int, float, dict | None, int]:
    """(first epoch, best validation loss, best weights, epochs without improvement): from the
    checkpoint when there is one (weights, optimizer and history restored), else a fresh start."""
    if not checkpoint.exists():
        return 0, float("inf"), None, 0
    state = torch.load(checkpoint, map_location=device, weights_only=True)
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    run.history = [dict(zip(HISTORY_KEYS, row, strict=True)) for row in state["history"].tolist()]
    run.resumed_from = int(state["epoch"])
    return int(state["epoch"]) + 1, float(state["best"]), state["best_model"], int(state["bad"])


def _epoch(net: nn.Module, loss_fn: LossFn, opt: torch.optim.Optimizer, tensors, order: torch.Tensor,
           batch_size: int, clip: float, device: torch.device) -> float:
    """One pass over the windows ``order`` picks, in mini-batches; the mean training loss."""
    net.train()
    cast = autocast(device)
    total, count = 0.0, 0
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        x, t, m = (a[idx].to(device) for a in tensors)
        if not m.any():  # every target of the batch missing
            continue
        with cast:
            loss = loss_fn(net, x, t, m)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        total += loss.item() * len(idx)
        count += len(idx)
    return total / max(count, 1)


@torch.no_grad()
def evaluate_loss(net: nn.Module, loss_fn: LossFn, tensors, device: torch.device, batch: int = 1024) -> float:
    """Mean loss over (x, target, mask) tensors, in batches, eval mode."""
    net.eval()
    x, t, m = tensors
    cast = autocast(device)
    total, count = 0.0, 0
    for i in range(0, len(x), batch):
        xb, tb, mb = (a[i : i + batch].to(device) for a in (x, t, m))
        if not mb.any():
            continue
        with cast:
            total += float(loss_fn(net, xb, tb, mb)) * len(xb)
        count += len(xb)
    return total / max(count, 1)


@torch.no_grad()
def predict(net: nn.Module, x: np.ndarray, device: torch.device, horizon: int, batch: int = 2048) -> np.ndarray:
    """The network's outputs (n, H) for windows x (n, L, F), in batches, eval mode."""
    net.eval()
    out = []
    cast = autocast(device)
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch])).to(device)
        with cast:
            out.append(net(xb).float().cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, horizon), np.float32)
