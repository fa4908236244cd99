"""Prefect flow of the GPT text model's pretraining and the ladder of language models (protocols.md P3).

``gpt_train_flow``: the ladder's count-based rungs (character unigram, bigram,
Kneser–Ney n-gram; word unigram and bigram), the recurrent RNN and LSTM LMs (trained
side by side, one core each), the GPT trained with the pipeline's recipe (resumes
from its checkpoint), samples, all logged to MLflow (experiment ``seqcast-text``) and
to DVC metrics; the model + tokenizer are registered as the pyfunc ``seqcast-gpt``.
The chat fine-tune on top of it is ``flows/text_chat.py``.

    python -m flows.text_gpt [--max-iters N] [--no-resume] [--no-register] [--no-ladder]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from models.text.gpt import GPT
from seqcast.config import load_params
from seqcast.errors import ParamsError
from seqcast.gpt_config import GPTParams
from seqcast.paths import project_root
from tasks.text import lm_ladder
from tasks.text.pretrain import prepare_text, pretrain, samples
from tasks.text.recurrent_lm import train_rungs
from tasks.text.tracking import DATASET, FAMILY, log_pyfunc

# ---------------------------------------------------------------- Prefect tasks


@task(cache_policy=NO_CACHE)
def prepare_task(p: GPTParams, out_dir: Path) -> dict:
    return prepare_text(p, out_dir)


@task(cache_policy=NO_CACHE)
def classical_rungs_task(train_text: str, val_text: str, vocab: list[str], orders: list[int]) -> list[dict]:
    return lm_ladder.classical_rungs(train_text, val_text, vocab, orders)


@task(cache_policy=NO_CACHE)
def recurrent_rungs_task(p: GPTParams, data: dict) -> list[dict]:
    """The RNN and LSTM LMs, trained at once in two single-thread processes."""
    jobs = {"rnn": p.ladder.rnn, "lstm": p.ladder.lstm}
    res = train_rungs(jobs, data["char_train"], data["char_val"], len(data["vocab"]), p.seed)
    return lm_ladder.with_perplexity([
        {"model": cell, "val_loss": r["val_loss"], "train_s": r["train_s"], "params": r["params"],
         "detail": f"{'Elman tanh RNN' if cell == 'rnn' else 'LSTM'} {jobs[cell].layers}x{jobs[cell].hidden}, "
                   f"{r['params'] / 1e6:.2f}M params, {r['iters']} iters x {jobs[cell].batch_size}x{jobs[cell].seq_len}, "
                   f"1 thread; state carried over the whole validation text"}
        for cell, r in res.items()
    ])


@task(cache_policy=NO_CACHE)
def train_task(p: GPTParams, data: dict, out_dir: Path, resume: bool, max_iters: int | None) -> dict:
    return pretrain(p, data, out_dir, resume, max_iters)


@task(cache_policy=NO_CACHE)
def sample_task(model: GPT, tok, p: GPTParams) -> dict[str, str]:
    return samples(model, tok, p)


def log_rungs(rows: list[dict]) -> None:
    import mlflow

    from seqcast.tracking import model_run

    for r in rows:
        with model_run(DATASET, r["model"], FAMILY, tags={"protocol": "P3", "rung": "ladder"}):
            mlflow.log_param("detail", r["detail"][:500])
            mlflow.log_metrics({"P3_val_loss": r["val_loss"], "P3_perplexity": r["perplexity"], "P3_train_s": r["train_s"]})


# ---------------------------------------------------------------- the flow


@flow(name="gpt-train", log_prints=True)
def gpt_train_flow(resume: bool = True, max_iters: int | None = None, register_model: bool = True,
                   ladder: bool = True) -> dict:
    """``ladder=False`` skips the count-based and recurrent rungs (a quick GPT-only run)."""
    import mlflow

    from seqcast.tracking import check_store, model_run

    check_store()  # an unreachable MLflow store fails here, before any training

    p = load_params().gpt
    root = project_root()
    ckpt_dir, rep_dir = root / p.paths.checkpoints, root / p.paths.reports
    rep_dir.mkdir(parents=True, exist_ok=True)
    data = prepare_task(p, ckpt_dir)
    print(f"tokenizer {p.tokenizer}: vocab {data['tok'].vocab_size}; BPE {p.bpe_vocab_size}: {data['bpe_chars_per_token']:.2f} chars/token")

    rows = []
    if ladder:
        rows += classical_rungs_task(data["train_text"], data["val_text"], data["vocab"], p.ladder.kn_orders)
        rows += recurrent_rungs_task(p, data)
        log_rungs(rows)

    res = train_task(p, data, ckpt_dir, resume, max_iters)
    model, timing, mp, tp = res["model"], res["timing"], res["model_params"], res["train_params"]
    rows.append({"model": "gpt", "val_loss": res["val_loss"], "perplexity": math.exp(res["val_loss"]),
                 "train_s": res["train_s"], "params": model.num_params(),
                 "detail": f"{mp.n_layer}L/{mp.n_head}H/{mp.n_embd}d, ctx {mp.block_size}, {model.num_params() / 1e6:.2f}M params, "
                           f"{tp.optimizer}/{tp.schedule}, {res['iter_num']} iters x {tp.batch_size}, {res['device']}"})
    rows = lm_ladder.sort_rows(rows)
    texts = sample_task(model, data["tok"], p)
    metrics = {
        "P3_val_loss": res["val_loss"],
        "P3_perplexity": math.exp(res["val_loss"]),
        "P3_train_s": res["train_s"],
        "P3_tokens_per_s": timing["tokens_per_s"],
        "P3_ms_per_iter": timing["ms_per_iter"],
        "P3_mfu": res["mfu"],
        "P3_params": model.num_params(),
    }
    table = lm_ladder.markdown(rows)
    print(table)
    (rep_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (rep_dir / "ladder.json").write_text(json.dumps(lm_ladder.as_metrics(rows), indent=2))
    (rep_dir / "ladder.md").write_text(table + "\n")
    (rep_dir / "samples.json").write_text(json.dumps(texts, indent=2, ensure_ascii=False))
    (rep_dir / "loss_curve.json").write_text(json.dumps(res["history"], indent=2))

    tags = {"protocol": "P3", "device": res["device"], "dtype": timing["dtype"]}
    with model_run(DATASET, "gpt", FAMILY, tags=tags):
        mlflow.log_params({f"model.{k}": v for k, v in mp.model_dump().items()})
        mlflow.log_params({f"train.{k}": v for k, v in tp.model_dump().items()})
        mlflow.log_params({"tokenizer": p.tokenizer, "vocab_size": data["tok"].vocab_size, "seed": p.seed})
        for h in res["history"]:  # one point per evaluation, not per step
            mlflow.log_metrics({f"P3_{k}_curve": v for k, v in h.items() if k != "iter"}, step=h["iter"])
        mlflow.log_metrics(metrics)
        mlflow.log_table({k: [r[k] for r in rows] for k in ("model", "val_loss", "perplexity", "train_s", "detail")},
                         "ladder.json")
        mlflow.log_text(table, "ladder.md")
        for t, s in texts.items():
            mlflow.log_text(s, f"samples/{t}.txt")
        for f in ("char_tokenizer.json", "bpe_tokenizer.json"):
            mlflow.log_artifact(str(ckpt_dir / f), "tokenizers")
        log_pyfunc(ckpt_dir, p.registry.model, p.registry.alias, register_model, p.sample.serve.model_dump())
    for t, s in texts.items():
        print(f"--- sample {t}\n{s}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    from seqcast.env import configure

    configure()
    ap = argparse.ArgumentParser(prog="python -m flows.text_gpt", description=__doc__.split("\n")[0])
    ap.add_argument("--max-iters", type=int, default=None, help="override params.yaml (quick runs)")
    ap.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    ap.add_argument("--no-register", action="store_true", help="log the model without registering it")
    ap.add_argument("--no-ladder", action="store_true", help="train the GPT only (skip the other rungs)")
    a = ap.parse_args(argv)
    if a.max_iters is not None and a.max_iters < 1:
        ap.error(f"--max-iters must be at least 1, not {a.max_iters}")
    try:  # a bad params.yaml: every broken rule, named by its key, before any work starts
        load_params()
    except ParamsError as err:
        print(err, file=sys.stderr)
        return 2
    gpt_train_flow(resume=not a.no_resume, max_iters=a.max_iters, register_model=not a.no_register,
                   ladder=not a.no_ladder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
