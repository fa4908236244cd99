"""The training loop: no leakage, seeds, resume after a kill, MLflow round trip."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from models import registry

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)

ROOT = Path(__file__).resolve().parent.parent
TINY = {"epochs": 3, "hidden": 8, "batch_size": 32, "input_size": 24, "horizon": 6, "progress": False}


def series(n=300, seed=1):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 30 + 8 * np.sin(2 * np.pi * t / 24) + np.cumsum(rng.normal(scale=0.3, size=n)) + rng.normal(size=n)


def test_scaler_and_training_windows_never_see_the_validation_or_test_part(monkeypatch):
    y = series()
    captured = []
    model_cls = registry.get("lstm")
    original = model_cls.train_network

    def spy(self, train, val, **kw):
        captured.append((self.target_, [a.copy() for a in train]))
        return original(self, train, val, **kw)

    monkeypatch.setattr(model_cls, "train_network", spy)
    a = registry.create("lstm", season=24, **TINY).fit(y)
    n_fit = len(y) - max(int(len(y) * 0.1), 6 + 1)
    shocked = y.copy()
    shocked[n_fit:] = 1e6  # the validation slice (and so everything after train) changes wildly
    registry.create("lstm", season=24, **TINY).fit(shocked)
    (t1, tr1), (t2, tr2) = captured
    assert t1 == t2
    for x1, x2 in zip(tr1, tr2, strict=True):
        np.testing.assert_array_equal(x1, x2)
    # and the harness only ever fits on the training part: forecasts past it read y causally
    assert a.y_.shape == y.shape


def test_same_seed_same_forecasts():
    y = series()
    f = [registry.create("cnn_lstm", season=24, seed=7, **TINY).fit(y[:250]) for _ in range(2)]
    m = [x.forecast_origins(y, np.arange(249, 290), 6) for x in f]
    np.testing.assert_array_equal(m[0].mean, m[1].mean)
    assert [h["train_loss"] for h in f[0].history] == [h["train_loss"] for h in f[1].history]


SCRIPT = """
import sys, numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
from models import registry
from tests.test_neural_training import series, RESUME
registry.create("lstm", season=24, checkpoint_dir={ckpt!r}, keep_checkpoint=True, epoch_sleep=2.0, **RESUME).fit(series())
"""
RESUME = {"epochs": 4, "hidden": 8, "batch_size": 32, "input_size": 24, "horizon": 6, "progress": False,
          "patience": 100}


def test_resume_after_sigkill_gives_the_same_next_epoch_loss(tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(root=str(ROOT), ckpt=str(ckpt_dir))],
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 90
    while time.time() < deadline and not list(ckpt_dir.glob("*.pt")):
        assert proc.poll() is None, "the training subprocess ended before its first checkpoint"
        time.sleep(0.2)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)  # mid-run: after epoch 0's checkpoint, during the sleep
    proc.wait()
    (ckpt,) = list(ckpt_dir.glob("*.pt"))
    done = int(torch.load(ckpt, weights_only=True)["epoch"])
    assert done < RESUME["epochs"] - 1
    resumed = registry.create("lstm", season=24, checkpoint_dir=str(ckpt_dir), **RESUME).fit(series())
    assert resumed.resumed_from_ == done
    fresh = registry.create("lstm", season=24, checkpoint_dir=str(tmp_path / "fresh"), **RESUME).fit(series())
    r = {h["epoch"]: h["train_loss"] for h in resumed.history}
    f = {h["epoch"]: h["train_loss"] for h in fresh.history}
    assert r[done + 1] == f[done + 1]
    np.testing.assert_allclose(resumed.forecast_origins(series(), [299], 6).mean,
                               fresh.forecast_origins(series(), [299], 6).mean)


def test_reload_from_mlflow_predicts_the_same(tmp_path, monkeypatch):
    import mlflow

    from models.pyfunc import log_forecaster

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    exp = mlflow.create_experiment("neural-test", artifact_location=tmp_path.as_uri())
    y = series()
    X = np.column_stack([np.sin(np.arange(len(y))), np.cos(np.arange(len(y)))])
    model = registry.create("seq2seq_attn", season=24, **TINY).fit(y, X)
    with mlflow.start_run(experiment_id=exp):
        uri = log_forecaster(model, tmp_path / "fc", (80, 95), 6)
    loaded = mlflow.pyfunc.load_model(uri)
    out = loaded.predict(pd.DataFrame({"y": np.array([], dtype=float)}), params={"h": 6})
    fc = model.predict(6)
    np.testing.assert_allclose(out["mean"].to_numpy(), fc.mean[0], rtol=1e-5)
    np.testing.assert_allclose(out["hi-95"].to_numpy(), fc.upper[95][0], rtol=1e-5)
