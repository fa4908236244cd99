"""Datasets are data, not code: no string in the code names a dataset of params.yaml or one of
its series, except in the source connectors (which know the sources' layouts). Docstrings and
comments may tell a story with them; code may not branch on them."""

import ast
import re

import yaml

from conftest import ROOT

PACKAGES = ("seqcast", "cli", "tasks", "flows", "models")
CONNECTORS = ROOT / "tasks" / "connectors"


def names_of_params() -> set[str]:
    """The datasets of params.yaml and every series their entries name."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    names = set(raw["datasets"])
    for entry in raw["datasets"].values():
        for source in entry["sources"]:
            names |= set(source.get("series") or [])
    return names


def string_literals(path):
    """(line, text) of every string constant that is not a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_no_module_outside_the_connectors_names_a_dataset_or_a_series():
    names = names_of_params()
    assert {"market", "pm25", "us_embassy", "^KS11", "Dongsi"} <= names
    pattern = re.compile("|".join(rf"(?<![\w^]){re.escape(n)}(?![\w])" for n in sorted(names, key=len, reverse=True)))
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if CONNECTORS in path.parents:
                continue
            for line, text in string_literals(path):
                hit = pattern.search(text)
                if hit:
                    found.append(f"{path.relative_to(ROOT)}:{line}: {hit.group(0)!r} in {text[:60]!r}")
    assert found == [], "dataset or series names in code:\n" + "\n".join(found)


def test_the_finder_finds_a_name():
    """The check itself: a branch on a dataset name is found, a docstring is not."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.py"
        path.write_text('"""About market data."""\n\ndef f(d):\n    """The pm25 way."""\n    return d == "pm25"\n')
        assert [t for _, t in string_literals(path)] == ["pm25"]


def test_dvc_yaml_names_only_the_datasets_the_gpt_forecaster_trains_on():
    """dvc.yaml loops over the datasets; the one stage that reads several datasets' tables by
    name, the GPT forecaster's training, names exactly those of gpt_forecaster_train.mix (and its
    comparison those of gpt_forecaster_train.compare), so the two cannot drift apart."""
    import re

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    mix = {d for d in raw["gpt_forecaster_train"]["mix"] if d != "synthetic"}
    train = dvc["gpt_forecaster_train"]
    tables = {m.group(1) for d in train["deps"] if (m := re.match(r"\$\{paths\.clean\}/(.+)\.parquet$", d))}
    entries = {p.split(".", 1)[1] for p in train["params"] if isinstance(p, str) and p.startswith("datasets.")}
    assert tables == entries == mix
    compared = set(raw["gpt_forecaster_train"]["compare"])
    boards = {m.group(1) for d in dvc["gpt_forecaster_compare"]["deps"]
              if (m := re.match(r"\$\{paths\.reports\}/backtest/(.+)\.json$", d)) and ".summary" not in d}
    assert boards == compared
    for name, stage in dvc.items():
        if "foreach" in stage:
            assert stage["foreach"] == "${datasets}", name
