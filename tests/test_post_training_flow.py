"""The post-training stages for real, on tiny settings, in a throw-away copy of the project:
`dvc repro -s gpt_chat_sft` (tool-use SFT on made-up worlds), `dvc repro -s gpt_chat_eval` (the judgement on
the copy's own reports: every dataset found there, trained and unseen phrasings, questions no tool answers, the
temperature experiment), `dvc repro -s gpt_heads` (GPT-1 heads), their DVC metrics and MLflow runs."""

import json
import subprocess
import sys

import mlflow
import pytest

from conftest import child_env, copy_project

pytestmark = pytest.mark.slow

TINY = {"gpt": {
    "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
    "train": {"batch_size": 4, "max_iters": 10, "warmup_iters": 2, "lr_decay_iters": 10, "eval_interval": 5,
              "eval_iters": 2, "compile": False, "threads": 1},
    "sample": {"max_new_tokens": 10, "temperatures": [0.0]},
    "sft": {"n_conversations": 40, "batch_size": 4, "max_iters": 4, "warmup_iters": 1, "eval_interval": 2,
            "eval_iters": 1, "max_new_tokens": 8, "eval_worlds": 1},
    "chat_eval": {"per_kind": 1, "out_of_scope": 3, "temperature_runs": 2},
    "heads": {"max_train_lines": 64, "iters": 3, "min_iters": 2, "linear_iters": 5, "batch_size": 8,
              "curve_sizes": [16, 64]},
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


def test_chat_stages_train_without_the_reports_and_judge_on_every_dataset_found(pretrained):
    ws, env = pretrained
    run([sys.executable, "-m", "dvc", "repro", "-s", "gpt_chat_sft"], ws, env)
    sft = json.loads((ws / "reports" / "gpt" / "chat_metrics.json").read_text())
    assert sft["P3_sft_train_s"] > 0 and sft["P3_sft_val_loss"] > 0
    run([sys.executable, "-m", "dvc", "repro", "-s", "gpt_chat_eval"], ws, env)
    metrics = json.loads((ws / "reports" / "gpt" / "chat_eval.json").read_text())
    demo = json.loads((ws / "reports" / "gpt" / "chat_demo.json").read_text())
    for name, rows in demo.items():  # every figure is its transcripts' count
        assert metrics[f"P3_chat_{name}_n"] == len(rows) > 0
        assert metrics[f"P3_chat_{name}_accuracy"] == sum(r["answer"] == r["reference"] for r in rows) / len(rows)
    assert metrics["P3_chat_out_of_scope_invented"] == sum(bool(r["invented"]) for r in demo["out_of_scope"])
    # the calls held to the reports (gpt.sft.constrain_calls), beside the same questions with the calls as written
    assert metrics["P3_chat_unseen_constrained"] == sum(bool(r["written"]) for r in demo["unseen"])
    assert [r["question"] for r in demo["unseen_as_written"]] == [r["question"] for r in demo["unseen"]]
    assert not any(r["written"] for r in demo["unseen_as_written"])
    ours = {s for f in (ws / "reports" / "backtest").glob("*.json") if f.name.count(".") == 1
            for s in json.loads(f.read_text())}  # the series of the copy's own reports, every dataset
    asked = {s for r in demo["trained"] + demo["unseen"] for s in ours if s in r["question"]}
    assert asked and asked <= ours
    assert {r["family"] for r in demo["unseen"]} == {"heldout"} and {r["family"] for r in demo["trained"]} == {"train"}
    temp = json.loads((ws / "reports" / "gpt" / "chat_temperature.json").read_text())
    assert sorted({r["temperature"] for r in temp}) == [0.0, 1.0] and len(temp) == 4
    assert len({r["answer"] for r in temp if r["temperature"] == 0.0}) == 1  # greedy: identical answers
    runs = runs_of(ws)
    steps = set(zip(runs["tags.model"], runs["tags.step"]))
    assert {("gpt-chat", "sft"), ("gpt-chat", "eval")} <= steps


def test_heads_stage_writes_the_seven_accuracies_with_all_and_with_few_labels(pretrained):
    ws, env = pretrained
    run([sys.executable, "-m", "dvc", "repro", "-s", "gpt_heads"], ws, env)
    heads = json.loads((ws / "reports" / "gpt" / "heads.json").read_text())
    assert heads["task"] == "acceptability" and heads["classes"] == ["shuffled", "as written"]
    assert heads["n_train"] == 64 and heads["few"]["n_train"] == 16
    assert 0.4 <= heads["majority"] <= 0.6  # half the test lines are shuffled
    runs = runs_of(ws)
    for v in ("majority", "linear", "finetune", "scratch", "score", "score_finetune", "score_scratch"):
        assert 0.0 <= heads[v] <= 1.0 and 0.0 <= heads["few"][v] <= 1.0
        row = runs[runs["tags.model"] == f"gpt_head_{v}"].iloc[0]
        assert row["metrics.P3_head_accuracy"] == heads[v] and row["metrics.P3_head_accuracy_few"] == heads["few"][v]
