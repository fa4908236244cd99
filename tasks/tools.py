"""The chat model's tools (ChatGPT plugins, for this project): named functions over the pipeline's own reports.

The model writes a call as one JSON object in an assistant message, e.g.

    {"tool":"leaderboard","series":"^KS11","metric":"P2a_mae","model":"arima"}

:meth:`Toolbox.call` parses it, checks the name and the arguments (names, types,
lengths) against :data:`SPECS`, runs the tool and returns the result as a JSON
string for a ``tool`` message. Anything wrong (not JSON, an unknown tool, a
missing series, a division by zero) comes back as ``{"error": "..."}``: the model
sees the error, the program never crashes and nothing reaches a shell or ``eval``.

Tools read ``<reports>/backtest/<dataset>.json``, ``<reports>/stationarity/<dataset>.json``,
``<reports>/promotion/<dataset>.json`` and ``<reports>/forecast/<dataset>.csv`` (``reports`` is
``paths.reports`` of params.yaml, handed in) or, for training, an in-memory dict of the same shape.
Numbers are given to 3 significant digits (:func:`fmt3`): the answer must equal the report.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import operator
from dataclasses import dataclass, field
from pathlib import Path

MAX_ARG_CHARS = 80
MAX_EXPR_CHARS = 120


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


# ----------------------------------------------------------------- the reports


@dataclass
class Reports:
    """The pipeline's outputs the tools read: {series: {model: {metric: value}}}, {series: verdict dict}, ...

    ``forecasts``: {dataset: {"model", "series", "rows": [{"ds", "mean"}, ...]}}.
    """

    backtest: dict = field(default_factory=dict)
    stationarity: dict = field(default_factory=dict)
    forecasts: dict = field(default_factory=dict)

    @classmethod
    def load(cls, reports_dir: str | Path) -> "Reports":
        """Read every dataset's reports that exist under ``reports_dir`` (missing ones are simply absent)."""
        d = Path(reports_dir)
        out = cls()
        names = sorted(p.name.removesuffix(".json") for p in (d / "backtest").glob("*.json")
                       if not p.name.endswith(".summary.json")) if (d / "backtest").is_dir() else []
        for ds in names:  # every dataset whose backtest left a leaderboard
            bt, st = d / "backtest" / f"{ds}.json", d / "stationarity" / f"{ds}.json"
            if bt.is_file():
                out.backtest.update(json.loads(bt.read_text()))
            if st.is_file():
                out.stationarity.update(json.loads(st.read_text()))
            fc, pr = d / "forecast" / f"{ds}.csv", d / "promotion" / f"{ds}.json"
            if fc.is_file():
                with fc.open() as f:
                    rows = [{"ds": r.get("ds", ""), "mean": float(r["mean"])} for r in csv.DictReader(f) if r.get("mean")]
                best = (json.loads(pr.read_text()).get("best") or {}) if pr.is_file() else {}
                out.forecasts[ds] = {"model": best.get("model", "?"), "series": best.get("series", "?"), "rows": rows}
        return out


# ----------------------------------------------------------------- the tools

# name -> (required arguments, optional arguments); every argument is a short string
SPECS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "leaderboard": (("series", "metric"), ("model",)),
    "stationarity": (("series",), ()),
    "forecast": (("dataset",), ()),
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

    def _series(self, table: dict, series: str, what: str) -> dict:
        if series not in table:
            raise ToolError(f"unknown series {series!r} in the {what} report")
        return table[series]

    def _leaderboard(self, series: str, metric: str, model: str | None = None) -> dict:
        by_model = self._series(self.reports.backtest, series, "backtest")
        scores = {m: v[metric] for m, v in by_model.items() if isinstance(v.get(metric), int | float)}
        if not scores:
            raise ToolError(f"no metric {metric!r} on {series}")
        if model is None:  # the leaderboard's top: the lowest value (errors, times: lower is better)
            model = min(scores, key=scores.get)
        elif model not in scores:
            raise ToolError(f"no {metric} of model {model!r} on {series}")
        return {"model": model, "value": fmt3(scores[model])}

    def _stationarity(self, series: str) -> dict:
        r = self._series(self.reports.stationarity, series, "stationarity")
        return {"verdict": str(r.get("verdict")), "d": int(r.get("d", 0))}

    def _forecast(self, dataset: str) -> dict:
        if dataset not in self.reports.forecasts:
            raise ToolError(f"no forecast of dataset {dataset!r}")
        f = self.reports.forecasts[dataset]
        if not f["rows"]:
            raise ToolError(f"the forecast of {dataset} is empty")
        first = f["rows"][0]
        return {"model": f["model"], "series": f["series"], "ds": str(first["ds"]), "mean": fmt3(first["mean"])}

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
