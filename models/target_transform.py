"""The target transform: a pointwise transform and a scaling of the series a model learns,
fitted on the training part only and inverted for point forecasts, interval bounds and
sample paths alike. Every forecaster that transforms its target uses this module.

Pointwise transforms (``kind``):

- ``none``: ``t = y``.
- ``log1p``: ``t = log(1 + max(y, 0))`` (skewed, non-negative series: PM2.5); inverse ``expm1``.
- ``log``: ``t = log(max(y, 1e-12))`` (prices: a step is a relative change); inverse ``exp``.
- ``auto`` (resolved at fit time, from the training part): ``log1p`` when every observed
  training value is ``>= 0`` and their skewness (the moment coefficient
  ``E[(y - m)^3] / sd^3``) exceeds :data:`AUTO_SKEW`, else ``none``. The one rule for every
  model.

Scalings (``scaling``), statistics of the transformed training values ``t``:

- ``standard``: ``z = (t - mean) / sd`` (the networks).
- ``step``: ``z = t / sd(t_k - t_{k-1})``: one step of the series is comparable with a step of
  another (the boosted trees, trained across series).
- ``none``: ``z = t``.

An ``sd`` of 0 becomes 1. Missing values stay missing. Every transform is monotone
increasing, so the inverse maps quantiles to quantiles exactly: the inverse of a
transformed interval bound is the bound in original units, and the inverse of a
transformed-space mean (a Gaussian's median) is the median in original units, not the mean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from models.base import Forecast

Kind = Literal["none", "log1p", "log"]
Scaling = Literal["standard", "step", "none"]
KINDS: tuple[str, ...] = ("none", "log1p", "log")
SCALINGS: tuple[str, ...] = ("standard", "step", "none")
AUTO_SKEW = 1.0  # "auto" takes log1p above this skewness of the (non-negative) training part
LOG_FLOOR = 1e-12  # ``log`` of a value at or below 0 is the log of this


def skewness(values: np.ndarray) -> float:
    """Moment coefficient of skewness of the finite values (0 for a constant series)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(np.mean((finite - finite.mean()) ** 3) / (finite.std() ** 3 + 1e-12))


def resolve(kind: str, y_train: np.ndarray) -> str:
    """``kind`` itself, or for ``auto`` what the training part calls for (see the module doc)."""
    if kind != "auto":
        if kind not in KINDS:
            raise ValueError(f"unknown target transform {kind!r}; known: auto, {', '.join(KINDS)}")
        return kind
    finite = np.asarray(y_train, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return "none"
    return "log1p" if finite.min() >= 0 and skewness(finite) > AUTO_SKEW else "none"


def apply(y: np.ndarray, kind: str) -> np.ndarray:
    """The pointwise transform ``t(y)`` of a resolved ``kind`` (any shape)."""
    y = np.asarray(y, dtype=float)
    if kind == "log1p":
        return np.log1p(np.maximum(y, 0.0))
    if kind == "log":
        return np.log(np.maximum(y, LOG_FLOOR))
    return y


def invert(t: np.ndarray, kind: str) -> np.ndarray:
    """The inverse of :func:`apply`: values in original units."""
    if kind == "log1p":
        return np.expm1(t)
    if kind == "log":
        return np.exp(t)
    return t


@dataclass(frozen=True)
class TargetTransform:
    """A fitted transform: ``z = (t(y) - loc) / scale``; :meth:`fit` on the training part."""

    kind: str = "none"  # resolved: none, log1p or log
    loc: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"a fitted target transform has a resolved kind ({', '.join(KINDS)}), not {self.kind!r}")

    @classmethod
    def fit(cls, y_train: np.ndarray, kind: str = "auto", scaling: str = "standard") -> TargetTransform:
        """Resolve ``kind`` and fit ``scaling`` on ``y_train`` only (the training part)."""
        y_train = np.asarray(y_train, dtype=float)
        kind = resolve(kind, y_train)
        t = apply(y_train, kind)
        if scaling == "standard":
            return cls(kind, float(np.nanmean(t)), float(np.nanstd(t) or 1.0))
        if scaling == "step":
            diffs = np.diff(t)
            step = float(np.nanstd(diffs)) if np.isfinite(diffs).sum() > 1 else 1.0
            return cls(kind, 0.0, step if step > 0 else 1.0)
        if scaling == "none":
            return cls(kind)
        raise ValueError(f"unknown scaling {scaling!r}; known: {', '.join(SCALINGS)}")

    # -- forward and back ------------------------------------------------------------------
    def forward(self, y: np.ndarray) -> np.ndarray:
        """``z`` of values in original units (any shape)."""
        return self.scaled(apply(y, self.kind))

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Values in original units of ``z`` (point forecasts, interval bounds, samples)."""
        return invert(self.unscaled(z), self.kind)

    def scaled(self, t: np.ndarray) -> np.ndarray:
        """``(t - loc) / scale`` of already transformed values."""
        return (t - self.loc) / self.scale

    def unscaled(self, z: np.ndarray) -> np.ndarray:
        """``z * scale + loc``: back to the transformed (not yet inverted) values."""
        return z * self.scale + self.loc

    def inverse_forecast(self, mean: np.ndarray, lower: dict[int, np.ndarray],
                         upper: dict[int, np.ndarray]) -> Forecast:
        """A forecast in original units from its point and bounds in ``z`` (exact: monotone)."""
        return Forecast(self.inverse(mean), {lv: self.inverse(v) for lv, v in lower.items()},
                        {lv: self.inverse(v) for lv, v in upper.items()})

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TargetTransform:
        return cls(str(d["kind"]), float(d["loc"]), float(d["scale"]))
