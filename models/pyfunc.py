"""Forecasters as MLflow pyfunc models (models-from-code: no pickled Python objects).

The logged model holds the forecaster's own files (``forecaster.json`` + ``state.npz``,
see :meth:`models.base.Forecaster.save`). ``predict`` takes a DataFrame of new
observations (column ``y``, in time order, following the training history; may be
empty) and the parameter ``h``; it returns one row per step with ``mean`` and the
interval bounds ``lo-<level>`` / ``hi-<level>``. Where the backtest's validation-slice
check recalibrated the intervals (``backtest.calibration``), the model carries those
split-conformal factors (``model_config["interval_factors"]``) and applies them: the served
intervals are the ones the logged coverage metrics scored.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from models.calibration import rescale

ENTRY = Path(__file__).with_name("mlflow_entry.py")


class ForecasterModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from models.registry import load

        self.forecaster = load(context.artifacts["forecaster"])
        self.levels = tuple(int(v) for v in context.model_config.get("levels", (80, 95)))
        self.factors = {int(k): float(v) for k, v in (context.model_config.get("interval_factors") or {}).items()}

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        import copy

        params = params or {}
        h = int(params.get("h", 1))
        model = copy.deepcopy(self.forecaster)
        if model_input is not None and len(model_input):
            model.update(model_input["y"].to_numpy(dtype=float))
        fc = model.predict(h, self.levels)
        if self.factors:
            fc = rescale(fc, self.factors)
        out = pd.DataFrame({"step": np.arange(1, h + 1), "mean": fc.mean[0]})
        for level in fc.levels:
            out[f"lo-{level}"] = fc.lower[level][0]
            out[f"hi-{level}"] = fc.upper[level][0]
        return out


def log_forecaster(forecaster, folder: Path, levels: tuple[int, ...], horizon: int,
                   interval_factors: dict[int, float] | None = None) -> str:
    """Save and log a fitted forecaster in the active run; returns the model URI.
    ``interval_factors``: split-conformal factor per level, applied to every forecast served."""
    import warnings

    from mlflow.models import infer_signature

    forecaster.save(folder)
    example = pd.DataFrame({"y": forecaster.y_[-3:]})
    out = pd.DataFrame({"step": [1], "mean": [0.0], **{f"{b}-{lv}": [0.0] for lv in levels for b in ("lo", "hi")}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # integer-column hints: "step" is never missing
        signature = infer_signature(example, out, params={"h": int(horizon)})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(ENTRY),
            artifacts={"forecaster": str(folder)},
            model_config={"levels": list(levels),
                          "interval_factors": {str(k): float(v) for k, v in (interval_factors or {}).items()}},
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(getattr(forecaster, "family", "") in ("neural", "gpt")),
            code_paths=[str(Path(__file__).parent), str(Path(__file__).parent.parent / "seqcast")],
        )
    return info.model_uri


def _requirements(neural: bool = False) -> list[str]:
    from importlib.metadata import version

    pkgs = ("mlflow", "numpy", "pandas", "scipy", "statsmodels", "pyyaml", "pydantic") + (("torch",) if neural else ())
    return [f"{pkg}=={version(pkg).split('+')[0]}" for pkg in pkgs]
