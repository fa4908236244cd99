"""Every file a stage reads is a dep of that stage, and every params key it reads is declared.

Each stage of dvc.yaml runs, in DVC's order, in a sandbox folder that holds only that
stage's declared deps (files and folders, copied from the outputs of the stages before
it) and params.yaml; the code comes from the project copy on PYTHONPATH, the MLflow
store is a real tracking server on loopback (a service, not a pipeline file). A stage
that reads an undeclared file fails there; the keys of params.yaml it reads are recorded
(``SEQCAST_PARAMS_AUDIT``) and must be covered by its declared params or by the
``${...}`` templating of its paths. Declared outputs must all appear.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from _ops import Proc, bin_path, free_port, wait_http
from conftest import child_env, copy_project

pytestmark = pytest.mark.slow

# the small slice, and every model and the GPT at their smallest
TINY = {"datasets": {"market": {"models": {"run": ["naive", "drift"]}}, "pm25": {"models": {"run": ["naive"]}}},
        "stationarity": {"max_points": 2000},
        "gpt": {"model": {"n_layer": 1, "n_head": 2, "n_embd": 16},
                "train": {"max_iters": 4, "eval_interval": 2, "eval_iters": 1, "warmup_iters": 1,
                          "lr_decay_iters": 4, "compile": False},  # compiled training: test_gpt_training
                "ladder": {"kn_orders": [3],
                           "rnn": {"hidden": 16, "embd": 8, "seq_len": 16, "batch_size": 4, "max_iters": 3},
                           "lstm": {"hidden": 16, "embd": 8, "seq_len": 16, "batch_size": 4, "max_iters": 3}},
                "sample": {"max_new_tokens": 8},
                "sft": {"n_conversations": 24, "max_iters": 2, "eval_interval": 1, "eval_iters": 1, "warmup_iters": 1,
                        "max_new_tokens": 8, "eval_worlds": 1},
                "chat_eval": {"per_kind": 1, "out_of_scope": 3, "temperature_runs": 2},
                "heads": {"max_train_lines": 64, "iters": 3, "linear_iters": 5, "batch_size": 8}}}


def stages(ws: Path) -> list[dict]:
    """The resolved stages in execution order: cmd, deps, outs, declared params, templated keys."""
    import networkx as nx
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    raw = yaml.safe_load((ws / "dvc.yaml").read_text())["stages"]
    out = []
    with contextlib.chdir(ws), Repo(".") as repo:
        graph = repo.index.graph
        for st in reversed(list(nx.topological_sort(graph))):
            name = st.addressing.split("@")[0]
            templated = {t.replace("${key}", st.addressing.partition("@")[2])
                         for t in re.findall(r"\$\{([a-z_.]+)\}", json.dumps(raw[name]))} - {"item", "key", "datasets"}
            params = [p for d in st.deps if isinstance(d, ParamsDependency) for p in d.params]
            out.append({"stage": st.addressing, "cmd": st.cmd, "params": params, "templated": templated,
                        "deps": [str(d.def_path) for d in st.deps if not isinstance(d, ParamsDependency)],
                        "outs": [str(o.def_path) for o in st.outs]})
    return out


def covered(key: str, declared: set[str]) -> bool:
    parts = key.split(".")
    return any(".".join(parts[:i]) in declared for i in range(1, len(parts) + 1))


def copy_path(src_root: Path, dst_root: Path, rel: str) -> None:
    src, dst = src_root / rel, dst_root / rel
    assert src.exists(), f"declared dep {rel} does not exist (no stage before produced it)"
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    proc = Proc([bin_path("mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp / 'db.sqlite'}",
                 "--artifacts-destination", str(tmp / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "1"], tmp / "mlflow.log", env=dict(os.environ, MLFLOW_ENABLE_TELEMETRY="false"), cwd=tmp)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def test_every_stage_runs_from_its_declared_deps_and_params(tmp_path, mirror, tracking_server, prefect_server):
    ws = copy_project(tmp_path / "project", TINY)  # code + params.yaml; outputs accumulate here
    code = tmp_path / "code"
    shutil.copytree(ws, code, ignore=shutil.ignore_patterns(".git", "data", "reports", "checkpoints", "params.yaml"))
    problems = []
    for st in stages(ws):
        box = tmp_path / "sandbox" / st["stage"].replace("@", "-")
        box.mkdir(parents=True)
        shutil.copy2(ws / "params.yaml", box / "params.yaml")
        for dep in st["deps"]:
            if not (code / dep).exists() or dep.startswith(("data/", "reports/", "checkpoints/")):
                copy_path(ws, box, dep)  # data deps only: the code is on PYTHONPATH
        env = child_env(box, mirror, prefect_server)
        env.update(PYTHONPATH=str(code), MLFLOW_TRACKING_URI=tracking_server,
                   SEQCAST_PARAMS_AUDIT=str(box / ".params_read.json"))
        t0 = time.perf_counter()
        proc = subprocess.run(st["cmd"].replace("python ", f"{sys.executable} ", 1), shell=True, cwd=box, env=env,
                              capture_output=True, text=True, timeout=600)
        print(f"{st['stage']}: {time.perf_counter() - t0:.1f} s")
        assert proc.returncode == 0, f"{st['stage']} failed in its sandbox:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        read = json.loads((box / ".params_read.json").read_text())
        undeclared = [k for k in read if not covered(k, set(st["params"]) | st["templated"])]
        if undeclared:
            problems.append(f"{st['stage']} reads params it does not declare: {undeclared}")
        for out in st["outs"]:
            if not (box / out).exists():
                problems.append(f"{st['stage']} did not write its declared output {out}")
                continue
            target = ws / out
            if target.is_dir():
                shutil.rmtree(target)
            copy_path(box, ws, out)  # downstream stages read it from here
    assert problems == [], "\n".join(problems)
