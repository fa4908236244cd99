"""KernelSynth (Ansari et al. 2024, Chronos, section 4.2): series drawn from Gaussian-process priors
whose kernels are random compositions of a small bank.

A kernel of the bank is a covariance over time ``t`` in [0, 1] (the series' length maps to 1):
periodic (``exp(-2 sin^2(pi |t - t'| / p))``, ``p`` a number of steps / length), linear
(``sigma0^2 + t t'``), RBF (``exp(-|t - t'|^2 / (2 l^2))``), rational quadratic
(``(1 + |t - t'|^2 / (2 alpha))^-alpha``), white noise and a constant. A series' kernel
composes ``j ~ U{1..max_kernels}`` kernels drawn with replacement, each joined to the
running kernel by ``+`` or ``*`` at random; the series is one draw from ``GP(0, K)``.
The periods are those of the paper's bank (hourly 24/48/96/168/.., daily 7/14/30/365,
weekly 4/26/52, monthly 6/12, ...): what a seasonal series of any frequency looks like.
Plain numpy; a spec is a small tuple, so a sampled series can say what made it.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

# (name, parameter) pairs; periodic parameters are periods in steps, divided by the length when used
PERIODS = (24, 48, 96, 168, 336, 672, 7, 14, 30, 60, 365, 730, 4, 26, 52, 6, 12, 40, 10)
BANK: tuple[tuple[str, float], ...] = (
    *(("periodic", float(p)) for p in PERIODS),
    ("linear", 0.0), ("linear", 1.0), ("linear", 10.0),
    ("rbf", 0.1), ("rbf", 1.0), ("rbf", 10.0),
    ("rational_quadratic", 0.1), ("rational_quadratic", 1.0), ("rational_quadratic", 10.0),
    ("white", 0.1), ("white", 1.0),
    ("constant", 1.0),
)

Spec = tuple  # ("periodic", 24.0) | ("+", spec, spec) | ("*", spec, spec)


def kernel_matrix(spec: Spec, length: int) -> np.ndarray:
    """The covariance (length, length) of ``spec`` over ``length`` steps (t = 0 .. 1)."""
    t = np.linspace(0.0, 1.0, length)
    return _k(spec, t, np.abs(t[:, None] - t[None, :]))


def _k(spec: Spec, t: np.ndarray, d: np.ndarray) -> np.ndarray:
    name, a = spec[0], spec[1]
    if name == "+":
        return _k(a, t, d) + _k(spec[2], t, d)
    if name == "*":
        return _k(a, t, d) * _k(spec[2], t, d)
    if name == "periodic":  # sklearn's ExpSineSquared, length scale 1
        p = a / max(len(t) - 1, 1)
        return np.exp(-2.0 * np.sin(np.pi * d / p) ** 2)
    if name == "linear":  # DotProduct
        return a**2 + t[:, None] * t[None, :]
    if name == "rbf":
        return np.exp(-(d**2) / (2.0 * a**2))
    if name == "rational_quadratic":  # length scale 1
        return (1.0 + d**2 / (2.0 * a)) ** (-a)
    if name == "white":
        return a * np.eye(len(t))
    if name == "constant":
        return np.full_like(d, a)
    raise ValueError(f"unknown kernel {name!r}")


def random_spec(rng: np.random.Generator, max_kernels: int = 5) -> Spec:
    """``j ~ U{1..max_kernels}`` kernels of the bank, joined by random ``+`` / ``*``."""
    picks = rng.integers(len(BANK), size=int(rng.integers(1, max_kernels + 1)))
    spec: Spec = BANK[picks[0]]
    for i in picks[1:]:
        spec = (str(rng.choice(["+", "*"])), spec, BANK[i])
    return spec


def sample_gp(cov: np.ndarray, rng: np.random.Generator, n: int = 1) -> np.ndarray:
    """``n`` draws (n, T) from GP(0, cov): a Cholesky factor with growing jitter; eigenvalues as the fallback."""
    T = len(cov)
    scale = float(np.mean(np.diag(cov))) or 1.0
    z = rng.standard_normal((T, n))
    for jitter in (1e-8, 1e-6, 1e-4):
        try:
            return (np.linalg.cholesky(cov + jitter * scale * np.eye(T)) @ z).T
        except np.linalg.LinAlgError:
            continue
    w, v = np.linalg.eigh(cov)
    return ((v * np.sqrt(np.clip(w, 0.0, None))) @ z).T


def kernel_synth(n_series: int, length: int, seed: int, max_kernels: int = 5) -> list[tuple[Spec, np.ndarray]]:
    """``n_series`` (spec, series) pairs of ``length`` steps, each from its own random kernel.

    One BLAS thread: these factorisations are small, and on busy cores a threaded BLAS
    spends more time waiting for its threads than computing (measured: 100x slower).
    """
    rng = np.random.default_rng(seed)
    out = []
    with threadpool_limits(1, user_api="blas"):
        for _ in range(n_series):
            spec = random_spec(rng, max_kernels)
            out.append((spec, sample_gp(kernel_matrix(spec, length), rng)[0]))
    return out


def describe(spec: Spec) -> str:
    """``periodic(24) * rbf(0.1) + white(0.1)``: a spec as text (left to right, as it was composed)."""
    if spec[0] in "+*":
        return f"{describe(spec[1])} {spec[0]} {describe(spec[2])}"
    return f"{spec[0]}({spec[1]:g})"
