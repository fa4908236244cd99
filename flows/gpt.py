"""Prefect flows of the GPT text model (protocols.md P3).

``gpt_train_flow``: the language-model ladder (unigram, bigram, Kneser–Ney n-gram),
the GPT trained on Tiny Shakespeare (resumes from its checkpoint), samples, all
logged to MLflow; the model + tokenizer are registered as the pyfunc ``seqcast-gpt``.
``gpt_chat_sft_flow``: ChatML fine-tune of that model on Q&A built from the
pipeline's outputs, registered as ``seqcast-gpt-chat``.

    python -m flows.gpt train [--max-iters N] [--no-resume] [--no-register]
    python -m flows.gpt sft   [--max-iters N] [--no-resume] [--no-register]
"""

from __future__ import annotations

import os

# A shared CPU: spinning OpenMP threads wait for a descheduled sibling and stall every
# parallel region (measured here under load: ~3 s vs ~0.1 s per iteration). Sleep instead.
# Read once when torch loads its OpenMP runtime, hence before `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import logging
import math
from pathlib import Path

import torch
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from models.gpt import GPT, GPTConfig, model_from_checkpoint
from models.gpt_pyfunc import DEFAULT_PARAMS, PIP_REQUIREMENTS, save_slim
from models.ngram import ladder
from models.text_tokenizers import CHATML_SPECIALS, IM_END, BPETokenizer, CharTokenizer, load_tokenizer
from seqcast.paths import project_root
from tasks import chatml
from seqcast.gpt_config import GPTParams, load_gpt_params
from tasks.gpt_train import fp32_peak_flops, load_checkpoint, train, train_config
from tasks.text_data import estimate_loss, exact_loss, get_batch, load_corpus, split_text

log = logging.getLogger(__name__)
DATASET, FAMILY = "text", "gpt"


# ---------------------------------------------------------------- pure steps


def prepare_text(p: GPTParams, out_dir: Path) -> dict:
    """Corpus -> P3 split -> tokenizers (both saved as JSON) -> id tensors of the chosen one."""
    text = load_corpus()
    train_text, val_text = split_text(text)
    char_tok = CharTokenizer.train(text)  # nanoGPT's vocabulary: every character of the corpus
    bpe_tok = BPETokenizer.train(train_text, vocab_size=p.bpe_vocab_size)  # learnt on train only
    out_dir.mkdir(parents=True, exist_ok=True)
    char_tok.save(out_dir / "char_tokenizer.json")
    bpe_tok.save(out_dir / "bpe_tokenizer.json")
    tok = char_tok if p.tokenizer == "char" else bpe_tok
    tok.save(out_dir / "tokenizer.json")
    val_ids = tok.encode(val_text)
    return {
        "tok": tok,
        "train_text": train_text,
        "val_text": val_text,
        "vocab": char_tok.itos,
        "train": torch.tensor(tok.encode(train_text), dtype=torch.long),
        "val": torch.tensor(val_ids, dtype=torch.long),
        # loss per token x tokens per char = nats per char, the unit of every rung of the ladder
        "tokens_per_char": len(val_ids) / len(val_text),
        "bpe_chars_per_token": len(val_text) / len(bpe_tok.encode(val_text)),
    }


def samples(model: GPT, tok, p: GPTParams, seed: int = 0) -> dict[str, str]:
    s = p.sample
    idx = torch.tensor([tok.encode(s.prompt)])  # (1, T)
    return {
        f"T={t}": tok.decode(model.generate(idx, s.max_new_tokens, t, s.top_k, s.top_p, seed=seed)[0].tolist())
        for t in s.temperatures
    }


