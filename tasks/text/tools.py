"""The chat model's tools (ChatGPT plugins, for this project): named functions over the pipeline's own reports.

The model writes a call as one JSON object in an assistant message, e.g.

    {"tool":"metric","series":"^KS11","metric":"P2a_mae","model":"arima"}

:meth:`Toolbox.call` parses it, checks the name and the arguments (names, types,
lengths) against :data:`SPECS`, runs the tool and returns the result as a JSON
string for a ``tool`` message. Anything wrong (not JSON, an unknown tool, a
missing series, a division by zero) comes back as ``{"error": "..."}``: the model
sees the error, the program never crashes and nothing reaches a shell or ``eval``.

The tools and the facts they expose:

- ``metric(series, metric, model)``: a model's backtest metric on a series;
- ``rank(series, metric, order)``: the model with the ``best``, ``lowest`` or ``highest`` value of a
  metric on a series (best: lower for errors and times, higher for accuracies, nearest the nominal
  level for interval coverages);
- ``stationarity(series)``: the verdict of the stationarity tests and the differences ``d``;
- ``forecast(series, date?)``: the champion's forecast of a series (or of a dataset's champion
  series) at a date, or its first step;
- ``champion(dataset)``: the model and series a dataset's promotion chose;
- ``calculator(expression)``: arithmetic, parsed (never evaluated as code).

:meth:`Reports.load` discovers the datasets from the files present —
``<reports>/backtest/<dataset>.json``, ``stationarity/<dataset>.json``,
``promotion/<dataset>.json``, ``forecast/<dataset>.csv`` — so a dataset a user adds is
answered about as soon as its reports exist; nothing here names a dataset. Numbers are
given to 3 significant digits (:func:`fmt3`): the answer must equal the report.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path

MAX_ARG_CHARS = 80
MAX_EXPR_CHARS = 120
ORDERS = ("best", "lowest", "highest")


class ToolError(ValueError):
    """A bad call or a failed lookup: becomes ``{"error": ...}`` for the model, never an exception for the user."""


def fmt3(v: float) -> str:
    """A number to 3 significant digits, without exponent: 14.812 -> '14.8', 0.169558 -> '0.170', 1234.5 -> '1230'."""
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    r = float(f"{v:.3g}")
    decimals = 2 - math.floor(math.log10(abs(r)))
    return f"{r:.{max(decimals, 0)}f}"


# ----------------------------------------------------------------- the calculator

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_UNOPS = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def calculate(expression: str) -> float:
    """Arithmetic on numbers with + - * / ** and parentheses, parsed with ``ast`` (never ``eval``).

    Names, calls, attributes, strings: refused. Powers are bounded (|exponent| <= 64, |base| <= 1e6)
    so that ``9**9**9`` cannot hang the chat.
    """
    if len(expression) > MAX_EXPR_CHARS:
        raise ToolError(f"expression longer than {MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise ToolError(f"not an arithmetic expression: {err.msg}") from None

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
            return _UNOPS[type(node.op)](ev(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and (abs(b) > 64 or abs(a) > 1e6):
                raise ToolError("power too large")
            if isinstance(node.op, ast.Div) and b == 0:
                raise ToolError("division by zero")
            out = _BINOPS[type(node.op)](a, b)
            if isinstance(out, complex):
                raise ToolError("complex result")
            return out
        raise ToolError(f"not allowed in the calculator: {type(node).__name__}")

    return float(ev(tree))


# ----------------------------------------------------------------- which value of a metric is best

_COVERAGE = re.compile(r"cov(\d{2})")
_HIGHER = ("acc", "accuracy", "r2")
_LOWER = ("mae", "rmse", "mase", "mape", "smape", "mse", "crps", "seconds", "loss", "error", "width")


def best_direction(metric: str) -> tuple[str, float | None]:
    """How a metric ranks models, from its name: ("lower"|"higher", None) or ("nearest", nominal level).

    Interval coverages (``..._cov80...``) are best nearest their nominal level; accuracies higher;
    errors, losses and times lower. A metric none of these names (a p-value, a calibration factor)
    has no best: :class:`ToolError`.
    """
    m = _COVERAGE.search(metric)
    if m:
        return "nearest", int(m.group(1)) / 100
    last = metric.lower().rsplit("_", 1)[-1]
    if last in _HIGHER:
        return "higher", None
    if last in _LOWER:
        return "lower", None
    raise ToolError(f"{metric} has no best value: ask for its lowest or highest")


# ----------------------------------------------------------------- the reports


def _as_float(v) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def _ds_label(ds: str) -> str:
    """A forecast's time stamp as a user writes it: '2019-01-16' for midnight, else '2015-01-01 03:00' (local)."""
    day, _, clock = ds.replace("T", " ").partition(" ")
    hhmm = clock[:5]
    return day if not hhmm or hhmm == "00:00" else f"{day} {hhmm}"


