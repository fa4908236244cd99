"""Tool calls held to the tools' schema: what is replaced, by what, and what is never touched."""

from __future__ import annotations

import json

import torch

from models.text.gpt import GPT, GPTConfig
from tasks.text import chat_sft, chatml, tool_chat
from tasks.text.constrained_calls import constrain, scorer
from tasks.text.tools import Reports, Toolbox
from _tiny_chat import stationarity_conversations

REPORTS = Reports(
    {"^KS11": {"arima": {"P2a_mae": 14.8, "fit_seconds": 0.2}, "naive": {"P2a_mae": 12.5}},
     "Dongsi": {"arima": {"P2a_mae": 30.1}, "prophet": {"P2a_mae": 28.0}}},
    {"^KS11": {"verdict": "difference-stationary", "d": 1}, "Dongsi": {"verdict": "stationary", "d": 0}},
    {"^KS11": {"model": "naive", "dataset": "market",
               "rows": [{"ds": "2019-01-16", "mean": 2064.5}, {"ds": "2019-01-17", "mean": 2070.0}]}},
    {"market": {"model": "naive", "series": "^KS11"}})
MSGS = [{"role": "system", "content": "s"},
        {"role": "user", "content": "To make Dongsi or ^KS11 stationary, how many differences are needed? "
                                    "The fit_seconds of arima? The forecast of 2019-01-17?"}]


class Prefers:
    """A scorer that likes candidates by how many of its words they hold, and records what it was shown."""

    def __init__(self, *liked: str):
        self.liked, self.shown = liked, []

    def __call__(self, messages, completions):
        self.shown.append(list(completions))
        return [sum(w in c for w in self.liked) for c in completions]


def test_an_argument_the_reports_do_not_hold_is_replaced_by_the_likeliest_one_they_hold():
    score = Prefers("Dongsi")
    out = constrain('{"tool":"stationarity","series":"needed"}', Toolbox(REPORTS), score, MSGS)
    assert out == '{"tool":"stationarity","series":"Dongsi"}'
    assert score.shown == [['{"tool":"stationarity","series":"Dongsi"}', '{"tool":"stationarity","series":"^KS11"}']]
    assert json.loads(Toolbox(REPORTS).call(out)) == {"verdict": "stationary", "d": 0}


def test_the_candidates_follow_the_arguments_before_them():
    # series, metric and model all wrong: each is chosen among what the reports hold given the ones fixed before
    score = Prefers("^KS11", "fit_seconds", "arima")
    out = constrain('{"tool":"metric","series":"fit_seconds","metric":"recorded","model":"recorded"}',
                    Toolbox(REPORTS), score, MSGS)
    assert json.loads(out) == {"tool": "metric", "series": "^KS11", "metric": "fit_seconds", "model": "arima"}
    metrics, models = (sorted(json.loads(c)[k] for c in shown) for shown, k in zip(score.shown[1:], ("metric", "model")))
    assert metrics == ["fit_seconds"]  # the metrics of ^KS11 the question names (P2a_mae it does not)
    assert models == ["arima"]  # only arima has a fit_seconds on ^KS11


def test_an_optional_argument_may_be_left_out():
    text = '{"tool":"forecast","series":"^KS11","date":"<unk>"}'
    assert constrain(text, Toolbox(REPORTS), Prefers('"^KS11"}'), MSGS) == '{"tool":"forecast","series":"^KS11"}'
    assert constrain(text, Toolbox(REPORTS), Prefers("01-17"), MSGS) == (
        '{"tool":"forecast","series":"^KS11","date":"2019-01-17"}')


def test_only_what_the_conversation_names_is_a_candidate():
    box = Toolbox(REPORTS)
    asked = [MSGS[0], {"role": "user", "content": "Is Dongsi stationary or not?"}]
    score = Prefers("^KS11")
    assert constrain('{"tool":"stationarity","series":"not"}', box, score, asked) == (
        '{"tool":"stationarity","series":"Dongsi"}')
    assert score.shown == [['{"tool":"stationarity","series":"Dongsi"}']]  # ^KS11 is in the reports, not in the question
    # a question no tool answers keeps its failing call (and its refusal): nothing it names is in the reports
    nothing = [MSGS[0], {"role": "user", "content": "Who painted the Mona Lisa?"}]
    assert constrain('{"tool":"champion","dataset":"Lisa"}', box, score, nothing) == '{"tool":"champion","dataset":"Lisa"}'
    # a tool's result names things too; a name inside a longer one does not count
    told = [*nothing, {"role": "tool", "content": '{"model":"naive","series":"^KS11"}'}]
    assert constrain('{"tool":"stationarity","series":"x"}', box, Prefers(), told) == '{"tool":"stationarity","series":"^KS11"}'
    assert constrain('{"tool":"stationarity","series":"x"}', box, Prefers(), [MSGS[0], {"role": "user", "content": "^KS1"}]) == (
        '{"tool":"stationarity","series":"x"}')
    # the tool's own words need no mention
    assert json.loads(constrain('{"tool":"rank","series":"^KS11","metric":"P2a_mae","order":"least"}', box,
                                Prefers("lowest"), MSGS))["order"] == "lowest"


