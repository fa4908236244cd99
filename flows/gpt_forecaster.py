"""GPT forecaster training stage: the text GPT's architecture, trained across every series.

Windows come from both clean tables (each series cut at its protocol's training end,
the held-out series left out; tasks/gpt_forecaster_data.py) plus generated series of the
lecture's processes; the loop is the text GPT's (tasks/text/gpt_train.py). The stage writes a
self-describing checkpoint (``gpt_forecaster_train.checkpoint``): weights, architecture,
tokenizer, the series it saw with their cut dates, the held-out series and the per-dataset
transforms; the forecaster ``gpt_forecaster`` loads it in the backtests. One MLflow run
(experiment ``<prefix>-gpt_forecaster``) holds the loss curve and the zero-shot loss.
``python -m flows.gpt_forecaster`` is the DVC stage's command.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from prefect import flow

from seqcast import atomic
from seqcast.config import load_params
from seqcast.paths import project_root
from tasks.gpt_forecaster_data import clean_tables, dataset_protocols
from tasks.gpt_forecaster_train import MODEL, train_forecaster
from tasks.text.gpt_train import save_checkpoint

FAMILY = "gpt"


@flow(name="gpt-forecaster-train", log_prints=True)
def gpt_forecaster_train_flow(max_iters: int | None = None, log_mlflow: bool = True) -> dict:
    t_stage = time.perf_counter()
    params = load_params()
    p = params.gpt_forecaster_train
    protocols = list(dataset_protocols(params, clean_tables(params)))
    out = project_root() / p.checkpoint
    ckpt, history = train_forecaster(params, protocols, out.parent, max_iters)
    save_checkpoint(out, ckpt)
    (out.parent / "ckpt.pt").unlink(missing_ok=True)  # the optimizer state: not needed downstream
    summary = {**ckpt["train"], "stage_s": time.perf_counter() - t_stage, "loadavg_1m": os.getloadavg()[0]}
    rep = project_root() / p.reports
    rep.mkdir(parents=True, exist_ok=True)
    atomic.write_text(rep / "train.json", json.dumps(summary, indent=2))
    atomic.write_text(rep / "loss_curve.json", json.dumps(history, indent=2))
    print(json.dumps(summary))
    if log_mlflow:
        log_training(p, ckpt, history, summary)
    return summary


def log_training(p, ckpt: dict, history: list[dict], summary: dict) -> None:
    import mlflow

    from seqcast.tracking import model_run

    tags = {"held_out": ",".join(ckpt["held_out"].values()) or "none", "device": summary["device"]}
    with model_run("gpt_forecaster", MODEL, FAMILY, run_name="gpt_forecaster · train", tags=tags):
        mlflow.log_params({f"model.{k}": v for k, v in ckpt["model_args"].items()})
        mlflow.log_params({f"train.{k}": v for k, v in p.train.model_dump().items()})
        mlflow.log_params({f"tokenizer.{k}": v for k, v in ckpt["tokenizer"].items()})
        mlflow.log_params({f"mix.{k}": v for k, v in p.mix.items()})
        mlflow.log_params({"n_series": len(ckpt["series"]), "n_synthetic": ckpt["synthetic"]})
        mlflow.log_dict(ckpt["series"], "series_seen.json")
        for h in history:
            mlflow.log_metrics({f"{k}_curve": v for k, v in h.items() if k.endswith("loss")}, step=h["iter"])
        mlflow.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})


COMPARED = ["naive", "arima", "sarima", "prophet", "rnn", "lstm", "cnn_lstm", "seq2seq_attn", "transformer",
            "deepar", MODEL]
METRICS = ("mase", "cov80", "cov95", "dm_pvalue")


def columns_of(tasks: dict[str, str]) -> list[str]:
    """The table's metric columns: for each compared dataset its task (``gpt_forecaster_train.compare``)."""
    return [f"{task}_{m}" for task in tasks.values() for m in METRICS]


