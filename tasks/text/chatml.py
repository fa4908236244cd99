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


def trim_padding(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """(x, y, mask) cut to the longest conversation of the batch: the padding on the right is never attended
    to (causal) nor scored (target -1), so the loss is the same and the step costs what the tokens cost."""
    n = max(int((batch[1] >= 0).sum(1).max()), 1)
    return tuple(t[:, :n] for t in batch)


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
