"""The chat model's tools: validation, the safe calculator, 3-significant-digit numbers, the reports they read."""

from __future__ import annotations

import json
import random
import re

import pytest

from tasks.text import tool_data
from tasks.text.phrasings import CANT_ANSWER, CORES, DEV_EVERY, LEXICON, add_fillers, forms, swap_synonyms
from tasks.text.tools import Reports, ToolError, Toolbox, best_direction, calculate, fmt3, parse_call

BACKTEST = {"^KS11": {"arima": {"P2a_mae": 14.812636, "P2a_mase": 1.295918, "P2a_cov80": 0.70, "P2a_dir_acc": 0.52,
                                "P2a_dm_pvalue": 0.3},
                      "naive": {"P2a_mae": 12.5, "P2a_mase": 1.0, "P2a_cov80": 0.95, "P2a_dir_acc": 0.48,
                                "P2a_dm_pvalue": None}}}
STATIONARITY = {"^KS11": {"verdict": "difference-stationary", "d": 1}}
FORECASTS = {"^KS11": {"model": "naive", "dataset": "market",
                       "rows": [{"ds": "2018-06-21", "mean": 2357.123}, {"ds": "2018-06-22", "mean": 2360.4}]}}
CHAMPIONS = {"market": {"model": "naive", "series": "^KS11"}}


@pytest.fixture
def box() -> Toolbox:
    return Toolbox(Reports(BACKTEST, STATIONARITY, FORECASTS, CHAMPIONS, {"^KS11": "market"}))


@pytest.mark.parametrize("v, s", [(14.812636, "14.8"), (0.169558, "0.170"), (1234.5, "1230"), (2.318801, "2.32"),
                                  (0.0012345, "0.00123"), (-47.688515, "-47.7"), (0, "0"), (99.96, "100")])
def test_fmt3_gives_three_significant_digits(v, s):
    assert fmt3(v) == s


@pytest.mark.parametrize("expr, value", [("1 + 2 * 3", 7.0), ("(1 + 2) * 3", 9.0), ("2 ** 10", 1024.0),
                                         ("-3 / 4", -0.75), ("1.5 - 0.25", 1.25)])
def test_calculator_known_answers(expr, value):
    assert calculate(expr) == value


@pytest.mark.parametrize("expr", ["__import__('os').system('true')", "abs(-1)", "x + 1", "'a' * 3", "9 ** 9 ** 9",
                                  "1 / 0", "[1, 2]", "1 if 1 else 2", "2 ** 0.5 ** -1000" * 10])
def test_calculator_refuses_everything_but_arithmetic(expr):
    with pytest.raises(ToolError):
        calculate(expr)


def test_metric_and_rank_return_the_report_values(box):
    one = json.loads(box.call('{"tool":"metric","series":"^KS11","metric":"P2a_mae","model":"arima"}'))
    assert one == {"value": "14.8"}
    rank = lambda metric, order: json.loads(box.call(json.dumps(  # noqa: E731
        {"tool": "rank", "series": "^KS11", "metric": metric, "order": order})))
    assert rank("P2a_mae", "best") == rank("P2a_mae", "lowest") == {"model": "naive", "value": "12.5"}
    assert rank("P2a_mae", "highest") == {"model": "arima", "value": "14.8"}
    assert rank("P2a_dir_acc", "best") == {"model": "arima", "value": "0.520"}  # accuracies: higher is better
    assert rank("P2a_cov80", "best") == {"model": "arima", "value": "0.700"}  # |0.70 - 0.80| < |0.95 - 0.80|
    assert "no best value" in rank("P2a_dm_pvalue", "best")["error"]
    assert rank("P2a_dm_pvalue", "lowest") == {"model": "arima", "value": "0.300"}  # naive's null is no value


@pytest.mark.parametrize("metric, how", [("P2a_mase", ("lower", None)), ("fit_seconds", ("lower", None)),
                                         ("P1b_cov95_raw", ("nearest", 0.95)), ("P2b_dir_acc", ("higher", None))])
