"""Numbers to tokens and back: the GPT forecaster's tokenizer (the text GPT's is in text_tokenizers.py).

A language model reads a fixed vocabulary, so a window of a series is first *scaled*
by statistics of its context only (never of what follows), then *quantized* into
``n_bins`` uniform bins over ``[low, high]`` of the scaled value, as Chronos does
(Ansari et al. 2024: mean-absolute scaling, 4,096 bins over [-15, 15]). Two scalings:

- ``standard``: ``(x - mean) / std`` of the context. A daily index moves ~1 % a day
  while its level is ~2,000: after mean scaling that move is a sliver of one bin,
  after standardisation over a few months it spans several bins.
- ``mean``: ``x / mean(|x|)`` (Chronos): keeps zero at zero, suits non-negative series.

Values beyond ``[low, high]`` land in the edge bins (this clips PM2.5 spikes). One
special token follows the bins: ``missing`` (a context position with no value yet).
Decoding maps a bin to its centre, so a value inside the range round-trips within
half a bin width (times the scale). Plain numpy, batched over rows; stored as a
dict of numbers (``to_dict`` / ``from_dict``), inside the checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SCALINGS = ("standard", "mean")


@dataclass(frozen=True)
class SeriesTokenizer:
    n_bins: int = 512
    low: float = -6.0
    high: float = 6.0
    scaling: str = "standard"

    def __post_init__(self):
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, not {self.scaling!r}")
        if not (self.high > self.low and self.n_bins >= 2):
            raise ValueError("need high > low and at least 2 bins")

    # -- vocabulary -----------------------------------------------------------------
    @property
    def missing_id(self) -> int:
        return self.n_bins

    @property
    def vocab_size(self) -> int:
        return self.n_bins + 1  # bins + missing

    @property
    def width(self) -> float:
        """Bin width in scaled units."""
        return (self.high - self.low) / self.n_bins

    @property
    def centers(self) -> np.ndarray:
        return self.low + (np.arange(self.n_bins) + 0.5) * self.width  # (n_bins,)

    # -- scaling --------------------------------------------------------------------
    def stats(self, context: np.ndarray, centered: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """loc, scale (B,) each from context windows (B, C); NaNs are ignored.

        ``centered=False`` keeps zero at zero (loc 0, scale the root mean square): for
        returns, whose natural centre is no move, not the context's average move.
        The scale has a floor (1e-3 of the level, and 1e-8): a flat context would
        otherwise blow its first move up to the edge bins.
        """
        c = np.atleast_2d(np.asarray(context, dtype=np.float64))
        level = np.nanmean(np.abs(c), axis=1)  # (B,)
        level = np.where(np.isfinite(level), level, 1.0)
        if self.scaling == "mean":
            loc, scale = np.zeros(len(c)), level
        elif not centered:
            loc = np.zeros(len(c))
            scale = np.sqrt(np.nanmean(c**2, axis=1))
            scale = np.where(np.isfinite(scale), scale, 0.0)
        else:
            loc = np.nanmean(c, axis=1)
            loc = np.where(np.isfinite(loc), loc, 0.0)
            scale = np.nanstd(c, axis=1)
            scale = np.where(np.isfinite(scale), scale, 0.0)
        scale = np.maximum(scale, np.maximum(1e-3 * level, 1e-8))
        return loc, scale

    def encode(self, x: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Token ids (B, T) of values x (B, T) scaled by loc, scale (B,); NaN -> missing."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        z = (x - loc[:, None]) / scale[:, None]
        ids = np.floor((np.clip(z, self.low, self.high) - self.low) / self.width)
        ids = np.clip(np.nan_to_num(ids, nan=0.0), 0, self.n_bins - 1).astype(np.int64)
        return np.where(np.isnan(x), self.missing_id, ids)

    def decode(self, ids: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Values (B, ...) of bin ids (B, ...): the bin centre, unscaled; missing -> NaN."""
        ids = np.asarray(ids)
        z = np.where(ids < self.n_bins, self.centers[np.clip(ids, 0, self.n_bins - 1)], np.nan)
        shape = (-1,) + (1,) * (z.ndim - 1)
        return z * np.asarray(scale).reshape(shape) + np.asarray(loc).reshape(shape)

    # -- persistence ----------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SeriesTokenizer:
        return cls(**{k: (v.item() if hasattr(v, "item") else v) for k, v in d.items()})
