"""The GPT benchmarks as a user types them (small settings): `seqcast bench gpt` and `seqcast bench scaling`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEQCAST = str(Path(sys.executable).parent / "seqcast")
NANOGPT = Path(os.environ.get("SEQCAST_NANOGPT", "/work/.mirror/karpathy+nanoGPT/repo"))


def seqcast(*args: str, env: dict | None = None, cwd: Path = ROOT, timeout: float = 600) -> dict:
    proc = subprocess.run([SEQCAST, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bench_gpt_reference_keeps_its_json(mirror):
    r = seqcast("bench", "gpt", "--iters", "20", "--no-compile", "--threads", "1")
    for key in ("tokens_per_s", "ms_per_iter", "val_loss", "gen_tokens_per_s_cached", "gen_tokens_per_s_uncached"):
        assert r[key] > 0, key
    assert r["recipe"] == "reference" and r["iters"] == 20 and r["params"] == 795_904
    assert r["model"]["rope"] is False and r["train"]["optimizer"] == "adamw"  # nanoGPT's recipe
    assert 2.5 < r["val_loss"] < 4.2 and r["gen_same_tokens"] is True
    assert r["time_to_target_s"] is None and r["reached"] is None


def test_bench_gpt_pipeline_recipe_stops_at_the_target(mirror):
    r = seqcast("bench", "gpt", "--recipe", "pipeline", "--target", "3.2", "--iters", "60", "--no-compile",
                "--no-gen", "--eval-every", "5", "--set", "model.n_layer=2", "--threads", "1")
    assert r["recipe"] == "pipeline" and r["reached"] is True
    assert r["val_loss"] <= 3.2 and 0 < r["time_to_target_s"] <= r["train_s"]
    assert r["iters"] < 60 and r["iters"] % 5 == 0  # it stopped at an evaluation
    assert r["model"]["n_layer"] == 2


def test_bench_gpt_reports_a_missed_target(mirror):
    r = seqcast("bench", "gpt", "--recipe", "pipeline", "--target", "1.0", "--iters", "10", "--no-compile",
                "--no-gen", "--set", "model.n_layer=1", "--threads", "1")
    assert r["reached"] is False and r["time_to_target_s"] is None and r["iters"] == 10


@pytest.mark.skipif(not NANOGPT.exists(), reason="no nanoGPT checkout (set SEQCAST_NANOGPT)")
def test_bench_gpt_against_nanogpt_interleaved(mirror):
    r = seqcast("bench", "gpt", "--peer", f"nanogpt={NANOGPT}", "--iters", "20", "--rounds", "1", "--no-compile", "--threads", "1",
                "--no-gen")
    assert r["peer"] == "nanogpt" and r["peer_iters"] == 20
    assert r["peer_tokens_per_s"] > 0 and r["speedup_vs_peer"] == pytest.approx(r["peer_ms_per_iter"] / r["ms_per_iter"])
    # the same recipe, the same seed-independent ballpark after 20 iterations
    assert abs(r["peer_val_loss"] - r["val_loss"]) < 0.3
    assert len(r["loadavg_runs"]) == 2 and r["time_to_target_vs_peer"] is None  # no target asked


@pytest.mark.skipif(not NANOGPT.exists(), reason="no nanoGPT checkout (set SEQCAST_NANOGPT)")
def test_bench_gpt_time_to_target_against_nanogpt(mirror):
    r = seqcast("bench", "gpt", "--recipe", "pipeline", "--target", "3.3", "--eval-every", "5", "--peer",
                f"nanogpt={NANOGPT}", "--iters", "20", "--rounds", "1", "--no-compile", "--threads", "1", "--no-gen",
                "--set", "model.n_layer=1", "--set", "model.block_size=64")
    assert r["reached"] is True and r["peer_iters"] == 20
    assert r["time_to_target_vs_peer"] == pytest.approx(r["time_to_target_s"] / r["peer_train_s"])
    # tokens/s, not ms/iteration: the two recipes' iterations differ (16 x 64 vs 12 x 64 tokens)
    assert r["speedup_vs_peer"] == pytest.approx(r["tokens_per_s"] / r["peer_tokens_per_s"])


def test_bench_scaling_fits_a_power_law_and_logs_it(mirror, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = seqcast("bench", "scaling", "--sizes", "1x16", "1x32", "2x48", "--tokens", "30000", "--threads", "1",
                env={"MLFLOW_TRACKING_URI": uri, "SEQCAST_HOME": str(ROOT)}, cwd=tmp_path)  # artifacts: tmp_path/mlruns
    params = [row["params"] for row in r["rows"]]
    assert params == sorted(params) and len(params) == 3
    assert r["fit"]["alpha"] > 0  # more parameters, lower loss
    mlflow.set_tracking_uri(uri)
    try:
        run = mlflow.get_run(r["mlflow_run_id"])
        assert run.data.tags["family"] == "gpt" and "P3_scaling_alpha" in run.data.metrics
        arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
        assert {"scaling.png", "scaling.json"} <= arts
    finally:
        mlflow.set_tracking_uri(None)


def test_bench_gpt_ablation_table(mirror):
    r = seqcast("bench", "gpt_ablation", "--rows", "pipeline", "no-muon", "--seeds", "1", "--target", "3.3",
                "--iters", "30", "--threads", "1", "--eval-every", "5", "--set", "model.n_layer=1",
                "--set", "model.block_size=64")
    assert set(r["table"]) == {"pipeline", "no-muon"} and len(r["runs"]) == 2
    assert r["set"] == ["model.n_layer=1", "model.block_size=64"]
    assert all(run["params"] < 300_000 for run in r["runs"])  # one layer, not the recipe's four (~800 k)
    assert all(run["reached"] for run in r["runs"])  # 3.3 nats/char: a few iterations of either
    assert r["eval_every"] == 5 and all(run["iters"] % 5 == 0 for run in r["runs"])  # stopped at an evaluation
    assert r["table"]["pipeline"]["reached"] == "1/1" and r["table"]["pipeline"]["time_mean"] > 0


def test_bench_gpt_profile_says_where_the_time_goes(mirror):
    r = seqcast("bench", "gpt", "--profile", "3", "--no-compile", "--threads", "1")
    kinds = r["profile_ms_by_kind"]
    assert set(kinds) == {"matmul", "attention", "optimizer", "elementwise, norms, loss, other"}
    assert kinds["matmul"] > 0 and kinds["optimizer"] > 0 and r["aten_ops_per_step"] > 50
    assert r["recipe"] == "reference" and r["compile"] is False
