"""Prefect flow of the GPT's chat fine-tune with tools (ChatML), on top of the pretrained model of ``flows/text_gpt.py``.

``gpt_chat_sft_flow``: the base model grows new token rows (ChatML tokens, every
printable character), a longer context and a copy head (``gpt.sft.copy_ngram``,
:mod:`models.text.copy_head`), then is fine-tuned on tool-use
conversations (``tasks/text/tool_data.py``: made-up series, models and metrics, so that it
learns to copy names into calls and results into answers), loss on assistant
tokens only; batches are cut to their longest conversation. Then it is judged on held-out questions about the pipeline's real
reports (``paths.reports``: never seen in training), with the tools and with the
tools disabled, and the temperature experiment of the lecture is run (the same
question five times at temperature 1.0 and at 0.0). Registered as ``seqcast-gpt-chat``.

    python -m flows.text_chat [--max-iters N] [--no-resume] [--no-register]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from models.text.gpt import GPT, grow_model, model_from_checkpoint
from models.text.pyfunc import save_slim
from models.text.tokenizers import CHATML_SPECIALS, IM_END, CharTokenizer, load_tokenizer
from seqcast.config import load_params
from seqcast.gpt_config import GPTParams, TrainParams
from seqcast.paths import project_root
from tasks.text import chatml, tool_data
from tasks.text.gpt_train import load_checkpoint, train
from tasks.text.tool_chat import accuracy_on_sets, chat_turn
from tasks.text.tools import Reports, Toolbox
from tasks.text.tracking import DATASET, FAMILY, log_pyfunc


def sft_recipe(p: GPTParams, max_iters: int | None = None) -> TrainParams:
    """The fine-tune's schedule: AdamW, cosine, ``gpt.sft`` values (a Muon-pretrained model too:
    a few hundred small steps on top of it need no orthogonalised updates)."""
    s, n = p.sft, max_iters or p.sft.max_iters
    return p.train.with_(optimizer="adamw", schedule="cosine", batch_size=s.batch_size, grad_accum=1, max_iters=n,
                         lr=s.lr, min_lr=s.min_lr, warmup_iters=s.warmup_iters, lr_decay_iters=n,
                         eval_interval=s.eval_interval, eval_iters=s.eval_iters, compile=False)


def chat_tokenizer(base: CharTokenizer, sft_text: str) -> CharTokenizer:
    """The base vocabulary + unseen characters of the SFT data + UTF-8 byte fallback + ChatML tokens.

    Base ids are unchanged (new entries go after them), so base embeddings copy over row for row.
    """
    tok = CharTokenizer(list(base.chars), byte_fallback=True)
    tok.add_chars(tool_data.training_alphabet() + sft_text.replace(chatml.IM_START, "").replace(IM_END, ""))
    tok.add_special_tokens(CHATML_SPECIALS)
    return tok


@task(cache_policy=NO_CACHE)
def sft_data_task(p: GPTParams, base_tok: CharTokenizer, saved_tok: Path | None = None) -> dict:
    convs = tool_data.training_conversations(p.sft.n_conversations, p.seed)
    source = "synthetic tool-use conversations (tasks/text/tool_data.py)"
    print(f"chat SFT data: {len(convs)} {source}")
    if saved_tok is not None:  # resuming: the checkpoint's ids; unseen characters fall back to bytes
        tok = load_tokenizer(saved_tok)
    else:
        tok = chat_tokenizer(base_tok, "".join(m["content"] for c in convs for m in c))
    T = p.sft.block_size
    encoded = [chatml.encode_chat(c, tok) for c in convs]
    keep = [i for i, (ids, _) in enumerate(encoded) if len(ids) <= T + 1]  # whole conversations only: the system
    convs = [convs[i] for i in keep]  # message must stay in context
    ex = [chatml.to_example(*encoded[i], T) for i in keep]
    print(f"chat SFT data: {len(keep)} of {len(encoded)} conversations fit the context of {T} tokens")
    x, y, m = (torch.stack(t) for t in zip(*ex))  # (N, T) each
    n_val = max(1, len(convs) // 10)
    return {"tok": tok, "source": source, "convs": convs, "n_val": n_val,
            "train": (x[n_val:], y[n_val:], m[n_val:]), "val": (x[:n_val], y[:n_val], m[:n_val])}


@torch.no_grad()
def masked_loss(model: GPT, xs: tuple[torch.Tensor, ...], batch: int = 32) -> float:
    was = model.training
    model.eval()
    tot = n = 0.0
    for i in range(0, xs[0].size(0), batch):
        x, y, m = chatml.trim_padding(tuple(t[i : i + batch] for t in xs))
        _, loss = model(x, y, loss_mask=m)
        tot += loss.item() * m.sum().item()
        n += m.sum().item()
    model.train(was)
    return tot / max(n, 1)


@flow(name="gpt-chat-sft", log_prints=True)
def gpt_chat_sft_flow(resume: bool = True, max_iters: int | None = None, register_model: bool = True) -> dict:
    import mlflow

    from seqcast.tracking import check_store, model_run

    check_store()  # an unreachable MLflow store fails here, before any training

    p = load_params().gpt
    root = project_root()
    base_dir, out_dir = root / p.paths.checkpoints, root / p.paths.chat_checkpoints
    base_tok = load_tokenizer(base_dir / "tokenizer.json")
    if not isinstance(base_tok, CharTokenizer):
        raise ValueError("the chat fine-tune extends the character tokenizer (gpt.tokenizer: char)")
    base = model_from_checkpoint(load_checkpoint(base_dir / "model.pt"))
    resuming = resume and (out_dir / "ckpt.pt").exists() and (out_dir / "tokenizer.json").exists()
    data = sft_data_task(p, base_tok, out_dir / "tokenizer.json" if resuming else None)
    tok = data["tok"]
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(out_dir / "tokenizer.json")  # before training: a resumed run must map text to the same ids
    s = p.sft
    model0 = grow_model(base, tok.vocab_size, s.block_size, p.seed, s.copy_ngram)
    tc = sft_recipe(p, max_iters)
    tr, va = data["train"], data["val"]

    def batch_fn(g):
        ix = torch.randint(tr[0].size(0), (tc.batch_size,), generator=g)
        return chatml.trim_padding(tuple(t[ix] for t in tr))

    def eval_fn(m):
        return {"train_loss": masked_loss(m, tuple(t[: va[0].size(0)] for t in tr)), "val_loss": masked_loss(m, va)}

    res = train(model0.config, tc, batch_fn, eval_fn, out_dir, seed=p.seed, resume=resume, init_state=model0.state_dict())
    model = res["model"].cpu().eval()
    save_slim(model, out_dir / "model.pt", {"sampling": {"temperature": 0.0, "max_new_tokens": s.max_new_tokens}})

    reports = Reports.load(root / load_params().paths.reports)
    ev = evaluate_chat(model, tok, reports, p)
    temp_rows = temperature_experiment(model, tok, Toolbox(reports), p)
    conv_tokens = float((tr[1] >= 0).sum(1).float().mean()) * tc.batch_size  # per iteration, padding excluded
    metrics = {"P3_sft_val_loss": masked_loss(model, va), "P3_sft_tokens_per_s": conv_tokens / res["timing"]["ms_per_iter"] * 1e3,
               "P3_sft_train_s": res["train_s"]}
    for name, e in ev.items():
        metrics[f"P3_chat_{name}_accuracy"] = e["accuracy"]
        metrics[f"P3_chat_{name}_call_accuracy"] = e["call_accuracy"]
    metrics["P3_chat_temperature_distinct_t1"] = len({r["answer"] for r in temp_rows if r["temperature"] == 1.0})
    metrics["P3_chat_temperature_distinct_t0"] = len({r["answer"] for r in temp_rows if r["temperature"] == 0.0})
    for k, v in metrics.items():
        print(f"{k}: {v:.4g}")
    rep = root / p.paths.reports
    rep.mkdir(parents=True, exist_ok=True)
    (rep / "chat_metrics.json").write_text(json.dumps(metrics, indent=2))
    demo = {name: e["rows"] for name, e in ev.items()}
    (rep / "chat_demo.json").write_text(json.dumps(demo, indent=2, ensure_ascii=False))
    (rep / "chat_temperature.json").write_text(json.dumps(temp_rows, indent=2, ensure_ascii=False))
    with model_run(DATASET, "gpt-chat", FAMILY, tags={"protocol": "P3", "sft_data": data["source"], "step": "sft"}):
        mlflow.log_params({f"sft.{k}": v for k, v in s.model_dump().items()})
        mlflow.log_params({"vocab_size": tok.vocab_size, "n_conversations": len(data["convs"])})
        for h in res["history"]:
            mlflow.log_metrics({f"P3_sft_{k}_curve": v for k, v in h.items() if k != "iter"}, step=h["iter"])
        mlflow.log_metrics(metrics)
        mlflow.log_dict(demo, "chat_demo.json")
        mlflow.log_table({k: [r[k] for r in temp_rows] for k in temp_rows[0]}, "temperature_experiment.json")
        log_pyfunc(out_dir, p.registry.chat_model, p.registry.alias, register_model,
                   {"temperature": 0.0, "max_new_tokens": s.max_new_tokens})
    return metrics


def evaluate_chat(model: GPT, tok, reports: Reports, p: GPTParams) -> dict[str, dict]:
    """Exact-answer accuracy on held-out questions: real reports with and without tools, made-up worlds with tools."""
    sets = tool_data.heldout_sets(reports, p.sft.eval_per_form, p.sft.eval_worlds, p.seed)
    n = p.sft.max_new_tokens
    return {"real": accuracy_on_sets(model, tok, sets["real"], n),
            "real_no_tools": accuracy_on_sets(model, tok, sets["real"], n, enabled=False),
            "synthetic": accuracy_on_sets(model, tok, sets["synthetic"], n)}


def temperature_experiment(model: GPT, tok, toolbox: Toolbox, p: GPTParams) -> list[dict]:
    """The lecture's slide: one question, ``runs`` times at each temperature (sampling seeds 0..runs-1)."""
    rows = []
    for t in p.sft.temperatures:
        for run in range(p.sft.temperature_runs):
            msgs = [{"role": "system", "content": tool_data.SYSTEM_FULL},
                    {"role": "user", "content": p.sft.temperature_question}]
            ans = chat_turn(model, tok, msgs, toolbox, p.sft.max_new_tokens, temperature=t, seed=run)
            rows.append({"temperature": t, "run": run, "answer": ans,
                         "call": next((m["content"] for m in msgs[2:] if m["role"] == "assistant"), "")})
    return rows


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