@dataclass
class Reports:
    """The pipeline's outputs the tools read, merged over the datasets found.

    ``backtest``: {series: {model: {metric: value}}}; ``stationarity``: {series: {"verdict", "d", ...}};
    ``forecasts``: {series: {"model", "dataset", "rows": [{"ds", "mean"}, ...]}};
    ``champions``: {dataset: {"model", "series", ...}}; ``datasets``: {series: dataset}.
    """

    backtest: dict = field(default_factory=dict)
    stationarity: dict = field(default_factory=dict)
    forecasts: dict = field(default_factory=dict)
    champions: dict = field(default_factory=dict)
    datasets: dict = field(default_factory=dict)

    @classmethod
    def load(cls, reports_dir: str | Path) -> Reports:
        """Read every dataset's reports found under ``reports_dir`` (one file per dataset and kind; a missing
        kind is simply absent). The dataset's name is the file's stem."""
        d = Path(reports_dir)
        out = cls()
        for f in sorted((d / "backtest").glob("*.json")):
            if f.name.count(".") == 1:  # <dataset>.json, not <dataset>.summary.json
                table = json.loads(f.read_text())
                out.backtest.update(table)
                out.datasets.update({s: f.stem for s in table})
        for f in sorted((d / "stationarity").glob("*.json")):
            out.stationarity.update(json.loads(f.read_text()))
        for f in sorted((d / "promotion").glob("*.json")):
            rec = json.loads(f.read_text())
            chosen = rec.get("champion") or rec.get("best") or {}
            if chosen.get("model"):
                out.champions[f.stem] = {k: chosen[k] for k in ("model", "series", "protocol") if k in chosen}
        for f in sorted((d / "forecast").glob("*.csv")):
            with f.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("mean")]
            model = out.champions.get(f.stem, {}).get("model", "the champion")
            for r in rows:
                series = r.get("unique_id") or out.champions.get(f.stem, {}).get("series") or f.stem
                entry = out.forecasts.setdefault(series, {"model": model, "dataset": f.stem, "rows": []})
                entry["rows"].append({"ds": _ds_label(r.get("ds", "")), "mean": float(r["mean"])})
        return out


# ----------------------------------------------------------------- the tools

# name -> (required arguments, optional arguments); every argument is a short string
SPECS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "metric": (("series", "metric", "model"), ()),
    "rank": (("series", "metric", "order"), ()),
    "stationarity": (("series",), ()),
    "forecast": (("series",), ("date",)),
    "champion": (("dataset",), ()),
    "calculator": (("expression",), ()),
}


