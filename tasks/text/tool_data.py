"""Tool-use conversations: synthetic for training, the pipeline's real reports for held-out evaluation.

The fine-tune must teach *which tool and which names*, and to copy the tool's result
into the answer — not facts. So training conversations come from small random
"worlds" (:func:`random_reports`: made-up datasets, series, models, metrics, values),
phrased with the *train* forms of :mod:`tasks.text.phrasings`; the real reports are
never seen in training, and neither are the *held-out* phrasings. One conversation:

    system (terse or full style) / user question / assistant: tool call JSON /
    tool: result JSON / assistant: the answer written from the result

plus questions no tool answers (the answer: :data:`CANT_ANSWER`, no call), greetings,
calls that fail (an unknown series: the same answer) and, in some, an earlier turn, so
that the model itself decides whether to call, which tool, and with which arguments.

Evaluation sets (:func:`heldout_questions`) are drawn from any :class:`Reports` — the
real ones of the pipeline, whatever datasets they hold — per question kind and
phrasing family, each with its reference call and answer.
"""

from __future__ import annotations

import json
import random
import string

from tasks.text.chatml import SYSTEM_FULL, SYSTEM_TERSE
from tasks.text.phrasings import CANT_ANSWER, GREETING_ANSWER, GREETINGS, out_of_scope, question
from tasks.text.tools import Reports, ToolError, Toolbox, best_direction

SYSTEMS = (SYSTEM_TERSE, SYSTEM_FULL)
VERDICTS = ("stationary", "trend-stationary", "difference-stationary", "non-stationary", "inconclusive")
# the question kinds (the table of accuracy reports them one by one) and their weights in training
KINDS = ("metric", "best", "lowest", "highest", "stationary", "differences", "forecast", "next_forecast", "champion",
         "calculator")
KIND_WEIGHTS = {"metric": 5, "best": 3, "lowest": 1, "highest": 1, "stationary": 2, "differences": 2, "forecast": 3,
                "next_forecast": 1, "champion": 2, "calculator": 2}
OUT_OF_SCOPE_SHARE, GREETING_SHARE, WRONG_SERIES_SHARE, TWO_TURN_SHARE = 0.10, 0.03, 0.05, 0.10


def compact(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))


def tool_call(kind: str, q: dict) -> dict:
    """The call a question of ``kind`` with slots ``q`` needs (what the model must learn to write)."""
    if kind == "metric":
        return {"tool": "metric", "series": q["series"], "metric": q["metric"], "model": q["model"]}
    if kind in ("best", "lowest", "highest"):
        return {"tool": "rank", "series": q["series"], "metric": q["metric"], "order": kind}
    if kind in ("stationary", "differences"):
        return {"tool": "stationarity", "series": q["series"]}
    if kind == "forecast":
        return {"tool": "forecast", "series": q["series"], "date": q["date"]}
    if kind == "next_forecast":
        return {"tool": "forecast", "series": q["series"]}
    if kind == "champion":
        return {"tool": "champion", "dataset": q["dataset"]}
    return {"tool": "calculator", "expression": q["expression"]}


def final_answer(kind: str, q: dict, result: dict, terse: bool) -> str:
    """The answer written from the tool's result, in the system message's style."""
    if "error" in result:
        return CANT_ANSWER
    if kind == "metric":
        return result["value"] if terse else f"The {q['metric']} of {q['model']} on {q['series']} is {result['value']}."
    if kind == "best":
        return result["model"] if terse else \
            f"{result['model']} is the best model by {q['metric']} on {q['series']}: {result['value']}."
    if kind in ("lowest", "highest"):
        return result["model"] if terse else \
            f"{result['model']} has the {kind} {q['metric']} on {q['series']}: {result['value']}."
    if kind == "stationary":
        return result["verdict"] if terse else f"The verdict for {q['series']} is {result['verdict']}."
    if kind == "differences":
        return str(result["d"]) if terse else f"The order of differencing of {q['series']} is {result['d']}."
    if kind in ("forecast", "next_forecast"):
        return result["mean"] if terse else f"{result['model']} forecasts {result['mean']} for {q['series']} at {result['ds']}."
    if kind == "champion":
        return result["model"] if terse else f"The champion of {q['dataset']} is {result['model']} on {result['series']}."
    return result["value"] if terse else f"{q['expression']} = {result['value']}."


