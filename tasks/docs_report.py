"""The results tables of the docs, written from the pipeline's reports (``seqcast report``).

A page of ``docs/`` marks each generated table with a pair of comments; what lies between
them is replaced by the table the named report gives::

    <!-- seqcast report: leaderboard pm25 -->
    | model | score | ... |
    <!-- end of seqcast report -->

Tables (``reports/`` paths from params.yaml):

- ``leaderboard DATASET``: the reference series' models, best score first
  (``reports/backtest/<dataset>.json``, the reference from ``.summary.json``);
- ``series DATASET``: the mean MASE per model over every series it ran on (``.summary.json``);
- ``champion DATASET``: the registered champion and why (``reports/promotion/<dataset>.json``);
- ``comparison``: the GPT forecaster beside the other forecasters (``reports/gpt_forecaster/comparison.json``);
- ``ladder``, ``heads``, ``chat``: the language models (``reports/gpt/ladder.json``, ``heads.json``,
  ``chat_metrics.json``).

:func:`stale` lists the tables that differ from what their reports give (the tests fail on
one), :func:`write` rewrites them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tasks import tables

BLOCK = re.compile(r"(<!-- seqcast report: (?P<spec>[^>]+?) -->\n)(?P<body>.*?)(<!-- end of seqcast report -->)", re.S)


def _json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such report (run the pipeline's stage that writes it: `seqcast run`)")
    return json.loads(path.read_text(encoding="utf-8"))


def table(spec: str, params) -> str:
    """The Markdown of one marked table (``spec``: its name and arguments)."""
    from seqcast.paths import project_root

    name, *args = spec.split()
    if name in ("leaderboard", "series", "champion"):
        (dataset,) = args
        entry = params.dataset(dataset)
        tasks = [t.name for t in entry.task_specs()]
        summary_path = params.path("reports", "backtest", f"{dataset}.summary.json")
        if name == "champion":
            promo = _json(params.path("reports", "promotion", f"{dataset}.json"))
            champ = promo.get("champion") or promo.get("best") or {}
            return tables.markdown(["dataset", "champion", "score", "protocol / series", "data version"], [[
                dataset, f"`{champ.get('model', tables.DASH)}`", tables.number(champ.get("mase")),
                f"{champ.get('protocol', '')} / `{champ.get('series', '')}`", f"`{champ.get('data_version', '')[:12]}`"]])
        summary = _json(summary_path)
        if name == "series":
            return tables.series_means(summary, tasks)
        board = _json(params.path("reports", "backtest", f"{dataset}.json"))
        reference = summary.get("reference") or summary["series"][0]
        unscored = (summary.get("unscored") or {}).get(reference)
        return tables.leaderboard(board[reference], tasks, entry.protocol.baseline, tuple(params.backtest.levels),
                                  unscored)
    if name == "comparison":
        return tables.comparison(_json(project_root() / params.gpt_forecaster_train.reports / "comparison.json"))
    gpt = project_root() / params.gpt.paths.reports
    if name == "ladder":
        return tables.ladder(_json(gpt / "ladder.json"))
    if name == "heads":
        return tables.heads(_json(gpt / "heads.json"))
    if name == "chat":
        return tables.chat(_json(gpt / "chat_metrics.json"))
    if name == "chat_eval":
        return tables.chat_eval(_json(gpt / "chat_eval.json"))
    raise ValueError(f"unknown table {name!r} in a seqcast report marker")


def render(text: str, params) -> str:
    """A page with every marked table regenerated."""
    return BLOCK.sub(lambda m: f"{m.group(1)}{table(m.group('spec'), params)}\n{m.group(4)}", text)


def pages(docs: Path) -> list[Path]:
    return sorted(p for p in docs.rglob("*.md") if BLOCK.search(p.read_text(encoding="utf-8")))


def stale(docs: Path, params) -> list[str]:
    """``page: table`` for every marked table that differs from its report."""
    out = []
    for page in pages(docs):
        text = page.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            if m.group("body") != table(m.group("spec"), params) + "\n":
                out.append(f"{page.name}: {m.group('spec')}")
    return out


def write(docs: Path, params) -> list[Path]:
    """Rewrite the pages whose tables changed; returns them."""
    changed = []
    for page in pages(docs):
        text = page.read_text(encoding="utf-8")
        new = render(text, params)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed.append(page)
    return changed
