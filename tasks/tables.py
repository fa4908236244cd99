"""Markdown tables of the pipeline's reports: a backtest's leaderboard (the parent MLflow run's
description, the docs), the mean over every series, the GPT reports.

Every function reads the dictionaries the stages wrote (``reports/backtest/<dataset>.json``,
``.summary.json``, ``reports/gpt/*.json``, ``reports/gpt_forecaster/comparison.json``) and
returns text; nothing here computes a metric. Numbers have 3 decimals, p-values below 0.001
read ``< 0.001``, a missing value ``–``.
"""

from __future__ import annotations

import math

DASH = "–"


def number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    return f"{value:.{digits}f}"


def pvalue(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def score(metrics: dict, tasks: list[str]) -> float:
    """The champion rule's score: the mean MASE over the protocol's tasks (NaN when one is missing)."""
    values = [metrics.get(f"{t}_mase") for t in tasks]
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return math.nan
    return sum(values) / len(values)


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def leaderboard(results: dict[str, dict], tasks: list[str], baseline: str, levels: tuple[int, ...] = (80, 95),
                unscored: dict[str, dict] | None = None) -> str:
    """One series' models, best score first: the score, each task's MASE, its coverage at each
    level, the last task's Diebold-Mariano p-value against the baseline; the models without scores
    last, with why."""
    ranked = sorted(results.items(), key=lambda kv: (math.isnan(s := score(kv[1], tasks)), s, kv[0]))
    last = tasks[-1]
    header = ["model", "score", *[f"{t} MASE" for t in tasks],
              *[f"{t} cov{' / cov'.join(str(lv) for lv in levels)}" for t in tasks], f"{last} DM p vs {baseline}"]
    rows = []
    for model, m in ranked:
        covs = [" / ".join(number(m.get(f"{t}_cov{lv}"), 2) for lv in levels) for t in tasks]
        rows.append([f"`{model}`", number(score(m, tasks)), *[number(m.get(f"{t}_mase")) for t in tasks], *covs,
                     DASH if model == baseline else pvalue(m.get(f"{last}_dm_pvalue"))])
    for model, why in sorted((unscored or {}).items()):
        rows.append([f"`{model}`", f"{why.get('kind', 'unscored')}: {why.get('reason', '')[:80]}",
                     *[DASH] * (len(header) - 2)])
    return markdown(header, rows)


def series_means(summary: dict, tasks: list[str]) -> str:
    """The multi-series leaderboard: per model that ran on several series, the mean MASE of each
    task over them (a model of the reference series only is in :func:`leaderboard`)."""
    means = {m: row for m, row in summary.get("mean_over_series", {}).items() if row.get("series", 0) > 1}
    ranked = sorted(means.items(), key=lambda kv: (math.isnan(s := score(kv[1], tasks)), s, kv[0]))
    header = ["model", "series", *[f"mean {t} MASE" for t in tasks]]
    return markdown(header, [[f"`{m}`", str(int(row.get("series", 0))), *[number(row.get(f"{t}_mase")) for t in tasks]]
                             for m, row in ranked])


def comparison(table: dict[str, dict]) -> str:
    """The GPT forecaster's comparison (``reports/gpt_forecaster/comparison.json``: row name ->
    metrics), in its own order, with the columns its rows carry."""
    columns = list(dict.fromkeys(k for row in table.values() for k in row))
    rows = [[name, *[(pvalue if c.endswith("dm_pvalue") else number)(m.get(c)) for c in columns]]
            for name, m in table.items()]
    return markdown(["row", *columns], rows)


def ladder(rungs: dict[str, dict]) -> str:
    """The P3 ladder (``reports/gpt/ladder.json``): validation loss, perplexity and training time."""
    rows = [[f"`{name}`", number(r.get("val_loss"), 4), number(r.get("perplexity"), 2), number(r.get("train_s"), 1)]
            for name, r in rungs.items()]
    return markdown(["model", "val loss (nats/char)", "perplexity", "training (s)"], rows)


def heads(report: dict) -> str:
    """The GPT-1 task heads (``reports/gpt/heads.json``): accuracy of each variant."""
    names = {"majority": "majority class", "linear": "frozen decoder + linear head",
             "finetune": "full fine-tune + auxiliary LM loss", "scratch": "the same network from scratch",
             "score": "likelihood head, frozen pretrained decoder",
             "score_finetune": "likelihood head, the fine-tuned network",
             "score_scratch": "likelihood head, the network from scratch"}
    few = report.get("few") or {}
    task = {"speaker": "speaker of a line", "acceptability": "a line as written or its words shuffled"}
    classes = report.get("classes") or report.get("speakers") or []
    header = (f"{task.get(report.get('task', 'speaker'), report.get('task'))} ({len(classes)} classes, "
              f"{report.get('n_test', '?')} test lines)")
    columns = [header, f"{report.get('n_train', '?')} labelled lines"] + (
        [f"{few['n_train']} labelled lines"] if few else [])
    rows = [[label, number(report.get(key))] + ([number(few.get(key))] if few else [])
            for key, label in names.items() if key in report]
    return markdown(columns, rows)


def chat_eval(report: dict) -> str:
    """The chat judged on the pipeline's own reports (``reports/gpt/chat_eval.json``): exact answers by
    question kind, in the trained forms and in forms it never saw; the questions no tool answers."""
    kinds = sorted({k.removeprefix("P3_chat_trained_").removesuffix("_accuracy") for k in report
                    if k.startswith("P3_chat_trained_") and k.endswith("_accuracy")
                    and not k.startswith("P3_chat_trained_no_tools") and "call" not in k} - {"", "accuracy"})
    share = lambda key: number(report.get(key))  # noqa: E731
    rows = [[kind, share(f"P3_chat_trained_{kind}_accuracy"), share(f"P3_chat_unseen_{kind}_accuracy")]
            for kind in kinds]
    rows.append(["**all**", share("P3_chat_trained_accuracy"), share("P3_chat_unseen_accuracy")])
    if "P3_chat_unseen_as_written_accuracy" in report:
        rows.append([f"all, the calls as the model wrote them (above: {report.get('P3_chat_unseen_constrained', '?')} "
                     f"unseen-form calls held to the reports)", DASH, share("P3_chat_unseen_as_written_accuracy")])
    rows.append(["all, tools disabled", share("P3_chat_trained_no_tools_accuracy"), DASH])
    rows.append([f"no tool answers ({report.get('P3_chat_out_of_scope_n', '?')} held-out questions): refused",
                 share("P3_chat_out_of_scope_accuracy"), DASH])
    rows.append(["no tool answers: answers with an invented number", str(report.get("P3_chat_out_of_scope_invented", "?")),
                 DASH])
    return markdown([f"exact answers (share; {report.get('P3_chat_trained_n', '?')} questions each)",
                     "trained forms", "unseen forms"], rows)


def chat(report: dict) -> str:
    """The chat model's held-out questions (``reports/gpt/chat_metrics.json``)."""
    parts = [("real reports, with tools", "P3_chat_real"), ("real reports, tools disabled", "P3_chat_real_no_tools"),
             ("made-up worlds of unseen seeds, with tools", "P3_chat_synthetic")]
    rows = [[label, number(report.get(f"{key}_accuracy")), number(report.get(f"{key}_call_accuracy"))]
            for label, key in parts if f"{key}_accuracy" in report]
    return markdown(["held-out questions", "exact answers (share)", "right call (share)"], rows)
