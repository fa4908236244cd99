"""Pretraining the GPT on Tiny Shakespeare (P3): the text, the recipe for the device, the run, samples.

Pure functions; ``flows/text_gpt.py`` wraps them in Prefect tasks and logs what they return.
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.text.gpt import GPT, GPTConfig
from models.text.pyfunc import save_slim
from models.text.tokenizers import BPETokenizer, CharTokenizer
from seqcast.gpt_config import GPTParams
from tasks.text.gpt_train import fp32_peak_flops, pick_device, train
from tasks.text.corpus import batch_fn, estimate_loss, exact_loss, load_corpus, split_text


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
        "char_train": torch.tensor(char_tok.encode(train_text), dtype=torch.long),  # the recurrent rungs read characters
        "char_val": torch.tensor(char_tok.encode(val_text), dtype=torch.long),
        "train": torch.tensor(tok.encode(train_text), dtype=torch.long),
        "val": torch.tensor(val_ids, dtype=torch.long),
        # loss per token x tokens per char = nats per char, the unit of every rung of the ladder
        "tokens_per_char": len(val_ids) / len(val_text),
        "bpe_chars_per_token": len(val_text) / len(bpe_tok.encode(val_text)),
    }


def pretrain(p: GPTParams, data: dict, out_dir: Path, resume: bool = True, max_iters: int | None = None) -> dict:
    """Train the stage's recipe (the ``gpu`` one on a GPU); exact validation loss; slim checkpoint.

    Returns the result of :func:`tasks.text.gpt_train.train` plus ``val_loss`` (nats/char),
    ``mfu`` (share of the FP32 peak on a CPU), the recipe used and the device.
    """
    device = pick_device(p.train.device)
    mp, tp = p.recipe(device)
    if max_iters:  # quick runs: the whole schedule shrinks with it
        tp = tp.with_(max_iters=max_iters, lr_decay_iters=max_iters, warmup_iters=min(tp.warmup_iters, max_iters // 10))
    mc = GPTConfig(vocab_size=data["tok"].vocab_size, **mp.model_dump())
    T = mc.block_size

    def eval_fn(m):
        return {
            "train_loss": estimate_loss(m, data["train"], T, tp.batch_size, tp.eval_iters, seed=1),
            "val_loss": estimate_loss(m, data["val"], T, tp.batch_size, tp.eval_iters, seed=2),
        }

    res = train(mc, tp, batch_fn(data["train"], tp, T), eval_fn, out_dir, seed=p.seed, resume=resume)
    res["val_loss"] = exact_loss(res["model"], data["val"], T) * data["tokens_per_char"]  # nats/char, whole val text
    model = res["model"] = res["model"].cpu().eval()
    threads = tp.threads or torch.get_num_threads()
    res["mfu"] = model.flops_per_token() * res["timing"]["tokens_per_s"] / fp32_peak_flops(threads)
    res["model_params"], res["train_params"] = mp, tp
    save_slim(model, out_dir / "model.pt", {"sampling": p.sample.serve.model_dump()})
    return res


def samples(model: GPT, tok, p: GPTParams, seed: int = 0) -> dict[str, str]:
    s = p.sample
    idx = torch.tensor([tok.encode(s.prompt)])  # (1, T)
    return {
        f"T={t}": tok.decode(model.generate(idx, s.max_new_tokens, t, s.top_k, s.top_p, seed=seed)[0].tolist())
        for t in s.temperatures
    }
