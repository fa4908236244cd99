"""Tool-use conversations: synthetic for training, the pipeline's real reports for held-out evaluation.

The fine-tune must teach *copying* — names from the question into the call's
arguments, the tool's result into the answer — not facts. So training
conversations come from small random "worlds" (:func:`random_reports`: made-up
series, model and metric names, random values) and the real reports are never
seen in training: every real series, model and metric is held out, and accuracy on
them measures whether the model uses the tool. One conversation:

    system (terse or full style) / user question / assistant: tool call JSON /
    tool: result JSON / assistant: the answer written from the result

plus some questions that need no tool (greetings) and calls that fail (an unknown
series: the answer says so), so that the model decides whether to call.
"""

from __future__ import annotations

import json
import random
import string

from tasks.text.chatml import SYSTEM_FULL, SYSTEM_TERSE
from tasks.text.tools import Reports, Toolbox

SYSTEMS = (SYSTEM_TERSE, SYSTEM_FULL)
ERROR_ANSWER = "The tool returned an error."
GREETINGS = ("Hello", "Hi", "Who are you?", "Thanks", "Good morning")
GREETING_ANSWER = "Hello! Ask me about the pipeline's results."
VERDICTS = ("stationary", "trend-stationary", "difference-stationary", "non-stationary", "inconclusive")
FORMS = ("metric", "lowest", "stationary", "differences", "forecast", "calculator")

# question templates: the README lists these forms
QUESTIONS = {
    "metric": "What is the {metric} of {model} on {series}?",
    "lowest": "Which model has the lowest {metric} on {series}?",
    "stationary": "Is {series} stationary?",
    "differences": "How many differences does {series} need?",
    "forecast": "What is the latest forecast for {dataset}?",
    "calculator": "What is {expression}?",
}


def compact(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))


def tool_call(form: str, q: dict) -> dict:
    """The call a question of ``form`` with slots ``q`` needs (what the model must learn to write)."""
    if form == "metric":
        return {"tool": "leaderboard", "series": q["series"], "metric": q["metric"], "model": q["model"]}
    if form == "lowest":
        return {"tool": "leaderboard", "series": q["series"], "metric": q["metric"]}
    if form in ("stationary", "differences"):
        return {"tool": "stationarity", "series": q["series"]}
    if form == "forecast":
        return {"tool": "forecast", "dataset": q["dataset"]}
    return {"tool": "calculator", "expression": q["expression"]}


def final_answer(form: str, q: dict, result: dict, terse: bool) -> str:
    """The answer written from the tool's result, in the system message's style."""
    if "error" in result:
        return ERROR_ANSWER
    if form == "metric":
        return result["value"] if terse else f"The {q['metric']} of {q['model']} on {q['series']} is {result['value']}."
    if form == "lowest":
        return result["model"] if terse else f"{result['model']} has the lowest {q['metric']} on {q['series']}: {result['value']}."
    if form == "stationary":
        return result["verdict"] if terse else f"The verdict for {q['series']} is {result['verdict']}."
    if form == "differences":
        return str(result["d"]) if terse else f"{q['series']} needs {result['d']} differences."
    if form == "forecast":
        return result["mean"] if terse else f"{result['model']} forecasts {result['mean']} for {result['ds']}."
    return result["value"] if terse else f"{q['expression']} = {result['value']}."


def conversation(form: str, q: dict, toolbox: Toolbox, system: str) -> tuple[list[dict], str]:
    """(the full conversation with the correct call and answer, the correct final answer)."""
    call = compact(tool_call(form, q))
    result = toolbox.call(call)
    ans = final_answer(form, q, json.loads(result), system == SYSTEM_TERSE)
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": QUESTIONS[form].format(**q)},
            {"role": "assistant", "content": call}, {"role": "tool", "content": result},
            {"role": "assistant", "content": ans}]
    return msgs, ans


# ----------------------------------------------------------------- synthetic worlds


