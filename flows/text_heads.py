"""Prefect flow of the GPT-1 task heads (tasks/text/heads.py) on the pretrained model of ``flows/text_gpt.py``.

The task of ``gpt.heads.task`` (default: is a line as written or are its words shuffled, the
punctuation and the line-start capital kept in place so that only the word order differs; test
lines from the text the pretraining never read; ``surface_rules`` in the report: the accuracy of
rules that read no word order, near 0.5): majority class, frozen decoder +
linear head, full fine-tune with the auxiliary LM loss, the same network from scratch, and on the
acceptability task the likelihood heads of those three networks (``score``, ``score_finetune``,
``score_scratch``: a line's log-probability against orders of its own words) —
with every labelled line (``max_train_lines``) and with the fewest of ``curve_sizes``
(what pretraining buys when labels are few; the whole curve over sizes and seeds is
``seqcast bench gpt_heads``). One MLflow run per variant (tags family=gpt,
model=gpt_head_<variant>); ``reports/gpt/heads.json`` for DVC.

    python -m flows.text_heads
"""

from __future__ import annotations

import argparse
import json
import time

from prefect import flow

from models.text.gpt import model_from_checkpoint
from models.text.tokenizers import load_tokenizer
from seqcast.config import load_params
from seqcast.paths import project_root
from tasks.text.heads import SCORED, lower_words, make_task, run_variants, surface_rules
from tasks.text.gpt_train import load_checkpoint
from tasks.text.corpus import load_corpus
from tasks.text.tracking import DATASET, FAMILY

VARIANTS = ("majority", "linear", "finetune", "scratch")


@flow(name="gpt-heads", log_prints=True)
def gpt_heads_flow() -> dict:
    import mlflow
    import torch

    from seqcast.tracking import model_run

    p = load_params().gpt
    root = project_root()
    hp = p.heads
    torch.set_num_threads(hp.threads or p.train.threads or torch.get_num_threads())
    base_dir = root / p.paths.checkpoints
    base = model_from_checkpoint(load_checkpoint(base_dir / "model.pt"))
    tok = load_tokenizer(base_dir / "tokenizer.json")
    t0 = time.perf_counter()
    text = load_corpus()
    task = make_task(text, hp, p.seed)
    lower, cache = lower_words(text), {}
    res = run_variants(base, tok, task, hp, p.seed, lower=lower, cache=cache)
    variants = [v for v in VARIANTS + tuple(SCORED) if v in res]  # those the task has (run_variants decides)
    few = run_variants(base, tok, task, hp, p.seed, min(hp.curve_sizes), lower=lower, cache=cache)
    res["few"] = {k: few[k] for k in ("n_train", "iters", *variants)}
    res["task"], res["seconds"] = hp.task, time.perf_counter() - t0
    res["surface_rules"] = surface_rules(task["test"]) if hp.task == "acceptability" else {}
    for v in variants:
        print(f"{hp.task} head {v}: accuracy {res[v]:.3f} with {res['n_train']} labelled lines, "
              f"{few[v]:.3f} with {few['n_train']}")
    rep = root / p.paths.reports
    rep.mkdir(parents=True, exist_ok=True)
    (rep / "heads.json").write_text(json.dumps(res, indent=2))
    for v in variants:
        with model_run(DATASET, f"gpt_head_{v}", FAMILY, tags={"protocol": "P3", "task": hp.task}):
            mlflow.log_params({f"heads.{k}": val for k, val in hp.model_dump().items()})
            mlflow.log_params({"n_train": res["n_train"], "n_test": res["n_test"], "n_train_few": few["n_train"]})
            mlflow.log_metrics({"P3_head_accuracy": res[v], "P3_head_accuracy_few": few[v]}
                               | {f"P3_head_surface_{k}": a for k, a in res["surface_rules"].items()})
    return res


def main(argv: list[str] | None = None) -> int:
    from seqcast.env import configure

    configure()
    ap = argparse.ArgumentParser(prog="python -m flows.text_heads", description=__doc__.split("\n")[0])
    ap.parse_args(argv)
    gpt_heads_flow()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
