"""Tiny Shakespeare for P3: the corpus from the mirror, the 90/10 split, batches.

Pure functions; the flows wrap them in Prefect tasks.
"""

from __future__ import annotations

from pathlib import Path

import torch

from seqcast.paths import data_mirror

CORPUS = Path("text") / "tinyshakespeare.txt"
TRAIN_FRACTION = 0.9  # P3: first 90% of characters train, last 10% validation


def corpus_path() -> Path:
    """The ingested copy (``data/raw/text``, DVC stage ``ingest_text``), else the mirror's file."""
    from seqcast.paths import project_root

    ingested = project_root() / "data" / "raw" / CORPUS
    if ingested.is_file():
        return ingested
    mirror = data_mirror()
    if mirror is None:
        raise FileNotFoundError("no data mirror: set SEQCAST_DATA_MIRROR (it holds text/tinyshakespeare.txt)")
    return mirror / CORPUS


def load_corpus(path: str | Path | None = None) -> str:
    return Path(path or corpus_path()).read_text(encoding="utf-8")


def split_text(text: str, train_fraction: float = TRAIN_FRACTION) -> tuple[str, str]:
    """P3 split on characters (not tokens), so every tokenizer sees the same text."""
    n = int(len(text) * train_fraction)
    return text[:n], text[n:]


def get_batch(
    data: torch.Tensor, batch_size: int, block_size: int, gen: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of ``block_size`` tokens: inputs x (B, T) and next-token targets y (B, T)."""
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=gen)  # (B,)
    offsets = ix[:, None] + torch.arange(block_size + 1)  # (B, T+1): one gather, no Python loop
    chunk = data[offsets]  # (B, T+1)
    return chunk[:, :-1], chunk[:, 1:]


def batch_fn(data: torch.Tensor, tp, block_size: int):
    """The trainer's batches of ``data`` for the recipe ``tp`` (a ``TrainParams``): random windows of the context."""
    return lambda g: get_batch(data, tp.batch_size, block_size, g)


@torch.no_grad()
def estimate_loss(
    model: torch.nn.Module,
    data: torch.Tensor,
    block_size: int,
    batch_size: int,
    iters: int,
    seed: int = 0,
) -> float:
    """Mean loss on ``iters`` batches of random windows; its own generator leaves training's RNG alone."""
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    losses = [model(*(t.to(dev) for t in get_batch(data, batch_size, block_size, gen)))[1].item() for _ in range(iters)]
    model.train(was_training)
    return sum(losses) / len(losses)


@torch.no_grad()
def exact_loss(model: torch.nn.Module, data: torch.Tensor, block_size: int, batch_size: int = 64) -> float:
    """Cross-entropy over every token of ``data`` (P3's exact option).

    Consecutive non-overlapping windows of ``block_size``; the last partial window is
    scored too, so each target token counts once.
    """
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    data = data.to(dev)
    n = len(data) - 1  # number of (input, target) pairs
    total, count = 0.0, 0
    starts = list(range(0, n, block_size))
    full = [s for s in starts if s + block_size <= n]
    for i in range(0, len(full), batch_size):
        ix = torch.tensor(full[i : i + batch_size], device=dev)
        offsets = ix[:, None] + torch.arange(block_size + 1, device=dev)  # (b, T+1)
        chunk = data[offsets]
        _, loss = model(chunk[:, :-1], chunk[:, 1:])
        total += loss.item() * chunk[:, 1:].numel()
        count += chunk[:, 1:].numel()
    tail = [s for s in starts if s + block_size > n]
    for s in tail:
        chunk = data[s : n + 1][None]  # (1, t+1)
        _, loss = model(chunk[:, :-1], chunk[:, 1:])
        total += loss.item() * (chunk.size(1) - 1)
        count += chunk.size(1) - 1
    model.train(was_training)
    return total / count
