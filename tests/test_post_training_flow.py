"""The post-training stages for real, on tiny settings, in a throw-away copy of the project:
`dvc repro -s gpt_chat_sft` (tool-use SFT, held-out evaluation, temperature experiment) and
`dvc repro -s gpt_heads` (GPT-1 heads), their DVC metrics and MLflow runs, then `seqcast chat --once`."""

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from conftest import child_env, copy_project

pytestmark = pytest.mark.slow

TINY = {"gpt": {
    "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
    "train": {"batch_size": 4, "max_iters": 10, "warmup_iters": 2, "lr_decay_iters": 10, "eval_interval": 5,
              "eval_iters": 2, "compile": False, "threads": 1},
    "sample": {"max_new_tokens": 10, "temperatures": [0.0]},
    "sft": {"block_size": 256, "n_conversations": 40, "batch_size": 4, "max_iters": 4, "warmup_iters": 1,
            "eval_interval": 2, "eval_iters": 1, "max_new_tokens": 8, "eval_per_form": 1, "eval_worlds": 1,
            "temperature_runs": 2},
    "heads": {"max_train_lines": 64, "iters": 3, "linear_iters": 5, "batch_size": 8},
}}


def run(args, ws, env):
    proc = subprocess.run(args, cwd=ws, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, mirror, prefect_server):
    ws = copy_project(tmp_path_factory.mktemp("post") / "project", TINY)
    env = child_env(ws, mirror, prefect_server)
    run([sys.executable, "-m", "dvc", "repro", "-s", "ingest_text"], ws, env)  # the corpus (the heads' dependency)
    run([sys.executable, "-m", "flows.text_gpt", "--no-ladder", "--no-register"], ws, env)
    for ds, series in (("market", "^KS11"), ("pm25", "us_embassy")):  # the champion's outputs (promote and
        promotion = ws / "reports" / "promotion" / f"{ds}.json"  # forecast stages), when the copy lacks them
        if not promotion.is_file():
            promotion.parent.mkdir(parents=True, exist_ok=True)
            promotion.write_text(json.dumps({"best": {"model": "naive", "series": series}}))
            forecast = ws / "reports" / "forecast" / f"{ds}.csv"
            forecast.parent.mkdir(parents=True, exist_ok=True)
            forecast.write_text("ds,mean,lo_95,hi_95\n2019-01-16,2064.5,2000.0,2100.0\n")
    return ws, env


def runs_of(ws):
    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
    try:
        return mlflow.search_runs(experiment_names=["seqcast-text"])
    finally:
        mlflow.set_tracking_uri(None)


def test_chat_stage_evaluates_on_held_out_reports_and_runs_the_temperature_experiment(pretrained):
    ws, env = pretrained
    run([sys.executable, "-m", "dvc", "repro", "-s", "gpt_chat_sft"], ws, env)
    metrics = json.loads((ws / "reports" / "gpt" / "chat_metrics.json").read_text())
    for k in ("P3_chat_real_accuracy", "P3_chat_real_no_tools_accuracy", "P3_chat_synthetic_accuracy"):
        assert 0.0 <= metrics[k] <= 1.0
    demo = json.loads((ws / "reports" / "gpt" / "chat_demo.json").read_text())
    ours = {s for ds in ("market", "pm25")  # the series of the copy's own (committed) backtest reports
            for s in json.loads((ws / "reports" / "backtest" / f"{ds}.json").read_text())}
    assert demo["real"] and any(s in r["question"] for r in demo["real"] for s in ours), demo["real"]
    temp = json.loads((ws / "reports" / "gpt" / "chat_temperature.json").read_text())
    assert sorted({r["temperature"] for r in temp}) == [0.0, 1.0] and len(temp) == 4
    assert len({r["answer"] for r in temp if r["temperature"] == 0.0}) == 1  # greedy: identical answers
    runs = runs_of(ws)
    chat = runs[runs["tags.model"] == "gpt-chat"].iloc[0]
    assert chat["tags.family"] == "gpt" and "metrics.P3_chat_real_accuracy" in runs
    out = run([str(Path(sys.executable).parent / "seqcast"), "chat", "--once", "Is ^KS11 stationary?"], ws, env).stdout
    assert out.strip().splitlines()[-1].startswith("assistant> ")
    bench = run([str(Path(sys.executable).parent / "seqcast"), "bench", "rlhf", "--quick"], ws, env).stdout
    figures = json.loads(bench.strip().splitlines()[-1])
    assert {"rm_pair_accuracy", "sft_accuracy", "ppo_accuracy", "dpo_accuracy", "ppo_kl", "dpo_kl"} <= set(figures)
    steps = set(runs_of(ws)["tags.model"])
    assert {"reward_model", "ppo", "dpo"} <= steps  # one MLflow run per step


def test_heads_stage_writes_the_four_accuracies(pretrained):
    ws, env = pretrained
    run([sys.executable, "-m", "dvc", "repro", "-s", "gpt_heads"], ws, env)
    heads = json.loads((ws / "reports" / "gpt" / "heads.json").read_text())
    assert {"majority", "linear", "finetune", "scratch"} <= set(heads) and len(heads["speakers"]) == 10
    assert all(0.0 <= heads[k] <= 1.0 for k in ("majority", "linear", "finetune", "scratch"))
    runs = runs_of(ws)
    assert {"gpt_head_majority", "gpt_head_linear", "gpt_head_finetune", "gpt_head_scratch"} <= set(runs["tags.model"])