def conversation(kind: str, q: dict, toolbox: Toolbox, system: str, text: str) -> tuple[list[dict], str, str]:
    """(the full conversation with the correct call and answer, the correct answer, the call) for the question ``text``."""
    call = compact(tool_call(kind, q))
    result = toolbox.call(call)
    ans = final_answer(kind, q, json.loads(result), system == SYSTEM_TERSE)
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": text},
            {"role": "assistant", "content": call}, {"role": "tool", "content": result},
            {"role": "assistant", "content": ans}]
    return msgs, ans, call


def no_tool_conversation(system: str, text: str, answer: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": text},
            {"role": "assistant", "content": answer}]


# ----------------------------------------------------------------- synthetic worlds


def _word(rng: random.Random, lo: int, hi: int, alphabet: str = string.ascii_lowercase) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def random_series(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:  # an index ticker
        return "^" + _word(rng, 2, 4, string.ascii_uppercase) + _word(rng, 0, 3, string.digits)
    if kind == 1:  # a station
        return _word(rng, 3, 8) + "_" + _word(rng, 3, 8)
    if kind == 2:
        return _word(rng, 1, 1, string.ascii_uppercase) + _word(rng, 3, 9)
    if kind == 3:
        return _word(rng, 4, 9)
    return _word(rng, 2, 6, string.ascii_uppercase + string.digits) + rng.choice(".-_") + _word(rng, 1, 3, string.ascii_uppercase)


def random_model(rng: random.Random) -> str:
    name = _word(rng, 2, 9)
    return name + rng.choice(["", "", "_" + _word(rng, 2, 6), _word(rng, 1, 2, string.digits)])


SUFFIXES = ("mae", "rmse", "mase", "cov80", "cov95", "dir_acc", "seconds", "dm_pvalue", "calib80")


def random_metric(rng: random.Random) -> str:
    """Names of the pipeline's shape (``P2a_mase``, ``fit_seconds``) with made-up parts: a suffix says how to rank."""
    stem = rng.choice([_word(rng, 2, 6) + "_", "P" + str(rng.randint(1, 9)) + rng.choice("abc") + "_"])
    if rng.random() < 0.35:
        return stem + _word(rng, 2, 7)  # a name the tool cannot rank by "best"
    return stem + rng.choice(SUFFIXES)


def random_dataset(rng: random.Random) -> str:
    return _word(rng, 3, 8) + rng.choice(["", "", _word(rng, 1, 3, string.digits), "_" + _word(rng, 2, 5)])


def random_value(rng: random.Random) -> float:
    return round(10 ** rng.uniform(-3, 5) * rng.choice([1, 1, 1, -1 if rng.random() < 0.1 else 1]), rng.randint(2, 6))


def random_date(rng: random.Random, hourly: bool) -> str:
    day = f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return f"{day} {rng.randint(0, 23):02d}:00" if hourly else day


def random_reports(rng: random.Random) -> Reports:
    """A small made-up world: 1-2 datasets, 1-3 series each x 3-6 models x 2-4 metrics, stationarity verdicts,
    a champion and its forecast per dataset (a few daily or hourly steps)."""
    r = Reports()
    metrics = list(dict.fromkeys(random_metric(rng) for _ in range(rng.randint(2, 4))))
    models = list(dict.fromkeys(random_model(rng) for _ in range(rng.randint(3, 6))))
    for _ in range(rng.randint(1, 2)):
        ds = random_dataset(rng)
        series = list(dict.fromkeys(random_series(rng) for _ in range(rng.randint(1, 3))))
        for s in series:
            r.backtest[s] = {m: {k: random_value(rng) for k in metrics} for m in models}
            r.stationarity[s] = {"verdict": rng.choice(VERDICTS), "d": rng.randint(0, 2)}
            r.datasets[s] = ds
        best = rng.choice(series)
        r.champions[ds] = {"model": rng.choice(models), "series": best}
        hourly = rng.random() < 0.5
        day = f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 20):02d}"
        hour = rng.randint(0, 18)
        steps = range(rng.randint(2, 6))
        labels = [f"{day} {hour + i:02d}:00" for i in steps] if hourly else [f"{day[:-2]}{int(day[-2:]) + i:02d}" for i in steps]
        rows = [{"ds": label, "mean": random_value(rng)} for label in labels]
        r.forecasts[best] = {"model": r.champions[ds]["model"], "dataset": ds, "rows": rows}
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


