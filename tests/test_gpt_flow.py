"""The GPT stage for real, on tiny settings: `dvc repro gpt_train` in a throw-away copy of the project
(ladder with every rung, GPT with the pipeline's recipe, MLflow, DVC metrics, the registered pyfunc).
The chat stages on top of it: tests/test_post_training_flow.py; the chat front door: tests/test_tool_chat.py."""

import json
import subprocess
import sys

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


def test_the_registered_text_model_generates_what_the_checkpoint_generates(stage):
    """`models:/seqcast-gpt@champion` loads and continues a prompt exactly as the stage's own checkpoint does."""
    import torch

    from models.text.gpt import model_from_checkpoint
    from models.text.tokenizers import load_tokenizer

    ws, _ = stage
    ckpt = torch.load(ws / "checkpoints" / "gpt" / "model.pt", map_location="cpu", weights_only=True)
    model, tok = model_from_checkpoint(ckpt).eval(), load_tokenizer(ws / "checkpoints" / "gpt" / "tokenizer.json")
    ids = tok.encode("ROMEO:")
    want = tok.decode(model.generate(torch.tensor([ids]), 12, 0.0, seed=0)[0, len(ids):].tolist())
    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
    try:
        served = mlflow.pyfunc.load_model("models:/seqcast-gpt@champion")
        got = served.predict(["ROMEO:"], params={"temperature": 0.0, "max_new_tokens": 12})
    finally:
        mlflow.set_tracking_uri(None)
    assert got == [want] and len(want) == 12
