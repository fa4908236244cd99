"""Process settings applied by entry points (CLI, flows run as scripts, tests).

There is no network for telemetry here and none is wanted elsewhere: it is off by
default. Applied explicitly by entry points, never at import of a library module.
"""

from __future__ import annotations

import logging
import os
import warnings

TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_ENABLE_TELEMETRY": "false",
    "DO_NOT_TRACK": "1",
    "MPLBACKEND": "Agg",
    # Prefect: keep the logs of our own stage code visible in the UI
    "PREFECT_LOGGING_EXTRA_LOGGERS": "seqcast,tasks,models,flows",
    # MLflow: no pip inference over the network when a model is logged
    "MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "5",
    # No OpenMP setting here: it is read once when torch loads, so it belongs to the
    # command that starts a training (see README, "The small GPT": GOMP_SPINCOUNT).
}


def configure() -> None:
    """Set the defaults above unless the user set them already."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", message=".*result_object.*")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process (``dvc``, ``mlflow``, ``prefect``): this interpreter's
    bin folder first, so the ``python`` of dvc.yaml's commands is the one seqcast runs in."""
    import sys
    from pathlib import Path

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.update(extra or {})
    return env