def test_best_direction_from_the_metric_name(metric, how):
    assert best_direction(metric) == how


def test_stationarity_forecast_champion_and_calculator_tools(box):
    assert json.loads(box.call('{"tool":"stationarity","series":"^KS11"}')) == {"verdict": "difference-stationary", "d": 1}
    nxt = json.loads(box.call('{"tool":"forecast","series":"^KS11"}'))
    assert nxt == {"model": "naive", "ds": "2018-06-21", "mean": "2360"}
    at = json.loads(box.call('{"tool":"forecast","series":"^KS11","date":"2018-06-22"}'))
    assert at["mean"] == "2360" and at["ds"] == "2018-06-22"
    assert json.loads(box.call('{"tool":"forecast","series":"market","date":"2018-06-22 00:00"}')) == at  # a dataset
    missing = json.loads(box.call('{"tool":"forecast","series":"^KS11","date":"2030-01-01"}'))
    assert "2018-06-21 .. 2018-06-22" in missing["error"]
    assert json.loads(box.call('{"tool":"champion","dataset":"market"}')) == {"model": "naive", "series": "^KS11"}
    assert json.loads(box.call('{"tool":"calculator","expression":"14.8 * 2"}')) == {"value": "29.6"}


@pytest.mark.parametrize("call, fragment", [
    ("not json", "not valid JSON"),
    ("[1, 2]", '"tool" key'),
    ('{"tool":"shell","cmd":"rm -rf /"}', "unknown tool"),
    ('{"tool":"metric","series":"^KS11","metric":"P2a_mae"}', "missing"),
    ('{"tool":"stationarity","series":"^KS11","x":"1"}', "unknown"),
    ('{"tool":"rank","series":3,"metric":"P2a_mae","order":"best"}', "string"),
    ('{"tool":"metric","series":"^XX","metric":"P2a_mae","model":"naive"}', "unknown series"),
    ('{"tool":"metric","series":"^KS11","metric":"P9_x","model":"naive"}', "no metric"),
    ('{"tool":"rank","series":"^KS11","metric":"P2a_mae","order":"median"}', "order is one of"),
    ('{"tool":"calculator","expression":"open(1)"}', "not allowed"),
    ('{"tool":"forecast","series":"Dongsi"}', "no forecast"),
    ('{"tool":"champion","dataset":"weather"}', "datasets: market"),
])
def test_bad_calls_get_an_error_message_never_an_exception(box, call, fragment):
    out = json.loads(box.call(call))
    assert set(out) == {"error"} and fragment in out["error"]


def test_disabled_toolbox_answers_with_an_error(box):
    off = Toolbox(box.reports, enabled=False)
    assert "disabled" in json.loads(off.call('{"tool":"stationarity","series":"^KS11"}'))["error"]


def test_parse_call_accepts_a_valid_call():
    assert parse_call('{"tool":"calculator","expression":"1+1"}')["expression"] == "1+1"


def test_training_conversations_copy_names_and_results_and_hold_out_the_real_reports():
    convs = tool_data.training_conversations(400, seed=0)
    text = json.dumps(convs)
    assert "^KS11" not in text and "arima" not in text  # the real names never appear in training
    calls = [c for c in convs if len(c) >= 5]
    refusals = [c for c in convs if len(c) == 3 and c[2]["content"] == CANT_ANSWER]
    assert len(calls) > 300 and len(refusals) > 20
    for c in calls[:80]:
        call, result, ans = json.loads(c[-3]["content"]), json.loads(c[-2]["content"]), c[-1]["content"]
        assert c[-2]["role"] == "tool" and call["tool"] in ("metric", "rank", "stationarity", "forecast", "champion",
                                                            "calculator")
        if "error" in result:
            assert ans == CANT_ANSWER
        else:  # the answer is written from the result: its value is copied, every argument is in the question
            assert any(str(v) in ans for v in result.values())
            assert all(v in c[-4]["content"] for k, v in call.items() if k not in ("tool", "order"))


