"""nanoGPT's own ``train.py`` as a peer of ``seqcast bench gpt``, run from a temporary folder.

Nothing of nanoGPT is committed: the user names a checkout (a folder with ``train.py``,
or a bare git repository, read with ``git archive``); it is copied into a temporary
folder with ``train.bin`` / ``val.bin`` / ``meta.pkl`` written from our corpus and split
(the same 90/10 character split and ids as ``data/shakespeare_char/prepare.py``, which
would download). It runs as its README's CPU example with the P3 "baby" settings and
``--log_interval=1``; its per-iteration times are parsed from its log and its last
checkpoint is scored exactly on the whole validation text by our ``exact_loss``
(the weights load into ``models.text.gpt.GPT``: the architectures are the same).
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

BABY = ["--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1", "--block_size=64",
        "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--dropout=0.0",
        "--wandb_log=False", "--always_save_checkpoint=True"]
ITER_RE = re.compile(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms")


def checkout(source: str | Path, dest: Path) -> Path:
    """A work tree of nanoGPT at ``dest`` from a folder with train.py or a (bare) git repository."""
    source = Path(source)
    if (source / "train.py").is_file():
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".git", "out*", "*.bin"))
    else:
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", f"--git-dir={source}", "archive", "HEAD"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    if not (dest / "train.py").is_file():
        raise FileNotFoundError(f"no nanoGPT train.py in {source}")
    return dest


def write_data(text: str, train_fraction: float, dest: Path) -> None:
    """nanoGPT's shakespeare_char files from our text: sorted characters as ids, uint16."""
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    n = int(len(text) * train_fraction)
    dest.mkdir(parents=True, exist_ok=True)
    np.array([stoi[c] for c in text[:n]], dtype=np.uint16).tofile(dest / "train.bin")
    np.array([stoi[c] for c in text[n:]], dtype=np.uint16).tofile(dest / "val.bin")
    with open(dest / "meta.pkl", "wb") as fh:  # nanoGPT reads its vocabulary size from here
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, fh)


def prepare(source: str | Path, text: str, train_fraction: float, workdir: Path) -> Path:
    root = checkout(source, workdir / "nanogpt")
    write_data(text, train_fraction, root / "data" / "shakespeare_char")
    return root


def run(root: Path, iters: int, env: dict | None = None, timeout: float | None = None, warmup: int = 100) -> dict:
    """Train the baby model for ``iters`` iterations; per-iteration ms (evaluation iterations marked).

    ``warmup``: its warm-up iterations (100 in its config); a short run shortens it as ours does.
    """
    out = root / f"out-{os.getpid()}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", *BABY, f"--out_dir={out.name}",
           f"--max_iters={iters}", f"--lr_decay_iters={iters}", f"--eval_interval={min(250, iters)}",
           f"--warmup_iters={warmup}"]
    load0 = os.getloadavg()[0]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"nanoGPT failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    times = {}
    for line in proc.stdout.splitlines():
        m = ITER_RE.match(line)
        if m:
            times[int(m.group(1))] = float(m.group(2)) / 1000
    eval_every = min(250, iters)
    # the logged time of an evaluation iteration includes the evaluation and the checkpoint: not training
    step_s = [t for i, t in sorted(times.items()) if i % eval_every != 0 and i < iters]
    return {"step_s": step_s, "ckpt": out / "ckpt.pt", "loadavg": [load0, os.getloadavg()[0]]}


def load_model(ckpt_path: Path):
    """nanoGPT's checkpoint as our GPT (same modules; its names carry a ``transformer.`` prefix)."""
    from models.text.gpt import GPT, GPTConfig

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    args = ckpt["model_args"]
    cfg = GPTConfig(**{k: args[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size", "dropout")})
    sd = {k.removeprefix("_orig_mod.").removeprefix("transformer."): v for k, v in ckpt["model"].items()}
    model = GPT(cfg)
    model.load_state_dict(sd)
    return model.eval(), ckpt["iter_num"]


def temporary_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="seqcast-nanogpt-")