class Toolbox:
    """Validates and runs tool calls against :class:`Reports`; ``enabled=False`` answers every call with an error."""

    def __init__(self, reports: Reports, enabled: bool = True):
        self.reports = reports
        self.enabled = enabled

    def call(self, text: str) -> str:
        """A call's JSON text -> the result's JSON text (``{"error": ...}`` for anything wrong)."""
        try:
            return json.dumps(self.run(parse_call(text)), separators=(",", ":"))
        except ToolError as err:
            return json.dumps({"error": str(err)}, separators=(",", ":"))

    def run(self, call: dict) -> dict:
        if not self.enabled:
            raise ToolError("tools are disabled")
        name = call["tool"]
        args = {k: v for k, v in call.items() if k != "tool"}
        return getattr(self, f"_{name}")(**args)

    def choices(self, call: dict, arg: str) -> list[str] | None:
        """The values the reports hold for argument ``arg`` of ``call``'s tool, given the arguments before it
        that the reports hold (a model: those with the call's metric on its series); None for a free-text
        argument (the calculator's expression)."""
        r, name = self.reports, call["tool"]
        series = call.get("series")
        if arg == "series":
            if name == "stationarity":
                return sorted(r.stationarity)
            if name == "forecast":
                return sorted({*r.forecasts, *(f["dataset"] for f in r.forecasts.values())})
            return sorted(r.backtest)
        if arg == "metric":
            rows = [r.backtest[series]] if series in r.backtest else list(r.backtest.values())
            return sorted({k for table in rows for row in table.values() for k, v in (row or {}).items()
                           if _as_float(v) is not None})
        if arg == "model":
            try:
                return sorted(self._scores(series, call.get("metric")))
            except ToolError:
                return []
        if arg == "order":
            return list(ORDERS)
        if arg == "dataset":
            return sorted(r.champions)
        if arg == "date":
            f = self._forecast_of(series)
            return [row["ds"] for row in f["rows"]] if f else []
        return None

    def _scores(self, series: str, metric: str) -> dict[str, float]:
        if series not in self.reports.backtest:
            raise ToolError(f"unknown series {series!r} in the backtest reports")
        scores = {m: v for m, row in self.reports.backtest[series].items()
                  if (v := _as_float((row or {}).get(metric))) is not None}
        if not scores:
            raise ToolError(f"no metric {metric!r} on {series}")
        return scores

    def _metric(self, series: str, metric: str, model: str) -> dict:
        scores = self._scores(series, metric)
        if model not in scores:
            raise ToolError(f"no {metric} of model {model!r} on {series}")
        return {"value": fmt3(scores[model])}

    def _rank(self, series: str, metric: str, order: str) -> dict:
        if order not in ORDERS:
            raise ToolError(f"order is one of {', '.join(ORDERS)}, not {order!r}")
        scores = self._scores(series, metric)
        if order == "lowest":
            key = scores.get
        elif order == "highest":
            key = lambda m: -scores[m]  # noqa: E731
        else:
            how, nominal = best_direction(metric)
            key = {"lower": scores.get, "higher": lambda m: -scores[m],
                   "nearest": lambda m: abs(scores[m] - (nominal or 0.0))}[how]
        model = min(sorted(scores), key=key)  # ties: the first name
        return {"model": model, "value": fmt3(scores[model])}

    def _stationarity(self, series: str) -> dict:
        if series not in self.reports.stationarity:
            raise ToolError(f"unknown series {series!r} in the stationarity reports")
        r = self.reports.stationarity[series]
        return {"verdict": str(r.get("verdict")), "d": int(r.get("d", 0))}

    def _forecast_of(self, series: str) -> dict | None:
        """The forecast of a series, or of a dataset's champion series when ``series`` names a dataset."""
        f = self.reports.forecasts.get(series)
        return f if f is not None else next((v for v in self.reports.forecasts.values() if v["dataset"] == series), None)

    def _forecast(self, series: str, date: str | None = None) -> dict:
        f = self._forecast_of(series)
        if f is None or not f["rows"]:
            raise ToolError(f"no forecast of {series!r}")
        rows = f["rows"]
        if date is None:
            row = rows[0]
        else:
            want = _ds_label(date.strip())
            row = next((r for r in rows if r["ds"] == want), None)
            if row is None:
                raise ToolError(f"no forecast of {series} at {date}: it covers {rows[0]['ds']} .. {rows[-1]['ds']}")
        return {"model": f["model"], "ds": row["ds"], "mean": fmt3(row["mean"])}

    def _champion(self, dataset: str) -> dict:
        if dataset not in self.reports.champions:
            known = ", ".join(sorted(self.reports.champions)) or "none"
            raise ToolError(f"no champion of dataset {dataset!r} (datasets: {known})")
        c = self.reports.champions[dataset]
        return {"model": str(c["model"]), "series": str(c.get("series", "?"))}

    def _calculator(self, expression: str) -> dict:
        return {"value": fmt3(calculate(expression))}


def parse_call(text: str) -> dict:
    """Check a call's JSON text: an object with a known ``tool`` and exactly its (string) arguments."""
    try:
        call = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ToolError("the tool call is not valid JSON") from None
    if not isinstance(call, dict) or "tool" not in call:
        raise ToolError('a tool call is a JSON object with a "tool" key')
    name = call["tool"]
    if name not in SPECS:
        raise ToolError(f"unknown tool {name!r}; tools: {', '.join(SPECS)}")
    required, optional = SPECS[name]
    args = {k: v for k, v in call.items() if k != "tool"}
    missing = [a for a in required if a not in args]
    extra = [a for a in args if a not in required + optional]
    if missing or extra:
        raise ToolError(f"{name} takes {', '.join(required + optional)}; missing {missing}, unknown {extra}")
    for k, v in args.items():
        if not isinstance(v, str) or not v or len(v) > MAX_ARG_CHARS:
            raise ToolError(f"argument {k} must be a non-empty string of at most {MAX_ARG_CHARS} characters")
    return call


def is_tool_call(text: str) -> bool:
    """Whether an assistant message is a tool call (the model chose to call): a JSON object, by its first character."""
    return text.lstrip().startswith("{")