def log_pyfunc(ckpt_dir: Path, registered_name: str, alias: str, register: bool, params: dict | None = None) -> str:
    """Log the slim checkpoint + tokenizer as a models-from-code pyfunc; register it and set the alias."""
    import mlflow
    from mlflow.models import infer_signature

    import models

    code = Path(models.__file__).parent  # the code this process runs, wherever the project's data live
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(code / "gpt_pyfunc_entry.py"),
        artifacts={"checkpoint": str(ckpt_dir / "model.pt"), "tokenizer": str(ckpt_dir / "tokenizer.json")},
        code_paths=[str(code)],  # the pyfunc needs the model code only (models/ imports no tasks/)
        pip_requirements=PIP_REQUIREMENTS,
        signature=infer_signature(["ROMEO:"], ["text"], params={**DEFAULT_PARAMS, **(params or {})}),  # sampling settings per call
        registered_model_name=registered_name if register else None,
    )
    if register:
        mv = info.registered_model_version
        mlflow.MlflowClient().set_registered_model_alias(registered_name, alias, mv)
        print(f"registered {registered_name} v{mv} @{alias}")
    return info.model_uri


# ---------------------------------------------------------------- Prefect tasks


@task(cache_policy=NO_CACHE)
def prepare_task(p: GPTParams, out_dir: Path) -> dict:
    return prepare_text(p, out_dir)


@task(cache_policy=NO_CACHE)
def ladder_task(train_text: str, val_text: str, vocab: list[str], orders: list[int]) -> list[dict]:
    return ladder(train_text, val_text, vocab, orders)


@task(cache_policy=NO_CACHE)
def train_task(p: GPTParams, data: dict, out_dir: Path, resume: bool, max_iters: int | None) -> dict:
    tc = train_config(p, **({"max_iters": max_iters, "lr_decay_iters": max_iters} if max_iters else {}))
    mc = GPTConfig(vocab_size=data["tok"].vocab_size, **p.model.model_dump())
    T = mc.block_size

    def eval_fn(m):
        return {
            "train_loss": estimate_loss(m, data["train"], T, tc.batch_size, tc.eval_iters, seed=1),
            "val_loss": estimate_loss(m, data["val"], T, tc.batch_size, tc.eval_iters, seed=2),
        }

    res = train(mc, tc, lambda g: get_batch(data["train"], tc.batch_size, T, g), eval_fn, out_dir, resume=resume)
    model = res["model"].cpu().eval()
    val = exact_loss(model, data["val"], T) * data["tokens_per_char"]  # nats/char on the whole validation text
    res["val_loss"] = val
    res["mfu"] = model.flops_per_token() * res["timing"]["tokens_per_s"] / fp32_peak_flops(tc.threads or torch.get_num_threads())
    save_slim(model, out_dir / "model.pt", {"sampling": {"temperature": 0.8, "max_new_tokens": 200}})
    return res


@task(cache_policy=NO_CACHE)
def sample_task(model: GPT, tok, p: GPTParams) -> dict[str, str]:
    return samples(model, tok, p)


# ---------------------------------------------------------------- flows


