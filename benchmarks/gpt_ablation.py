"""``seqcast bench gpt_ablation``: what each lever of the pipeline's recipe buys, in time to a target loss.

    seqcast bench gpt_ablation [--target 1.898] [--seeds 1 2 3] [--rows pipeline no-muon ...] [--threads 2]
                               [--iters N] [--eval-every 10] [--set model.KEY=V ...]

Each row is the pipeline's recipe (params.yaml ``gpt.model`` / ``gpt.train``) with one
lever taken back to the reference (nanoGPT) choice; ``reference`` is nanoGPT's whole
recipe. Every (row, seed) is one ``seqcast bench gpt --recipe ... --target T --seed S``
in a fresh process, run one after the other; the table gives the mean and the spread of
the training seconds to the target (evaluation excluded), the iterations and the share of
seeds that reached it. ``--eval-every`` is the resolution of the measurement (the
iterations between evaluations; a row's time is that of the first evaluation at or below
the target); a coarser one suits the reference rows' ~2,000 iterations. ``--set`` applies
a change to every row before the row's own (a smaller model for a quick look). The last
line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

# row -> (recipe, changes): one lever back to the reference at a time
ROWS = {
    "pipeline": ("pipeline", []),
    "no-muon": ("pipeline", ["train.optimizer=adamw"]),
    "no-wsd": ("pipeline", ["train.schedule=cosine"]),
    "no-rope": ("pipeline", ["model.rope=false"]),
    "no-qk-norm": ("pipeline", ["model.qk_norm=false"]),
    "no-relu2": ("pipeline", ["model.mlp=gelu"]),
    "tied-head": ("pipeline", ["model.tie_weights=true"]),
    "reference-lr": ("pipeline", ["train.lr=1e-3"]),
    "reference-context": ("pipeline", ["model.block_size=64", "train.batch_size=12"]),
    "reference": ("reference", []),
}


def run_one(row: str, seed: int, a: argparse.Namespace) -> dict:
    recipe, changes = ROWS[row]
    cmd = [sys.executable, "-m", "benchmarks.gpt", "--recipe", recipe, "--target", str(a.target), "--seed", str(seed),
           "--threads", str(a.threads), "--eval-every", str(a.eval_every), "--no-gen", "--no-compile",
           *sum((["--set", c] for c in [*a.set, *changes]), [])]
    if a.iters:
        cmd += ["--iters", str(a.iters)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{row} seed {seed} failed:\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"row": row, "seed": seed, "reached": r["reached"], "time_to_target_s": r["time_to_target_s"],
            "iters": r["iters"], "params": r["params"], "val_loss": r["val_loss"], "ms_per_iter": r["ms_per_iter"],
            "train_s": r["train_s"],
            "loadavg": [r["loadavg_start"], r["loadavg_end"]]}


def summarize(runs: list[dict]) -> dict:
    hit = [r for r in runs if r["reached"]]
    times = [r["time_to_target_s"] for r in hit]
    return {"reached": f"{len(hit)}/{len(runs)}",
            "time_mean": statistics.mean(times) if times else None,
            "time_sd": statistics.stdev(times) if len(times) > 1 else 0.0 if times else None,
            "iters_mean": statistics.mean(r["iters"] for r in hit) if hit else None,
            "ms_per_iter": statistics.median(r["ms_per_iter"] for r in runs),
            "max_train_s": max(r["train_s"] for r in runs)}


def main(argv: list[str] | None = None) -> int:
    from seqcast.env import configure

    configure()
    ap = argparse.ArgumentParser(prog="seqcast bench gpt_ablation", description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=float, default=1.898)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--iters", type=int, default=None, help="schedule length of every row (default: its recipe's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=10, help="iterations between evaluations (the resolution)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a change to every row (applied before the row's own), e.g. model.n_layer=2")
    a = ap.parse_args(argv)

    runs = []
    for row in a.rows:
        for seed in a.seeds:
            runs.append(run_one(row, seed, a))
            r = runs[-1]
            t = f"{r['time_to_target_s']:.1f} s" if r["reached"] else "not reached"
            print(f"{row:>18} seed {seed}: {t}, {r['iters']} iters, {r['ms_per_iter']:.1f} ms/iter, "
                  f"load {r['loadavg'][0]:.2f}", flush=True)
    table = {row: summarize([r for r in runs if r["row"] == row]) for row in a.rows}
    print(f"\n| recipe | time to {a.target} (s), mean ± sd | iterations | ms/iter | reached |\n|---|---|---|---|---|")
    for row, s in table.items():
        t = f"{s['time_mean']:.1f} ± {s['time_sd']:.1f}" if s["time_mean"] is not None else f"> {s['max_train_s']:.0f}"
        it = f"{s['iters_mean']:.0f}" if s["iters_mean"] is not None else "-"
        print(f"| {row} | {t} | {it} | {s['ms_per_iter']:.1f} | {s['reached']} |")
    print(json.dumps({"target": a.target, "seeds": a.seeds, "eval_every": a.eval_every, "set": a.set, "table": table,
                      "runs": runs, "loadavg_end": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
