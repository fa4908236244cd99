"""A tiny word-level chat model that has really learnt one question kind (a few seconds of training):
what the chat front doors are tested with, so that they are judged by the answer, not by the format."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from models.text.gpt import GPT, GPTConfig
from models.text.pyfunc import save_slim
from tasks.text import chat_sft, chatml, tool_data
from tasks.text.tools import Toolbox


def stationarity_conversations(n: int, seed: int = 0) -> list[list[dict]]:
    """``n`` made-up-world conversations asking "Is <series> stationary?" (full-sentence answers)."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        world = tool_data.random_reports(rng)
        q = tool_data.slots_of(world, "stationary", rng)
        out.append(tool_data.conversation("stationary", q, Toolbox(world), tool_data.SYSTEM_FULL,
                                          f"Is {q['series']} stationary?")[0])
    return out


def train_tiny_chat(folder: Path, steps: int = 250, seed: int = 0):
    """Train and save (model.pt + tokenizer.json) a 1-layer chat model on the stationarity question."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors; and the same arithmetic on every machine
    try:
        return _train(folder, steps, seed)
    finally:
        torch.set_num_threads(threads)


def _train(folder: Path, steps: int, seed: int):
    convs = stationarity_conversations(64, seed)
    tok = chat_sft.word_tokenizer(convs, 3, 8)
    data = chat_sft.examples(convs, tok, 96)
    x, y, m = data["train"]
    torch.manual_seed(seed)
    model = GPT(GPTConfig(block_size=96, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=32, rope=True))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ix = torch.randint(x.size(0), (16,), generator=g)
        bx, by, bm = chatml.trim_padding((x[ix], y[ix], m[ix]))
        _, loss = model(bx, by, loss_mask=bm)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    folder.mkdir(parents=True, exist_ok=True)
    save_slim(model.eval(), folder / "model.pt", {"sampling": {"temperature": 0.0, "max_new_tokens": 30}})
    tok.save(folder / "tokenizer.json")
    return model.eval(), tok

