"""NeuralForecaster: the glue between a network, its inputs and the one training loop.

Each network module defines a ``torch.nn.Module`` whose ``forward(x)`` maps a batch of
windows ``x`` of shape ``(B, L, F)`` (feature 0 is the scaled target, the rest scaled
exogenous columns and the seasonal phase) to ``(B, H)``: the scaled change of the target
from the window's last value, for steps 1..H. Everything else is written once:

- **Inputs** (models/neural/windows.py): the target transform and the exogenous scalers,
  fitted on the fit part of the training history only (the validation slice at the end of
  train and everything after it never reach a statistic); causal features; windows of
  ``input_size`` steps with targets ``t+1..t+H``, missing targets masked out of the loss.
- **Training** (models/neural/training.py): AdamW, gradient clipping, early stopping on the
  validation slice, fixed seeds, a checkpoint after every epoch and resume after a kill.
- **Here**: building the network (seeded), ``forecast_origins`` (one batched, causal
  forward over the windows ending at every origin; beyond ``H`` steps the forecasts are fed
  back), intervals from the quantiles of the validation residuals
  (models/residual_quantiles.py), MLflow extras and figures, and persistence: ``save``
  writes the base JSON + npz plus ``weights.pt`` (a plain state dict) and ``neural.json``
  (scalers, residual quantiles, history); ``load`` reads them with
  ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from models.base import Forecast, Forecaster, Levels
from models.neural import training
from models.neural.training import n_params, pick_device
from models.neural.windows import NetworkInputs, split, window_index
from models.residual_quantiles import ResidualQuantiles
from models.target_transform import TargetTransform
from seqcast.model_config import NeuralParams


class NeuralForecaster(Forecaster):
    """Base class of the PyTorch forecasters; subclasses implement :meth:`build_network`."""

    family = "neural"
    supports_exog = True
    update_method = "recurrent/windowed: new observations enter the input window, no refit"
    Params: ClassVar[type[NeuralParams]] = NeuralParams  # the shared keys; each network adds its own
    tiny_config: ClassVar[dict[str, Any]] = {"epochs": 2, "batch_size": 64}

    def __init__(self, config: NeuralParams | None = None, *, season: int = 1) -> None:
        super().__init__(config, season=season)
        c = self.config
        self.input_size = int(c.input_size or max(2 * self.season, 12))
        self.horizon = int(c.horizon or max(self.season, 1))
        self.device = pick_device(c.device)
        self.inputs_ = self._new_inputs()
        self.history: list[dict[str, float]] = []
        self.net: nn.Module | None = None
        self.train_seconds = 0.0
        self.windows_per_second = 0.0

    # -- networks implement this -----------------------------------------------------
    def build_network(self, n_features: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss_fn(self, net: nn.Module, x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pred = net(x)  # (B, H)
        err = (pred - target)[mask]
        kind = self.config.loss
        if kind == "mae":
            return err.abs().mean()
        if kind == "huber":
            return nn.functional.huber_loss(err, torch.zeros_like(err), delta=1.0)
        return (err**2).mean()

    # -- inputs -----------------------------------------------------------------------
    def _new_inputs(self) -> NetworkInputs:
        return NetworkInputs(self.input_size, self.horizon, self.season, self._phase())

    def _phase(self) -> bool:
        """Seasonal phase features: ``phase_features`` true/false, or "auto" = when the season
        is a clock period (>= 12 steps: hourly data); trading days skip holidays, so not P2."""
        value = self.config.phase_features
        return bool(self.season >= 12) if value == "auto" else bool(value)

    def _uses_exog(self, X: np.ndarray | None) -> bool:
        return X is not None and self.supports_exog and bool(self.config.use_exog)

    @property
    def n_exog_(self) -> int:
        return self.inputs_.n_exog

    @property
    def target_(self) -> TargetTransform:
        """The fitted target transform (models/target_transform.py)."""
        return self.inputs_.target

    def _split(self, n: int) -> tuple[int, np.ndarray, np.ndarray]:
        return split(n, self.input_size, self.horizon, self.config.val_fraction, self.name)

    # -- fit --------------------------------------------------------------------------
    def _fit(self, y: np.ndarray, X: np.ndarray | None) -> None:
        X = X if self._uses_exog(X) and X.shape[1] else None
        n_fit, train_ends, val_ends = self._split(len(y))
        self.holdout_start_ = n_fit  # the validation slice: early stopping and intervals only
        self.inputs_ = self._new_inputs().fit(y[:n_fit], None if X is None else X[:n_fit], self.config.transform)
        feats = self.inputs_.features(y, X)
        train = self.inputs_.windows(feats, y, train_ends)
        xv, tv, mv = self.inputs_.windows(feats, y, val_ends)
        self.train_network(train, (xv, tv, mv), n_features=feats.shape[1], fingerprint_data=y)
        self._fit_spread(xv, tv, mv)

    def _fit_spread(self, xv, tv, mv) -> None:
        """Per-step quantiles of the validation residuals in the scaled space (so intervals are
        multiplicative under log1p: wider when the level is high)."""
        resid = np.where(mv, tv - self._predict_z(xv), np.nan)  # (n, H), scaled units
        self.spread_ = ResidualQuantiles.fit(resid, self.horizon)

    def new_network(self, n_features: int) -> nn.Module:
        torch.manual_seed(int(self.config.seed))
        self.n_features_ = n_features
        return self.build_network(n_features).to(self.device)

    def train_network(self, train, val, n_features: int, fingerprint_data: np.ndarray) -> None:
        """A new (seeded) network trained by the one loop; its checkpoint is keyed by the model,
        its configuration and ``fingerprint_data``."""
        c = self.config
        if c.threads:
            torch.set_num_threads(int(c.threads))
        net = self.new_network(n_features)
        key = training.fingerprint(self.name, self.season, c, fingerprint_data)
        run = training.train(net, self.loss_fn, train, val, c, self.device,
                             training.checkpoint_path(c.checkpoint_dir, self.name, key), desc=self.name)
        self.net = net
        self.history, self.resumed_from_ = run.history, run.resumed_from
        self.train_seconds, self.windows_per_second = run.seconds, run.windows_per_second

    def _predict_z(self, x: np.ndarray, batch: int = 2048) -> np.ndarray:
        """Scaled changes (n, H) for windows x (n, L, F)."""
        return training.predict(self.net, x, self.device, self.horizon, batch)

    # -- forecasting ------------------------------------------------------------------
    def forecast_origins(self, y, origins, h, levels=(80, 95), X=None) -> Forecast:
        """One batched forward over the windows ending at each origin (reads y[:o+1], X[:o+1])."""
        self._check_fitted()
        y = np.asarray(y, dtype=float)
        origins = np.asarray(origins, dtype=int)
        feats = self.inputs_.features(y, X if self.n_exog_ else None)
        if len(origins) == 0:
            empty = np.empty((0, h))
            return Forecast(empty, {lv: empty for lv in levels}, {lv: empty for lv in levels})
        pad = max(self.input_size - 1 - int(origins.min()), 0)
        if pad:  # too little history: repeat the first row (still causal)
            feats = np.vstack([np.repeat(feats[:1], pad, axis=0), feats])
        z_all = self._rollout(feats, origins + pad, h).astype(np.float64)
        lower, upper = {}, {}
        for level in levels:  # beyond the horizon (recursive blocks) widened by sqrt(block)
            lo, hi = self.spread_.offsets(level, h, widen=True)
            lower[level], upper[level] = z_all + lo, z_all + hi
        return self.target_.inverse_forecast(z_all, lower, upper)

    def _rollout(self, feats: np.ndarray, ends: np.ndarray, h: int) -> np.ndarray:
        """Scaled forecasts (n, h); beyond ``horizon`` steps, feed the forecasts back (exog held)."""
        windows = feats[window_index(ends, self.input_size)]  # (n, L, F)
        outs = []
        done = 0
        while done < h:
            last = windows[:, -1, 0]
            step = self._predict_z(windows) + last[:, None]  # (n, H)
            outs.append(step)
            done += self.horizon
            if done < h:
                new = np.repeat(windows[:, -1:, :], self.horizon, axis=1).copy()
                new[:, :, 0] = step
                windows = np.concatenate([windows, new], axis=1)[:, -self.input_size :, :]
        return np.concatenate(outs, axis=1)[:, :h]

    def _predict(self, h: int, levels: Levels, X_future: np.ndarray | None) -> Forecast:
        return self.forecast_origins(self.y_, np.array([len(self.y_) - 1]), h, levels, self.X_)

    def _update(self, y_new: np.ndarray, X_new: np.ndarray | None) -> None:
        pass  # weights stay as fitted; the window reads the extended history

    # -- MLflow extras ----------------------------------------------------------------
    def log_extras(self) -> dict[str, Any]:
        metrics = [(f"{k}", float(row[k]), int(row["epoch"])) for row in self.history for k in ("train_loss", "val_loss")]
        return {
            "tags": {"device": str(self.device), "torch": torch.__version__},
            "metrics": {"train_seconds": self.train_seconds, "windows_per_second": self.windows_per_second,
                        "epochs_run": float(len(self.history)), "n_params": float(n_params(self.net)[0])},
            "step_metrics": metrics,
        }

    def figures(self) -> dict[str, Any]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not self.history:
            return {}
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ep = [r["epoch"] for r in self.history]
        ax.plot(ep, [r["train_loss"] for r in self.history], label="train")
        ax.plot(ep, [r["val_loss"] for r in self.history], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"loss ({self.config.loss}, scaled)")
        ax.legend()
        ax.set_title(self.name)
        fig.tight_layout()
        return {"loss_curve.png": fig}

    def describe(self) -> dict[str, Any]:
        out = {**super().describe(), "input_size": self.input_size, "horizon": self.horizon, "device": str(self.device)}
        if self.net is not None:
            out["n_params"] = n_params(self.net)[0]
        return out

    # -- persistence ------------------------------------------------------------------
    def neural_state(self) -> dict[str, Any]:
        return {"inputs": self.inputs_.to_dict(), "n_features": self.n_features_,
                "resid_quantiles": self.spread_.tolist(), "history": self.history,
                "train_seconds": self.train_seconds, "windows_per_second": self.windows_per_second,
                "exog_names": list(self.exog_names_)}

    def set_neural_state(self, s: dict[str, Any]) -> None:
        inputs = s.get("inputs") or {  # a model saved before the target transform had its own keys
            "target": {"kind": "log1p" if s["log"] else "none", "loc": s["mu"], "scale": s["sd"]},
            "x_mu": s["x_mu"], "x_sd": s["x_sd"]}
        self.inputs_ = self._new_inputs().load_dict(inputs)
        self.n_features_ = int(s["n_features"])
        self.spread_ = ResidualQuantiles(np.asarray(s["resid_quantiles"], dtype=float))
        self.history = list(s["history"])
        self.train_seconds, self.windows_per_second = float(s["train_seconds"]), float(s["windows_per_second"])
        self.exog_names_ = tuple(s.get("exog_names", ()))

    def save(self, folder: str | Path) -> Path:
        folder = super().save(folder)
        torch.save({k: v.detach().cpu() for k, v in self.net.state_dict().items()}, folder / "weights.pt")
        (folder / "neural.json").write_text(json.dumps(self.neural_state(), default=float))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> NeuralForecaster:
        folder = Path(folder)
        meta = json.loads((folder / "forecaster.json").read_text())
        model = cls(cls.Params.model_validate({**meta["config"], "device": "auto"}), season=meta["season"])
        model.set_neural_state(json.loads((folder / "neural.json").read_text()))
        with np.load(folder / "state.npz", allow_pickle=False) as npz:
            model.y_ = npz["y"]
            model.X_ = npz["X"] if "X" in npz.files else None
        net = model.build_network(model.n_features_)
        net.load_state_dict(torch.load(folder / "weights.pt", map_location="cpu", weights_only=True))
        model.net = net.to(model.device).eval()
        model.fitted = True
        return model
