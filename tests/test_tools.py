"""The chat model's tools: validation, the safe calculator, 3-significant-digit numbers, the tool loop."""

from __future__ import annotations

import json
import random

import pytest

from tasks.text import tool_data
from tasks.text.tools import Reports, ToolError, Toolbox, calculate, fmt3, parse_call

BACKTEST = {"^KS11": {"arima": {"P2a_mae": 14.812636, "P2a_mase": 1.295918},
                      "naive": {"P2a_mae": 12.5, "P2a_mase": 1.0}}}
STATIONARITY = {"^KS11": {"verdict": "difference-stationary", "d": 1}}


@pytest.fixture
def box() -> Toolbox:
    return Toolbox(Reports(BACKTEST, STATIONARITY, {"market": {"model": "naive", "series": "^KS11",
                                                              "rows": [{"ds": "2018-06-21", "mean": 2357.123}]}}))


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


def test_leaderboard_returns_the_report_value_and_the_lowest(box):
    one = json.loads(box.call('{"tool":"leaderboard","series":"^KS11","metric":"P2a_mae","model":"arima"}'))
    assert one == {"model": "arima", "value": "14.8"}
    best = json.loads(box.call('{"tool":"leaderboard","series":"^KS11","metric":"P2a_mae"}'))
    assert best == {"model": "naive", "value": "12.5"}


def test_stationarity_forecast_and_calculator_tools(box):
    assert json.loads(box.call('{"tool":"stationarity","series":"^KS11"}')) == {"verdict": "difference-stationary", "d": 1}
    assert json.loads(box.call('{"tool":"forecast","dataset":"market"}'))["mean"] == "2360"
    assert json.loads(box.call('{"tool":"calculator","expression":"14.8 * 2"}')) == {"value": "29.6"}


@pytest.mark.parametrize("call, fragment", [
    ("not json", "not valid JSON"),
    ("[1, 2]", '"tool" key'),
    ('{"tool":"shell","cmd":"rm -rf /"}', "unknown tool"),
    ('{"tool":"leaderboard","series":"^KS11"}', "missing"),
    ('{"tool":"leaderboard","series":"^KS11","metric":"P2a_mae","x":"1"}', "unknown"),
    ('{"tool":"leaderboard","series":3,"metric":"P2a_mae"}', "string"),
    ('{"tool":"leaderboard","series":"^XX","metric":"P2a_mae"}', "unknown series"),
    ('{"tool":"leaderboard","series":"^KS11","metric":"P9_x"}', "no metric"),
    ('{"tool":"calculator","expression":"open(1)"}', "not allowed"),
    ('{"tool":"forecast","dataset":"pm25"}', "no forecast"),
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
    convs = tool_data.training_conversations(300, seed=0)
    text = json.dumps(convs)
    assert "^KS11" not in text and "arima" not in text  # the real names never appear in training
    calls = [c for c in convs if len(c) == 5]
    assert len(calls) > 250
    for c in calls[:50]:
        call, result, ans = c[2]["content"], json.loads(c[3]["content"]), c[4]["content"]
        assert c[3]["role"] == "tool" and json.loads(call)["tool"] in ("leaderboard", "stationarity", "forecast",
                                                                        "calculator")
        if "error" in result:
            assert ans == tool_data.ERROR_ANSWER
        else:  # the answer is written from the result: its value is copied
            assert any(str(v) in ans for v in result.values())


def test_heldout_questions_reference_the_report_values(box):
    qs = tool_data.heldout_questions(box.reports, 3, seed=0)
    forms = {q["form"] for q in qs}
    assert {"metric", "lowest", "stationary", "differences", "forecast", "calculator"} <= forms
    for q in qs:
        if q["form"] == "metric" and q["system"] == tool_data.SYSTEM_FULL:
            model, metric = q["question"].split(" of ")[1].split(" on ")[0], q["question"].split("the ")[1].split(" of")[0]
            assert q["reference"] == f"The {metric} of {model} on ^KS11 is {fmt3(BACKTEST['^KS11'][model][metric])}."
    d = next(q for q in qs if q["form"] == "differences")
    assert d["reference"] in ("1", "^KS11 needs 1 differences.")


def test_random_worlds_are_reproducible():
    a, b = tool_data.random_reports(random.Random(3)), tool_data.random_reports(random.Random(3))
    assert a.backtest == b.backtest and a.forecasts == b.forecasts


def test_reports_load_reads_the_pipeline_layout(tmp_path):
    (tmp_path / "backtest").mkdir()
    (tmp_path / "stationarity").mkdir()
    (tmp_path / "forecast").mkdir()
    (tmp_path / "promotion").mkdir()
    (tmp_path / "backtest" / "market.json").write_text(json.dumps(BACKTEST))
    (tmp_path / "stationarity" / "market.json").write_text(json.dumps(STATIONARITY))
    (tmp_path / "forecast" / "market.csv").write_text("unique_id,ds,mean,lo-80,hi-80\n^KS11,2018-06-21,2357.1,2300,2400\n")
    (tmp_path / "promotion" / "market.json").write_text(json.dumps({"best": {"model": "naive", "series": "^KS11"}}))
    r = Reports.load(tmp_path)
    assert r.backtest == BACKTEST and r.stationarity == STATIONARITY
    assert r.forecasts["market"]["model"] == "naive" and r.forecasts["market"]["rows"][0]["mean"] == 2357.1
