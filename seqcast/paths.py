"""Where things are: the project root, the data mirror and the MLflow store.

Nothing here has side effects at import; every function reads the environment when
called, so tests and workers can point the pipeline elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

MIRROR_ENV = "SEQCAST_DATA_MIRROR"
HOME_ENV = "SEQCAST_HOME"


def project_root() -> Path:
    """The folder holding ``params.yaml`` and ``dvc.yaml``.

    ``SEQCAST_HOME`` wins; otherwise the nearest parent of the current directory that
    holds both files (DVC runs stages from the root, tests from temporary copies);
    otherwise the checkout this package was installed from.
    """
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file() and (folder / "dvc.yaml").is_file():
            return folder
    return Path(__file__).resolve().parent.parent


def data_mirror() -> Path | None:
    """The offline mirror of the upstream sources, or None when there is none."""
    env = os.environ.get(MIRROR_ENV)
    if env:
        return Path(env).resolve()
    default = (project_root() / ".." / "shared" / "data").resolve()
    return default if default.is_dir() else None


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` or the embedded store ``sqlite:///<root>/mlflow.db``.

    MLflow's own default is relative to the working directory; DVC stages, Prefect
    workers and tests run from different folders, so the default is made absolute.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def artifact_root() -> str | None:
    """Artifact location for new experiments: ``<root>/mlruns`` on the embedded store; beside the
    database for another SQLite store (``sqlite:///dir/x.db`` -> ``dir/mlruns``, not the working
    directory MLflow would pick); a tracking server decides its own."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return (project_root() / "mlruns").as_uri()
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlruns").as_uri()
    return None


class UnsafeName(ValueError):
    """A name from outside (ticker, station, run name) that would leave its folder."""


def safe_name(name: object, what: str = "name") -> str:
    """A name that came from outside (a ticker, a station, a run name), checked to be one
    harmless path component before any path is built from it.

    Refused: empty names, ``.`` and ``..``, path separators (``/``, ``\\``), absolute
    paths, NUL and other control characters, and leading/trailing whitespace. The name
    is returned unchanged otherwise (``^KS11``, ``005930.KS`` and ``TA125.TA`` are fine).
    """
    if not isinstance(name, str):
        raise UnsafeName(f"{what} must be a string, got {type(name).__name__}")
    bad = ""
    if not name or name != name.strip():
        bad = "it is empty or starts/ends with whitespace"
    elif name in {".", ".."}:
        bad = "it is a relative folder reference"
    elif "/" in name or "\\" in name or os.path.isabs(name):
        bad = "it contains a path separator"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        bad = "it contains a NUL or control character"
    if bad:
        raise UnsafeName(f"unsafe {what} {name!r}: {bad}; names from outside must be a single file-name "
                         f"component and cannot point outside the data folders")
    return name


def inside(folder: str | Path, *parts: str, what: str = "name") -> Path:
    """``folder / parts`` after :func:`safe_name` on each part, checked to stay inside ``folder``
    (also through symbolic links)."""
    base = Path(folder).resolve()
    path = base.joinpath(*(safe_name(p, what) for p in parts))
    resolved = path.resolve()
    if resolved != base and base not in resolved.parents:
        raise UnsafeName(f"unsafe {what} {'/'.join(parts)!r}: {resolved} is outside {base}")
    return path
