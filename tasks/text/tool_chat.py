"""The tool loop of a chat turn: the model writes, the program runs the call it chose, the model answers.

    user question -> model -> {"tool": ...}?  yes: Toolbox.call -> tool message -> model -> ... -> answer
                                              no:  that message is the answer

The model alone decides whether to call, which tool and with which arguments; the loop only
executes what it wrote (validated by :class:`tasks.text.tools.Toolbox`) and stops after
``max_calls`` calls (the last word is then the model's, whatever it says). With ``constrain``
(``gpt.sft.constrain_calls``), an argument the reports do not hold is first replaced by the value
they hold that the model finds likeliest (:mod:`tasks.text.constrained_calls`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from tasks.text.chatml import answer
from tasks.text.constrained_calls import constrain as constrain_call
from tasks.text.constrained_calls import scorer
from tasks.text.tools import Toolbox, is_tool_call


def chat_turn(
    model,
    tok,
    messages: list[dict],
    toolbox: Toolbox,
    max_new_tokens: int = 120,
    temperature: float = 0.0,
    seed: int = 0,
    max_calls: int = 2,
    on_message: Callable[[dict], None] | None = None,
    constrain: bool = False,
    trace: list | None = None,
) -> str:
    """Extend ``messages`` (ending with the user's) with calls, results and the answer; return the answer.
    ``trace``: the (context ids, written ids) of each of the model's messages (:func:`answer`)."""
    for i in range(max_calls + 1):
        reply = answer(model, tok, messages, max_new_tokens, temperature, seed + i, trace=trace)
        msg, ran = {"role": "assistant", "content": reply}, None
        if is_tool_call(reply) and i < max_calls:
            ran = toolbox.call(reply)
            if constrain and "error" in json.loads(ran):  # only a failing call is held to the reports
                held = constrain_call(reply, toolbox, scorer(model, tok, max_new_tokens), messages)
                if held != reply:  # what the model wrote stays in the transcript beside what ran
                    msg, reply, ran = {"role": "assistant", "content": held, "written": reply}, held, toolbox.call(held)
        messages.append(msg)
        if on_message:
            on_message(msg)
        if ran is None:
            return reply
        result = {"role": "tool", "content": ran}
        messages.append(result)
        if on_message:
            on_message(result)
    return reply


_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")


def invented_numbers(answer: str, messages: list[dict]) -> list[str]:
    """The numbers of ``answer`` that no user message or tool result of the conversation holds."""
    given = {n for m in messages if m["role"] in ("user", "tool") for n in _NUMBER.findall(m["content"])}
    return [n for n in _NUMBER.findall(answer) if n not in given]


def _same_call(a: str | None, b: str | None) -> bool:
    try:
        return a is not None and b is not None and json.loads(a) == json.loads(b)
    except json.JSONDecodeError:
        return False


def accuracy(model, tok, questions: list[dict], toolbox: Toolbox, max_new_tokens: int = 120,
             constrain: bool = False) -> dict:
    """Exact-answer accuracy on questions with references (greedy), overall and per kind, and the transcripts.

    A row is correct when the final answer equals the reference; ``call_correct`` when the first call is the
    reference call (no call where none is needed); ``invented``: numbers the answer holds that the question
    and the tool results do not; ``written``: the first call as the model wrote it, where ``constrain``
    replaced an argument of it.
    """
    rows = []
    for q in questions:
        msgs = [dict(m) for m in q["messages"]]
        got = chat_turn(model, tok, msgs, toolbox, max_new_tokens, constrain=constrain)
        calls = [m for m in msgs[len(q["messages"]):-1] if m["role"] == "assistant"]
        call = calls[0]["content"] if calls else None
        rows.append({**{k: q.get(k) for k in ("kind", "family", "system", "question", "reference")}, "answer": got,
                     "correct": got == q["reference"], "call": call,
                     "call_correct": _same_call(call, q.get("call")) if q.get("call") else call is None,
                     "invented": invented_numbers(got, msgs), "written": calls[0].get("written") if calls else None})
    return summary(rows)


def summary(rows: list[dict]) -> dict:
    n = max(len(rows), 1)
    kinds = sorted({r["kind"] for r in rows})
    return {"accuracy": sum(r["correct"] for r in rows) / n,
            "call_accuracy": sum(r["call_correct"] for r in rows) / n,
            "by_kind": {k: sum(r["correct"] for r in rows if r["kind"] == k) / sum(r["kind"] == k for r in rows)
                        for k in kinds},
            "invented": sum(bool(r["invented"]) for r in rows),
            "constrained": sum(bool(r.get("written")) for r in rows), "n": len(rows), "rows": rows}


def accuracy_on_sets(model, tok, sets: list[tuple[list[dict], object]], max_new_tokens: int = 120,
                     enabled: bool = True, constrain: bool = False) -> dict:
    """:func:`accuracy` pooled over several (questions, reports) sets, each with its own toolbox."""
    rows = []
    for qs, reports in sets:
        rows += accuracy(model, tok, qs, Toolbox(reports, enabled=enabled), max_new_tokens, constrain)["rows"]
    return summary(rows)


def load_chat_model(folder: str | Path | None = None, model_uri: str | None = None):
    """(model, tokenizer) from a checkpoint folder or from the artifacts of a logged pyfunc."""
    import torch

    from models.text.gpt import model_from_checkpoint
    from models.text.tokenizers import load_tokenizer

    if model_uri:
        import mlflow

        from seqcast.tracking import use_store

        use_store()
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
        ckpt_path = next(local.rglob("model.pt"))
        tok_path = next(local.rglob("tokenizer.json"))
    else:
        folder = Path(folder)
        ckpt_path, tok_path = folder / "model.pt", folder / "tokenizer.json"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    return model_from_checkpoint(ckpt).eval(), load_tokenizer(tok_path)