@flow(name="gpt-train", log_prints=True)
def gpt_train_flow(resume: bool = True, max_iters: int | None = None, register_model: bool = True) -> dict:
    import mlflow

    from seqcast.tracking import model_run

    p = load_gpt_params()
    root = project_root()
    ckpt_dir, rep_dir = root / p.paths.checkpoints, root / p.paths.reports
    rep_dir.mkdir(parents=True, exist_ok=True)
    data = prepare_task(p, ckpt_dir)
    print(f"tokenizer {p.tokenizer}: vocab {data['tok'].vocab_size}; BPE {p.bpe_vocab_size}: {data['bpe_chars_per_token']:.2f} chars/token")

    rows = ladder_task(data["train_text"], data["val_text"], data["vocab"], p.ladder.kn_orders)
    for r in rows:
        with model_run(DATASET, r["model"], FAMILY, tags={"protocol": "P3", "rung": "ladder"}):
            mlflow.log_param("smoothing", r["detail"])
            mlflow.log_metrics({"P3_val_loss": r["val_loss"], "P3_perplexity": r["perplexity"]})

    res = train_task(p, data, ckpt_dir, resume, max_iters)
    model, timing = res["model"], res["timing"]
    rows.append({"model": "gpt", "val_loss": res["val_loss"], "perplexity": math.exp(res["val_loss"]),
                 "detail": f"{p.model.n_layer}L/{p.model.n_head}H/{p.model.n_embd}d, ctx {p.model.block_size}, {res['iter_num']} iters"})
    texts = sample_task(model, data["tok"], p)
    metrics = {
        "P3_val_loss": res["val_loss"],
        "P3_perplexity": math.exp(res["val_loss"]),
        "P3_tokens_per_s": timing["tokens_per_s"],
        "P3_ms_per_iter": timing["ms_per_iter"],
        "P3_mfu": res["mfu"],
        "P3_params": model.num_params(),
    }
    table = "\n".join(f"| {r['model']} | {r['val_loss']:.4f} | {r['perplexity']:.2f} | {r['detail']} |" for r in rows)
    print("| model | val loss (nats/char) | perplexity | detail |\n|---|---|---|---|\n" + table)
    (rep_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (rep_dir / "ladder.json").write_text(json.dumps(rows, indent=2))
    (rep_dir / "samples.json").write_text(json.dumps(texts, indent=2, ensure_ascii=False))
    (rep_dir / "loss_curve.json").write_text(json.dumps(res["history"], indent=2))

    with model_run(DATASET, "gpt", FAMILY, tags={"protocol": "P3", "device": res["device"], "dtype": timing["dtype"]}):
        mlflow.log_params({f"model.{k}": v for k, v in p.model.model_dump().items()})
        mlflow.log_params({f"train.{k}": v for k, v in p.train.model_dump().items()})
        mlflow.log_params({"tokenizer": p.tokenizer, "vocab_size": data["tok"].vocab_size, "seed": p.seed})
        for h in res["history"]:  # one point per evaluation, not per step
            mlflow.log_metrics({f"P3_{k}_curve": v for k, v in h.items() if k != "iter"}, step=h["iter"])
        mlflow.log_metrics(metrics)
        mlflow.log_table({k: [r[k] for r in rows] for k in ("model", "val_loss", "perplexity", "detail")}, "ladder.json")
        for t, s in texts.items():
            mlflow.log_text(s, f"samples/{t}.txt")
        for f in ("char_tokenizer.json", "bpe_tokenizer.json"):
            mlflow.log_artifact(str(ckpt_dir / f), "tokenizers")
        log_pyfunc(ckpt_dir, p.registry.model, p.registry.alias, register_model)
    for t, s in texts.items():
        print(f"--- sample {t}\n{s}")
    return metrics


def chat_tokenizer(base: CharTokenizer, sft_text: str) -> CharTokenizer:
    """The base vocabulary + unseen characters of the SFT data + UTF-8 byte fallback + ChatML tokens.

    Base ids are unchanged (new entries go after them), so base embeddings copy over row for row.
    """
    tok = CharTokenizer(list(base.chars), byte_fallback=True)
    tok.add_chars(sft_text.replace(chatml.IM_START, "").replace(IM_END, ""))
    tok.add_special_tokens(CHATML_SPECIALS)
    return tok


def grow_model(base: GPT, vocab_size: int, block_size: int, seed: int) -> GPT:
    """A copy of ``base`` with more token rows and positions; new rows start as GPT-2 init (N(0, 0.02))."""
    torch.manual_seed(seed)
    cfg = GPTConfig(**{**base.config.to_dict(), "vocab_size": vocab_size, "block_size": block_size})
    model = GPT(cfg)
    sd = model.state_dict()
    for k, v in base.state_dict().items():
        if k in ("wte.weight", "lm_head.weight"):
            sd[k][: v.size(0)] = v
        elif k == "wpe.weight":
            sd[k][: v.size(0)] = v
        else:
            sd[k] = v
    model.load_state_dict(sd)
    return model


@task(cache_policy=NO_CACHE)
def sft_data_task(p: GPTParams, base_tok: CharTokenizer, saved_tok: Path | None = None) -> dict:
    convs, source = chatml.build_sft_conversations(
        project_root(), load_corpus(), p.sft.n_conversations, p.seed, max_chars=p.sft.block_size
    )
    print(f"chat SFT data: {len(convs)} conversations from {source}")
    if saved_tok is not None:  # resuming: the checkpoint's ids; unseen characters fall back to bytes
        tok = load_tokenizer(saved_tok)
    else:
        tok = chat_tokenizer(base_tok, "".join(m["content"] for c in convs for m in c) + "".join(
            (chatml.SYSTEM_TERSE, chatml.SYSTEM_FULL, "systemuserassistant")))
    T = p.sft.block_size
    ex = [chatml.to_example(*chatml.encode_chat(c, tok), T) for c in convs]
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
        x, y, m = (t[i : i + batch] for t in xs)
        _, loss = model(x, y, loss_mask=m)
        tot += loss.item() * m.sum().item()
        n += m.sum().item()
    model.train(was)
    return tot / max(n, 1)


@flow(name="gpt-chat-sft", log_prints=True)
def gpt_chat_sft_flow(resume: bool = True, max_iters: int | None = None, register_model: bool = True) -> dict:
    import mlflow

    from seqcast.tracking import model_run

    p = load_gpt_params()
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
    model0 = grow_model(base, tok.vocab_size, s.block_size, p.seed)
    tc = train_config(p, batch_size=s.batch_size, max_iters=max_iters or s.max_iters, lr=s.lr, min_lr=s.min_lr,
                        warmup_iters=s.warmup_iters, lr_decay_iters=max_iters or s.max_iters,
                        eval_interval=s.eval_interval, eval_iters=s.eval_iters)
    tr, va = data["train"], data["val"]

    def batch_fn(g):
        ix = torch.randint(tr[0].size(0), (tc.batch_size,), generator=g)
        return tuple(t[ix] for t in tr)

    def eval_fn(m):
        return {"train_loss": masked_loss(m, tuple(t[: va[0].size(0)] for t in tr)), "val_loss": masked_loss(m, va)}

    res = train(model0.config, tc, batch_fn, eval_fn, out_dir, resume=resume, init_state=model0.state_dict())
    model = res["model"].cpu().eval()
    save_slim(model, out_dir / "model.pt", {"sampling": {"temperature": 0.0, "max_new_tokens": s.max_new_tokens}})

    demo = []
    for conv in data["convs"][:4]:  # held-out conversations: their first question under both system messages
        q = conv[1]["content"]
        for system in (chatml.SYSTEM_TERSE, chatml.SYSTEM_FULL):
            a = chatml.answer(model, tok, [{"role": "system", "content": system}, {"role": "user", "content": q}], s.max_new_tokens)
            demo.append({"system": system, "user": q, "assistant": a})
            print(f"[{system}] {q}\n  -> {a}")
    metrics = {"P3_sft_val_loss": masked_loss(model, va), "P3_sft_tokens_per_s": res["timing"]["tokens_per_s"]}
    rep = root / p.paths.reports
    rep.mkdir(parents=True, exist_ok=True)
    (rep / "chat_metrics.json").write_text(json.dumps(metrics, indent=2))
    (rep / "chat_demo.json").write_text(json.dumps(demo, indent=2, ensure_ascii=False))
    with model_run(DATASET, "gpt-chat", FAMILY, tags={"protocol": "P3", "sft_data": data["source"]}):
        mlflow.log_params({f"sft.{k}": v for k, v in s.model_dump().items()})
        mlflow.log_params({"vocab_size": tok.vocab_size, "n_conversations": len(data["convs"])})
        for h in res["history"]:
            mlflow.log_metrics({f"P3_sft_{k}_curve": v for k, v in h.items() if k != "iter"}, step=h["iter"])
        mlflow.log_metrics(metrics)
        mlflow.log_dict(demo, "chat_demo.json")
        log_pyfunc(out_dir, p.registry.chat_model, p.registry.alias, register_model,
                   {"temperature": 0.0, "max_new_tokens": s.max_new_tokens})
    return metrics


def main(argv: list[str] | None = None) -> int:
    from seqcast.env import configure

    configure()
    ap = argparse.ArgumentParser(prog="python -m flows.gpt", description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["train", "sft"])
    ap.add_argument("--max-iters", type=int, default=None, help="override params.yaml (quick runs)")
    ap.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    ap.add_argument("--no-register", action="store_true", help="log the model without registering it")
    a = ap.parse_args(argv)
    fn = gpt_train_flow if a.what == "train" else gpt_chat_sft_flow
    fn(resume=not a.no_resume, max_iters=a.max_iters, register_model=not a.no_register)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
