"""The chat fine-tune's pure steps: its tokenizer, its data, its first weights, its recipe, its loss.

Two tokenizers (``gpt.sft.tokenizer``):

- ``word`` (the default): the words of the training conversations (a piece in at least
  ``min_word_count`` of them) + copy slots for every other piece
  (:mod:`models.text.word_tokenizer`); the model starts from the pretrained GPT's layers
  with a new embedding and head (:func:`models.text.gpt.transfer_body`);
- ``char``: the pretrained model's characters + the unseen ones + byte fallback, its
  embedding rows grown (:func:`models.text.gpt.grow_model`), optionally a copy head.

``init: scratch`` trains the same network from a random start (the measure of what the
pretraining gives).
"""

from __future__ import annotations

from collections import Counter

import torch

from models.text.gpt import GPT, GPTConfig, grow_model, transfer_body
from models.text.tokenizers import CHATML_SPECIALS, IM_END, CharTokenizer
from models.text.word_tokenizer import WordTokenizer, pieces
from seqcast.gpt_config import GPTParams, TrainParams
from tasks.text import chatml, tool_data

ROLES = ("system", "user", "assistant", "tool")


def word_tokenizer(convs: list[list[dict]], min_count: int, n_slots: int) -> WordTokenizer:
    """Words: pieces found in at least ``min_count`` conversations (made-up names are rarer: they are copied)."""
    seen = Counter()
    for c in convs:
        seen.update({p for m in c for _, p in pieces(m["content"])})
    words = [w for w, n in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count]
    return WordTokenizer.train([*words, *ROLES, "\n"], n_slots, CHATML_SPECIALS)


def char_tokenizer(base: CharTokenizer, convs: list[list[dict]]) -> CharTokenizer:
    """The base vocabulary + unseen characters of the SFT data + UTF-8 byte fallback + ChatML tokens.

    Base ids are unchanged (new entries go after them), so base embeddings copy over row for row.
    """
    text = "".join(m["content"] for c in convs for m in c)
    tok = CharTokenizer(list(base.chars), byte_fallback=True)
    tok.add_chars(tool_data.training_alphabet() + text.replace(chatml.IM_START, "").replace(IM_END, ""))
    tok.add_special_tokens(CHATML_SPECIALS)
    return tok


def chat_tokenizer(p: GPTParams, base_tok, convs: list[list[dict]]):
    if p.sft.tokenizer == "word":
        return word_tokenizer(convs, p.sft.min_word_count, p.sft.n_slots)
    if not isinstance(base_tok, CharTokenizer):
        raise ValueError("gpt.sft.tokenizer char extends the character tokenizer (gpt.tokenizer: char)")
    return char_tokenizer(base_tok, convs)


def examples(convs: list[list[dict]], tok, block_size: int) -> dict:
    """(x, y, mask) tensors of the conversations that fit the context whole (the system message must stay in it);
    the first tenth is the validation part."""
    encoded = [chatml.encode_chat(c, tok) for c in convs]
    keep = [i for i, (ids, _) in enumerate(encoded) if len(ids) <= block_size + 1]
    if not keep:
        raise ValueError(f"no conversation fits a context of {block_size} tokens (gpt.sft.block_size); "
                         f"the shortest has {min(len(ids) for ids, _ in encoded) - 1}")
    x, y, m = (torch.stack(t) for t in zip(*(chatml.to_example(*encoded[i], block_size) for i in keep)))
    n_val = max(1, len(keep) // 10)
    return {"n": len(keep), "of": len(convs), "train": (x[n_val:], y[n_val:], m[n_val:]),
            "val": (x[:n_val], y[:n_val], m[:n_val])}


def first_model(p: GPTParams, base: GPT, vocab_size: int) -> GPT:
    """The network the fine-tune starts from: the pretrained layers (``init: pretrained``) or a fresh copy."""
    s = p.sft
    if s.init == "scratch":
        torch.manual_seed(p.seed)
        return GPT(GPTConfig(**{**base.config.to_dict(), "vocab_size": vocab_size, "block_size": s.block_size,
                                "copy_ngram": s.copy_ngram}))
    if s.tokenizer == "word":
        return transfer_body(base, vocab_size, s.block_size, p.seed)
    return grow_model(base, vocab_size, s.block_size, p.seed, s.copy_ngram)


def sft_recipe(p: GPTParams, max_iters: int | None = None) -> TrainParams:
    """The fine-tune's schedule: AdamW, cosine, ``gpt.sft`` values (a Muon-pretrained model too:
    a few hundred small steps on top of it need no orthogonalised updates)."""
    s, n = p.sft, max_iters or p.sft.max_iters
    return p.train.with_(optimizer="adamw", schedule="cosine", batch_size=s.batch_size, grad_accum=1, max_iters=n,
                         lr=s.lr, min_lr=s.min_lr, warmup_iters=min(s.warmup_iters, n // 2), lr_decay_iters=n,
                         eval_interval=s.eval_interval, eval_iters=s.eval_iters, compile=False)


@torch.no_grad()
def masked_loss(model: GPT, xs: tuple[torch.Tensor, ...], batch: int = 64) -> float:
    """Mean cross-entropy over the assistant tokens of ``xs`` (x, y, mask)."""
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


def fine_tune(p: GPTParams, base: GPT, base_tok, out_dir, *, max_iters: int | None = None, resume: bool = True,
              saved_tok=None, progress: bool = True, family: str = "train") -> dict:
    """The whole fine-tune: data (phrasings of ``family``: ``fit`` where a recipe is chosen), tokenizer
    (``saved_tok``: a resumed run's), first model, training.

    Returns the trainer's result (``model``, ``history``, ``timing``, ``train_s``) + ``tok`` and the ``data``.
    """
    from models.text.tokenizers import load_tokenizer
    from tasks.text.gpt_train import train

    convs = tool_data.training_conversations(p.sft.n_conversations, p.seed, family)
    tok = load_tokenizer(saved_tok) if saved_tok is not None else chat_tokenizer(p, base_tok, convs)
    data = examples(convs, tok, p.sft.block_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(out_dir / "tokenizer.json")  # before training: a resumed run must map text to the same ids
    model0 = first_model(p, base, tok.vocab_size)
    tc = sft_recipe(p, max_iters)
    tr, va = data["train"], data["val"]

    def batch_fn(g):
        ix = torch.randint(tr[0].size(0), (tc.batch_size,), generator=g)
        return chatml.trim_padding(tuple(t[ix] for t in tr))

    def eval_fn(m):
        return {"train_loss": masked_loss(m, tuple(t[: va[0].size(0)] for t in tr)), "val_loss": masked_loss(m, va)}

    res = train(model0.config, tc, batch_fn, eval_fn, out_dir, seed=p.seed, resume=resume,
                init_state=model0.state_dict(), progress=progress)
    res["model"] = res["model"].cpu().eval()
    tokens = float((tr[1] >= 0).sum(1).float().mean()) * tc.batch_size  # per iteration, padding excluded
    res["tokens_per_s"] = tokens / res["timing"]["ms_per_iter"] * 1e3
    return {**res, "tok": tok, "data": data}
