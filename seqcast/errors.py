"""The error bad input produces: it names the file, the column, the rule and example rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class Failure:
    rule: str  # e.g. "expect_column_values_to_be_between(y, 0 <= y < 2000)"
    column: str | None
    count: int  # offending rows (or the observed value for table-level rules)
    total: int
    examples: pd.DataFrame = field(default_factory=pd.DataFrame)
    detail: str = ""

    def render(self) -> str:
        head = f"  - rule {self.rule}"
        if self.column:
            head += f" on column '{self.column}'"
        head += f": {self.count} of {self.total} rows fail" if self.total else f": {self.detail}"
        if self.detail and self.total:
            head += f" ({self.detail})"
        if self.examples is not None and not self.examples.empty:
            shown = self.examples.head(5).to_string(index=True)
            head += "\n    example rows:\n" + "\n".join("      " + line for line in shown.splitlines())
        return head


class DataValidationError(Exception):
    """Raised when a data set breaks its rules. Raw files are never touched."""

    def __init__(self, dataset: str, files: list[str], failures: list[Failure]):
        self.dataset, self.files, self.failures = dataset, files, failures
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"Validation failed for dataset '{self.dataset}' ({', '.join(self.files)}): "
                 f"{len(self.failures)} rule(s) broken"]
        lines += [f.render() for f in self.failures]
        lines.append("Nothing was modified; fix the source or the rule in params.yaml (validation.*).")
        return "\n".join(lines)


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
