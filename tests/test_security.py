"""Security: no pickle is ever loaded from a file that could come from outside (a malicious
pickle planted where a checkpoint, weights or a saved state is expected is refused and its
payload never runs); names from outside cannot leave the data folders; servers bind to
loopback; the dependency set is locked with hashes; bandit finds nothing high-severity.
(A secret in the environment never reaching MLflow or the logs: tests/test_faults.py.)"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, readme_block
from seqcast.paths import UnsafeName, inside, safe_name


class Payload:
    """Unpickling this creates the marker file: what an attacker's code would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant_torch(path: Path, marker: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": Payload(marker), "model_args": {}}, path)  # torch's own zip format, a pickle inside


def test_the_payload_is_live(tmp_path):
    """The planted bytes are really malicious: a plain pickle.load runs the payload."""
    marker = tmp_path / "pwned"
    data = pickle.dumps(Payload(marker))
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                   input=data, check=True)
    assert marker.exists()


def test_gpt_checkpoint_with_a_pickle_payload_is_refused(tmp_path):
    from seqcast.chat import load_chat_model
    from tasks.gpt_train import load_checkpoint

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "checkpoints" / "gpt" / "model.pt"
    _plant_torch(ckpt, marker)
    with pytest.raises(pickle.UnpicklingError, match="(?s)Weights only load failed.*Unsupported global: GLOBAL io.open"):
        load_checkpoint(ckpt)  # what training resume and the SFT stage read
    (ckpt.parent / "tokenizer.json").write_text("{}")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_chat_model(ckpt.parent)  # what `seqcast chat` reads
    raw = tmp_path / "ckpt.pt"
    raw.write_bytes(pickle.dumps({"model": Payload(marker)}))  # a bare pickle, not torch's zip
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_checkpoint(raw)
    assert not marker.exists()


def _saved_neural_forecaster(folder: Path) -> Path:
    from models import registry

    model = registry.create("simple_rnn", season=5, epochs=1, device="cpu", progress=False)
    y = np.sin(np.arange(120) / 5.0) + 10
    model.fit(y)
    return model.save(folder)


