"""The tool loop of a chat turn: the model writes, the program runs the call it chose, the model answers.

    user question -> model -> {"tool": ...}?  yes: Toolbox.call -> tool message -> model -> ... -> answer
                                              no:  that message is the answer

The model alone decides whether to call and with which arguments; the loop only
executes what it wrote (validated by :class:`tasks.text.tools.Toolbox`) and stops after
``max_calls`` calls (the last word is then the model's, whatever it says).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tasks.text.chatml import answer
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
) -> str:
    """Extend ``messages`` (ending with the user's) with calls, results and the answer; return the answer."""
    for i in range(max_calls + 1):
        reply = answer(model, tok, messages, max_new_tokens, temperature, seed + i)
        msg = {"role": "assistant", "content": reply}
        messages.append(msg)
        if on_message:
            on_message(msg)
        if not is_tool_call(reply) or i == max_calls:
            return reply
        result = {"role": "tool", "content": toolbox.call(reply)}
        messages.append(result)
        if on_message:
            on_message(result)
    return reply


def accuracy(model, tok, questions: list[dict], toolbox: Toolbox, max_new_tokens: int = 120) -> dict:
    """Exact-answer accuracy on questions with references (greedy), overall and per form, and the transcripts."""
    rows = []
    for q in questions:
        msgs = [dict(m) for m in q["messages"]]
        got = chat_turn(model, tok, msgs, toolbox, max_new_tokens)
        calls = [m["content"] for m in msgs if m["role"] == "assistant" and is_tool_call(m["content"])]
        rows.append({**{k: q[k] for k in ("form", "system", "question", "reference")}, "answer": got,
                     "correct": got == q["reference"], "call": calls[0] if calls else None,
                     "call_correct": bool(calls) and calls[0] == q.get("call")})
    n = max(len(rows), 1)
    forms = sorted({r["form"] for r in rows})
    return {"accuracy": sum(r["correct"] for r in rows) / n,
            "call_accuracy": sum(r["call_correct"] for r in rows) / n,
            "by_form": {f: sum(r["correct"] for r in rows if r["form"] == f) / sum(r["form"] == f for r in rows) for f in forms},
            "n": len(rows), "rows": rows}


def accuracy_on_sets(model, tok, sets: list[tuple[list[dict], object]], max_new_tokens: int = 120,
                     enabled: bool = True) -> dict:
    """:func:`accuracy` pooled over several (questions, reports) sets, each with its own toolbox."""
    rows = []
    for qs, reports in sets:
        rows += accuracy(model, tok, qs, Toolbox(reports, enabled=enabled), max_new_tokens)["rows"]
    n = max(len(rows), 1)
    return {"accuracy": sum(r["correct"] for r in rows) / n, "call_accuracy": sum(r["call_correct"] for r in rows) / n,
            "n": len(rows), "rows": rows}


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
