"""The errors bad input and broken surroundings produce.

A :class:`DataValidationError` names the file, the column (the internal name *and* the
user's column as written in the file), the rule, the count and example rows with their
file line numbers. A :class:`Failure` with ``severity="warning"`` is a rare quirk
tolerated under a stated threshold (``params.yaml`` ``validation.*``): reported, not fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class Failure:
    rule: str  # e.g. "expect_column_values_to_be_between(min_value=0, max_value=2000)"
    column: str | None  # the internal column (``y``, ``ds``) or a derived one (``step_hours``)
    count: int  # offending rows (or the observed value for table-level rules)
    total: int
    examples: pd.DataFrame = field(default_factory=pd.DataFrame)  # index: file line numbers ("line")
    detail: str = ""
    source_column: str = ""  # the user's column as written in the file ("Close", "pm2.5", "Date")
    severity: str = "error"  # "error" stops the pipeline; "warning" is a tolerated quirk
    hint: str = ""  # what to change: the file, an option of the command, or the rule (a params.yaml key)

    def where(self) -> str:
        if not self.column:
            return ""
        text = f" on column '{self.column}'"
        if self.source_column and self.source_column != self.column:
            text += f" (file column {self.source_column})"
        return text

    def render(self) -> str:
        head = f"  - rule {self.rule}{self.where()}"
        head += f": {self.count} of {self.total} rows" if self.total else f": {self.detail}"
        if self.total:
            head += " fail" if self.severity == "error" else " tolerated"
        if self.detail and self.total:
            head += f" ({self.detail})"
        if self.examples is not None and not self.examples.empty:
            shown = self.examples.head(5).to_string(index=True)
            head += "\n    example rows:\n" + "\n".join("      " + line for line in shown.splitlines())
        return head

    def to_dict(self) -> dict:
        """JSON-ready summary (validation report, MLflow)."""
        lines = [int(i) for i in self.examples.index[:5]] if self.examples is not None and len(self.examples) else []
        return {"rule": self.rule, "column": self.column, "file_column": self.source_column or self.column,
                "count": int(self.count), "total": int(self.total), "detail": self.detail,
                "severity": self.severity, "example_lines": lines}


class DataValidationError(Exception):
    """Raised when a data set breaks its rules. Raw files are never touched."""

    def __init__(self, dataset: str, files: list[str], failures: list[Failure], warnings: list[Failure] | None = None):
        self.dataset, self.files, self.failures = dataset, files, failures
        self.warnings = list(warnings or [])
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"Validation failed for dataset '{self.dataset}' ({', '.join(self.files)}): "
                 f"{len(self.failures)} rule(s) broken"]
        lines += [f.render() for f in self.failures]
        if self.warnings:
            lines.append(f"and {len(self.warnings)} tolerated quirk(s) (warnings):")
            lines += [w.render() for w in self.warnings]
        hints = list(dict.fromkeys(f.hint for f in self.failures if f.hint))
        if not hints:
            hints = [f"fix the source, or the rule in params.yaml (datasets.{self.dataset}.validation)"]
        lines.append("Nothing was modified; " + "; ".join(hints) + ".")
        return "\n".join(lines)


class StoreUnavailable(RuntimeError):
    """The MLflow tracking store does not answer: raised before any training starts."""


# -- params.yaml ------------------------------------------------------------------------------
class InvalidParam(ValueError):
    """Raised by a schema validator about one key: ``key`` is its path below the section
    being validated (e.g. ``tickers``), so the message names the full key."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


class ParamsError(Exception):
    """params.yaml breaks its schema: one line per problem, each naming the key. Raised by
    :func:`seqcast.config.load_params` before any work starts."""

    def __init__(self, file: str, problems: list[str]):
        self.file, self.problems = file, problems
        super().__init__(self.render())

    @classmethod
    def from_validation(cls, file: str, err: Any, schema: type | None = None) -> ParamsError:
        return cls(file, problem_lines(err, schema))

    def render(self) -> str:
        return "\n".join(f"{self.file}: {line}" for line in self.problems)


_COMPARE = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
            "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}


def problem_lines(err: Any, schema: type | None = None) -> list[str]:
    """``key.path: must be > 0 (got -0.001)`` for each error of a pydantic ``ValidationError``;
    ``schema`` (the validated model class) lets unknown keys list the known ones and folds
    the alternatives of a union into one line."""
    problems: list[list[str]] = []  # [key path, what it must be, what it got]
    for e in err.errors():
        path, known, union = _locate(schema, e["loc"])
        problem = (e.get("ctx") or {}).get("error")
        if isinstance(problem, InvalidParam):
            path, text, got = [*path, problem.key], problem.message, ""
        else:
            text, got = _message(e, known)
        key = ".".join(path)
        if union and problems and problems[-1][0] == key:  # another accepted form of the same value
            problems[-1][1] += " or " + text.removeprefix("must be ")
        elif [key, text, got] not in problems:
            problems.append([key, text, got])
    return [f"{key}: {text}{got}" if key else f"{text}{got}" for key, text, got in problems]


def _message(e: dict, known: list[str] | None) -> tuple[str, str]:
    """What the value must be, and `` (got ...)`` when the value is worth showing."""
    kind, ctx, msg = e["type"], e.get("ctx") or {}, e["msg"]
    if kind == "extra_forbidden":
        return "unknown key" + (f" (known: {', '.join(known)})" if known else ""), ""
    if kind == "missing":
        return "required key is missing", ""
    if kind in _COMPARE:
        sign, bound = _COMPARE[kind]
        text = f"must be {sign} {_number(ctx[bound])}"
    elif kind == "value_error":
        text = str(ctx.get("error") or msg)
    elif msg.startswith("Input should be "):
        text = "must be " + msg[len("Input should be "):]
    else:
        text = msg[:1].lower() + msg[1:]
    value = e.get("input")
    shown = not isinstance(value, (dict, list, tuple)) and "(got " not in text
    return text, f" (got {value!r})" if shown else ""


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _locate(schema: Any, loc: tuple) -> tuple[list[str], list[str] | None, bool]:
    """The key path of an error location (pydantic's union-member tags dropped), the keys
    the last key's section knows, and whether the error is about one member of a union."""
    from types import NoneType, UnionType
    from typing import Annotated, Union, get_args, get_origin

    from pydantic import BaseModel

    def strip(tp: Any) -> Any:
        while True:
            origin = get_origin(tp)
            if origin is Annotated:
                tp = get_args(tp)[0]
            elif origin in (Union, UnionType):
                members = [a for a in get_args(tp) if a is not NoneType]
                if len(members) > 1:
                    return "union"
                tp = members[0]
            else:
                return tp

    tp, path, known, union = schema, [], None, False
    for part in loc:
        tp = strip(tp) if tp is not None else None
        if tp == "union":  # the part names a member of the union (e.g. 'bool'), not a key
            tp, union = None, True
            continue
        known = None
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            known = list(tp.model_fields)
            field = tp.model_fields.get(str(part))
            tp = field.annotation if field else None
        elif get_origin(tp) is dict and get_args(tp):
            tp = get_args(tp)[1]
        elif get_origin(tp) in (list, tuple, set) and get_args(tp):
            tp = get_args(tp)[0]
        else:
            tp = None
        path.append(str(part))
    return path, known, union
