"""DVC experiments on the pipeline: `dvc exp run -S` sweeps a params.yaml value,
`dvc exp show`, `dvc metrics diff` and `dvc plots diff` compare the result with the
committed run, and the default remote (a local folder) takes `dvc push`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from _ops import shared_store

pytestmark = pytest.mark.slow


def dvc(args, ws, env, check=True):
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=ws, env=env, capture_output=True, text=True,
                          timeout=900)
    if check:
        assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, mirror, prefect_server):
    ws, env = shared_store(tmp_path_factory, mirror)
    env = dict(env)
    env.pop("SEQCAST_HOME")  # --temp runs in .dvc/tmp/exps/...: its own params.yaml and MLflow store
    dvc(["exp", "run", "--temp", "-n", "arima-p1", "-S", "models.arima.p=1", "charts@market"], ws, env)
    return ws, env


def test_exp_show_lists_the_sweep(experiment):
    ws, env = experiment
    shown = json.loads(dvc(["exp", "show", "--json"], ws, env).stdout)
    text = json.dumps(shown)
    assert "arima-p1" in text
    exp = next(e for rev in shown for e in (rev.get("experiments") or [])
               if e.get("name") == "arima-p1" or "arima-p1" in json.dumps(e))
    params = json.dumps(exp)
    assert '"p": 1' in params


def test_metrics_and_plots_diff_against_the_committed_run(experiment):
    ws, env = experiment
    diff = json.loads(dvc(["metrics", "diff", "HEAD", "arima-p1", "--json"], ws, env).stdout)
    # file:metric of the backtest metrics that moved (NaN -> NaN, e.g. the naive's direction, is no move)
    changed = {f"{path}:{key}" for path, entries in diff.items() if path.startswith("reports/metrics/market")
               for key, d in entries.items() if not (d.get("old") != d.get("old") and d.get("new") != d.get("new"))}
    assert any("arima" in k and k.endswith("P2a_mase") for k in changed), diff
    # only the swept model's scores moved (every model of the stage re-ran: timings may differ)
    assert not any("naive" in k and "seconds" not in k for k in changed), diff
    plots = dvc(["plots", "diff", "HEAD", "arima-p1", "--json"], ws, env)
    assert "charts/market/KS11_arima.svg" in plots.stdout and "arima-p1" in plots.stdout


def test_push_to_the_default_local_remote(experiment):
    ws, env = experiment
    assert dvc(["remote", "default"], ws, env).stdout.strip() == "local"
    # the stages this workspace ran (dvc.lock also lists stages that only `make run` runs)
    target = ["--with-deps", "backtest@market"]
    dvc(["push", *target], ws, env)
    status = dvc(["status", "--cloud", *target], ws, env)
    assert "in sync" in status.stdout or "up to date" in status.stdout.lower(), status.stdout
    assert any((ws.parent / "seqcast-dvc-remote").rglob("*"))
