"""What a network reads: scaled features of the history and the windows cut from them.

:class:`NetworkInputs` is fitted on the fit part of the training history only (the
validation slice at the end of train and everything after it never reach a statistic):

- **the target**, through the one target transform (models/target_transform.py: ``auto``,
  ``log1p`` or ``none``, then standard scaling), forward-filled causally (position ``t``
  only reads ``<= t``; leading gaps -> 0, the fit-part mean);
- **exogenous columns**, each standard-scaled by its fit-part mean and sd, forward-filled
  causally; rows missing at the end (new observations that came without exog) hold the
  last row;
- **the seasonal phase** (sin/cos of the position within the season), known in advance.

:meth:`NetworkInputs.windows` cuts windows of ``input_size`` rows ending at positions
``t`` with targets ``z[t+1..t+H] - z[t]`` and a mask of the targets that were observed;
:func:`split` places the fit part, the validation slice and their window end positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.base import ffill
from models.target_transform import TargetTransform


def window_index(ends: np.ndarray, input_size: int) -> np.ndarray:
    """Index matrix ``(n, L)`` of the windows ending at each position."""
    return ends[:, None] + np.arange(-input_size + 1, 1)[None, :]


def scaled_series(y: np.ndarray, transform: TargetTransform) -> np.ndarray:
    """``z`` of the forward-filled series (leading gaps -> 0, the fit-part mean), float64."""
    return np.nan_to_num(transform.forward(ffill(y)), nan=0.0)


def split(n: int, input_size: int, horizon: int, val_fraction: float,
          name: str = "model") -> tuple[int, np.ndarray, np.ndarray]:
    """``n_fit`` (the part statistics and training windows come from) and the window end
    positions of training (every target inside the fit part) and validation (targets inside
    the slice ``n_fit..n-1``)."""
    L, H = input_size, horizon
    n_val = max(int(n * float(val_fraction)), H + 1)
    n_fit = n - n_val
    if n_fit < L + H + 1:
        raise ValueError(f"{name}: {n} points are too few for input_size {L} and horizon {H}")
    train_ends = np.arange(L - 1, n_fit - H)
    val_ends = np.arange(max(n_fit - 1, L - 1), n - H)
    return n_fit, train_ends, val_ends


@dataclass
class NetworkInputs:
    """Fitted scalers and the layout of the feature matrix ``(n, F)``: target, exog, phase."""

    input_size: int
    horizon: int
    season: int
    phase: bool  # sin/cos of the position within the season
    target: TargetTransform = field(default_factory=TargetTransform)
    x_mu: np.ndarray = field(default_factory=lambda: np.empty(0))
    x_sd: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def n_exog(self) -> int:
        return len(self.x_mu)

    def fit(self, y_fit: np.ndarray, X_fit: np.ndarray | None, transform: str) -> NetworkInputs:
        """Statistics of the fit part only; ``X_fit`` None: no exogenous columns."""
        self.target = TargetTransform.fit(y_fit, transform, "standard")
        if X_fit is not None:
            self.x_mu = np.nanmean(X_fit, axis=0)
            sd = np.nanstd(X_fit, axis=0)
            self.x_sd = np.where(sd > 0, sd, 1.0)
        return self

    # -- features ---------------------------------------------------------------------------
    def exog(self, X: np.ndarray | None, n: int, names: tuple[str, ...] | list[str] = (),
             own_names: tuple[str, ...] = ()) -> np.ndarray | None:
        """(n, k) scaled exogenous columns in the fitted order, forward-filled; missing -> 0
        (the fit-part mean). ``names``: the columns of ``X`` are matched by name against
        ``own_names`` (a panel series; a column it lacks stays 0)."""
        if not self.n_exog:
            return None
        out = np.zeros((n, self.n_exog), dtype=np.float32)
        if X is None:
            return out
        X = np.asarray(X, dtype=float)
        if len(X) < n:  # new observations came without exog (e.g. the pyfunc): hold the last row
            X = np.vstack([X, np.repeat(X[-1:], n - len(X), axis=0)])
        for j in range(self.n_exog):
            if names:
                own = own_names[j] if j < len(own_names) else None
                if own not in names:
                    continue
                col = X[:n, list(names).index(own)]
            else:
                col = X[:n, j]
            out[:, j] = np.nan_to_num((ffill(col) - self.x_mu[j]) / self.x_sd[j], nan=0.0)
        return out

    def phase_columns(self, positions: np.ndarray) -> np.ndarray:
        """(..., 2): sin and cos of each position's place in the season."""
        angle = 2 * np.pi * positions / self.season
        return np.stack([np.sin(angle), np.cos(angle)], axis=-1)

    def features(self, y: np.ndarray, X: np.ndarray | None) -> np.ndarray:
        """(n, F) causal, scaled inputs: the target, the exogenous columns, the phase."""
        cols = [scaled_series(y, self.target)[:, None]]
        if self.n_exog:
            cols.append(self.exog(X, len(y)))
        if self.phase:
            cols.append(self.phase_columns(np.arange(len(y))))
        return np.hstack(cols).astype(np.float32)

    # -- windows ----------------------------------------------------------------------------
    def windows(self, feats: np.ndarray, y_raw: np.ndarray, ends: np.ndarray):
        """Inputs (n, L, F), targets (n, H) = z[t+k] - z[t], mask of observed targets."""
        L, H = self.input_size, self.horizon
        x = feats[window_index(ends, L)]
        tgt_idx = ends[:, None] + np.arange(1, H + 1)[None, :]
        z = feats[:, 0]
        target = z[tgt_idx] - z[ends][:, None]
        mask = ~np.isnan(y_raw[tgt_idx])
        return x, target.astype(np.float32), mask

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"target": self.target.to_dict(), "x_mu": np.asarray(self.x_mu).tolist(),
                "x_sd": np.asarray(self.x_sd).tolist()}

    def load_dict(self, d: dict) -> NetworkInputs:
        self.target = TargetTransform.from_dict(d["target"])
        self.x_mu, self.x_sd = np.asarray(d["x_mu"], float), np.asarray(d["x_sd"], float)
        return self