def _word(rng: random.Random, lo: int, hi: int, alphabet: str = string.ascii_lowercase) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def random_series(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:  # an index ticker
        return "^" + _word(rng, 2, 4, string.ascii_uppercase) + _word(rng, 0, 3, string.digits)
    if kind == 1:  # a station
        return _word(rng, 3, 8) + "_" + _word(rng, 3, 8)
    if kind == 2:
        return _word(rng, 1, 1, string.ascii_uppercase) + _word(rng, 3, 9)
    return _word(rng, 2, 5, string.ascii_uppercase + string.digits) + rng.choice(".-_") + _word(rng, 1, 3, string.ascii_uppercase)


def random_model(rng: random.Random) -> str:
    name = _word(rng, 2, 9)
    return name + rng.choice(["", "", "_" + _word(rng, 2, 5), _word(rng, 1, 2, string.digits)])


def random_metric(rng: random.Random) -> str:
    if rng.random() < 0.8:
        return f"P{rng.randint(1, 3)}{rng.choice('abc')}_" + _word(rng, 2, 7) + rng.choice(["", "", "80", "95"])
    return _word(rng, 3, 6) + "_" + _word(rng, 3, 8)


def random_value(rng: random.Random) -> float:
    return round(10 ** rng.uniform(-3, 5) * rng.choice([1, 1, 1, -1 if rng.random() < 0.1 else 1]), rng.randint(2, 6))


def random_reports(rng: random.Random) -> Reports:
    """A small made-up world: 1-3 series x 3-6 models x 2-4 metrics, stationarity verdicts, one or two forecasts."""
    r = Reports()
    metrics = [random_metric(rng) for _ in range(rng.randint(2, 4))]
    models = list({random_model(rng) for _ in range(rng.randint(3, 6))})
    for _ in range(rng.randint(1, 3)):
        s = random_series(rng)
        r.backtest[s] = {m: {k: random_value(rng) for k in metrics} for m in models}
        r.stationarity[s] = {"verdict": rng.choice(VERDICTS), "d": rng.randint(0, 2)}
    for ds in rng.sample(["market", "pm25", _word(rng, 3, 7)], k=rng.randint(1, 2)):
        day = f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        r.forecasts[ds] = {"model": random_model(rng), "series": random_series(rng),
                           "rows": [{"ds": day, "mean": random_value(rng)}]}
    return r


def random_expression(rng: random.Random) -> str:
    def num() -> str:
        return str(rng.randint(0, 999)) if rng.random() < 0.6 else f"{rng.uniform(0, 100):.{rng.randint(1, 3)}f}"

    e = f"{num()} {rng.choice('+-*/')} {num()}"
    if rng.random() < 0.3:
        e = f"({e}) {rng.choice('+-*/')} {num()}"
    if rng.random() < 0.1:
        e = f"{rng.randint(2, 12)} ** {rng.randint(2, 4)}"
    return e


def questions_of(reports: Reports, form: str, rng: random.Random, wrong_series: float = 0.0) -> dict:
    """Slots of one question of ``form`` about ``reports``; with probability ``wrong_series`` an unknown series."""
    series = rng.choice(sorted(reports.backtest) or ["?"])
    if rng.random() < wrong_series:
        series = random_series(rng)
    if form in ("metric", "lowest"):
        by_model = reports.backtest.get(series) or next(iter(reports.backtest.values()))
        model = rng.choice(sorted(by_model))
        metric = rng.choice(sorted({k for v in by_model.values() for k in v}))
        return {"series": series, "model": model, "metric": metric}
    if form in ("stationary", "differences"):
        return {"series": series}
    if form == "forecast":
        return {"dataset": rng.choice(sorted(reports.forecasts) or ["market"])}
    return {"expression": random_expression(rng)}


FORM_WEIGHTS = {"metric": 4, "lowest": 3, "stationary": 2, "differences": 2, "forecast": 1, "calculator": 2}


def training_conversations(n: int, seed: int) -> list[list[dict]]:
    """``n`` conversations on random worlds: tool use (5% of them a failing call) and 5% greetings without a tool."""
    rng = random.Random(seed)
    forms, weights = zip(*FORM_WEIGHTS.items())
    out = []
    for _ in range(n):
        system = rng.choice(SYSTEMS)
        if rng.random() < 0.05:
            out.append([{"role": "system", "content": system}, {"role": "user", "content": rng.choice(GREETINGS)},
                        {"role": "assistant", "content": GREETING_ANSWER}])
            continue
        reports = random_reports(rng)
        form = rng.choices(forms, weights)[0]
        q = questions_of(reports, form, rng, wrong_series=0.05)
        out.append(conversation(form, q, Toolbox(reports), system)[0])
    return out


def heldout_questions(reports: Reports, n_per_form: int, seed: int) -> list[dict]:
    """Questions about ``reports`` (the pipeline's real ones: never in training), each with its reference answer.

    Returns [{form, system, question, messages (system + user), reference}] for both system styles.
    """
    rng = random.Random(seed)
    box = Toolbox(reports)
    out = []
    for form in FORMS:
        if form == "forecast" and not reports.forecasts:
            continue
        if form in ("metric", "lowest", "stationary", "differences") and not reports.backtest:
            continue
        seen = set()
        for _ in range(n_per_form * 4):
            if len(seen) >= n_per_form:
                break
            q = questions_of(reports, form, rng)
            if form in ("stationary", "differences") and q["series"] not in reports.stationarity:
                continue
            key = json.dumps(q, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            system = SYSTEMS[len(seen) % 2]
            msgs, ref = conversation(form, q, box, system)
            out.append({"form": form, "system": system, "question": msgs[1]["content"], "messages": msgs[:2],
                        "reference": ref, "call": msgs[2]["content"]})
    return out


def heldout_sets(reports: Reports, n_per_form: int, n_worlds: int, seed: int) -> dict[str, list[tuple[list[dict], Reports]]]:
    """Held-out question sets: about the pipeline's real reports ("real"), and about made-up worlds of seeds
    training never draws from ("synthetic": ``seed + 10_000 + i``; training uses ``random.Random(seed)``)."""
    synth = []
    for i in range(n_worlds):
        s = seed + 10_000 + i
        world = random_reports(random.Random(s))
        synth.append((heldout_questions(world, 1, s), world))
    return {"real": [(heldout_questions(reports, n_per_form, seed), reports)], "synthetic": synth}


def training_alphabet() -> str:
    """Every character the conversations can hold (the chat tokenizer gets them all as ids)."""
    return string.printable
