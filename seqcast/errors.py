"""The error bad input produces: it names the file, the column, the rule and example rows."""

from __future__ import annotations

from dataclasses import dataclass, field

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
