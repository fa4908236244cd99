"""Tool calls held to the tools' schema: an argument the reports do not hold is replaced by the likeliest one they do.

Structured decoding, as function-calling models do it with enumerated argument types: the model
writes its call freely; when an argument names something the reports do not hold (``"series":
"needed"``, ``"date":"<unk>"``, a model that has no such metric), :meth:`Toolbox.choices` lists
the values that argument may take given the ones before it, and the model itself picks among
them: each candidate call is scored by its log-probability under the model, in the same
conversation, and the likeliest is kept. An optional argument may also be left out.

A candidate must be *named in the conversation* (a user's message or a tool's result holds it
as a whole word): the chat calls with what it was asked about, never with a name of the reports
nobody mentioned. A question no tool answers ("Who painted the Mona Lisa?") thus keeps its
failing call, and its refusal, instead of becoming a question about a dataset it never named.
The words of the tools' own schema (``order``: best, lowest, highest) need no mention.

The model still decides whether to call, which tool, and every argument the reports hold; a
free-text argument (the calculator's expression) is never touched, and a call that was valid is
returned as written. Nothing here knows a phrasing, a dataset or a name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

import torch

from tasks.text.chatml import context, encode_chat, pad_right
from tasks.text.rlhf_losses import masked_sum, token_logprobs
from tasks.text.tools import SPECS, Toolbox

Scorer = Callable[[list[dict], Sequence[str]], list[float]]
OMIT = None  # the candidate that leaves an optional argument out
SCHEMA_WORDS = ("order",)  # arguments whose values are the tool's own words, not names of the reports


def dumps(call: dict) -> str:
    """A call as the chat writes it: compact JSON, ``tool`` first, then the arguments in the tool's order."""
    required, optional = SPECS[call["tool"]]
    ordered = {"tool": call["tool"], **{k: call[k] for k in required + optional if k in call}}
    return json.dumps(ordered, separators=(",", ":"))


def constrain(text: str, toolbox: Toolbox, score: Scorer, messages: list[dict]) -> str:
    """``text`` (the model's call) with every argument the reports do not hold replaced by the candidate the
    model scores highest after ``messages``; ``text`` itself when it is valid, not a call of a known tool, or
    when nothing can replace what is wrong."""
    try:
        call = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text
    if not isinstance(call, dict) or call.get("tool") not in SPECS or "error" not in json.loads(toolbox.call(text)):
        return text
    required, optional = SPECS[call["tool"]]
    fixed = {"tool": call["tool"], **{k: v for k, v in call.items() if k in required + optional}}
    said = " ".join(m["content"] for m in messages if m["role"] in ("user", "tool"))
    for arg in required + optional:
        options = toolbox.choices(fixed, arg)
        if options is None or fixed.get(arg) in options:
            continue
        if arg not in SCHEMA_WORDS:
            options = [v for v in options if named(v, said)]
        if arg in optional:
            options = [OMIT, *options]
        if not options:
            return text
        candidates = [_with(fixed, arg, value) for value in options]
        scores = score(messages, [dumps(c) for c in candidates])
        fixed = candidates[max(range(len(candidates)), key=scores.__getitem__)]
    return dumps(fixed)


def named(value: str, text: str) -> bool:
    """Whether ``text`` holds ``value`` as a whole word (not inside a longer name: ``ar`` is not in ``arima``)."""
    return re.search(rf"(?<![\w.^-]){re.escape(value)}(?![\w-]|\.\w)", text) is not None


def _with(call: dict, arg: str, value: str | None) -> dict:
    out = {k: v for k, v in call.items() if k != arg}
    if value is not OMIT:
        out[arg] = value
    return out


def scorer(model, tok, max_new_tokens: int, batch: int = 64) -> Scorer:
    """``(messages, completions) -> log p(completion | messages)`` for the next assistant message, summed over its
    tokens and its closing ``<|im_end|>``, in the context :func:`tasks.text.chatml.answer` would write it in."""

    @torch.no_grad()
    def score(messages: list[dict], completions: Sequence[str]) -> list[float]:
        T = model.config.block_size
        kept = context(model, tok, messages, max_new_tokens)
        start = len(encode_chat(kept, tok, [], add_generation_prompt=True)[0])  # where the new message begins
        rows = []
        for c in completions:
            ids, mask = encode_chat([*kept, {"role": "assistant", "content": c}], tok, [])
            mine = [0] * start + mask[start:]  # the new message's tokens only (earlier answers are context)
            rows.append((ids[-T:], mine[-T:]))
        out: list[float] = []
        for i in range(0, len(rows), batch):
            x, m = pad_right(rows[i : i + batch])
            lp = masked_sum(token_logprobs(model.head(x, model.hidden(x)), x), m[:, 1:])
            out += lp.tolist()
        return out

    return score
