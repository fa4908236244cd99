"""The errors bad input and broken surroundings produce.

A :class:`DataValidationError` names the file, the column (the internal name *and* the
user's column as written in the file), the rule, the count and example rows with their
file line numbers. A :class:`Failure` with ``severity="warning"`` is a rare quirk
tolerated under a stated threshold (``params.yaml`` ``validation.*``): reported, not fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
        lines.append("Nothing was modified; fix the source or the rule in params.yaml (validation.*).")
        return "\n".join(lines)


class StoreUnavailable(RuntimeError):
    """The MLflow tracking store does not answer: raised before any training starts."""
