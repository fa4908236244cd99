"""Prefect flow of the GPT's chat fine-tune (ChatML), on top of the pretrained model of ``flows/gpt.py``.

``gpt_chat_sft_flow``: the base model grows new token rows (ChatML tokens, characters
of the Q&A) and a longer context, then is fine-tuned on questions and answers built
from the pipeline's outputs with the loss on assistant tokens only; registered as
``seqcast-gpt-chat``.

    python -m flows.gpt_chat [--max-iters N] [--no-resume] [--no-register]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.gpt import DATASET, FAMILY, log_pyfunc
from models.gpt import GPT, grow_model, model_from_checkpoint
from models.gpt_pyfunc import save_slim
from models.text_tokenizers import CHATML_SPECIALS, IM_END, CharTokenizer, load_tokenizer
from seqcast.gpt_config import GPTParams, TrainParams, load_gpt_params
from seqcast.paths import project_root
from tasks import chatml
from tasks.gpt_train import load_checkpoint, train
from tasks.text_data import load_corpus


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
    tok.add_chars(sft_text.replace(chatml.IM_START, "").replace(IM_END, ""))
    tok.add_special_tokens(CHATML_SPECIALS)
    return tok


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

    from seqcast.tracking import check_store, model_run

    check_store()  # an unreachable MLflow store fails here, before any training

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
    tc = sft_recipe(p, max_iters)
    tr, va = data["train"], data["val"]

    def batch_fn(g):
        ix = torch.randint(tr[0].size(0), (tc.batch_size,), generator=g)
        return tuple(t[ix] for t in tr)

    def eval_fn(m):
        return {"train_loss": masked_loss(m, tuple(t[: va[0].size(0)] for t in tr)), "val_loss": masked_loss(m, va)}

    res = train(model0.config, tc, batch_fn, eval_fn, out_dir, seed=p.seed, resume=resume, init_state=model0.state_dict())
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
    ap = argparse.ArgumentParser(prog="python -m flows.gpt_chat", description=__doc__.split("\n")[0])
    ap.add_argument("--max-iters", type=int, default=None, help="override params.yaml (quick runs)")
    ap.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    ap.add_argument("--no-register", action="store_true", help="log the model without registering it")
    a = ap.parse_args(argv)
    gpt_chat_sft_flow(resume=not a.no_resume, max_iters=a.max_iters, register_model=not a.no_register)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
