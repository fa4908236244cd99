"""Training throughput of every neural forecaster: windows per second and epoch time.

``seqcast bench neural [--models lstm ...] [--windows 4096] [--epochs 2] [--device auto]``
trains each model on a synthetic hourly series shaped like P1 (season 24, horizon 24,
11 exogenous columns, windows of 48 steps) with its params.yaml configuration, and
prints one line per model, then one JSON object (the last line). Runs on CUDA (bf16
autocast) when one is present, else on the CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from models import registry
from models.neural.training import n_params, pick_device

MODELS = ["simple_rnn", "rnn", "lstm", "cnn_lstm", "seq2seq_attn", "transformer", "deepar"]


def synthetic(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = np.exp(4 + 0.5 * np.sin(2 * np.pi * t / 24) + np.cumsum(rng.normal(scale=0.05, size=n)) * 0.1)
    return y, rng.normal(size=(n, k))


def bench_one(name: str, config: dict, windows: int, epochs: int, device: str) -> dict:
    cls = registry.get(name)
    cfg = {**config, "epochs": epochs, "max_windows": windows, "patience": 10_000, "device": device,
           "progress": False}
    if name == "deepar":  # one sequence per position (no panel here: its own series only)
        cfg["stride"] = 1
    model = registry.create(name, season=24, **cfg)
    n = windows + model.input_size + model.horizon + int(0.12 * windows) + 200
    y, X = synthetic(n, 11)
    t0 = time.perf_counter()
    model.fit(y, X if cls.supports_exog else None)
    wall = time.perf_counter() - t0
    epoch_s = [h["seconds"] for h in model.history]
    return {"model": name, "params": n_params(model.net)[1], "windows_per_s": round(model.windows_per_second, 1),
            "epoch_s": round(float(np.median(epoch_s)), 3), "fit_s": round(wall, 2), "device": str(model.device)}


def main(argv: list[str] | None = None) -> int:
    from seqcast.config import load_params

    parser = argparse.ArgumentParser(prog="seqcast bench neural", description=__doc__)
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--windows", type=int, default=4096, help="training windows per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = load_params()
    device = str(pick_device(args.device))
    rows = []
    print(f"device {device} · torch {torch.__version__} · {platform.processor() or platform.machine()} · "
          f"threads {torch.get_num_threads()}")
    for name in args.models:
        row = bench_one(name, params.models.config_for(name), args.windows, args.epochs, args.device)
        rows.append(row)
        print(f"{name:14s} params {row['params']:>7d}  {row['windows_per_s']:>9.1f} windows/s  "
              f"epoch {row['epoch_s']:.2f}s  fit {row['fit_s']:.1f}s")
    print(json.dumps({"device": device, "threads": torch.get_num_threads(), "windows": args.windows,
                      "epochs": args.epochs, "results": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