def comparison_rows(boards: dict[str, dict], references: dict[str, str], held_out: dict[str, str | None],
                    tasks: dict[str, str]) -> list[dict]:
    """One row per model: each compared dataset's task on its reference series (None where a model did
    not run); then the zero-shot block: every model that ran on a held-out series, on that series."""
    columns = columns_of(tasks)

    def cells(metrics: dict, task: str) -> dict:
        return {c: metrics.get(c) for c in columns if c.startswith(f"{task}_")}

    rows = []
    for model in COMPARED:
        found = {}
        for dataset, task in tasks.items():
            found.update(cells(boards[dataset].get(references[dataset], {}).get(model, {}), task))
        if any(v is not None for v in found.values()):
            rows.append({"model": model, "series": " / ".join(references[d] for d in tasks), "zero_shot": False,
                         **{c: None for c in columns}, **found})
    for dataset, uid in held_out.items():
        if dataset not in tasks:
            continue
        ran = boards[dataset].get(uid or "", {})
        for model, metrics in sorted(ran.items(), key=lambda kv: (kv[0] != "naive", kv[0] == MODEL)):
            rows.append({"model": model, "series": uid, "zero_shot": model == MODEL,
                         **{c: None for c in columns}, **cells(metrics, tasks[dataset])})
    return rows


def markdown(rows: list[dict], columns: list[str]) -> str:
    head = ["model", "series", "zero-shot", *columns]
    fmt = lambda v: "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r["model"], r["series"], "yes" if r["zero_shot"] else ""]
                                       + [fmt(r[c]) for c in columns]) + " |")
    return "\n".join(lines)


@flow(name="gpt-forecaster-compare", log_prints=True)
def gpt_forecaster_compare_flow(log_mlflow: bool = True) -> list[dict]:
    """The single comparison table from both backtests' leaderboards (reports/backtest/*.json)."""
    from tasks.promotion import reference_series

    params = load_params()
    tasks = dict(params.gpt_forecaster_train.compare)
    boards = {d: json.loads(params.path("reports", "backtest", f"{d}.json").read_text()) for d in tasks}
    references = {d: reference_series(d) for d in tasks}
    rows = comparison_rows(boards, references, dict(params.gpt_forecaster_train.held_out), tasks)
    columns = columns_of(tasks)
    table = markdown(rows, columns)
    print(table)
    rep = project_root() / params.gpt_forecaster_train.reports
    rep.mkdir(parents=True, exist_ok=True)
    atomic.write_text(rep / "comparison.json", json.dumps(
        {f"{r['model']}{' (zero-shot)' if r['zero_shot'] else ''} · {r['series']}":
         {c: r[c] for c in columns if r[c] is not None} for r in rows}, indent=2))
    atomic.write_text(rep / "comparison.md", table + "\n")
    if log_mlflow:
        import mlflow

        from seqcast.tracking import model_run

        with model_run("gpt_forecaster", "comparison", "report", run_name="gpt_forecaster · comparison"):
            mlflow.log_table({k: [r[k] for r in rows] for k in ["model", "series", "zero_shot", *columns]},
                             "comparison.json")
            mlflow.log_text(table, "comparison.md")
    return rows


def main(argv: list[str] | None = None) -> int:
    from seqcast.env import configure

    configure()
    ap = argparse.ArgumentParser(prog="python -m flows.gpt_forecaster", description=__doc__.split("\n")[0])
    ap.add_argument("what", nargs="?", choices=["train", "compare"], default="train",
                    help="train (the stage) or compare (the table after both backtests)")
    ap.add_argument("--max-iters", type=int, default=None, help="override params.yaml (quick runs)")
    ap.add_argument("--no-mlflow", action="store_true", help="write the files only, log nothing")
    a = ap.parse_args(argv)
    if a.what == "compare":
        gpt_forecaster_compare_flow(log_mlflow=not a.no_mlflow)
    else:
        gpt_forecaster_train_flow(max_iters=a.max_iters, log_mlflow=not a.no_mlflow)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
