"""The chat fine-tune's recipe chosen on training phrasings only: fit on some, score the rest, over seeds.

    seqcast bench gpt_chat [--seeds 1337 ...] [--worlds 20] [--set KEY=VALUE ...]
                           [--checkpoint checkpoints/gpt] [--no-mlflow] [--quick]

The pretrained GPT of the ``gpt_train`` stage is fine-tuned as the ``gpt_chat_sft`` stage does
(``gpt.sft``), but on the ``fit`` part of the training forms only (tasks/text/phrasings.py: every
4th training form of each kind is the ``dev`` family and stays out). Each model is scored, exact
answers, on made-up worlds of seeds training never draws from: in the ``fit`` forms (what it was
trained on) and in the ``dev`` forms (phrasings it never read), also with made-up words opening the
question; and on questions no tool answers, in their training forms (refused, or answered with a
number of its own). The calls are decoded as the stage decodes them (``gpt.sft.constrain_calls``).
``--set max_iters=1200`` tries a value of ``gpt.sft`` (read through its schema) without editing
params.yaml. The held-out forms the ``gpt_chat_eval`` stage judges are never used here.

Prints the table by question kind (mean and spread over seeds); MLflow: one run (tags family=gpt,
model=gpt_chat_recipe) with the table. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import set_values

SCORES = ("fit", "dev", "dev_opener")


def with_opener(sets: list[tuple[list[dict], object]], seed: int) -> list[tuple[list[dict], object]]:
    """The same questions, each opened by one or two made-up words ("Qorvex, what is ..."): words no vocabulary holds."""
    from tasks.text.phrasings import filler_word

    rng = random.Random(seed)
    out = []
    for qs, world in sets:
        moved = []
        for q in qs:
            opener = " ".join(filler_word(rng) for _ in range(rng.randint(1, 2)))
            text = opener[0].upper() + opener[1:] + ", " + q["question"]
            msgs = [q["messages"][0], {**q["messages"][1], "content": text}]
            moved.append({**q, "question": text, "messages": msgs})
        out.append((moved, world))
    return out


def run_seed(p, base, base_tok, seed: int, worlds: int) -> dict:
    """Fine-tune on the ``fit`` forms with ``seed``; exact-answer accuracy in the fit, dev and dev + opener sets."""
    from tasks.text import chat_sft, tool_data
    from tasks.text.tool_chat import accuracy_on_sets

    ps = p.model_copy(update={"seed": seed})
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        res = chat_sft.fine_tune(ps, base, base_tok, Path(d), resume=False, progress=False, family="fit")
    train_s = time.perf_counter() - t0
    model, tok = res["model"], res["tok"]
    sets = {"fit": tool_data.synthetic_sets(worlds, seed + 5, "fit"),
            "dev": tool_data.synthetic_sets(worlds, seed + 5, "dev")}
    sets["dev_opener"] = with_opener(sets["dev"], seed + 7)
    sets["out_of_scope"] = [(tool_data.out_of_scope_questions(world, 2, seed + 11 + i, "train"), world)
                            for i, (_, world) in enumerate(sets["dev"])]
    row = {"seed": seed, "train_s": train_s, "vocab": tok.vocab_size,
           "val_loss": chat_sft.masked_loss(model, res["data"]["val"])}
    for name, s in sets.items():
        r = accuracy_on_sets(model, tok, s, p.sft.max_new_tokens, constrain=p.sft.constrain_calls)
        row[name] = {"accuracy": r["accuracy"], "call_accuracy": r["call_accuracy"], "by_kind": r["by_kind"], "n": r["n"],
                     "invented": r["invented"], "constrained": r["constrained"]}
        if name == "dev":
            row["dev_wrong"] = [{"question": x["question"], "call": x["call"], "answer": x["answer"]}
                                for x in r["rows"] if not x["correct"]][:10]
    return row


def _mean_sd(vals: list[float]) -> tuple[float, float]:
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def aggregate(rows: list[dict]) -> dict:
    """Mean and standard deviation over seeds of each score, overall and by question kind."""
    out = {}
    for name in SCORES:
        m, sd = _mean_sd([r[name]["accuracy"] for r in rows])
        kinds = sorted(rows[0][name]["by_kind"])
        out[name] = {"accuracy": m, "accuracy_sd": sd,
                     "by_kind": {k: _mean_sd([r[name]["by_kind"][k] for r in rows])[0] for k in kinds}}
    out["out_of_scope"] = {"accuracy": statistics.fmean(r["out_of_scope"]["accuracy"] for r in rows),
                           "invented": sum(r["out_of_scope"]["invented"] for r in rows),
                           "n": sum(r["out_of_scope"]["n"] for r in rows)}
    out["train_s"] = statistics.fmean(r["train_s"] for r in rows)
    return out


def markdown(agg: dict) -> str:
    kinds = sorted(agg["fit"]["by_kind"])
    lines = ["| kind | fit forms (trained) | dev forms (never trained on) | dev forms, made-up opener |", "|---|---|---|---|"]
    for k in kinds:
        lines.append(f"| {k} | " + " | ".join(f"{agg[s]['by_kind'][k]:.2f}" for s in SCORES) + " |")
    lines.append("| **all** | " + " | ".join(f"**{agg[s]['accuracy']:.3f} ± {agg[s]['accuracy_sd']:.3f}**"
                                             for s in SCORES) + " |")
    oos = agg["out_of_scope"]
    lines.append(f"\nQuestions no tool answers (training forms, {oos['n']}): {oos['accuracy']:.3f} refused, "
                 f"{oos['invented']} with an invented number.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from seqcast.env import configure

    configure()
    import torch
    from seqcast.config import load_params
    from seqcast.gpt_config import SFTParams
    from seqcast.paths import project_root

    p = load_params().gpt
    ap = argparse.ArgumentParser(prog="seqcast bench gpt_chat", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(project_root() / p.paths.checkpoints),
                    help="the pretrained GPT's folder (model.pt, tokenizer.json)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[p.seed])
    ap.add_argument("--worlds", type=int, default=20, help="made-up worlds scored per family (one question per kind each)")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override a gpt.sft value (schema-checked)")
    ap.add_argument("--quick", action="store_true", help="tiny settings (tests)")
    ap.add_argument("--no-mlflow", action="store_true")
    a = ap.parse_args(argv)

    from models.text.gpt import model_from_checkpoint
    from models.text.tokenizers import load_tokenizer
    from tasks.text.gpt_train import load_checkpoint

    sets = set_values(ap, a.set)
    sft = SFTParams.model_validate(p.sft.model_dump() | sets)
    if a.quick:
        sft = sft.model_copy(update={"n_conversations": 60, "batch_size": 4, "max_iters": 2, "eval_interval": 1,
                                     "eval_iters": 1, "max_new_tokens": 8})
    p = p.model_copy(update={"sft": sft})
    torch.set_num_threads(p.train.threads or torch.get_num_threads())
    base = model_from_checkpoint(load_checkpoint(Path(a.checkpoint) / "model.pt"))
    base_tok = load_tokenizer(Path(a.checkpoint) / "tokenizer.json")
    load, t0, c0 = os.getloadavg()[0], time.perf_counter(), time.process_time()
    rows = [run_seed(p, base, base_tok, s, a.worlds) for s in a.seeds]
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    agg = aggregate(rows)
    md = markdown(agg)
    print(f"gpt.sft recipe, seeds {a.seeds}, {a.worlds} made-up worlds per family"
          + (f"; set {sets}" if sets else "") + f"; training {agg['train_s']:.0f} s per seed")
    print(md)
    print(f"{seconds:.0f} s ({cpu:.0f} s of CPU), loadavg at start {load:.2f}")
    if not a.no_mlflow:
        import mlflow

        from seqcast.tracking import model_run, use_store
        from tasks.text.tracking import DATASET, FAMILY

        use_store()
        with model_run(DATASET, "gpt_chat_recipe", FAMILY, tags={"protocol": "P3", "split": "dev"}):
            mlflow.log_params({f"sft.{k}": v for k, v in sft.model_dump().items()} | {"seeds": str(a.seeds),
                                                                                       "worlds": a.worlds})
            mlflow.log_metrics({f"P3_chat_{s}_accuracy": agg[s]["accuracy"] for s in (*SCORES, "out_of_scope")}
                               | {f"P3_chat_{s}_accuracy_sd": agg[s]["accuracy_sd"] for s in SCORES}
                               | {"P3_chat_train_s": agg["train_s"]})
            mlflow.log_text(md, "chat_recipe.md")
            mlflow.log_dict({"rows": rows, "aggregate": agg}, "chat_recipe.json")
    print(json.dumps({"seeds": a.seeds, "worlds": a.worlds, "set": sets, "aggregate": agg, "rows": rows,
                      "seconds": seconds, "cpu_s": cpu, "loadavg": load, "quick": a.quick}))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