def _rankable(metric: str) -> bool:
    try:
        best_direction(metric)
        return True
    except ToolError:
        return False


def slots_of(reports: Reports, kind: str, rng: random.Random, wrong_series: float = 0.0) -> dict | None:
    """The slots of one question of ``kind`` about ``reports`` (None when the reports hold nothing to ask);
    with probability ``wrong_series`` a series (or dataset) they do not hold."""
    if kind == "calculator":
        return {"expression": random_expression(rng)}
    if kind == "champion":
        if not reports.champions:
            return None
        ds = rng.choice(sorted(reports.champions))
        return {"dataset": random_dataset(rng) if rng.random() < wrong_series else ds}
    if kind in ("forecast", "next_forecast"):
        usable = sorted(s for s, f in reports.forecasts.items() if f["rows"])
        if not usable:
            return None
        s = rng.choice(usable)
        date = rng.choice(reports.forecasts[s]["rows"])["ds"]
        return {"series": random_series(rng) if rng.random() < wrong_series else s, "date": date}
    table = reports.stationarity if kind in ("stationary", "differences") else reports.backtest
    if not table:
        return None
    s = rng.choice(sorted(table))
    out = {"series": random_series(rng) if rng.random() < wrong_series else s}
    if kind in ("stationary", "differences"):
        return out
    rows = reports.backtest[s]
    pairs = sorted((m, k) for m, row in rows.items() for k, v in (row or {}).items()
                   if isinstance(v, int | float) and not isinstance(v, bool) and v == v)
    if kind == "best":
        pairs = [(m, k) for m, k in pairs if _rankable(k)] or pairs
    if not pairs:
        return None
    model, metric = rng.choice(pairs)
    return {**out, "model": model, "metric": metric}


def _filler_slots(rng: random.Random) -> dict:
    return {"series": random_series(rng), "model": random_model(rng), "metric": random_metric(rng),
            "dataset": random_dataset(rng)}


def training_conversation(rng: random.Random, family: str = "train") -> list[dict]:
    """One conversation of the fine-tune (phrasings of ``family``: train, or its part fit; a fresh made-up world)."""
    system = rng.choice(SYSTEMS)
    u = rng.random()
    if u < GREETING_SHARE:
        return no_tool_conversation(system, rng.choice(GREETINGS), GREETING_ANSWER)
    if u < GREETING_SHARE + OUT_OF_SCOPE_SHARE:
        return no_tool_conversation(system, out_of_scope(_filler_slots(rng), rng, family, noise=True),
                                    CANT_ANSWER)
    world = random_reports(rng)
    kinds, weights = zip(*KIND_WEIGHTS.items())
    while True:
        kind = rng.choices(kinds, weights)[0]
        q = slots_of(world, kind, rng, wrong_series=WRONG_SERIES_SHARE)
        if q is not None:
            break
    msgs = conversation(kind, q, Toolbox(world), system, question(kind, q, rng, family, noise=True))[0]
    if rng.random() < TWO_TURN_SHARE:  # an earlier turn about the same world: the model answers the last question
        kind0 = rng.choices(kinds, weights)[0]
        q0 = slots_of(world, kind0, rng)
        if q0 is not None:
            first = conversation(kind0, q0, Toolbox(world), system,
                                 question(kind0, q0, rng, family, noise=True))[0]
            msgs = first + msgs[1:]
    return msgs