def test_neural_weights_and_saved_state_with_a_pickle_payload_are_refused(tmp_path):
    from models import registry

    marker = tmp_path / "pwned"
    folder = _saved_neural_forecaster(tmp_path / "forecaster")
    assert registry.load(folder).fitted  # the genuine folder loads
    _plant_torch(folder / "weights.pt", marker)
    with pytest.raises(pickle.UnpicklingError, match="(?s)Weights only load failed.*Unsupported global: GLOBAL io.open"):
        registry.load(folder)
    assert not marker.exists()

    folder = _saved_neural_forecaster(tmp_path / "forecaster2")
    np.savez(folder / "state.npz", y=np.array([Payload(marker)], dtype=object))  # an object array: a pickle
    with pytest.raises(ValueError, match="allow_pickle=False"):
        registry.load(folder)
    baseline = registry.create("naive", season=5).fit(np.arange(30.0))
    saved = baseline.save(tmp_path / "naive")
    np.savez(saved / "state.npz", y=np.array([Payload(marker)], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle=False"):
        registry.load(saved)
    assert not marker.exists()


def test_no_unsafe_loader_in_the_code():
    """The audit, kept: every torch.load passes weights_only=True, every np.load allow_pickle=False,
    and nothing calls pickle/joblib/dill/cloudpickle loaders or pd.read_pickle."""
    offenders = []
    for path in [p for d in ("seqcast", "flows", "tasks", "models", "benchmarks") for p in (ROOT / d).rglob("*.py")]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if "torch.load(" in code and "weights_only=True" not in code:
                offenders.append(f"{path}:{n}")
            if "np.load(" in code and "allow_pickle=False" not in code:
                offenders.append(f"{path}:{n}")
            if re.search(r"\b(pickle|joblib|dill|cloudpickle)\.(load|loads)\(|read_pickle\(|yaml\.load\(|"
                         r"yaml\.unsafe_load", code):
                offenders.append(f"{path}:{n}")
    assert offenders == []


# ---------------------------------------------------------------------------- names from outside
@pytest.mark.parametrize("name", ["../etc", "..", ".", "a/b", "/etc/passwd", "x\x00y", "", " KS11", "a\\b", "t\nx"])
def test_names_from_outside_cannot_leave_the_data_folders(name, tmp_path):
    with pytest.raises(UnsafeName):
        safe_name(name, "ticker")
    with pytest.raises(UnsafeName):
        inside(tmp_path, name)


def test_real_names_are_accepted_and_symlinks_cannot_escape(tmp_path):
    for name in ("^KS11", "005930.KS", "TA125.TA", "Aotizhongxin", "us_embassy", "arima · KS11"):
        assert safe_name(name) == name
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link.csv").symlink_to("/etc/hostname")
    with pytest.raises(UnsafeName, match="outside"):
        inside(tmp_path / "data", "link.csv")


def test_ingest_refuses_a_ticker_station_or_file_that_escapes(workspace, monkeypatch):
    from seqcast.config import load_params
    from tasks import ingest

    monkeypatch.setattr(ingest, "reachable", lambda host, timeout=3.0: False)
    params = load_params(ROOT / "params.yaml")
    none = ingest.Downloads(url=None, yahoo=None)

    def with_series(dataset, index, names):
        entry = params.dataset(dataset)
        sources = list(entry.sources)
        sources[index] = sources[index].model_copy(update={"series": names})
        return params.model_copy(update={"datasets": {**params.datasets, dataset: entry.model_copy(
            update={"sources": sources})}})

    for ticker in ("^../../etc/passwd", "/etc/passwd", "KS11\x00"):
        with pytest.raises(UnsafeName):
            ingest.ingest_dataset("market", with_series("market", 0, [ticker]), none)
    with pytest.raises(UnsafeName):
        ingest.ingest_dataset("pm25", with_series("pm25", 1, ["../../../etc/x"]), none)
    assert not list((workspace / "data").rglob("passwd"))


# ---------------------------------------------------------------------------- servers
def test_servers_bind_to_loopback():
    """Every server command the project starts or documents binds to 127.0.0.1."""
    import inspect

    from cli import main as cli

    assert '"--host", "127.0.0.1"' in inspect.getsource(cli.cmd_ui)  # `seqcast ui`
    texts = {p: (ROOT / p).read_text() for p in ("README.md", "prefect.yaml", "cli/main.py", "Makefile")}
    for name, text in texts.items():
        assert "0.0.0.0" not in text, name
        lines = text.splitlines()
        for i, line in enumerate(lines):
            command = re.search(r"(mlflow (server|ui)|prefect server start|models serve)", line)
            if command and re.search(r"\s-{1,2}[a-z]", line[command.start():]):  # a command line with flags
                assert "127.0.0.1" in line + " ".join(lines[i + 1 : i + 2]), (name, line)  # (or continued)
    from seqcast import stack

    assert stack.Stack.open(ROOT / ".no-stack").host == "127.0.0.1"  # the team stack binds loopback by default


# ---------------------------------------------------------------------------- dependencies
def _name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_lock_file_pins_every_dependency_with_hashes():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in pyproject["dependencies"] + pyproject["optional-dependencies"]["test"]}
    lock = (ROOT / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", lock, flags=re.M))
    pinned = {k.lower().replace("_", "-") for k in pins}
    assert wanted <= pinned, wanted - pinned
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n", 2)[2])
    assert all("--hash=sha256:" in b for b in blocks if "==" in b)  # every pin carries its hashes
    assert pins["torch"] == "2.13.0+cpu"  # the CPU wheel, not PyPI's CUDA build


@pytest.mark.slow
def test_bandit_finds_no_high_severity_issue():
    out = subprocess.run([sys.executable, "-m", "bandit", "-r", "seqcast", "flows", "tasks", "models", "benchmarks",
                          "-lll", "-f", "json", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = json.loads(out.stdout)
    assert [(r["filename"], r["line_number"], r["test_id"]) for r in report["results"]] == []
    assert report["metrics"]["_totals"]["loc"] > 5000  # it really scanned the code


@pytest.mark.slow
def test_locked_install_as_the_readme_types_it(tmp_path):
    """The README's locked install, run as typed in a fresh venv (only the venv's folder moved
    to a temporary one): every pin is found, every file matches its sha256, nothing is resolved
    beyond the lock, and `pip check` finds the installed set consistent."""
    lines = readme_block("--require-hashes -r requirements.lock")
    assert any(ln.endswith("pip check") for ln in lines)
    venv = tmp_path / "venv"
    outputs = []
    for line in lines:
        cmd = line.replace(".venv", str(venv))
        out = subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=1200)
        assert out.returncode == 0, f"{line}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
        outputs.append(out.stdout)
    assert "No broken requirements found" in outputs[-1]
    freeze = subprocess.run([str(venv / "bin" / "pip"), "freeze", "--all"], capture_output=True, text=True, check=True).stdout
    assert "torch==2.13.0+cpu" in freeze
    pinned = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", (ROOT / "requirements.lock").read_text(), flags=re.M))
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
    installed = {norm(n): v for n, v in re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)$", freeze, flags=re.M)}
    for name, version in pinned.items():  # exactly the lock's versions, whatever the registry has now
        assert installed.get(norm(name)) == version, (name, version, installed.get(norm(name)))


def test_readme_names_no_path_of_the_lock_machine():
    """The lock's command in the README carries no folder of the machine that built it."""
    text = (ROOT / "README.md").read_text()
    assert "/opt/wheels" not in text and "/opt/pypi" not in text

