"""Many series on Dask through Prefect: the mapped flow gives the serial loop's
forecasts on a local cluster (the default) and on an existing Dask scheduler reached by
address (a real `dask scheduler` + `dask worker` on loopback)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from _ops import Proc, bin_path, free_port, wait_http
from conftest import ROOT
from flows.scale import chunks, default_chunk_size, generated_series, scale_flow, serial_fit

pytestmark = pytest.mark.slow
SMALL = {"p": 1, "d": 1, "q": 0, "maxiter": 50}


def test_generated_series_are_reproducible_and_chunked():
    a, b = generated_series(5, 50, seed=3), generated_series(5, 50, seed=3)
    assert list(a) == [f"gen_{i:05d}" for i in range(5)]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    parts = chunks(a, 2)
    assert [len(p) for p in parts] == [2, 2, 1] and default_chunk_size(1000, 2) == 125


def _check(out, n):
    serial = serial_fit(generated_series(n, 200), "arima", overrides=SMALL)
    assert set(out["forecasts"]) == set(serial)
    for uid, fc in serial.items():
        np.testing.assert_allclose(out["forecasts"][uid], fc, rtol=1e-8)


def test_local_cluster_matches_serial(prefect_server):
    out = scale_flow("generated", 6, length=200, model="arima", n_workers=2, chunk_size=2, overrides=SMALL)
    assert out["tasks"] == 3
    _check(out, 6)


def test_existing_scheduler_by_address(prefect_server, tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PREFECT_API_URL=prefect_server)
    env["PATH"] = str(sys.executable.rsplit("/", 1)[0]) + os.pathsep + env.get("PATH", "")
    dash = free_port()
    scheduler = Proc([bin_path("dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                      "--dashboard-address", f"127.0.0.1:{dash}"], tmp_path / "scheduler.log", env=env, cwd=ROOT)
    worker = None
    try:
        wait_http(f"http://127.0.0.1:{dash}/health", scheduler, timeout=120)
        worker = Proc([bin_path("dask"), "worker", f"tcp://127.0.0.1:{port}", "--nworkers", "1", "--nthreads", "1",
                       "--no-dashboard"], tmp_path / "worker.log", env=env, cwd=ROOT)
        out = scale_flow("generated", 4, length=200, model="arima", address=f"tcp://127.0.0.1:{port}",
                         chunk_size=2, overrides=SMALL)
        assert out["tasks"] == 2
        _check(out, 4)
    finally:
        for p in (worker, scheduler):
            if p is not None:
                p.stop()
