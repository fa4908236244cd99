"""Shared fixtures: one Prefect test server per session, the data mirror, temporary
MLflow stores and throw-away copies of the project for end-to-end runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seqcast.env import configure

configure()

ROOT = Path(__file__).resolve().parent.parent


def readme_block(marker: str) -> list[str]:
    """The command lines of the README's bash block that contains ``marker``, as typed (a line
    ending in a backslash continues on the next; comments and blank lines dropped)."""
    import re

    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S):
        if marker in block:
            joined = re.sub(r"\\\n\s*", "", block)
            return [ln.split("  #")[0].strip() for ln in joined.splitlines()
                    if ln.strip() and not ln.strip().startswith("#")]
    raise AssertionError(f"README.md has no bash block with {marker!r}")


def mirror_path() -> Path:
    env = os.environ.get("SEQCAST_DATA_MIRROR")
    return Path(env) if env else (ROOT / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def mirror() -> Path:
    path = mirror_path()
    if not (path / "market" / "KS11.csv").is_file():
        pytest.fail(f"the data mirror is missing at {path}: set SEQCAST_DATA_MIRROR")
    return path


@pytest.fixture(scope="session")
def prefect_server():
    """One Prefect API for the whole session (per xdist worker); yields its URL. In-process flows
    use it; stage subprocesses given it by ``child_env(..., prefect_api=...)`` skip the temporary
    server every stage process otherwise starts (~5 s each)."""
    from prefect.settings import get_current_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield get_current_settings().api.url


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A private MLflow store; returns its URI."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


# Tests run the real pipeline on a small slice: the reference series of each dataset only
# (params.yaml lists every mirror series) and no multi-series models, unless a test says otherwise.
SLICE = {"_series": {"market": ["^KS11"], "pm25": ["us_embassy"]},
         "datasets": {"market": {"models": {"every_series": []}}, "pm25": {"models": {"every_series": []}}},
         "backtest": {"workers": 1},
         # the backtests depend on the GPT forecaster's checkpoint: a few iterations make one
         "gpt_forecaster_train": {"train": {"max_iters": 4, "lr_decay_iters": 4, "warmup_iters": 1,
                                            "eval_interval": 2, "eval_iters": 1},
                                  "synthetic": {"n_series": 5, "length": 300}}}


def keep_series(params: dict, dataset: str, names: list[str]) -> dict:
    """The dataset's sources cut to the series ``names`` (in that order; a source left with
    none is dropped): how a test chooses the series of a run."""
    entry = params["datasets"][dataset]
    sources = []
    for src in entry["sources"]:
        kept = [n for n in names if n in src.get("series", [])]
        if kept:
            sources.append({**src, "series": kept})
    assert sum(len(s["series"]) for s in sources) == len(names), f"{dataset} has no series {names}"
    entry["sources"] = sources
    overrides = entry.get("validation", {}).get("overrides", {})
    for uid in [u for u in overrides if u not in names]:
        del overrides[uid]
    return params


def patch_params(params: dict, patch: dict) -> dict:
    """``patch`` laid over params (see :func:`merge_params`); its ``_series`` key
    (``{dataset: [series]}``) chooses the series of datasets (:func:`keep_series`), its
    ``_sources`` key (``{dataset: [keys of source 0, of source 1, ...]}``) changes keys of sources."""
    patch = dict(patch)
    for dataset, names in (patch.pop("_series", None) or {}).items():
        keep_series(params, dataset, names)
    for dataset, changes in (patch.pop("_sources", None) or {}).items():
        for source, change in zip(params["datasets"][dataset]["sources"], changes):
            source.update(change)
    return merge_params(params, patch)


def copy_project(dest: Path, params_patch: dict | None = None, small_slice: bool = True) -> Path:
    """The tracked project files in a new git repo at ``dest`` (optionally with params changed;
    by default on the small slice ``SLICE``)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for rel in filter(None, files.stdout.split("\0")):
        src = ROOT / rel
        if src.is_file() and not rel.startswith("tests/"):
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    if params_patch or small_slice:
        params = yaml.safe_load((dest / "params.yaml").read_text())
        patch = dict(params_patch or {})
        chosen = patch.pop("_series", {})  # the series a test names replace the slice's for that dataset
        base = {**SLICE, "_series": {**SLICE["_series"], **chosen}} if small_slice else {"_series": chosen}
        patch_params(params, base)
        patch_params(params, patch)
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    git = ["git", "-c", "user.email=test@seqcast", "-c", "user.name=seqcast tests"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "test copy"], cwd=dest, check=True)
    return dest


def merge_params(base: dict, patch: dict) -> dict:
    """Lay ``patch`` over ``base`` (nested dicts merged, anything else replaced); returns ``base``."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_params(base[key], value)
        else:
            base[key] = value
    return base


def child_env(workspace: Path, mirror: Path, prefect_api: str | None = None) -> dict[str, str]:
    """The environment of a subprocess run in ``workspace``; with ``prefect_api`` (the
    ``prefect_server`` fixture's URL) its flows report there, else each process starts its own
    temporary Prefect server, as a user's `dvc repro` does."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_API_URL", None)
    if prefect_api:
        env["PREFECT_API_URL"] = prefect_api
    env["SEQCAST_DATA_MIRROR"] = str(mirror)
    env["SEQCAST_HOME"] = str(workspace)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(workspace)
    return env


@pytest.fixture
def workspace(tmp_path, mirror, monkeypatch):
    """A throw-away copy of the project pointed at by SEQCAST_HOME (for in-process flows)."""
    ws = copy_project(tmp_path / "project", {"datasets": {"market": {"models": {"run": ["naive", "drift", "arima"]}},
                                                          "pm25": {"models": {"run": ["naive", "arima"]}}},
                                             "models": {"arima": {"fit_window": 2000}},
                                             "stationarity": {"max_points": 4000}})
    monkeypatch.setenv("SEQCAST_HOME", str(ws))
    monkeypatch.setenv("SEQCAST_DATA_MIRROR", str(mirror))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return ws


def pytest_collection_modifyitems(config, items):
    """The modules with slow tests first, so that under `make test`'s two xdist workers
    (``--dist loadfile --no-loadscope-reorder``: one module per unit of work, in this order) no
    long module is left to run alone at the end. Modules stay contiguous (module fixtures are
    built once)."""
    slow = {item.path.name for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path.name not in slow)  # stable: the order within a module is kept


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread (faster, and two threads spin against each other on a loaded machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
