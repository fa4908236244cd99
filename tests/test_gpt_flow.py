"""The GPT stages for real, on tiny settings: `dvc repro gpt_train` in a throw-away copy of the project
(ladder with every rung, GPT with the pipeline's recipe, MLflow, DVC metrics), then the chat fine-tune
on top of it and `seqcast chat --once` answering from it."""

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
    "train": {"batch_size": 4, "max_iters": 20, "warmup_iters": 2, "lr_decay_iters": 20, "eval_interval": 10,
              "eval_iters": 2, "compile": False, "threads": 1},
    "ladder": {"kn_orders": [3],
               "rnn": {"hidden": 16, "embd": 8, "seq_len": 16, "batch_size": 4, "max_iters": 5},
               "lstm": {"hidden": 16, "embd": 8, "seq_len": 16, "batch_size": 4, "max_iters": 5}},
    "sample": {"max_new_tokens": 20, "temperatures": [0.0]},
    "sft": {"block_size": 256, "n_conversations": 40, "batch_size": 4, "max_iters": 6, "warmup_iters": 1,
            "eval_interval": 3, "eval_iters": 1, "max_new_tokens": 8},
}}
RUNGS = {"unigram", "bigram", "3-gram", "word unigram", "word bigram", "rnn", "lstm", "gpt"}


def run(args, ws, env):
    proc = subprocess.run(args, cwd=ws, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def stage(tmp_path_factory, mirror, prefect_server):
    ws = copy_project(tmp_path_factory.mktemp("gpt") / "project", TINY)
    env = child_env(ws, mirror, prefect_server)
    run([sys.executable, "-m", "dvc", "repro", "gpt_train"], ws, env)
    return ws, env


def test_gpt_train_stage_writes_the_ladder_to_dvc_metrics_and_mlflow(stage):
    ws, env = stage
    ladder = json.loads((ws / "reports" / "gpt" / "ladder.json").read_text())
    assert set(ladder) == RUNGS
    assert all(row["train_s"] > 0 for row in ladder.values())
    assert ladder["3-gram"]["val_loss"] < ladder["bigram"]["val_loss"] < ladder["unigram"]["val_loss"]
    assert "| word bigram |" in (ws / "reports" / "gpt" / "ladder.md").read_text()
    shown = run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], ws, env).stdout
    assert "P3_val_loss" in shown and "word bigram" in shown
    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
    try:
        runs = mlflow.search_runs(experiment_names=["seqcast-text"])
        assert RUNGS <= set(runs["tags.model"])
        gpt = runs[runs["tags.model"] == "gpt"].iloc[0]
        assert gpt["tags.family"] == "gpt" and gpt["metrics.P3_val_loss"] > 0
        assert gpt["params.train.optimizer"] == "muon" and gpt["params.model.rope"] == "True"  # the pipeline's recipe
    finally:
        mlflow.set_tracking_uri(None)


def test_chat_fine_tune_on_the_pipeline_gpt_and_the_chat_command(stage):
    ws, env = stage
    run([sys.executable, "-m", "flows.text_chat", "--no-register"], ws, env)
    assert (ws / "checkpoints" / "gpt-chat" / "model.pt").is_file()
    out = run([str(Path(sys.executable).parent / "seqcast"), "chat", "--once", "Which model won?"], ws, env).stdout
    assert out.count("assistant>") == 1