def test_valid_calls_free_text_and_what_is_no_call_are_returned_as_written():
    box, score = Toolbox(REPORTS), Prefers("Dongsi")
    for text in ['{"tool":"stationarity","series":"^KS11"}',  # valid
                 '{"tool":"calculator","expression":"1/0"}',  # an error, but the expression is the model's to write
                 '{"tool":"rm","path":"/"}', "{not json", '["tool"]']:
        assert constrain(text, box, score, MSGS) == text
    assert score.shown == []
    # the arguments the reports hold stay, even when another candidate would score higher
    assert json.loads(constrain('{"tool":"metric","series":"^KS11","metric":"P2a_mae","model":"nope"}', box,
                                Prefers("Dongsi", "naive"), [*MSGS, {"role": "user", "content": "naive or arima?"}])) == {
        "tool": "metric", "series": "^KS11", "metric": "P2a_mae", "model": "naive"}


def test_the_score_is_the_log_probability_the_model_gives_the_message():
    convs = stationarity_conversations(4)
    conv = convs[0]
    tok = chat_sft.word_tokenizer(convs, 1, 8)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=128, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, rope=True)).eval()
    prompt, call = conv[:2], conv[2]["content"]
    got = scorer(model, tok, 20)(prompt, [call, "Hello"])
    ids, mask = chatml.encode_chat([*prompt, conv[2]], tok, [])
    x, y, m = (t[None] for t in chatml.to_example(ids, mask, len(ids) - 1))
    with torch.no_grad():
        _, loss = model(x, y, loss_mask=m)
    assert abs(got[0] - (-loss.item() * m.sum().item())) < 1e-3
    assert len(got) == 2 and got[0] != got[1]


def test_the_chat_runs_the_held_call_and_keeps_what_the_model_wrote(monkeypatch):
    replies = ['{"tool":"stationarity","series":"needed"}', "Dongsi is stationary."]
    monkeypatch.setattr(tool_chat, "answer", lambda *a, **k: replies.pop(0))
    monkeypatch.setattr(tool_chat, "scorer", lambda *a, **k: Prefers("Dongsi"))
    msgs = [dict(m) for m in MSGS]
    assert tool_chat.chat_turn(None, None, msgs, Toolbox(REPORTS), constrain=True) == "Dongsi is stationary."
    call, result = msgs[2], msgs[3]
    assert call == {"role": "assistant", "content": '{"tool":"stationarity","series":"Dongsi"}',
                    "written": '{"tool":"stationarity","series":"needed"}'}
    assert json.loads(result["content"]) == {"verdict": "stationary", "d": 0}
    replies[:] = ['{"tool":"stationarity","series":"needed"}', "I can't answer that."]
    msgs = [dict(m) for m in MSGS]
    tool_chat.chat_turn(None, None, msgs, Toolbox(REPORTS))  # off: what the model wrote runs
    assert "error" in json.loads(msgs[3]["content"]) and "written" not in msgs[2]


def test_seqcast_chat_holds_the_calls_unless_asked_to_run_them_as_written(tmp_path, capsys, monkeypatch):
    """`seqcast chat` (its main): the call line shows the held call and what was written; --calls-as-written runs
    the written one (its error is what the tool answers)."""
    from _tiny_chat import train_tiny_chat
    from flows.text_chat_session import main

    train_tiny_chat(tmp_path / "chat", steps=1)  # the replies are scripted: only the files are needed
    (tmp_path / "reports" / "stationarity").mkdir(parents=True)
    (tmp_path / "reports" / "stationarity" / "any.json").write_text(json.dumps(
        {"^KS11": {"verdict": "difference-stationary", "d": 1}, "Dongsi": {"verdict": "stationary", "d": 0}}))
    monkeypatch.setattr(tool_chat, "scorer", lambda *a, **k: Prefers())
    args = ["--checkpoint", str(tmp_path / "chat"), "--reports", str(tmp_path / "reports"),
            "--once", "To make Dongsi stationary, how many differences are needed?"]
    for extra, call, result in (([], '{"tool":"stationarity","series":"Dongsi"}', '{"verdict":"stationary","d":0}'),
                                (["--calls-as-written"], '{"tool":"stationarity","series":"needed"}', '{"error":')):
        replies = ['{"tool":"stationarity","series":"needed"}', "0"]
        monkeypatch.setattr(tool_chat, "answer", lambda *a, **k: replies.pop(0))
        assert main(args + extra) == 0
        out = capsys.readouterr().out.splitlines()
        (line,) = [ln for ln in out if ln.startswith("call> ")]
        assert line.startswith(f"call> {call}") and ("(written: " in line) == (not extra)
        assert any(ln.startswith(f"tool> {result}") for ln in out)