def training_conversations(n: int, seed: int, family: str = "train") -> list[list[dict]]:
    rng = random.Random(seed)
    return [training_conversation(rng, family) for _ in range(n)]


# ----------------------------------------------------------------- held-out questions


def heldout_questions(reports: Reports, n_per_kind: int, seed: int, family: str = "train",
                      kinds: tuple[str, ...] = KINDS) -> list[dict]:
    """``n_per_kind`` distinct questions of each kind about ``reports`` in the phrasings of ``family``
    (train: the forms trained on, with names never trained on; heldout: forms never trained on).

    Returns [{kind, family, system, question, messages (system + user), reference, call}], the systems alternating.
    """
    rng = random.Random(seed)
    box = Toolbox(reports)
    out = []
    for kind in kinds:
        seen: set[str] = set()
        for _ in range(n_per_kind * 8):
            if len(seen) >= n_per_kind:
                break
            q = slots_of(reports, kind, rng)
            if q is None:
                break
            key = json.dumps(q, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            system = SYSTEMS[len(seen) % 2]
            msgs, ref, call = conversation(kind, q, box, system, question(kind, q, rng, family))
            out.append({"kind": kind, "family": family, "system": system, "question": msgs[1]["content"],
                        "messages": msgs[:2], "reference": ref, "call": call})
    return out


def out_of_scope_questions(reports: Reports, n: int, seed: int, family: str = "heldout") -> list[dict]:
    """``n`` questions no tool answers, in the forms of ``family`` (held-out by default; ``train`` where a
    recipe is chosen without them), names from ``reports`` where a form has slots."""
    from tasks.text.phrasings import OUT_OF_SCOPE

    rng = random.Random(seed)
    forms = list(OUT_OF_SCOPE[family])
    rng.shuffle(forms)
    series = next(iter(sorted(reports.backtest)), "X")
    rows = reports.backtest.get(series, {})
    model = next(iter(sorted(rows)), "a model")
    names = {"series": series, "model": model, "metric": next(iter(sorted(rows.get(model) or {})), "error"),
             "dataset": next(iter(sorted(reports.champions)), "the data")}
    out = []
    for i, form in enumerate((forms * (n // len(forms) + 1))[:n]):
        system = SYSTEMS[i % 2]
        text = form.format(**names)
        out.append({"kind": "out_of_scope", "family": family, "system": system, "question": text,
                    "messages": no_tool_conversation(system, text, CANT_ANSWER)[:2], "reference": CANT_ANSWER,
                    "call": None})
    return out


def evaluation_sets(reports: Reports, n_per_kind: int, n_out_of_scope: int, seed: int) -> dict[str, list[dict]]:
    """The chat's judged questions about ``reports``: trained forms, unseen forms, questions no tool answers."""
    return {"trained": heldout_questions(reports, n_per_kind, seed, "train"),
            "unseen": heldout_questions(reports, n_per_kind, seed + 1, "heldout"),
            "out_of_scope": out_of_scope_questions(reports, n_out_of_scope, seed + 2)}


def synthetic_sets(n_worlds: int, seed: int, family: str = "train") -> list[tuple[list[dict], Reports]]:
    """Held-out questions about made-up worlds of seeds training never draws from (``seed + 10_000 + i``)."""
    out = []
    for i in range(n_worlds):
        s = seed + 10_000 + i
        world = random_reports(random.Random(s))
        out.append((heldout_questions(world, 1, s, family), world))
    return out


def training_alphabet() -> str:
    """Every character the conversations can hold (a character chat tokenizer gets them all as ids)."""
    return string.printable
