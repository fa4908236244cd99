"""GPT-1's claim measured: accuracy against the number of labelled examples, pretrained + fine-tuned vs from scratch.

    seqcast bench gpt_heads [--sizes 50 100 ...] [--seeds 1 2 3] [--task acceptability|speaker]
                            [--split test|validation] [--set KEY=VALUE ...] [--variants V ...]
                            [--checkpoint checkpoints/gpt] [--no-mlflow] [--quick]

The pretrained decoder of the ``gpt_train`` stage, the task of ``gpt.heads`` (tasks/text/heads.py):
for each number of labelled lines and seed, the majority class, the frozen decoder + linear head,
the whole network fine-tuned with the auxiliary LM loss, and the same network and recipe from
scratch; on the acceptability task also the likelihood heads of those three networks (a line's
log-probability against orders of its own words; ``score_finetune`` - ``score_scratch`` is the same
comparison: one recipe, only the initialisation differs). ``--split validation`` scores on ``gpt.heads.val_lines`` lines carved from the labelled
(training) lines instead of the test lines: where the recipe is chosen, ``--set finetune_lr=1e-3`` trying
a value of ``gpt.heads`` (read through its schema) without editing params.yaml. Prints the accuracy of the
surface rules on the scored lines (a leak check: near 0.5 when only word order tells the classes apart) and
the table (mean and spread over seeds); MLflow: one run (tags family=gpt,
model=gpt_heads_curve) with the table and the plot ``heads_curve.png``. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from benchmarks import set_values

VARIANTS = ("majority", "linear", "finetune", "scratch", "score", "score_finetune", "score_scratch")
GAINS = {"gain": ("finetune", "scratch"), "score_gain": ("score_finetune", "score_scratch")}  # pretrained - scratch
LABELS = {"majority": "majority", "linear": "frozen + linear", "finetune": "fine-tuned (pretrained)",
          "scratch": "from scratch", "score": "likelihood, frozen", "score_finetune": "likelihood, fine-tuned",
          "score_scratch": "likelihood, from scratch"}


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean, standard deviation, min and max over seeds of every variant, per number of labelled lines."""
    out = []
    for n in sorted({r["n_train"] for r in rows}):
        at = [r for r in rows if r["n_train"] == n]
        row = {"n_train": n, "seeds": len(at)}
        for v in VARIANTS:
            vals = [r[v] for r in at if v in r]
            if vals:
                row[v] = statistics.fmean(vals)
                row[f"{v}_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
                row[f"{v}_min"], row[f"{v}_max"] = min(vals), max(vals)
        for gain, (a, b) in GAINS.items():
            if a in row and b in row:
                row[gain] = row[a] - row[b]
        out.append(row)
    return out


def markdown(agg: list[dict]) -> str:
    """One row per number of labelled lines: mean ± sd of each variant measured, then each pretrained - scratch gain."""
    shown = [v for v in VARIANTS if any(v in r for r in agg)]
    gains = [g for g in GAINS if any(g in r for r in agg)]
    names = {"gain": "pretrained - scratch", "score_gain": "likelihood: pretrained - scratch"}
    lines = ["| labelled lines | " + " | ".join([LABELS[v] for v in shown] + [names[g] for g in gains]) + " |",
             "|---" * (1 + len(shown) + len(gains)) + "|"]
    for r in agg:
        cells = [f"{r[v]:.3f} ± {r[f'{v}_sd']:.3f}" if v in r else "-" for v in shown]
        cells += [f"{r[g]:+.3f}" if g in r else "-" for g in gains]
        lines.append(f"| {r['n_train']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(agg: list[dict], path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "seqcast"}):  # an SVG keeps its text, same bytes each run
        fig, ax = plt.subplots(figsize=(8.5, 4.2))
        xs = [r["n_train"] for r in agg]
        colours = {"finetune": "C0", "scratch": "C1", "linear": "C2", "majority": "C7"}  # one colour per network
        for v, label in (("finetune", "pretrained + fine-tuned"), ("scratch", "from scratch"),
                         ("linear", "frozen + linear head"), ("score_finetune", "likelihood head, pretrained + fine-tuned"),
                         ("score_scratch", "likelihood head, from scratch"), ("score", "likelihood head, frozen"),
                         ("majority", "majority class")):
            if v in agg[0]:
                ys, sd = [r[v] for r in agg], [r[f"{v}_sd"] for r in agg]
                style = "--" if v == "majority" else ":" if v.startswith("score") else "-"
                colour = colours[{"score": "linear"}.get(v, v.removeprefix("score_"))]
                ax.errorbar(xs, ys, yerr=sd, marker="o", capsize=3, label=label, linestyle=style, color=colour)
        ax.set_xscale("log")
        ax.set_xlabel("labelled lines")
        ax.set_ylabel("test accuracy")
        ax.set_title(title)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        fig.savefig(path, dpi=120, **({"metadata": {"Date": None}} if str(path).endswith(".svg") else {}))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from seqcast.env import configure

    configure()
    import torch

    from seqcast.config import load_params
    from seqcast.paths import project_root

    p = load_params().gpt
    ap = argparse.ArgumentParser(prog="seqcast bench gpt_heads", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(project_root() / p.paths.checkpoints))
    ap.add_argument("--sizes", type=int, nargs="+", default=p.heads.curve_sizes)
    ap.add_argument("--seeds", type=int, nargs="+", default=p.heads.curve_seeds)
    ap.add_argument("--task", choices=["acceptability", "speaker"], default=p.heads.task)
    ap.add_argument("--split", choices=["test", "validation"], default="test",
                    help="score on the test lines, or on validation lines carved from the training lines (recipe choices)")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override a gpt.heads value (schema-checked)")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS[1:], default=None,
                    help="only these (default: every variant of the task; the majority class is always shown)")
    ap.add_argument("--quick", action="store_true", help="tiny settings (tests)")
    ap.add_argument("--no-mlflow", action="store_true")
    ap.add_argument("--out", default=str(project_root() / p.paths.reports / "heads_curve.png"),
                    help="the plot (its format from the name: .png, .svg)")
    a = ap.parse_args(argv)

    from pathlib import Path

    from models.text.gpt import model_from_checkpoint
    from models.text.tokenizers import load_tokenizer
    from tasks.text.corpus import load_corpus
    from tasks.text.gpt_train import load_checkpoint

    from seqcast.gpt_config import HeadsParams
    from tasks.text.heads import learning_curve, make_task, surface_rules, validation_task

    sets = set_values(ap, a.set)
    hp = HeadsParams.model_validate(p.heads.model_dump() | sets | {"task": a.task})
    if a.quick:
        hp = hp.model_copy(update={"iters": 2, "min_iters": 1, "linear_iters": 3, "max_chars": 16})
    torch.set_num_threads(hp.threads or p.train.threads or torch.get_num_threads())
    base = model_from_checkpoint(load_checkpoint(Path(a.checkpoint) / "model.pt"))
    tok = load_tokenizer(Path(a.checkpoint) / "tokenizer.json")
    load, t0, c0 = os.getloadavg()[0], time.perf_counter(), time.process_time()
    text = load_corpus()
    rows = learning_curve(base, tok, text, hp, a.sizes, a.seeds, a.variants and tuple(a.variants), split=a.split)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    agg = aggregate(rows)
    md = markdown(agg)
    task = make_task(text, hp, a.seeds[0])
    scored = (validation_task(task, hp.val_lines, a.seeds[0]) if a.split == "validation" else task)["test"]
    rules = surface_rules(scored)
    print(f"task {a.task}: {rows[0]['n_test']} {a.split} lines, classes {rows[0]['classes']}; seeds {a.seeds}"
          + (f"; set {sets}" if sets else ""))
    print("surface rules on those lines (seed %d): " % a.seeds[0] + ", ".join(f"{k} {v:.3f}" for k, v in rules.items()))
    print(md)
    print(f"{seconds:.0f} s ({cpu:.0f} s of CPU), loadavg at start {load:.2f}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(agg, out, f"GPT-1 heads: {a.task}, {a.split} lines ({len(a.seeds)} seeds)")
    if not a.no_mlflow:
        import mlflow

        from seqcast.tracking import model_run, use_store
        from tasks.text.tracking import DATASET, FAMILY

        use_store()
        with model_run(DATASET, "gpt_heads_curve", FAMILY, tags={"protocol": "P3", "task": a.task, "split": a.split}):
            mlflow.log_params({f"heads.{k}": v for k, v in hp.model_dump().items()} | {"seeds": str(a.seeds)})
            mlflow.log_metrics({f"P3_head_surface_{k}": v for k, v in rules.items()})
            for r in agg:
                mlflow.log_metrics({f"P3_head_{v}_accuracy": r[v] for v in VARIANTS if v in r}, step=r["n_train"])
            mlflow.log_text(md, "heads_curve.md")
            mlflow.log_artifact(str(out))
            mlflow.log_dict({"rows": rows, "aggregate": agg}, "heads_curve.json")
    print(json.dumps({"task": a.task, "split": a.split, "set": sets, "seeds": a.seeds, "surface_rules": rules,
                      "curve": agg, "seconds": seconds, "cpu_s": cpu,
                      "loadavg": load, "plot": str(out)}))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
