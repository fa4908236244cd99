"""ChatML: the template, the loss mask, and a small SFT data set built from the pipeline's own outputs.

    <|im_start|>system\\n{...}<|im_end|>\\n<|im_start|>user\\n{...}<|im_end|>\\n<|im_start|>assistant\\n{...}<|im_end|>\\n

Only assistant tokens (their text and the ``<|im_end|>`` that closes them, so the
model learns to stop) carry loss; system and user tokens are context.

Q&A pairs come from ``reports/backtest/<dataset>.json``, ``reports/stationarity/<dataset>.json``
and ``data/clean/<dataset>.parquet`` when they exist (answers computed from them);
otherwise from statistics of the Tiny Shakespeare corpus, so the fine-tune always runs.
Two system messages ask for a terse or a full-sentence answer: the model learns to honour them.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter
from pathlib import Path

import torch

from models.chat_template import DEFAULT_SYSTEM, SYSTEM_FULL, SYSTEM_TERSE, render  # noqa: F401 (re-exported)
from models.text_tokenizers import IM_END, IM_START

log = logging.getLogger(__name__)

DATASETS = ("market", "pm25")


def encode_chat(messages: list[dict], tok) -> tuple[list[int], list[int]]:
    """Token ids of the rendered chat and a 0/1 mask: 1 on assistant content and its closing <|im_end|>."""
    ids: list[int] = []
    mask: list[int] = []
    for m in messages:
        head = tok.encode(f"{IM_START}{m['role']}\n")
        body = tok.encode(m["content"]) + [tok.token_id(IM_END)]
        tail = tok.encode("\n")
        train = 1 if m["role"] == "assistant" else 0
        ids += head + body + tail
        mask += [0] * len(head) + [train] * len(body) + [0] * len(tail)
    return ids, mask


def to_example(ids: list[int], mask: list[int], block_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, y, loss_mask) of length block_size: the last block_size+1 tokens, right-padded (target -1)."""
    ids, mask = ids[-(block_size + 1) :], mask[-(block_size + 1) :]
    x = torch.zeros(block_size, dtype=torch.long)
    y = torch.full((block_size,), -1, dtype=torch.long)
    m = torch.zeros(block_size, dtype=torch.bool)
    n = len(ids) - 1
    x[:n] = torch.tensor(ids[:-1])
    y[:n] = torch.tensor(ids[1:])
    m[:n] = torch.tensor(mask[1:], dtype=torch.bool)  # mask of the *target* token
    return x, y, m


def answer(model, tok, messages: list[dict], max_new_tokens: int, temperature: float = 0.0, seed: int = 0) -> str:
    """The assistant's next message for a conversation (drops the oldest turns past the context, keeps the system)."""
    T = model.config.block_size
    system, turns = messages[:1], messages[1:]
    while True:
        ids = tok.encode(render(system + turns, add_generation_prompt=True))
        if len(ids) + max_new_tokens <= T or len(turns) <= 1:
            break
        turns = turns[2:]  # forget the oldest user/assistant pair
    ids = ids[-(T - 1) :]
    room = max(1, min(max_new_tokens, T - len(ids)))  # stay inside the context: the system message stays visible
    out = model.generate(torch.tensor([ids]), room, temperature, seed=seed, stop_token=tok.token_id(IM_END))
    return tok.decode(out[0, len(ids) :].tolist(), skip_special=True).strip()


