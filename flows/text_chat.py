"""Prefect flow of the GPT's chat fine-tune with tools (ChatML), on top of the pretrained model of ``flows/text_gpt.py``.

``gpt_chat_sft_flow``: tool-use conversations about made-up worlds, phrased with the
training forms of the question grammar (``tasks/text/tool_data.py``,
``tasks/text/phrasings.py``); a word tokenizer whose unknown words are copy slots; the
pretrained GPT's layers under a new embedding and head; loss on assistant tokens only,
batches cut to their longest conversation. Then it is judged on made-up worlds of
unseen seeds (``reports/gpt/chat_metrics.json``) and registered as ``seqcast-gpt-chat``.
It reads no report of the pipeline: the judgement on the real reports is the next
stage, ``flows/text_chat_eval.py``, so a new dataset needs no new fine-tune.

    python -m flows.text_chat [--max-iters N] [--no-resume] [--no-register]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from prefect import flow

from models.text.gpt import model_from_checkpoint
from models.text.pyfunc import save_slim
from models.text.tokenizers import load_tokenizer
from seqcast.config import load_params
from seqcast.paths import project_root
from tasks.text import chat_sft, tool_data
from tasks.text.gpt_train import load_checkpoint
from tasks.text.tool_chat import accuracy_on_sets
from tasks.text.tracking import DATASET, FAMILY, log_pyfunc


@flow(name="gpt-chat-sft", log_prints=True)
def gpt_chat_sft_flow(resume: bool = True, max_iters: int | None = None, register_model: bool = True) -> dict:
    import mlflow

    from seqcast.tracking import check_store, model_run

    check_store()  # an unreachable MLflow store fails here, before any training

    p = load_params().gpt
    s = p.sft
    root = project_root()
    base_dir, out_dir = root / p.paths.checkpoints, root / p.paths.chat_checkpoints
    base = model_from_checkpoint(load_checkpoint(base_dir / "model.pt"))
    resuming = resume and (out_dir / "ckpt.pt").exists() and (out_dir / "tokenizer.json").exists()
    cpu0 = time.process_time()
    res = chat_sft.fine_tune(p, base, load_tokenizer(base_dir / "tokenizer.json"), out_dir, max_iters=max_iters,
                             resume=resume, saved_tok=out_dir / "tokenizer.json" if resuming else None)
    model, tok, data = res["model"], res["tok"], res["data"]
    print(f"chat SFT data: {data['n']} of {data['of']} synthetic tool-use conversations fit the context of "
          f"{s.block_size} tokens; {s.tokenizer} tokenizer, vocabulary {tok.vocab_size}")
    save_slim(model, out_dir / "model.pt", {"sampling": {"temperature": 0.0, "max_new_tokens": s.max_new_tokens}})
    synthetic = accuracy_on_sets(model, tok, tool_data.synthetic_sets(s.eval_worlds, p.seed), s.max_new_tokens,
                                 constrain=s.constrain_calls)
    metrics = {"P3_sft_val_loss": chat_sft.masked_loss(model, data["val"]), "P3_sft_tokens_per_s": res["tokens_per_s"],
               "P3_sft_train_s": res["train_s"], "P3_sft_cpu_s": time.process_time() - cpu0,
               "P3_sft_loadavg": os.getloadavg()[0],
               "P3_chat_synthetic_accuracy": synthetic["accuracy"], "P3_chat_synthetic_call_accuracy": synthetic["call_accuracy"]}
    for k, v in metrics.items():
        print(f"{k}: {v:.4g}")
    rep = root / p.paths.reports
    rep.mkdir(parents=True, exist_ok=True)
    (rep / "chat_metrics.json").write_text(json.dumps(metrics, indent=2))
    with model_run(DATASET, "gpt-chat", FAMILY, tags={"protocol": "P3", "step": "sft", "tokenizer": s.tokenizer,
                                                      "init": s.init}):
        mlflow.log_params({f"sft.{k}": v for k, v in s.model_dump().items()})
        mlflow.log_params({"vocab_size": tok.vocab_size, "n_conversations": data["n"]})
        for h in res["history"]:
            mlflow.log_metrics({f"P3_sft_{k}_curve": v for k, v in h.items() if k != "iter"}, step=h["iter"])
        mlflow.log_metrics(metrics)
        mlflow.log_dict({"synthetic": synthetic["rows"]}, "chat_synthetic.json")
        log_pyfunc(out_dir, p.registry.chat_model, p.registry.alias, register_model,
                   {"temperature": 0.0, "max_new_tokens": s.max_new_tokens})
    return metrics


def main(argv: list[str] | None = None) -> int:
    from seqcast.env import configure

    configure()
    ap = argparse.ArgumentParser(prog="python -m flows.text_chat", description=__doc__.split("\n")[0])
    ap.add_argument("--max-iters", type=int, default=None, help="override params.yaml (quick runs)")
    ap.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    ap.add_argument("--no-register", action="store_true", help="log the model without registering it")
    a = ap.parse_args(argv)
    gpt_chat_sft_flow(resume=not a.no_resume, max_iters=a.max_iters, register_model=not a.no_register)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
