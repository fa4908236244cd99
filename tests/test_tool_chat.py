"""The tool loop: the model's call is run and its result handed back; `seqcast chat --once` as a user types it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from models.text.gpt import GPT, GPTConfig
from models.text.pyfunc import save_slim
from models.text.tokenizers import CHATML_SPECIALS, CharTokenizer
from tasks.text import tool_chat, tool_data
from tasks.text.tools import Reports, Toolbox

REPORTS = Reports({"^KS11": {"arima": {"P2a_mae": 14.812636}, "naive": {"P2a_mae": 12.5}}},
                  {"^KS11": {"verdict": "difference-stationary", "d": 1}})


def chat_tok() -> CharTokenizer:
    t = CharTokenizer.train(tool_data.training_alphabet(), byte_fallback=True)
    t.add_special_tokens(CHATML_SPECIALS)
    return t


class Scripted:
    """Stands in for tasks.text.chatml.answer: replies from a script, records what it saw."""

    def __init__(self, replies):
        self.replies, self.seen = list(replies), []

    def __call__(self, model, tok, messages, *args, **kwargs):
        self.seen.append([dict(m) for m in messages])
        return self.replies.pop(0)


def test_the_loop_runs_the_call_the_model_wrote_and_returns_its_answer(monkeypatch):
    script = Scripted(['{"tool":"leaderboard","series":"^KS11","metric":"P2a_mae","model":"arima"}',
                       "The P2a_mae of arima on ^KS11 is 14.8."])
    monkeypatch.setattr(tool_chat, "answer", script)
    msgs = [{"role": "system", "content": tool_data.SYSTEM_FULL}, {"role": "user", "content": "?"}]
    out = tool_chat.chat_turn(None, None, msgs, Toolbox(REPORTS))
    assert out == "The P2a_mae of arima on ^KS11 is 14.8."
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant"]
    assert json.loads(msgs[3]["content"]) == {"model": "arima", "value": "14.8"}
    assert script.seen[1][-1]["role"] == "tool"  # the model wrote its answer after seeing the result


def test_a_bad_call_gets_an_error_back_and_calls_are_bounded(monkeypatch):
    script = Scripted(["{not json", '{"tool":"rm","path":"/"}', '{"tool":"calculator","expression":"1+1"}'])
    monkeypatch.setattr(tool_chat, "answer", script)
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "?"}]
    out = tool_chat.chat_turn(None, None, msgs, Toolbox(REPORTS), max_calls=2)
    errors = [json.loads(m["content"]) for m in msgs if m["role"] == "tool"]
    assert len(errors) == 2 and all("error" in e for e in errors)
    assert out == '{"tool":"calculator","expression":"1+1"}'  # the third reply is the last word, not run


def test_no_call_means_the_reply_is_the_answer(monkeypatch):
    monkeypatch.setattr(tool_chat, "answer", Scripted([tool_data.GREETING_ANSWER]))
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "Hello"}]
    assert tool_chat.chat_turn(None, None, msgs, Toolbox(REPORTS)) == tool_data.GREETING_ANSWER
    assert len(msgs) == 3


def test_accuracy_counts_exact_answers(monkeypatch):
    qs = tool_data.heldout_questions(REPORTS, 1, seed=0)
    refs = {q["question"] + q["system"]: q for q in qs}

    def oracle(model, tok, messages, *a, **k):  # the correct call, then the answer from the result
        q = refs[messages[1]["content"] + messages[0]["content"]]
        if messages[-1]["role"] == "user":
            return q["call"]
        return tool_data.ERROR_ANSWER if "error" in json.loads(messages[-1]["content"]) else q["reference"]

    monkeypatch.setattr(tool_chat, "answer", oracle)
    res = tool_chat.accuracy(None, None, qs, Toolbox(REPORTS))
    assert res["accuracy"] == 1.0 and res["call_accuracy"] == 1.0
    res = tool_chat.accuracy(None, None, qs, Toolbox(REPORTS, enabled=False))
    assert res["accuracy"] < 1.0  # without the tools the error answer is not the reference


def test_seqcast_chat_once_as_typed_prints_the_answer_last(tmp_path):
    """`seqcast chat --once "..."` (the console script) with a tiny untrained model: it runs, the last line is the answer."""
    t = chat_tok()
    torch.manual_seed(0)
    save_slim(GPT(GPTConfig(block_size=256, vocab_size=t.vocab_size, n_layer=1, n_head=2, n_embd=16)), tmp_path / "model.pt")
    t.save(tmp_path / "tokenizer.json")
    (tmp_path / "reports" / "backtest").mkdir(parents=True)
    (tmp_path / "reports" / "backtest" / "market.json").write_text(json.dumps(REPORTS.backtest))
    seqcast = str(Path(sys.executable).parent / "seqcast")
    proc = subprocess.run([seqcast, "chat", "--once", "Is ^KS11 stationary?", "--checkpoint", str(tmp_path),
                           "--reports", str(tmp_path / "reports"), "--max-new-tokens", "8"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("assistant> ")


def test_chat_pyfunc_renders_the_chat_turn_as_chatml(tmp_path):
    """The registered chat model's pyfunc: a question in, the model's next message out (no tools run there)."""
    from types import SimpleNamespace

    from models.text import chat_template
    from models.text.pyfunc import GPTTextModel
    from tasks.text import chatml

    assert chatml.render is chat_template.render  # one template: training and the served model
    t = chat_tok()
    torch.manual_seed(0)
    save_slim(GPT(GPTConfig(block_size=128, vocab_size=t.vocab_size, n_layer=1, n_head=2, n_embd=16)), tmp_path / "model.pt")
    t.save(tmp_path / "tokenizer.json")
    m = GPTTextModel()
    m.load_context(SimpleNamespace(artifacts={"checkpoint": str(tmp_path / "model.pt"),
                                              "tokenizer": str(tmp_path / "tokenizer.json")}))
    out = m.predict(None, ["Is ^KS11 stationary?"], {"temperature": 0.0, "max_new_tokens": 5})
    assert m.chat and len(out) == 1 and isinstance(out[0], str)
