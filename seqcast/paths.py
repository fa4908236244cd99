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
    """Artifact location for new experiments on the embedded store (``<root>/mlruns``)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None  # a tracking server decides
    return (project_root() / "mlruns").as_uri()
