"""ChatML: the template, the loss mask, and one assistant message from a model.

    <|im_start|>system\\n{...}<|im_end|>\\n<|im_start|>user\\n{...}<|im_end|>\\n<|im_start|>assistant\\n{...}<|im_end|>\\n

Only assistant tokens (their text and the ``<|im_end|>`` that closes them, so the
model learns to stop) carry loss; system and user tokens are context.

The chat fine-tune's data are tool-use conversations (``tasks/text/tool_data.py``), with a
``tool`` role for the results of calls; answers are never facts memorised from the reports.
Two system messages ask for a terse or a full-sentence answer: the model learns to honour them.
"""

from __future__ import annotations

import logging

import torch

from models.text.chat_template import DEFAULT_SYSTEM, SYSTEM_FULL, SYSTEM_TERSE, render  # noqa: F401 (re-exported)
from models.text.tokenizers import IM_END, IM_START

log = logging.getLogger(__name__)


def encoder(tok, slots: list[str] | None = None):
    """``(text, role) -> ids`` for one conversation. A copying tokenizer (:mod:`models.text.word_tokenizer`)
    numbers the conversation's unknown words in ``slots`` (filled in place), copies every value of a tool's
    result (data, whatever words they are), and the assistant writes what was copied as its copy; the others
    encode text as it is."""
    if getattr(tok, "copies_words", False):
        table = [] if slots is None else slots
        return lambda text, role="": tok.encode(text, slots=table, copy_values=role == "tool",
                                                prefer_copies=role == "assistant")
    return lambda text, role="": tok.encode(text)


def decoder(tok, slots: list[str] | None = None):
    """``ids -> text`` for the conversation of :func:`encoder` (special tokens skipped)."""
    if getattr(tok, "copies_words", False):
        return lambda ids: tok.decode(ids, skip_special=True, slots=slots)
    return lambda ids: tok.decode(ids, skip_special=True)


def encode_chat(messages: list[dict], tok, slots: list[str] | None = None,
                add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
    """Token ids of the rendered chat (:func:`render`) and a 0/1 mask: 1 on assistant content and its closing
    <|im_end|>; ``slots``: the conversation's copy table (filled in place)."""
    ids: list[int] = []
    mask: list[int] = []
    enc = encoder(tok, slots)
    for m in messages:
        head = enc(f"{IM_START}{m['role']}\n")
        body = enc(m["content"], m["role"]) + [tok.token_id(IM_END)]
        tail = enc("\n")
        train = 1 if m["role"] == "assistant" else 0
        ids += head + body + tail
        mask += [0] * len(head) + [train] * len(body) + [0] * len(tail)
    if add_generation_prompt:
        opening = enc(f"{IM_START}assistant\n")
        ids, mask = ids + opening, mask + [0] * len(opening)
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


def pad_right(rows: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) rows -> right-padded ids (B, T) and their 0/1 mask (B, T, float)."""
    T = max(len(ids) for ids, _ in rows)
    x = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.float32)
    for i, (ids, m) in enumerate(rows):
        x[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
    return x, mask


def trim_padding(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """(x, y, mask) cut to the longest conversation of the batch: the padding on the right is never attended
    to (causal) nor scored (target -1), so the loss is the same and the step costs what the tokens cost."""
    n = max(int((batch[1] >= 0).sum(1).max()), 1)
    return tuple(t[:, :n] for t in batch)


def context(model, tok, messages: list[dict], max_new_tokens: int) -> list[dict]:
    """The messages the model is shown for its next message: past the context, whole earlier exchanges (a user
    message and the calls, results and answers after it) are forgotten, oldest first; the system message and
    the current exchange always stay."""
    T = model.config.block_size
    system, turns = messages[:1], messages[1:]
    while True:
        ids, _ = encode_chat(system + turns, tok, [], add_generation_prompt=True)
        later = [i for i, m in enumerate(turns) if m["role"] == "user" and i > 0]
        if len(ids) + max_new_tokens <= T or not later:
            return system + turns
        turns = turns[later[0] :]  # forget the oldest exchange


def answer(model, tok, messages: list[dict], max_new_tokens: int, temperature: float = 0.0, seed: int = 0,
           trace: list | None = None) -> str:
    """The assistant's next message for a conversation, in its :func:`context`: what room is left after it is
    what the model may write. ``trace``: appended with (the context's ids, the ids the model wrote), the tokens
    it chose (the text they decode to may encode otherwise: a copying tokenizer numbers its slots anew)."""
    T = model.config.block_size
    slots: list[str] = []
    ids, _ = encode_chat(context(model, tok, messages, max_new_tokens), tok, slots, add_generation_prompt=True)
    ids = ids[-(T - 1) :]
    room = max(1, min(max_new_tokens, T - len(ids)))
    out = model.generate(torch.tensor([ids]), room, temperature, seed=seed, stop_token=tok.token_id(IM_END))
    if trace is not None:
        trace.append((ids, out[0, len(ids) :].tolist()))
    return decoder(tok, slots)(out[0, len(ids) :].tolist()).strip()
