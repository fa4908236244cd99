"""GPT forecaster training stage: the text GPT's architecture, trained across every series.

Windows come from both clean tables (each series cut at its protocol's training end,
the held-out series left out; tasks/gpt_forecaster_data.py) plus generated series of the
lecture's processes; the loop is the text GPT's (tasks/gpt_train.py). The stage writes a
self-describing checkpoint (``gpt_forecaster_train.checkpoint``): weights, architecture,
tokenizer, the series it saw with their cut dates, the held-out series and the per-dataset
transforms; the forecaster ``gpt_forecaster`` loads it in the backtests. One MLflow run
(experiment ``<prefix>-gpt_forecaster``) holds the loss curve and the zero-shot loss.
``python -m flows.gpt_forecaster`` is the DVC stage's command.
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd
import torch
from prefect import flow

from models.gpt import GPT, GPTConfig
from models.series_tokenizer import SeriesTokenizer
from seqcast import atomic
from seqcast.config import Params, load_params
from seqcast.contract import DATASETS
from seqcast.paths import project_root
from tasks.gpt_forecaster_data import WindowSampler, series_sources, synthetic_sources
from tasks.gpt_train import pick_device, save_checkpoint, train

MODEL, FAMILY = "gpt_forecaster", "gpt"


def context_length(params: Params) -> int:
    """The forecaster's context (the same for both datasets: one block size)."""
    ctx = {params.models.params_for(MODEL, d).context for d in DATASETS}
    if len(ctx) != 1:
        raise ValueError(f"models.gpt_forecaster.context must be the same for both datasets, got {sorted(ctx)}")
    return ctx.pop()


@torch.no_grad()
def mean_loss(model: GPT, xy: tuple[torch.Tensor, torch.Tensor], batch: int = 64) -> float:
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    tot = n = 0.0
    for i in range(0, xy[0].size(0), batch):
        x, y = (t[i : i + batch].to(device) for t in xy)
        _, loss = model(x, y)
        k = float((y >= 0).sum())
        tot, n = tot + loss.item() * k, n + k
    model.train(was)
    return tot / max(n, 1.0)


@flow(name="gpt-forecaster-train", log_prints=True)
def gpt_forecaster_train_flow(max_iters: int | None = None, log_mlflow: bool = True) -> dict:
    t_stage = time.perf_counter()
    params = load_params()
    p = params.gpt_forecaster_train
    tables = {d: pd.read_parquet(params.path("clean", f"{d}.parquet")) for d in DATASETS}
    train_src, held_src = series_sources(params, tables)
    synth = synthetic_sources(p.synthetic)
    context = context_length(params)
    tok = SeriesTokenizer(**p.tokenizer.model_dump())
    block = context + p.horizon
    sampler = WindowSampler(train_src + synth, tok, block, context, p.mix)
    print(f"gpt_forecaster: {len(train_src)} series + {len(synth)} synthetic, held out "
          f"{[s.uid for s in held_src]}, block {block}, vocab {tok.vocab_size}")

    device = pick_device(p.train.device)
    tp = p.train if max_iters is None else p.train.with_(max_iters=max_iters, lr_decay_iters=max_iters)
    cfg = GPTConfig(**{**p.model.model_dump(), "block_size": block, "vocab_size": tok.vocab_size})
    evals = {"train_loss": sampler.fixed(256, p.seed + 1)}
    if held_src:
        held = WindowSampler(held_src, tok, block, context, {"market": 1.0, "pm25": 1.0})
        evals["zero_shot_loss"] = held.fixed(256, p.seed + 2)

    def eval_fn(m: GPT) -> dict:
        return {k: mean_loss(m, xy) for k, xy in evals.items()}

    out = project_root() / p.checkpoint
    res = train(cfg, tp, lambda g: sampler.batch(g, tp.batch_size), eval_fn, out.parent, seed=p.seed,
                resume=False, progress=False)
    model = res["model"].cpu().eval()
    last = res["history"][-1]
    summary = {"train_s": res["train_s"], "iters": res["iter_num"], "device": res["device"],
               "n_params": model.num_params(), "tokens_per_s": res["timing"]["tokens_per_s"],
               **{k: float(v) for k, v in last.items() if k.endswith("loss")}}
    transforms = {d: params.models.params_for(MODEL, d).transform for d in DATASETS}
    save_checkpoint(out, {
        "model": model.state_dict(), "model_args": cfg.to_dict(), "tokenizer": tok.to_dict(),
        "series": {s.uid: {"dataset": s.dataset, "train_end": s.train_end, "n_points": len(s.values)}
                   for s in train_src},
        "held_out": {s.dataset: s.uid for s in held_src}, "synthetic": len(synth),
        "transforms": transforms, "context": context, "train": summary,
    })
    (out.parent / "ckpt.pt").unlink(missing_ok=True)  # the optimizer state: not needed downstream
    summary["stage_s"] = time.perf_counter() - t_stage
    rep = project_root() / p.reports
    rep.mkdir(parents=True, exist_ok=True)
    atomic.write_text(rep / "train.json", json.dumps(summary, indent=2))
    atomic.write_text(rep / "loss_curve.json", json.dumps(res["history"], indent=2))
    print(json.dumps(summary))
    if log_mlflow:
        log_training(params, p, cfg, tp, res["history"], summary, held_src)
    return summary