# ---------------------------------------------------------------- the data set


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def facts_from_pipeline(root: Path) -> list[tuple[str, str, str]]:
    """(question, terse answer, full answer) triples computed from the pipeline's reports and tables."""
    facts = []
    for ds in DATASETS:
        bt = root / "reports" / "backtest" / f"{ds}.json"
        if bt.is_file():
            for sid, by_model in json.loads(bt.read_text()).items():
                for metric in sorted({k for m in by_model.values() for k in m}):
                    scores = {m: v[metric] for m, v in by_model.items() if isinstance(v.get(metric), int | float)}
                    if not scores:
                        continue
                    best = min(scores, key=scores.get)
                    if "cov" not in metric.lower():  # coverage is best near its nominal level, not lowest
                        facts.append(
                            (f"Which model has the lowest {metric} on {sid}?", best,
                             f"On {sid}, {best} has the lowest {metric}: {_fmt(scores[best])}.")
                        )
                    for m, v in scores.items():
                        facts.append((f"What is the {metric} of {m} on {sid}?", _fmt(v), f"The {metric} of {m} on {sid} is {_fmt(v)}."))
        st = root / "reports" / "stationarity" / f"{ds}.json"
        if st.is_file():
            for sid, r in json.loads(st.read_text()).items():
                facts.append((f"Is {sid} stationary?", str(r.get("verdict")), f"The stationarity verdict for {sid} is {r.get('verdict')}."))
                if "d" in r:
                    facts.append((f"How many differences does {sid} need?", str(r["d"]), f"{sid} needs d = {r['d']} differences."))
        clean = root / "data" / "clean" / f"{ds}.parquet"
        if clean.is_file():
            import pandas as pd

            from seqcast.contract import local_time

            df = pd.read_parquet(clean)
            for sid, g in df.groupby("unique_id"):
                g = local_time(g)
                facts += [
                    (f"How many observations does {sid} have?", str(len(g)), f"{sid} has {len(g)} observations."),
                    (f"What is the mean of {sid}?", _fmt(float(g["y"].mean())), f"The mean of {sid} is {_fmt(float(g['y'].mean()))}."),
                    (f"When does {sid} start?", str(g["ds"].min().date()), f"{sid} starts on {g['ds'].min().date()}."),
                ]
    return facts


def facts_from_corpus(text: str) -> list[tuple[str, str, str]]:
    """Fallback: statistics of the corpus itself (Tiny Shakespeare)."""
    words = re.findall(r"[A-Za-z']+", text.lower())
    speakers = Counter(re.findall(r"^([A-Z][A-Z ]+):$", text, flags=re.M))
    wc = Counter(words)
    facts = [
        ("How many characters does the corpus have?", f"{len(text):,}", f"The corpus has {len(text):,} characters."),
        ("How many lines does the corpus have?", f"{text.count(chr(10)):,}", f"The corpus has {text.count(chr(10)):,} lines."),
        ("How many distinct characters are there?", str(len(set(text))), f"There are {len(set(text))} distinct characters."),
        ("How many words does the corpus have?", f"{len(words):,}", f"The corpus has {len(words):,} words."),
        ("Who speaks most often?", speakers.most_common(1)[0][0].title(),
         f"{speakers.most_common(1)[0][0].title()} speaks most often, {speakers.most_common(1)[0][1]} times."),
    ]
    for rank, (w, c) in enumerate(wc.most_common(10), 1):
        facts.append((f"What is word number {rank} by frequency?", w, f"Word number {rank} by frequency is '{w}', {c:,} times."))
    for name, c in speakers.most_common(15):
        facts.append((f"How often does {name.title()} speak?", str(c), f"{name.title()} speaks {c} times."))
    return facts


def build_sft_conversations(
    root: Path, corpus: str, n: int = 600, seed: int = 0, max_chars: int | None = None
) -> tuple[list[list[dict]], str]:
    """Conversations of 1-3 turns with a terse or full system message; returns (conversations, source).

    ``max_chars``: drop the oldest turns until the rendered chat fits (the system message must stay in context).
    """
    facts = facts_from_pipeline(root)
    source = "pipeline outputs (reports/, data/clean/)"
    if not facts:
        facts, source = facts_from_corpus(corpus), "corpus statistics (no pipeline outputs found)"
    log.info("chat SFT data from %s: %d facts", source, len(facts))
    rng = random.Random(seed)
    convs = []
    for _ in range(n):
        terse = rng.random() < 0.5
        msgs = [{"role": "system", "content": SYSTEM_TERSE if terse else SYSTEM_FULL}]
        for q, short, full in rng.sample(facts, k=min(len(facts), rng.randint(1, 3))):
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": short if terse else full}]
        while max_chars and len(msgs) > 3 and len(render(msgs)) > max_chars:
            del msgs[1:3]
        convs.append(msgs)
    return convs, source
