"""NeuralForecaster: windows, scaling, the one training loop and persistence for every network.

Each network module defines a ``torch.nn.Module`` whose ``forward(x)`` maps a batch of
windows ``x`` of shape ``(B, L, F)`` (feature 0 is the scaled target, the rest scaled
exogenous columns) to ``(B, H)``: the scaled change of the target from the window's
last value, for steps 1..H. Everything else lives here, written once:

- **Scaling**, fitted on the fit part of the training history only (the validation
  slice at the end of train and everything after it never reach a scaler): the target
  transform (models/target_transform.py: ``auto``/``log1p``/``none``, then standard
  scaling); exogenous columns standard-scaled too.
- **Windows** of ``input_size`` steps ending at position ``t`` with targets
  ``t+1..t+H``. Missing values are forward-filled causally (position ``t`` only reads
  ``<= t``); targets that were missing are masked out of the loss.
- **The training loop**: AdamW, gradient clipping, early stopping on a validation
  slice carved from the end of train, fixed seeds (the shuffling of epoch ``e`` is a
  function of ``seed`` and ``e`` only, so a resumed run is bit-identical on CPU), a
  checkpoint after every epoch (atomic write) and resume from it after a kill, tqdm
  progress bar, device picked automatically (CUDA, else CPU), bf16 autocast on CUDA.
- **forecast_origins**: one batched, causal forward over the windows ending at every
  origin. Intervals are Gaussian with a per-step spread taken from the residuals on
  the validation slice (original units).
- **Persistence**: ``save`` writes the base JSON + npz plus ``weights.pt`` (a plain
  state dict) and ``neural.json`` (scalers, spreads, history); ``load`` reads them with
  ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from models.base import Forecast, Forecaster, Levels, ffill
from models.residual_quantiles import ResidualQuantiles
from models.target_transform import TargetTransform
from seqcast.model_config import NeuralParams


def pick_device(choice: str = "auto") -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def window_index(n_positions: np.ndarray, input_size: int) -> np.ndarray:
    """Index matrix ``(n, L)`` of the windows ending at each position."""
    return n_positions[:, None] + np.arange(-input_size + 1, 1)[None, :]


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

    # -- scaling ----------------------------------------------------------------------
    def _fit_scalers(self, y_fit: np.ndarray, X_fit: np.ndarray | None) -> None:
        """Only the fit part (train minus the validation slice) reaches here."""
        self.target_ = TargetTransform.fit(y_fit, self.config.transform, "standard")
        if X_fit is not None:
            self.x_mu_ = np.nanmean(X_fit, axis=0)
            sd = np.nanstd(X_fit, axis=0)
            self.x_sd_ = np.where(sd > 0, sd, 1.0)

    def _features(self, y: np.ndarray, X: np.ndarray | None) -> np.ndarray:
        """(n, F) causal, scaled inputs: ffilled target (leading gaps -> train mean) + exog."""
        z = np.nan_to_num(self.target_.forward(ffill(y)), nan=0.0)
        cols = [z[:, None]]
        if self.n_exog_:
            X = np.asarray(X, float)
            if len(X) < len(y):  # new observations came without exog (e.g. the pyfunc): hold the last row
                X = np.vstack([X, np.repeat(X[-1:], len(y) - len(X), axis=0)])
            Xf = np.column_stack([ffill(col) for col in X[: len(y)].T])
            cols.append(np.nan_to_num((Xf - self.x_mu_) / self.x_sd_, nan=0.0))
        if self._phase():  # position within the season (hour of day for P1): known in advance
            angle = 2 * np.pi * np.arange(len(y)) / self.season
            cols.append(np.column_stack([np.sin(angle), np.cos(angle)]))
        return np.hstack(cols).astype(np.float32)

    def _phase(self) -> bool:
        """Seasonal phase features: ``phase_features`` true/false, or "auto" = when the season
        is a clock period (>= 12 steps: hourly data); trading days skip holidays, so not P2."""
        value = self.config.phase_features
        return bool(self.season >= 12) if value == "auto" else bool(value)

    def _uses_exog(self, X: np.ndarray | None) -> bool:
        return X is not None and self.supports_exog and bool(self.config.use_exog)

    # -- windows ----------------------------------------------------------------------
    def _windows(self, feats: np.ndarray, y_raw: np.ndarray, ends: np.ndarray):
        """Inputs (n, L, F), targets (n, H) = z[t+k] - z[t], mask of observed targets."""
        L, H = self.input_size, self.horizon
        x = feats[window_index(ends, L)]
        tgt_idx = ends[:, None] + np.arange(1, H + 1)[None, :]
        z = feats[:, 0]
        target = z[tgt_idx] - z[ends][:, None]
        mask = ~np.isnan(y_raw[tgt_idx])
        return x, target.astype(np.float32), mask

    def _split(self, n: int) -> tuple[int, np.ndarray, np.ndarray]:
        """n_fit (scaler part) and the window end positions of training and validation."""
        L, H = self.input_size, self.horizon
        n_val = max(int(n * float(self.config.val_fraction)), H + 1)
        n_fit = n - n_val
        if n_fit < L + H + 1:
            raise ValueError(f"{self.name}: {n} points are too few for input_size {L} and horizon {H}")
        train_ends = np.arange(L - 1, n_fit - H)  # every target inside the fit part
        val_ends = np.arange(max(n_fit - 1, L - 1), n - H)  # targets inside the validation slice
        return n_fit, train_ends, val_ends

    # -- fit --------------------------------------------------------------------------
    def _fit(self, y: np.ndarray, X: np.ndarray | None) -> None:
        self.n_exog_ = int(X.shape[1]) if self._uses_exog(X) else 0
        n_fit, train_ends, val_ends = self._split(len(y))
        self.holdout_start_ = n_fit  # the validation slice: early stopping and intervals only
        self._fit_scalers(y[:n_fit], X[:n_fit] if self.n_exog_ else None)
        feats = self._features(y, X if self.n_exog_ else None)
        xt, tt, mt = self._windows(feats, y, train_ends)
        xv, tv, mv = self._windows(feats, y, val_ends)
        self.train_network((xt, tt, mt), (xv, tv, mv), n_features=feats.shape[1], fingerprint_data=y)
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

    def fingerprint(self, data: np.ndarray) -> str:
        h = hashlib.sha256(json.dumps({"name": self.name, "season": self.season, "config": self.config.model_dump(
            exclude={"progress", "checkpoint_dir", "keep_checkpoint", "epoch_sleep", "device", "threads"})},
            sort_keys=True, default=str).encode())
        h.update(np.ascontiguousarray(np.nan_to_num(data, nan=-1.2345)).tobytes())
        return h.hexdigest()[:16]

    def checkpoint_path(self, fingerprint: str) -> Path:
        folder = self.config.checkpoint_dir or Path(tempfile.gettempdir()) / "seqcast-ckpt"
        return Path(folder) / f"{self.name}-{fingerprint}.pt"

    def train_network(self, train, val, n_features: int, fingerprint_data: np.ndarray) -> None:
        """The one training loop (see the module docstring)."""
        from tqdm.auto import tqdm

        c = self.config
        seed = int(c.seed)
        if c.threads:
            torch.set_num_threads(int(c.threads))
        net = self.new_network(n_features)
        opt = torch.optim.AdamW(net.parameters(), lr=float(c.lr), weight_decay=float(c.weight_decay))
        ckpt = self.checkpoint_path(self.fingerprint(fingerprint_data))
        start, best, best_state, bad = 0, float("inf"), None, 0
        self.history = []
        if ckpt.exists():  # resume after a kill
            state = torch.load(ckpt, map_location=self.device, weights_only=True)
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            start, best, bad = int(state["epoch"]) + 1, float(state["best"]), int(state["bad"])
            best_state = state["best_model"]
            self.history = [dict(zip(("epoch", "train_loss", "val_loss", "seconds"), row, strict=True))
                            for row in state["history"].tolist()]
            self.resumed_from_ = int(state["epoch"])
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in train]
        vtensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in val]
        n = len(tensors[0])
        per_epoch = min(n, int(c.max_windows or n))
        bs = int(c.batch_size)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else _null()
        seen, t_train = 0, 0.0
        bar = tqdm(range(start, int(c.epochs)), desc=self.name, disable=_no_bar(c.progress), leave=False)
        for epoch in bar:
            if bad >= int(c.patience):
                break
            t0 = time.perf_counter()
            torch.manual_seed(seed * 100_003 + epoch)  # dropout etc.: a function of (seed, epoch)
            gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=gen)[:per_epoch]
            net.train()
            total, count = 0.0, 0
            for i in range(0, per_epoch, bs):
                idx = order[i : i + bs]
                x, t, m = (a[idx].to(self.device) for a in tensors)
                if not m.any():
                    continue
                with autocast:
                    loss = self.loss_fn(net, x, t, m)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), float(c.clip))
                opt.step()
                total += loss.item() * len(idx)
                count += len(idx)
            seen += per_epoch
            train_loss = total / max(count, 1)
            val_loss = self._evaluate_loss(net, vtensors, autocast)
            seconds = time.perf_counter() - t0
            t_train += seconds
            self.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "seconds": seconds})
            if val_loss < best - 1e-6:
                best, bad = val_loss, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
            _atomic_save({
                "model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "best": best,
                "bad": bad, "best_model": best_state,
                "history": torch.tensor([[h["epoch"], h["train_loss"], h["val_loss"], h["seconds"]]
                                         for h in self.history], dtype=torch.float64),
            }, ckpt)
            bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
            if float(c.epoch_sleep):
                time.sleep(float(c.epoch_sleep))
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self.net = net
        self.train_seconds = t_train
        self.windows_per_second = seen / t_train if t_train else 0.0
        if not c.keep_checkpoint:
            ckpt.unlink(missing_ok=True)

    @torch.no_grad()
    def _evaluate_loss(self, net: nn.Module, tensors, autocast) -> float:
        net.eval()
        x, t, m = tensors
        total, count = 0.0, 0
        for i in range(0, len(x), 1024):
            xb, tb, mb = (a[i : i + 1024].to(self.device) for a in (x, t, m))
            if not mb.any():
                continue
            with autocast:
                total += float(self.loss_fn(net, xb, tb, mb)) * len(xb)
            count += len(xb)
        return total / max(count, 1)

    @torch.no_grad()
    def _predict_z(self, x: np.ndarray, batch: int = 2048) -> np.ndarray:
        """Scaled changes (n, H) for windows x (n, L, F)."""
        self.net.eval()
        out = []
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else _null()
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch])).to(self.device)
            with autocast:
                out.append(self.net(xb).float().cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, self.horizon), np.float32)

    # -- forecasting ------------------------------------------------------------------
    def forecast_origins(self, y, origins, h, levels=(80, 95), X=None) -> Forecast:
        """One batched forward over the windows ending at each origin (reads y[:o+1], X[:o+1])."""
        self._check_fitted()
        y = np.asarray(y, dtype=float)
        origins = np.asarray(origins, dtype=int)
        X = X if self.n_exog_ and X is not None else None
        feats = self._features(y, X)
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
        return {"target": self.target_.to_dict(), "n_exog": self.n_exog_,
                "n_features": self.n_features_, "resid_quantiles": self.spread_.tolist(),
                "x_mu": np.asarray(getattr(self, "x_mu_", [])).tolist(),
                "x_sd": np.asarray(getattr(self, "x_sd_", [])).tolist(),
                "history": self.history, "train_seconds": self.train_seconds,
                "windows_per_second": self.windows_per_second, "exog_names": list(self.exog_names_)}

    def set_neural_state(self, s: dict[str, Any]) -> None:
        self.target_ = TargetTransform.from_dict(s["target"] if "target" in s else  # saved before "target"
                                                 {"kind": "log1p" if s["log"] else "none", "loc": s["mu"], "scale": s["sd"]})
        self.n_exog_, self.n_features_ = int(s["n_exog"]), int(s["n_features"])
        self.spread_ = ResidualQuantiles(np.asarray(s["resid_quantiles"], dtype=float))
        if s["x_mu"]:
            self.x_mu_, self.x_sd_ = np.asarray(s["x_mu"], float), np.asarray(s["x_sd"], float)
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


def n_params(net: nn.Module | None) -> tuple[int, int]:
    """(total, trainable) in the Keras sense: parameters plus float buffers (BatchNorm statistics)."""
    if net is None:
        return 0, 0
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for b in net.buffers() if b.is_floating_point())
    return trainable + frozen + buffers, trainable


def _atomic_save(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _no_bar(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
