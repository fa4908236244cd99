"""Backtest jobs — one (series, model) pair each — run through the one executor (tasks/executor.py).

The unit of work is :func:`run_job`: build the model from params.yaml, evaluate it on the
series' protocol, and hand back the result as plain data: the metrics, forecasts and
errors, and the fitted forecaster as a :class:`FittedModel` (its saved files, what it
reports, its figures as images) — never a pickled model. :func:`run_jobs` yields results
as they finish, in this process, in local processes or on a Dask cluster
(``SEQCAST_DASK_ADDRESS``); the caller (the backtest flow, the benchmarks) logs them, so
MLflow is only ever written from one process.
"""

from __future__ import annotations

import functools
import io
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from seqcast.config import Params
from tasks import executor
from tasks.backtest import BacktestResult, Protocol, Unscored, calibration_for, run_model
from tasks.series import build_forecaster


@dataclass(frozen=True)
class Job:
    protocol: Protocol
    model: str
    verdict: dict | None  # the stationarity verdict of the series (models that use d)
    calibrate: bool = False  # check (and fix) its intervals on the validation slice (the reference series)


@dataclass
class FittedModel:
    """A fitted forecaster as plain data: what the backtest logs of it, and its saved files
    (``Forecaster.save``: JSON, .npz and the family's own weights). :meth:`load` rebuilds the
    forecaster from those files, as the logged MLflow model does."""

    name: str
    family: str
    update_method: str
    oracle_exog: bool
    uses_panel: bool
    y_: np.ndarray  # the history it was fitted on (and the input example of the logged model)
    description: dict[str, Any]
    extras: dict[str, Any]
    images: dict[str, bytes] = field(default_factory=dict)  # file name -> the figure rendered as PNG
    files: dict[str, bytes] = field(default_factory=dict)  # path in the saved folder -> content

    @classmethod
    def of(cls, forecaster) -> FittedModel:
        import matplotlib.pyplot as plt

        images = {}
        for file_name, fig in (forecaster.figures() or {}).items():
            buf = io.BytesIO()
            fig.savefig(buf, format="png")  # what mlflow.log_figure would have written
            plt.close(fig)
            images[file_name] = buf.getvalue()
        with tempfile.TemporaryDirectory() as tmp:
            folder = forecaster.save(Path(tmp) / "forecaster")
            files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return cls(forecaster.name, forecaster.family, forecaster.update_method, bool(forecaster.oracle_exog),
                   bool(forecaster.uses_panel), np.asarray(forecaster.y_), forecaster.describe(),
                   forecaster.log_extras() or {}, images, files)

    def describe(self) -> dict[str, Any]:
        return dict(self.description)

    def log_extras(self) -> dict[str, Any]:
        return self.extras

    def figures(self) -> dict[str, Any]:
        """The figures again, as matplotlib figures holding the rendered images pixel for pixel."""
        return {name: _image_figure(png) for name, png in self.images.items()}

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        for rel, content in self.files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(content)
        return folder

    def load(self):
        """The forecaster rebuilt from its saved files (``models.registry.load``: no pickle)."""
        from models import registry

        with tempfile.TemporaryDirectory() as tmp:
            return registry.load(self.save(Path(tmp) / "forecaster"))


def _image_figure(png: bytes):
    import matplotlib.image as mpimg
    from matplotlib.figure import Figure

    img = mpimg.imread(io.BytesIO(png), format="png")
    height, width = img.shape[:2]
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    fig.figimage(img, 0, 0)
    return fig


def run_job(job: Job, params: Params) -> BacktestResult | Unscored:
    """Evaluate one job; the result as plain data (its ``protocol`` is the job's, set again by
    :func:`run_jobs`, so that it does not travel back). A model that does not apply or fails
    comes back as an :class:`Unscored` saying why."""
    calibration = calibration_for(params, job.protocol.dataset) if job.calibrate else None
    result = run_model(lambda name: build_forecaster(name, job.protocol, params, job.verdict), job.model,
                       job.protocol, calibration, params.backtest.on_model_error)
    if isinstance(result, Unscored):
        return replace(result, protocol=None)
    return replace(result, protocol=None, forecaster=FittedModel.of(result.forecaster))


def label(job: Job) -> str:
    return f"{job.model} · {job.protocol.unique_id}"


def run_jobs(jobs: list[Job], params: Params, workers: int, address: str | None = None, batch: int | None = None
             ) -> Iterator[tuple[Job, BacktestResult | Unscored]]:
    """``(job, result)`` as each job finishes: ``workers`` 1 in this process, in order; more in
    that many local processes; on the Dask cluster at ``address`` / ``SEQCAST_DASK_ADDRESS``
    in batches (``batch`` jobs each, default :func:`tasks.executor.batch_sizes`)."""
    for job, result in executor.run(functools.partial(run_job, params=params), jobs, workers, address, label,
                                    batch):
        result.protocol = job.protocol
        yield job, result