def test_no_training_question_uses_a_held_out_form():
    """The evaluation's unseen phrasings never appear in the fine-tuning data (their fixed words, as written)."""
    convs = tool_data.training_conversations(1500, seed=1)
    users = [m["content"] for c in convs for m in c if m["role"] == "user"]
    for kind, forms in CORES.items():
        for form in forms["heldout"]:  # the form as a pattern: its words as written, any name in its slots
            pattern = re.compile(re.sub(r"\\\{\w+\\\}", ".+", re.escape(form.rstrip("?.!"))), re.IGNORECASE)
            assert not any(pattern.search(u) for u in users), (kind, form)


def test_synonyms_swap_intent_words_and_keep_the_slots():
    form = "Which model has the lowest {metric} on {series}?"
    seen = {swap_synonyms(form, random.Random(i)) for i in range(200)}
    assert form in seen and len(seen) == len(set(LEXICON["lowest"]) | {"lowest"})  # every synonym, sometimes none
    for s in seen:
        assert s.startswith("Which model has the ") and s.endswith(" {metric} on {series}?")


def test_fillers_are_made_up_words_never_beside_a_slot():
    form = "What is the {metric} of {model} on {series}?"
    core = form.lower().split()
    kinds = set()
    for i in range(300):
        toks = add_fillers(form, random.Random(i)).split()
        j, fillers = 0, []
        for k, t in enumerate(toks):  # the form's words in order; every other word is a filler
            if j < len(core) and t.lower() == core[j]:
                j += 1
            else:
                fillers.append((k, t.strip(",:"), j))
        assert j == len(core)  # the whole form, slots included, once each and in order
        for k, w, before in fillers:
            assert w.isalpha() and w.lower() not in core
            if before > 0:  # between two of the form's words: neither is a slot
                kinds.add("inside")
                assert "{" not in toks[k - 1] and "{" not in toks[k + 1]
            else:
                kinds.add("opener")
    assert kinds == {"inside", "opener"}


def test_training_questions_hold_unknown_words_that_are_no_names():
    """Some training questions carry made-up filler words (copy slots to the tokenizer) the call never uses."""
    convs = tool_data.training_conversations(600, seed=2)
    calls = [c for c in convs if len(c) >= 5]
    with_filler = 0
    for c in calls:
        question, call = c[-4]["content"], json.loads(c[-3]["content"])
        names = {str(v) for k, v in call.items() if k not in ("tool", "order")}
        words = re.findall(r"[A-Za-z_^][\w.^-]*", question)
        unknown = [w for w in words if w not in names and not any(w.lower() in f.lower() for forms in CORES.values()
                                                                 for fam in forms.values() for f in fam)
                   and not any(w.lower() in " ".join(v).lower() for v in LEXICON.values())]
        with_filler += bool(unknown)
    assert 0.2 < with_filler / len(calls) < 0.8


def test_heldout_questions_reference_the_report_values(box):
    qs = tool_data.heldout_questions(box.reports, 3, seed=0)
    assert set(tool_data.KINDS) <= {q["kind"] for q in qs}
    for q in qs:
        result = json.loads(box.call(q["call"]))
        assert "error" not in result, q
        if q["kind"] == "metric" and q["system"] == tool_data.SYSTEM_FULL:
            call = json.loads(q["call"])
            value = fmt3(BACKTEST["^KS11"][call["model"]][call["metric"]])
            assert q["reference"] == f"The {call['metric']} of {call['model']} on ^KS11 is {value}."
        if q["kind"] == "differences":
            assert q["reference"] in ("1", "The order of differencing of ^KS11 is 1.")
        if q["kind"] == "champion":
            assert q["reference"] in ("naive", "The champion of market is naive on ^KS11.")