def log_training(params, p, cfg, tp, history, summary, held_src) -> None:
    import mlflow

    from seqcast.tracking import model_run

    tags = {"held_out": ",".join(s.uid for s in held_src) or "none", "device": summary["device"]}
    with model_run("gpt_forecaster", MODEL, FAMILY, run_name="gpt_forecaster · train", tags=tags):
        mlflow.log_params({f"model.{k}": v for k, v in cfg.to_dict().items()})
        mlflow.log_params({f"train.{k}": v for k, v in tp.model_dump().items()})
        mlflow.log_params({f"tokenizer.{k}": v for k, v in p.tokenizer.model_dump().items()})
        mlflow.log_params({f"mix.{k}": v for k, v in p.mix.items()})
        for h in history:
            mlflow.log_metrics({f"{k}_curve": v for k, v in h.items() if k.endswith("loss")}, step=h["iter"])
        mlflow.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})


COMPARED = ["naive", "arima", "sarima", "prophet", "rnn", "lstm", "cnn_lstm", "seq2seq_attn", "transformer",
            "deepar", MODEL]
COLUMNS = ["P1b_mase", "P1b_cov80", "P1b_cov95", "P1b_dm_pvalue", "P2a_mase", "P2a_cov80", "P2a_cov95",
           "P2a_dm_pvalue"]


def comparison_rows(boards: dict[str, dict], references: dict[str, str], held_out: dict[str, str | None]) -> list[dict]:
    """One row per model: P1b on the PM2.5 reference series, P2a on the market one (None where a model did
    not run); then the zero-shot block: every model that ran on a held-out series, on that series."""
    def cells(metrics: dict, prefix: str) -> dict:
        return {c: metrics.get(c) for c in COLUMNS if c.startswith(prefix)}

    rows = []
    for model in COMPARED:
        p1 = boards["pm25"].get(references["pm25"], {}).get(model, {})
        p2 = boards["market"].get(references["market"], {}).get(model, {})
        if p1 or p2:
            rows.append({"model": model, "series": f"{references['pm25']} / {references['market']}",
                         "zero_shot": False, **{c: None for c in COLUMNS}, **cells(p1, "P1b"), **cells(p2, "P2a")})
    for dataset, uid in held_out.items():
        prefix = "P1b" if dataset == "pm25" else "P2a"
        for model, metrics in sorted(boards[dataset].get(uid or "", {}).items(), key=lambda kv: kv[0] != "naive"):
            rows.append({"model": model, "series": uid, "zero_shot": model == MODEL,
                         **{c: None for c in COLUMNS}, **cells(metrics, prefix)})
    return rows


def markdown(rows: list[dict]) -> str:
    head = ["model", "series", "zero-shot", *COLUMNS]
    fmt = lambda v: "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r["model"], r["series"], "yes" if r["zero_shot"] else ""]
                                       + [fmt(r[c]) for c in COLUMNS]) + " |")
    return "\n".join(lines)


@flow(name="gpt-forecaster-compare", log_prints=True)
def gpt_forecaster_compare_flow(log_mlflow: bool = True) -> list[dict]:
    """The single comparison table from both backtests' leaderboards (reports/backtest/*.json)."""
    from tasks.series import series_ids

    params = load_params()
    boards = {d: json.loads(params.path("reports", "backtest", f"{d}.json").read_text()) for d in DATASETS}
    references = {d: series_ids(params, d)[0] for d in DATASETS}
    rows = comparison_rows(boards, references, dict(params.gpt_forecaster_train.held_out))
    table = markdown(rows)
    print(table)
    rep = project_root() / params.gpt_forecaster_train.reports
    rep.mkdir(parents=True, exist_ok=True)
    atomic.write_text(rep / "comparison.json", json.dumps(
        {f"{r['model']}{' (zero-shot)' if r['zero_shot'] else ''} · {r['series']}":
         {c: r[c] for c in COLUMNS if r[c] is not None} for r in rows}, indent=2))
    atomic.write_text(rep / "comparison.md", table + "\n")
    if log_mlflow:
        import mlflow

        from seqcast.tracking import model_run

        with model_run("gpt_forecaster", "comparison", "report", run_name="gpt_forecaster · comparison"):
            mlflow.log_table({k: [r[k] for r in rows] for k in ["model", "series", "zero_shot", *COLUMNS]},
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
