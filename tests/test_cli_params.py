"""Through the front door: ``seqcast run`` (and a stage's own command) on a project whose
params.yaml is wrong exits non-zero with one line naming the key, and no stage runs:
dvc.lock and every file of the project stay as they were."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import child_env, copy_project, merge_params

CASES = {  # patch -> the key the message must name
    "unknown key deep inside": ({"models": {"lstm": {"by_dataset": {"pm25": {"input_sise": 72}}}}},
                                "models.lstm.by_dataset.pm25.input_sise: unknown key"),
    "season 0": ({"datasets": {"market": {"protocol": {"season": 0}}}},
                 "datasets.market.protocol.season: must be > 0 (got 0)"),
    "negative learning rate": ({"models": {"lstm": {"lr": -0.001}}}, "models.lstm.lr: must be > 0 (got -0.001)"),
    "unknown model": ({"datasets": {"market": {"models": {"run": ["naive", "nope"]}}}},
                      "datasets.market.models.run: unknown model 'nope'"),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory, mirror):
    ws = copy_project(tmp_path_factory.mktemp("bad-params") / "project")
    return ws, child_env(ws, mirror), (ws / "params.yaml").read_text()


def snapshot(ws: Path) -> dict[str, str]:
    """Every file of the project but params.yaml (and bytecode), with its content hash."""
    return {str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(ws.rglob("*"))
            if p.is_file() and ".git" not in p.parts and "__pycache__" not in p.parts and p.name != "params.yaml"}


@pytest.mark.parametrize("case", CASES)
def test_seqcast_run_refuses_bad_params_before_any_stage(case, project):
    ws, env, original = project
    patch, expected = CASES[case]
    (ws / "params.yaml").write_text(yaml.safe_dump(merge_params(yaml.safe_load(original), patch), sort_keys=False))
    before = snapshot(ws)
    try:
        run = subprocess.run(["seqcast", "run"], cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    finally:
        (ws / "params.yaml").write_text(original)
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"params.yaml: {expected}" in run.stderr
    assert "Traceback" not in run.stderr and "Running stage" not in run.stdout
    assert snapshot(ws) == before  # dvc.lock, data/ and reports/ untouched, nothing new written
    assert not (ws / "data" / "raw" / "market").exists() and not (ws / "mlflow.db").exists()


def test_a_stage_command_refuses_bad_params_too(project):
    """What each DVC stage runs (``python -m flows.<stage> --dataset ...``) checks params.yaml first."""
    ws, env, original = project
    (ws / "params.yaml").write_text(original.replace("      season: 24\n", "      season: 0\n", 1))
    try:
        run = subprocess.run([sys.executable, "-m", "flows.backtest", "--dataset", "pm25"], cwd=ws, env=env,
                             capture_output=True, text=True, timeout=300)
    finally:
        (ws / "params.yaml").write_text(original)
    assert run.returncode == 2
    assert run.stderr.strip() == "params.yaml: datasets.pm25.protocol.season: must be > 0 (got 0)"


def test_an_unknown_dataset_is_refused_by_name(project):
    """``seqcast run --dataset NAME`` and a stage's command refuse a name params.yaml does not have."""
    ws, env, _ = project
    run = subprocess.run(["seqcast", "run", "--dataset", "nope"], cwd=ws, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2 and "unknown dataset 'nope'; params.yaml datasets: market, pm25" in run.stderr
    stage = subprocess.run([sys.executable, "-m", "flows.validate", "--dataset", "nope"], cwd=ws, env=env,
                           capture_output=True, text=True, timeout=300)
    assert stage.returncode == 2 and "unknown dataset 'nope'" in stage.stderr
