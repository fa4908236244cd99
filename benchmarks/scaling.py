"""``seqcast bench scaling``: validation loss against model size at a fixed token budget (GPT-2/3 scaling).

    seqcast bench scaling [--sizes 2x64 4x96 4x128 6x160 6x192] [--tokens 1000000] [--no-mlflow]

Each size ``LxC`` is a GPT of L layers and width C (C / 32 heads of 32 channels, at
least 2), trained with the pipeline's recipe (params.yaml ``gpt.train``, its
optimizer and schedule, context and batch) on the P3 split for the same number of
training tokens, then scored exactly on the whole validation text. A power law
L(N) = a N^-alpha is fitted to (non-embedding parameters, loss) by least squares in
log-log space. The figure, the table and the fit go to MLflow (experiment
``seqcast-text``, run ``scaling``, tags family=gpt); the last line printed is JSON.
Not part of the default pipeline: five trainings take minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch


def parse_size(s: str) -> tuple[int, int]:
    layers, _, width = s.lower().partition("x")
    return int(layers), int(width)


def fit_power_law(n: list[float], loss: list[float]) -> dict:
    """log L = log a - alpha log N by least squares; R^2 in log space."""
    x, y = np.log(np.asarray(n, float)), np.log(np.asarray(loss, float))
    slope, intercept = np.polyfit(x, y, 1)
    pred = intercept + slope * x
    ss_res, ss_tot = float(((y - pred) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    return {"a": float(math.exp(intercept)), "alpha": float(-slope), "r2": 1 - ss_res / ss_tot if ss_tot > 0 else 1.0}


def train_size(layers: int, width: int, tokens: int, data: dict, threads: int, seed: int) -> dict:
    from models.text.gpt import GPTConfig
    from seqcast.config import load_params
    from tasks.text.gpt_train import train
    from tasks.text.corpus import exact_loss, get_batch

    mp, tp = load_params().gpt.recipe("cpu")
    heads = max(2, width // 32)
    mc = GPTConfig(**{**mp.model_dump(), "n_layer": layers, "n_embd": width, "n_head": heads,
                      "vocab_size": data["vocab_size"]})
    T, B = mc.block_size, tp.batch_size
    iters = max(1, tokens // (B * T))
    tp = tp.with_(max_iters=iters, lr_decay_iters=iters, warmup_iters=min(tp.warmup_iters, max(1, iters // 10)),
                  eval_interval=iters, eval_iters=1, threads=threads, device="cpu")
    with tempfile.TemporaryDirectory() as d:
        res = train(mc, tp, lambda g: get_batch(data["train"], B, T, g), lambda m: {}, d, seed=seed,
                    resume=False, progress=False)
    model = res["model"]
    return {"size": f"{layers}x{width}", "n_layer": layers, "n_embd": width, "n_head": heads,
            "params": model.num_params(), "tokens": iters * B * T, "iters": iters,
            "val_loss": exact_loss(model, data["val"], T), "train_s": res["train_s"]}


def log_to_mlflow(rows: list[dict], fit: dict, tokens: int) -> str:
    import matplotlib.pyplot as plt
    import mlflow

    from seqcast.tracking import model_run

    n = np.array([r["params"] for r in rows], float)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog(n, [r["val_loss"] for r in rows], "o", label="measured")
    grid = np.geomspace(n.min() / 1.5, n.max() * 1.5, 50)
    ax.loglog(grid, fit["a"] * grid ** -fit["alpha"], "-", label=f"{fit['a']:.2f} N^-{fit['alpha']:.3f}")
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("validation loss (nats/char)")
    ax.set_title(f"P3 scaling at {tokens / 1e6:.1f}M training tokens")
    ax.legend()
    fig.tight_layout()
    with model_run("text", "gpt-scaling", "gpt", run_name="scaling", tags={"protocol": "P3", "rung": "scaling"}) as run:
        mlflow.log_params({"tokens": tokens, "sizes": " ".join(r["size"] for r in rows)})
        for r in rows:
            mlflow.log_metric("P3_scaling_val_loss", r["val_loss"], step=int(r["params"]))
        mlflow.log_metrics({"P3_scaling_alpha": fit["alpha"], "P3_scaling_a": fit["a"], "P3_scaling_r2": fit["r2"]})
        mlflow.log_table({k: [r[k] for r in rows] for k in rows[0]}, "scaling.json")
        mlflow.log_figure(fig, "scaling.png")
        run_id = run.info.run_id
    plt.close(fig)
    return run_id


def main(argv: list[str] | None = None) -> int:
    from seqcast.env import configure

    configure()
    from models.text.tokenizers import CharTokenizer
    from tasks.text.corpus import load_corpus, split_text

    ap = argparse.ArgumentParser(prog="seqcast bench scaling", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["2x64", "4x96", "4x128", "6x160", "6x192"],
                    help="LAYERSxWIDTH per model")
    ap.add_argument("--tokens", type=int, default=1_000_000, help="training tokens per model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--no-mlflow", action="store_true")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    text = load_corpus()
    tok = CharTokenizer.train(text)
    tr, va = split_text(text)
    data = {"train": torch.tensor(tok.encode(tr)), "val": torch.tensor(tok.encode(va)), "vocab_size": tok.vocab_size}
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    rows = []
    for s in a.sizes:
        rows.append(train_size(*parse_size(s), a.tokens, data, a.threads, a.seed))
        r = rows[-1]
        print(f"{r['size']:>6}: {r['params'] / 1e6:6.3f}M params, {r['iters']} iters, val loss {r['val_loss']:.4f}, "
              f"{r['train_s']:.1f} s", flush=True)
    fit = fit_power_law([r["params"] for r in rows], [r["val_loss"] for r in rows])
    print(f"power law: L = {fit['a']:.3f} N^-{fit['alpha']:.4f} (R^2 {fit['r2']:.3f}) at {a.tokens:,} tokens")
    run_id = None if a.no_mlflow else log_to_mlflow(rows, fit, a.tokens)
    print(json.dumps({"rows": rows, "fit": fit, "tokens": a.tokens, "mlflow_run_id": run_id,
                      "wall_s": time.perf_counter() - t0, "loadavg_start": load0, "loadavg_end": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