def test_the_development_family_splits_the_training_forms():
    """dev (every DEV_EVERY-th training form) and fit (the others) are the training forms, shared by neither;
    a fine-tune on fit never reads a dev form; an unknown family is refused."""
    for kind, fam in CORES.items():
        fit, dev = forms(kind, "fit"), forms(kind, "dev")
        assert not set(fit) & set(dev) and sorted(fit + dev) == sorted(fam["train"]), kind
        assert dev == fam["train"][DEV_EVERY - 1 :: DEV_EVERY] and set(forms(kind, "heldout")) == set(fam["heldout"])
    dev_forms = {f for k in CORES for f in forms(k, "dev")}
    qs = tool_data.synthetic_sets(3, 0, "dev")[0][0]
    assert all(q["family"] == "dev" for q in qs)
    convs = tool_data.training_conversations(600, seed=2, family="fit")
    users = [m["content"] for c in convs for m in c if m["role"] == "user"]
    for form in dev_forms:
        if len(form.split()) < 5 or form.startswith("{"):  # a short form ("Champion of {dataset}?") is a part of
            continue  # longer ones; one that opens with a name matches any opener ("Tell me: what is ...")
        pattern = re.compile(re.sub(r"\\\{\w+\\\}", ".+", re.escape(form.rstrip("?.!"))), re.IGNORECASE)
        assert not any(pattern.search(u) for u in users), form
    with pytest.raises(ValueError, match="unknown phrasing family"):
        forms("metric", "test")


def test_training_conversations_do_not_depend_on_the_hash_seed():
    """The fine-tune's data are the same in every process (names deduplicated in order, not through a set):
    a stage rerun on another machine trains on the same conversations."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import hashlib, json; from tasks.text import tool_data; "
            "print(hashlib.sha256(json.dumps(tool_data.training_conversations(300, 7)).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONHASHSEED": str(h)}).stdout for h in (1, 2, 3)}
    assert len(digests) == 1


def test_random_worlds_are_reproducible():
    a, b = tool_data.random_reports(random.Random(3)), tool_data.random_reports(random.Random(3))
    assert a.backtest == b.backtest and a.forecasts == b.forecasts and a.champions == b.champions


def test_reports_load_discovers_any_dataset_from_its_files(tmp_path):
    """No dataset name in the code: a dataset is the stem of its report files, a new one is found as it is."""
    for kind in ("backtest", "stationarity", "forecast", "promotion"):
        (tmp_path / kind).mkdir()
    for name, series in (("market", "^KS11"), ("my_sales", "store_7")):
        (tmp_path / "backtest" / f"{name}.json").write_text(json.dumps({series: BACKTEST["^KS11"]}))
        (tmp_path / "stationarity" / f"{name}.json").write_text(json.dumps({series: STATIONARITY["^KS11"]}))
        (tmp_path / "forecast" / f"{name}.csv").write_text(
            f"unique_id,ds,step,mean,lo-80\n{series},2018-06-21 00:00:00+09:00,1,2357.1,2300\n"
            f"{series},2018-06-21 01:00:00+09:00,2,2358.2,2300\n")
        (tmp_path / "promotion" / f"{name}.json").write_text(json.dumps(
            {"best": {"model": "drift", "series": series}, "champion": {"model": "naive", "series": series}}))
    (tmp_path / "backtest" / "market.summary.json").write_text("{}")
    r = Reports.load(tmp_path)
    assert set(r.backtest) == {"^KS11", "store_7"} and r.datasets == {"^KS11": "market", "store_7": "my_sales"}
    assert r.champions["my_sales"] == {"model": "naive", "series": "store_7"}  # the champion, not the latest best
    assert r.forecasts["store_7"]["rows"] == [{"ds": "2018-06-21", "mean": 2357.1}, {"ds": "2018-06-21 01:00", "mean": 2358.2}]
    box = Toolbox(r)
    assert json.loads(box.call('{"tool":"forecast","series":"my_sales","date":"2018-06-21 01:00"}'))["mean"] == "2360"
