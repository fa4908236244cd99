"""Forecasters as MLflow pyfunc models (models-from-code: no pickled Python objects).

The logged model holds the forecaster's own files (``forecaster.json`` + ``state.npz``,
see :meth:`models.base.Forecaster.save`). ``predict`` takes a DataFrame of new
observations (column ``y``, in time order, following the training history; may be
empty) and the parameter ``h``; it returns one row per step with ``mean`` and the
interval bounds ``lo-<level>`` / ``hi-<level>``. Where the backtest's validation-slice
check recalibrated the intervals (``backtest.calibration``), the model carries those
split-conformal factors (``model_config["interval_factors"]``) and applies them: the served
intervals are the ones the logged coverage metrics scored.

A model logged with its series' calendar (``model_config["calendar"]``: the timestamp of its
last training observation, the frequency and the target's domain) also answers with the
timestamp of every step (column ``ds``, ISO 8601 on the series' own clock: after the last
``ds`` of the new observations when they carry one, else after the training end moved on by
one step per new row), and censors the point and the bounds of a target that cannot be
negative at 0 (:mod:`seqcast.domain`), as the backtest scored them.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from models.calibration import rescale
from seqcast import domain, frequency

ENTRY = Path(__file__).with_name("mlflow_entry.py")


class ForecasterModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from models.registry import load

        self.forecaster = load(context.artifacts["forecaster"])
        self.levels = tuple(int(v) for v in context.model_config.get("levels", (80, 95)))
        self.factors = {int(k): float(v) for k, v in (context.model_config.get("interval_factors") or {}).items()}
        self.calendar = dict(context.model_config.get("calendar") or {})

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
        fc = domain.clip_forecast(fc, self.calendar.get("domain", "real"))
        out = pd.DataFrame({"step": np.arange(1, h + 1), "mean": fc.mean[0]})
        if self.calendar.get("last_ds"):
            out.insert(1, "ds", [ts.isoformat() for ts in self.timestamps(model_input, h)])
        for level in fc.levels:
            out[f"lo-{level}"] = fc.lower[level][0]
            out[f"hi-{level}"] = fc.upper[level][0]
        return out

    def timestamps(self, model_input: pd.DataFrame | None, h: int) -> pd.DatetimeIndex:
        """The ``h`` timestamps after the latest observation on the series' calendar."""
        freq, zone = self.calendar["frequency"], self.calendar.get("timezone")
        rows = 0 if model_input is None else len(model_input)
        if rows and "ds" in model_input and pd.notna(model_input["ds"].iloc[-1]):
            return frequency.future_index(_on_clock(model_input["ds"].iloc[-1], zone), h, freq)
        last = _on_clock(self.calendar["last_ds"], zone)
        if rows:
            last = frequency.future_index(last, rows, freq)[-1]
        return frequency.future_index(last, h, freq)


def _on_clock(stamp, zone: str | None) -> pd.Timestamp:
    """A timestamp on the series' own clock (its time zone's rules, daylight saving included)."""
    ts = pd.Timestamp(stamp)
    if zone is None:
        return ts
    return ts.tz_localize(zone) if ts.tz is None else ts.tz_convert(zone)


def log_forecaster(forecaster, folder: Path, levels: tuple[int, ...], horizon: int,
                   interval_factors: dict[int, float] | None = None, calendar: dict[str, str] | None = None) -> str:
    """Save and log a fitted forecaster in the active run; returns the model URI.
    ``interval_factors``: split-conformal factor per level, applied to every forecast served.
    ``calendar``: ``{"last_ds": ISO timestamp of the last training observation, "timezone": its
    zone (or absent), "frequency": pandas alias, "domain": data.domain}``: the answers carry
    timestamps and respect the domain."""
    import warnings

    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    forecaster.save(folder)
    example = pd.DataFrame({"y": forecaster.y_[-3:]})
    out = pd.DataFrame({"step": [1], **({"ds": ["2000-01-01T00:00:00"]} if calendar else {}), "mean": [0.0],
                        **{f"{b}-{lv}": [0.0] for lv in levels for b in ("lo", "hi")}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # integer-column hints: "step" is never missing
        signature = infer_signature(example, out, params={"h": int(horizon)})
    if calendar:  # the new observations may carry their timestamps (optional column ds)
        signature = ModelSignature(Schema([ColSpec("double", "y"), ColSpec("string", "ds", required=False)]),
                                   signature.outputs, signature.params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(ENTRY),
            artifacts={"forecaster": str(folder)},
            model_config={"levels": list(levels),
                          "interval_factors": {str(k): float(v) for k, v in (interval_factors or {}).items()},
                          "calendar": dict(calendar or {})},
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
