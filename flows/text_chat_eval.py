"""Prefect flow judging the chat model on the pipeline's own reports (never seen in training).

``gpt_chat_eval_flow``: questions about every dataset whose reports are present
(``paths.reports``: backtest, stationarity, promotion, forecast), per question kind, in
the phrasings the model was fine-tuned on and in held-out phrasings it never saw, with
the tools and with them disabled, plus held-out questions no tool answers (the answer
must be the plain refusal, with no number of its own); then the lecture's temperature
experiment (one question, ``temperature_runs`` times at each temperature). Writes
``reports/gpt/chat_eval.json`` (DVC metrics), the transcripts ``chat_demo.json`` and
``chat_temperature.json``, and an MLflow run (model=gpt-chat, step=eval).

    python -m flows.text_chat_eval
"""

from __future__ import annotations

import argparse
import json
import time

from prefect import flow

from seqcast.config import load_params
from seqcast.paths import project_root
from tasks.text import tool_data
from tasks.text.tool_chat import accuracy, chat_turn, load_chat_model
from tasks.text.tools import Reports, Toolbox
from tasks.text.tracking import DATASET, FAMILY


def evaluate(model, tok, reports: Reports, per_kind: int, n_out_of_scope: int, seed: int, max_new_tokens: int,
             constrain: bool = False) -> dict:
    """{trained, unseen, out_of_scope, trained_no_tools, unseen_as_written}: each
    :func:`tasks.text.tool_chat.accuracy`'s summary, the calls held to the reports with ``constrain``
    (``unseen_as_written``: the unseen forms with the calls as the model wrote them, the measure of the model alone)."""
    sets = tool_data.evaluation_sets(reports, per_kind, n_out_of_scope, seed)
    box = Toolbox(reports)
    out = {name: accuracy(model, tok, qs, box, max_new_tokens, constrain) for name, qs in sets.items()}
    out["trained_no_tools"] = accuracy(model, tok, sets["trained"], Toolbox(reports, enabled=False), max_new_tokens,
                                       constrain)
    if constrain:
        out["unseen_as_written"] = accuracy(model, tok, sets["unseen"], box, max_new_tokens)
    return out


def table(ev: dict) -> str:
    """Markdown: exact answers by question kind, trained and unseen phrasings."""
    kinds = sorted(set(ev["trained"]["by_kind"]) | set(ev["unseen"]["by_kind"]), key=tool_data.KINDS.index)
    lines = ["| question kind | trained forms | unseen forms |", "|---|---|---|"]

    def cell(name: str, kind: str) -> str:
        rows = [r for r in ev[name]["rows"] if r["kind"] == kind]
        return f"{sum(r['correct'] for r in rows)}/{len(rows)}" if rows else "-"

    for k in kinds:
        lines.append(f"| {k} | {cell('trained', k)} | {cell('unseen', k)} |")
    tr, un, oos = ev["trained"], ev["unseen"], ev["out_of_scope"]
    lines.append(f"| **all** | **{tr['accuracy']:.1%}** ({tr['n']}) | **{un['accuracy']:.1%}** ({un['n']}) |")
    if "unseen_as_written" in ev:
        aw = ev["unseen_as_written"]
        lines.append(f"| all, the calls as the model wrote them | | {aw['accuracy']:.1%} ({aw['n']}; "
                     f"{un['constrained']} calls held to the reports above) |")
    lines.append(f"| no tool answers (held out) | {oos['accuracy']:.1%} refused ({oos['n']}), "
                 f"{oos['invented']} with an invented number | |")
    return "\n".join(lines)


def temperature_experiment(model, tok, toolbox: Toolbox, question: str, temperatures: list[float], runs: int,
                           max_new_tokens: int, constrain: bool = False) -> list[dict]:
    """The lecture's slide: one question, ``runs`` times at each temperature (sampling seeds 0..runs-1)."""
    rows = []
    for t in temperatures:
        for run in range(runs):
            msgs = [{"role": "system", "content": tool_data.SYSTEM_FULL}, {"role": "user", "content": question}]
            ans = chat_turn(model, tok, msgs, toolbox, max_new_tokens, temperature=t, seed=run, constrain=constrain)
            rows.append({"temperature": t, "run": run, "answer": ans,
                         "call": next((m["content"] for m in msgs[2:] if m["role"] == "assistant"), "")})
    return rows


@flow(name="gpt-chat-eval", log_prints=True)
def gpt_chat_eval_flow() -> dict:
    import mlflow

    from seqcast.tracking import model_run

    params = load_params()
    p, e = params.gpt, params.gpt.chat_eval
    root = project_root()
    model, tok = load_chat_model(root / p.paths.chat_checkpoints)
    reports = Reports.load(params.path("reports"))
    found = sorted(set(reports.datasets.values()) | set(reports.champions))
    print(f"reports of {len(found)} datasets: {', '.join(found) or 'none'}")
    t0 = time.perf_counter()
    ev = evaluate(model, tok, reports, e.per_kind, e.out_of_scope, p.seed, p.sft.max_new_tokens, p.sft.constrain_calls)
    first = next(iter(sorted(reports.stationarity or reports.backtest)), "the series")
    question = e.temperature_question.format(series=first)  # {series}: the first series of the reports
    temp_rows = temperature_experiment(model, tok, Toolbox(reports), question, e.temperatures, e.temperature_runs,
                                       p.sft.max_new_tokens, p.sft.constrain_calls)
    metrics = {"P3_chat_eval_s": time.perf_counter() - t0}
    for name, r in ev.items():
        metrics[f"P3_chat_{name}_accuracy"] = r["accuracy"]
        metrics[f"P3_chat_{name}_call_accuracy"] = r["call_accuracy"]
        metrics[f"P3_chat_{name}_n"] = r["n"]
        metrics[f"P3_chat_{name}_constrained"] = r["constrained"]
        for kind, acc in r["by_kind"].items():
            metrics[f"P3_chat_{name}_{kind}_accuracy"] = acc
    metrics["P3_chat_out_of_scope_invented"] = ev["out_of_scope"]["invented"]
    for t in e.temperatures:
        metrics[f"P3_chat_temperature_distinct_t{t:g}"] = len({r["answer"] for r in temp_rows if r["temperature"] == t})
    md = table(ev)
    print(md)
    rep = root / p.paths.reports
    rep.mkdir(parents=True, exist_ok=True)
    (rep / "chat_eval.json").write_text(json.dumps(metrics, indent=2))
    (rep / "chat_eval.md").write_text(md + "\n")
    demo = {name: r["rows"] for name, r in ev.items()}
    (rep / "chat_demo.json").write_text(json.dumps(demo, indent=2, ensure_ascii=False))
    (rep / "chat_temperature.json").write_text(json.dumps(temp_rows, indent=2, ensure_ascii=False))
    with model_run(DATASET, "gpt-chat", FAMILY, tags={"protocol": "P3", "step": "eval", "datasets": ",".join(found)}):
        mlflow.log_params({f"chat_eval.{k}": v for k, v in e.model_dump().items()})
        mlflow.log_metrics(metrics)
        mlflow.log_text(md, "chat_eval.md")
        mlflow.log_dict(demo, "chat_demo.json")
        mlflow.log_table({k: [r[k] for r in temp_rows] for k in temp_rows[0]}, "temperature_experiment.json")
    return metrics


def main(argv: list[str] | None = None) -> int:
    from seqcast.env import configure

    configure()
    ap = argparse.ArgumentParser(prog="python -m flows.text_chat_eval", description=__doc__.split("\n")[0])
    ap.parse_args(argv)
    gpt_chat_eval_flow()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
