"""Helpers of the operations tests: a working-tree copy of the project, free ports,
processes started and stopped by the tests, a workspace prepared up to a champion."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import copy_project

def copy_worktree(dest: Path, params_patch: dict | None = None) -> Path:
    """A throw-away git copy of the project (see ``conftest.copy_project``)."""
    return copy_project(dest, params_patch)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


class Proc:
    """A background process in its own process group, logged to a file, killed on stop()."""

    def __init__(self, args: list[str], log: Path, **kw):
        self.log = log
        self.fh = open(log, "w")
        self.p = subprocess.Popen(args, stdout=self.fh, stderr=subprocess.STDOUT, start_new_session=True, **kw)

    def tail(self, n: int = 4000) -> str:
        self.fh.flush()
        return self.log.read_text(errors="replace")[-n:]

    def stop(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(timeout=10)
        self.fh.close()


def wait_http(url: str, proc: Proc, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.p.poll() is not None:
            raise RuntimeError(f"{url}: the process exited ({proc.p.returncode}):\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status < 500:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {timeout}s:\n{proc.tail()}")


def run_py(args: list[str], cwd: Path, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


# the cheap models of the operations tests: seconds on the market series
CHEAP = {"datasets": {"market": {"models": {"run": ["naive", "drift", "arima"]}},
                      "pm25": {"models": {"run": ["naive", "arima"]}}},
         "models": {"arima": {"fit_window": 2000}},
         "stationarity": {"max_points": 4000}}


def git_commit_all(ws: Path, message: str) -> None:
    git = ["git", "-c", "user.email=test@seqcast", "-c", "user.name=seqcast tests"]
    subprocess.run([*git, "add", "-A"], cwd=ws, check=True, capture_output=True)
    subprocess.run([*git, "commit", "-qm", message], cwd=ws, check=True, capture_output=True)


def build_pipeline_store(tmp: Path, mirror: Path) -> tuple[Path, dict]:
    """A project copy where `dvc repro promote@market charts@market` ran (backtest of naive, drift, arima,
    the promotion stage registered a champion, the charts of `dvc plots show`); the result is committed
    (a clean base for DVC experiments)."""
    from prefect.settings import get_current_settings

    from conftest import child_env

    ws = copy_worktree(tmp / "project", CHEAP)
    # the session's Prefect test server (when one runs): no temporary server per stage process
    env = child_env(ws, mirror, get_current_settings().api.url)
    run_py(["-m", "dvc", "repro", "promote@market", "charts@market"], ws, env)
    git_commit_all(ws, "pipeline run")
    return ws, env


_STORE: dict[str, tuple[Path, dict]] = {}


def shared_store(tmp_path_factory, mirror: Path) -> tuple[Path, dict]:
    """One pipeline store per test session, shared by the modules that use it (fixtures
    imported into several modules would be built once per module). Under xdist the first
    worker that needs it builds it once, in the session's folder beside the workers' own, while
    a second waits on a file lock instead of building its own (a build is minutes of both
    cores); each worker then works on its own copy (the tests write runs, experiments and
    forecasts into it), with its own environment."""
    import fcntl
    import shutil

    from prefect.settings import get_current_settings

    from conftest import child_env

    if "market" not in _STORE:
        base = tmp_path_factory.getbasetemp()
        session = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
        built = session / "pipeline-store"
        with open(session / "pipeline-store.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when its holder dies
            if not (built / "built").is_file():
                shutil.rmtree(built, ignore_errors=True)  # a build that died half-way
                build_pipeline_store(built, mirror)
                (built / "built").write_text("")
        ws = tmp_path_factory.mktemp("store") / "project"
        shutil.copytree(built / "project", ws, symlinks=True)
        _STORE["market"] = ws, child_env(ws, mirror, get_current_settings().api.url)
    return _STORE["market"]
