"""MLflow: the store, experiments per dataset, runs tagged with their data version.

The store is ``MLFLOW_TRACKING_URI`` or the embedded ``sqlite:///<root>/mlflow.db``
with artifacts in ``<root>/mlruns`` (see :mod:`seqcast.paths`). Every run carries the
tags ``dataset``, ``model``, ``family``, ``git_commit`` and ``data_version`` (the DVC
md5 of the table it used), and logs that table as an ``mlflow.data`` input whose
digest is the same md5, so a model leads back to its data.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seqcast.paths import artifact_root, project_root, tracking_uri

log = logging.getLogger(__name__)


def file_md5(path: str | Path) -> str:
    """md5 of a file's bytes: what DVC 3 records for the file in ``dvc.lock``."""
    digest = hashlib.md5(usedforsecurity=False)  # a content fingerprint (what DVC records), not security
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def experiment_name(dataset: str) -> str:
    from seqcast.config import load_params

    return f"{load_params().mlflow.experiment_prefix}-{dataset}"


def use_store() -> str:
    """Point the MLflow client at the store; returns the URI."""
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    return uri


def check_store(timeout: float = 5.0) -> str:
    """Fail fast, before any training, when the MLflow store cannot be used.

    An HTTP tracking server is asked for ``/health`` once with a short timeout (MLflow's
    own client would retry for minutes and fail only after the model was trained); the
    embedded SQLite store needs a folder it can write. Returns the URI; raises
    :class:`seqcast.errors.StoreUnavailable` with what to do.
    """
    import urllib.error
    import urllib.parse
    import urllib.request

    from seqcast.errors import StoreUnavailable

    uri = tracking_uri()
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:  # nosec B310 - http(s) only
                resp.read(64)
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise StoreUnavailable(
                f"the MLflow tracking store {uri} does not answer ({reason}); nothing was trained. Start the "
                f"server (README: Tracking server) or unset MLFLOW_TRACKING_URI to use the embedded store "
                f"sqlite:///<project>/mlflow.db") from None
        _check_server_store(uri, timeout)
    elif scheme == "sqlite":
        folder = Path(uri.split(":///", 1)[-1]).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise StoreUnavailable(f"the MLflow store {uri} is not usable: {folder} is not a writable folder; "
                                   f"nothing was trained")
    return uri


STORE_QUERY_TIMEOUT_S = 30.0


def _check_server_store(uri: str, timeout: float) -> None:
    """A tracking server answers /health without its database: one read of the store itself
    (the first experiment) tells that its backend store (e.g. PostgreSQL) is usable."""
    import json
    import urllib.error
    import urllib.request

    from seqcast.errors import StoreUnavailable

    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    wait = max(timeout, STORE_QUERY_TIMEOUT_S)  # a server whose database is down answers after its own retries
    try:
        with urllib.request.urlopen(url, timeout=wait) as resp:  # nosec B310 - http(s) only
            resp.read(256)
    except urllib.error.HTTPError as err:
        try:
            detail = json.loads(err.read(4000) or b"{}").get("message", "")
        except ValueError:
            detail = ""
        raise StoreUnavailable(
            f"the MLflow tracking server {uri} answers but its backend store does not (HTTP {err.code}: "
            f"{detail[:300] or err.reason}); nothing was trained. Is its database up? (seqcast stack status)"
        ) from None
    except (urllib.error.URLError, OSError) as err:
        raise StoreUnavailable(
            f"the MLflow tracking server {uri} answers but its backend store does not answer a query within "
            f"{wait:g} s ({getattr(err, 'reason', err)}); nothing was trained. Is its database up? "
            f"(seqcast stack status)") from None


def ensure_experiment(name: str) -> str:
    """Get or create an experiment; on the embedded store artifacts go to ``<root>/mlruns``. The
    project's experiments (``<prefix>-...``) get their description and kind for the UI
    (:mod:`seqcast.experiments`)."""
    import mlflow

    from seqcast import experiments

    use_store()
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            exp = client.get_experiment(client.create_experiment(name, artifact_location=artifact_root()))
        except mlflow.exceptions.MlflowException:  # created concurrently
            exp = client.get_experiment_by_name(name)
    prefix = _prefix()
    if name.startswith(f"{prefix}-") and not {experiments.NOTE_TAG, experiments.KIND_TAG} <= set(exp.tags):
        experiments.describe_experiment(client, exp.experiment_id, name, prefix)
    return exp.experiment_id


def _prefix() -> str:
    from seqcast.config import load_params

    return load_params().mlflow.experiment_prefix


@contextlib.contextmanager
def model_run(
    dataset: str,
    model: str,
    family: str,
    *,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    experiment: str | None = None,
) -> Iterator[Any]:
    """An MLflow run with the tags every seqcast run has."""
    import mlflow

    exp_id = ensure_experiment(experiment or experiment_name(dataset))
    all_tags = {"dataset": dataset, "model": model, "family": family, "git_commit": git_commit()}
    all_tags.update(tags or {})
    nested = mlflow.active_run() is not None  # a child of the active run (e.g. a model under its backtest)
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name or model, tags=all_tags, nested=nested) as run:
        yield run


def log_data_version(df: Any, path: str | Path, *, name: str, context: str = "training") -> str:
    """Log the table a run used as an MLflow dataset whose digest is its DVC md5."""
    import mlflow

    path = Path(path)
    md5 = file_md5(path)
    try:
        rel = str(path.resolve().relative_to(project_root()))
    except ValueError:
        rel = str(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "source can be interpreted in multiple ways": it is a local file
        dataset = mlflow.data.from_pandas(df, source=rel, name=name, digest=md5)
        dataset.schema = table_schema(df)  # MLflow's own inference walks every value in Python (~10 s per run)
    mlflow.log_input(dataset, context=context)
    mlflow.set_tags({"data_version": md5, "data_path": rel})
    return md5


def table_schema(df: Any, sample_rows: int = 256):
    """The MLflow schema of a table, as ``mlflow.data.from_pandas`` infers it, in vectorized time:
    column types from a sample (pandas dtypes decide them), ``required`` from the whole column."""
    from mlflow.models import infer_signature
    from mlflow.types import ColSpec, Schema

    notna = df.notna().to_numpy()
    rows = set(range(min(sample_rows, len(df))))  # the head, and each column's first value (a column
    rows.update(int(col.argmax()) for col in notna.T if col.any())  # null throughout the head is typed by it)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # integer columns "may hold missing values later"
        sampled = infer_signature(df.iloc[sorted(rows)]).inputs
    required = dict(zip(df.columns, notna.all(axis=0)))
    return Schema([ColSpec(spec.type, spec.name, required=bool(required[spec.name])) for spec in sampled.inputs])


def log_figure(fig: Any, artifact_file: str) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)
