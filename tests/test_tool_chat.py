"""The tool loop: the model's call is run and its result handed back; `seqcast chat --once` as a user types it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.text import tool_chat, tool_data
from tasks.text.phrasings import CANT_ANSWER, GREETING_ANSWER
from tasks.text.tools import Reports, Toolbox

REPORTS = Reports({"^KS11": {"arima": {"P2a_mae": 14.812636}, "naive": {"P2a_mae": 12.5}}},
                  {"^KS11": {"verdict": "difference-stationary", "d": 1}},
                  {"^KS11": {"model": "naive", "dataset": "market", "rows": [{"ds": "2019-01-16", "mean": 2064.5}]}},
                  {"market": {"model": "naive", "series": "^KS11"}})


class Scripted:
    """Stands in for tasks.text.chatml.answer: replies from a script, records what it saw."""

    def __init__(self, replies):
        self.replies, self.seen = list(replies), []

    def __call__(self, model, tok, messages, *args, **kwargs):
        self.seen.append([dict(m) for m in messages])
        return self.replies.pop(0)


def test_the_loop_runs_the_call_the_model_wrote_and_returns_its_answer(monkeypatch):
    script = Scripted(['{"tool":"metric","series":"^KS11","metric":"P2a_mae","model":"arima"}',
                       "The P2a_mae of arima on ^KS11 is 14.8."])
    monkeypatch.setattr(tool_chat, "answer", script)
    msgs = [{"role": "system", "content": tool_data.SYSTEM_FULL}, {"role": "user", "content": "?"}]
    out = tool_chat.chat_turn(None, None, msgs, Toolbox(REPORTS))
    assert out == "The P2a_mae of arima on ^KS11 is 14.8."
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant"]
    assert json.loads(msgs[3]["content"]) == {"value": "14.8"}
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
    monkeypatch.setattr(tool_chat, "answer", Scripted([GREETING_ANSWER]))
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "Hello"}]
    assert tool_chat.chat_turn(None, None, msgs, Toolbox(REPORTS)) == GREETING_ANSWER
    assert len(msgs) == 3


def test_accuracy_counts_exact_answers_calls_and_invented_numbers(monkeypatch):
    qs = tool_data.heldout_questions(REPORTS, 1, seed=0) + tool_data.out_of_scope_questions(REPORTS, 2, seed=0)
    refs = {q["question"] + q["system"]: q for q in qs}

    def oracle(model, tok, messages, *a, **k):  # the correct call, then the answer from the result
        q = refs[messages[1]["content"] + messages[0]["content"]]
        if messages[-1]["role"] == "user" and q["call"]:
            return q["call"]
        return CANT_ANSWER if q["call"] is None or "error" in json.loads(messages[-1]["content"]) else q["reference"]

    monkeypatch.setattr(tool_chat, "answer", oracle)
    res = tool_chat.accuracy(None, None, qs, Toolbox(REPORTS))
    assert res["accuracy"] == 1.0 and res["call_accuracy"] == 1.0 and res["invented"] == 0
    assert set(res["by_kind"]) == {*tool_data.KINDS, "out_of_scope"}
    off = tool_chat.accuracy(None, None, qs, Toolbox(REPORTS, enabled=False))
    assert off["by_kind"]["out_of_scope"] == 1.0 and off["by_kind"]["metric"] == 0.0  # the refusal is not the value

    monkeypatch.setattr(tool_chat, "answer", lambda *a, **k: "It is 42.")  # a model that invents
    bad = tool_chat.accuracy(None, None, qs, Toolbox(REPORTS))
    assert bad["accuracy"] == 0.0 and bad["invented"] == len(qs)


def test_invented_numbers_are_those_no_question_or_result_holds():
    msgs = [{"role": "user", "content": "What is the forecast for ^KS11 on 2019-01-16?"},
            {"role": "tool", "content": '{"mean":"2060"}'}]
    assert tool_chat.invented_numbers("naive forecasts 2060 for ^KS11 at 2019-01-16.", msgs) == []
    assert tool_chat.invented_numbers("It will be 2100 in 2030.", msgs) == ["2100", "2030"]


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory):
    """A tiny word-level chat model that learnt "Is <series> stationary?" on made-up names (tests/_tiny_chat.py)."""
    from _tiny_chat import train_tiny_chat

    folder = tmp_path_factory.mktemp("tiny-chat")
    train_tiny_chat(folder)
    return folder


def test_seqcast_chat_once_as_typed_answers_from_the_reports(tmp_path, tiny_chat):
    """`seqcast chat --once "..."` (the console script): the model's call, the tool's result, the answer written
    from it — about a series whose name no training conversation held."""
    (tmp_path / "reports" / "stationarity").mkdir(parents=True)
    (tmp_path / "reports" / "stationarity" / "market.json").write_text(json.dumps(REPORTS.stationarity))
    seqcast = str(Path(sys.executable).parent / "seqcast")
    proc = subprocess.run([seqcast, "chat", "--once", "Is ^KS11 stationary?", "--checkpoint", str(tiny_chat),
                           "--reports", str(tmp_path / "reports")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-3:] == [
        'call> {"tool":"stationarity","series":"^KS11"}', 'tool> {"verdict":"difference-stationary","d":1}',
        "assistant> The verdict for ^KS11 is difference-stationary."]
    off = subprocess.run([seqcast, "chat", "--once", "Is ^KS11 stationary?", "--checkpoint", str(tiny_chat),
                          "--reports", str(tmp_path / "reports"), "--no-tools"], capture_output=True, text=True,
                         timeout=300)
    assert 'tool> {"error":"tools are disabled"}' in off.stdout


def test_chat_pyfunc_returns_the_models_next_message(tiny_chat):
    """The registered chat model's pyfunc: a question in, the model's next message (here its tool call) out;
    the template is the one training used, and no tool runs there."""
    from types import SimpleNamespace

    from models.text import chat_template
    from models.text.pyfunc import GPTTextModel
    from tasks.text import chatml

    assert chatml.render is chat_template.render  # one template: training and the served model
    m = GPTTextModel()
    m.load_context(SimpleNamespace(artifacts={"checkpoint": str(tiny_chat / "model.pt"),
                                              "tokenizer": str(tiny_chat / "tokenizer.json")}))
    out = m.predict(None, ["Is Wanliu stationary?"], {"temperature": 0.0, "max_new_tokens": 20})
    assert m.chat and out == ['{"tool":"stationarity","series":"Wanliu"}']
