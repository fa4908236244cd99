"""Geometric Brownian motion, and the Black–Scholes price of a European option.

``dS = mu S dt + sigma S dW``: the daily log returns are i.i.d. ``N(m, sigma^2)`` with
``m = mu - sigma^2 / 2``; ``m`` and ``sigma`` are estimated from the training log
returns (maximum likelihood). Forecasts come from Monte-Carlo paths
(``n_paths`` with a fixed seed, common random numbers across origins): the quantiles
of the simulated prices give the intervals, their mean the point forecast. A fan
chart from the end of the training data is logged.

``volatility: ewma`` (the default in params.yaml) lets sigma follow the RiskMetrics
recursion ``s2_t = lam s2_{t-1} + (1 - lam) r_t^2`` over the returns up to each origin
(causal, started at the training variance): the update needs no refit, only the new
returns. ``volatility: constant`` keeps the training sigma.

:func:`black_scholes` is the closed form; :func:`mc_option_price` prices the same
option from risk-neutral GBM paths (the check in the tests); :meth:`GeometricBrownianMotion.call_price`
prices a call from the fitted estimates (sigma annualised with 252 trading days).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from models.base import DirectForecaster, Forecast, ffill, log_returns
from models.registry import register
from seqcast.model_config import GbmParams

TRADING_DAYS = 252


def black_scholes(S: float, K: float, T: float, r: float, sigma: float, kind: str = "call") -> float:
    """European option price (no dividends); ``T`` in years, ``r`` and ``sigma`` annual."""
    d1 = (np.log(S / K) + (r + sigma**2 / 2) * T) / (sigma * np.sqrt(T))
    d2 = d1 - sigma * np.sqrt(T)
    if kind == "call":
        return float(S * stats.norm.cdf(d1) - K * np.exp(-r * T) * stats.norm.cdf(d2))
    if kind == "put":
        return float(K * np.exp(-r * T) * stats.norm.cdf(-d2) - S * stats.norm.cdf(-d1))
    raise ValueError(f"kind must be 'call' or 'put', not {kind!r}")


def mc_option_price(S: float, K: float, T: float, r: float, sigma: float, kind: str = "call",
                    n_paths: int = 200_000, seed: int = 0) -> tuple[float, float]:
    """Monte-Carlo price under the risk-neutral GBM and its standard error."""
    z = np.random.default_rng(seed).standard_normal(n_paths)
    ST = S * np.exp((r - sigma**2 / 2) * T + sigma * np.sqrt(T) * z)
    payoff = np.maximum(ST - K, 0.0) if kind == "call" else np.maximum(K - ST, 0.0)
    disc = np.exp(-r * T) * payoff
    return float(disc.mean()), float(disc.std(ddof=1) / np.sqrt(n_paths))


@register
class GeometricBrownianMotion(DirectForecaster):
    name = "gbm"
    Params = GbmParams
    family = "classical"
    update_method = "exact: paths start from the last price; EWMA volatility updated from new returns"
    tiny_config = {"n_paths": 500}

    def _fit(self, y, X):
        r = log_returns(y)
        r = r[np.isfinite(r)]
        if len(r) < 2:
            raise ValueError("gbm: needs at least two returns")
        self.m_ = float(r.mean())  # drift of the log price per step
        self.sigma_ = float(r.std(ddof=0))  # MLE
        self.mu_ = self.m_ + self.sigma_**2 / 2  # GBM drift
        if self.config.volatility == "ewma" and self.config.select_lambda:
            self._record(ewma_lambda=self._select_lambda(r))

    def _select_lambda(self, r: np.ndarray) -> float:
        """The EWMA decay with the best one-step Gaussian log score on the last 20% of the
        training returns (a validation slice of the training part; the test is never seen)."""
        n_val = max(len(r) // 5, 10)
        fit, val = r[:-n_val], r[-n_val:]
        m, s2_0 = fit.mean(), fit.var()
        self.lambda_scores_ = {}
        for lam in self.config.select_lambda:
            s2, score = s2_0, 0.0
            for x in fit[-60:]:  # warm the recursion on the end of the fit part
                s2 = lam * s2 + (1 - lam) * (x - m) ** 2
            for x in val:
                score += stats.norm.logpdf(x, m, np.sqrt(s2))
                s2 = lam * s2 + (1 - lam) * (x - m) ** 2
            self.lambda_scores_[str(lam)] = float(score)
        return float(max(self.config.select_lambda, key=lambda lam: self.lambda_scores_[str(lam)]))

    def _sigma_at(self, y: np.ndarray, origins: np.ndarray) -> np.ndarray:
        if self.config.volatility != "ewma":
            return np.full(len(origins), self.sigma_)
        r = log_returns(y[: origins[-1] + 1])
        r = np.where(np.isfinite(r), r - self.m_, 0.0)
        lam = self.config.ewma_lambda
        s2 = np.empty(len(r) + 1)
        s2[0] = self.sigma_**2
        for t, rt in enumerate(r):  # s2[t+1]: variance forecast after seeing position t+1
            s2[t + 1] = lam * s2[t] + (1 - lam) * rt * rt
        return np.sqrt(s2[origins])

    def _paths(self, h: int) -> np.ndarray:
        """Standard normal cumulative sums (n_paths, h): common random numbers."""
        z = np.random.default_rng(self.config.seed).standard_normal((self.config.n_paths, h))
        return np.cumsum(z, axis=1)

    def _forecast(self, y, origins, h, levels) -> Forecast:
        last = ffill(y)[origins]
        sig = self._sigma_at(y, origins)
        W = self._paths(h)  # (N, h)
        steps = np.arange(1, h + 1)
        # log price increments for each origin and path: m j + sigma_o W_j
        logS = self.m_ * steps[None, None, :] + sig[:, None, None] * W[None, :, :]  # (n, N, h)
        paths = last[:, None, None] * np.exp(logS)
        mean = paths.mean(axis=1)
        lower, upper = {}, {}
        for lv in levels:
            a = (1 - lv / 100) / 2
            lower[lv], upper[lv] = np.quantile(paths, [a, 1 - a], axis=1)
        return Forecast(mean, lower, upper)


    def call_price(self, K: float, T: float, r: float = 0.0) -> float:
        """Black–Scholes call on the last price with the fitted (annualised) volatility."""
        S = float(ffill(self.y_)[-1])
        return black_scholes(S, K, T, r, self.sigma_ * np.sqrt(TRADING_DAYS))

    def get_state(self):
        return {**super().get_state(), "estimates": np.array([self.m_, self.sigma_])}

    def set_state(self, state):
        self.y_ = np.asarray(state["y"], dtype=float)
        self.m_, self.sigma_ = (float(v) for v in state["estimates"])
        self.mu_ = self.m_ + self.sigma_**2 / 2
        self.fitted = True

    def describe(self):
        out = super().describe()
        if self.fitted:
            out.update({"drift_mu": round(self.mu_, 7), "log_drift_m": round(self.m_, 7),
                        "sigma_daily": round(self.sigma_, 6),
                        "sigma_annual": round(self.sigma_ * np.sqrt(TRADING_DAYS), 5)})
        return out

    def log_extras(self) -> dict:
        S = float(ffill(self.y_)[-1])
        out = {"metrics": {"bs_call_atm_3m": self.call_price(S, 0.25),
                           "gbm_sigma_annual": self.sigma_ * np.sqrt(TRADING_DAYS)}}
        if getattr(self, "lambda_scores_", None):
            out["dicts"] = {"ewma_lambda_validation.json": self.lambda_scores_}
            out["metrics"]["ewma_lambda"] = self.config.ewma_lambda
        return out

    def figures(self) -> dict:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        h, hist = 60, 120
        fc = self._forecast(self.y_, np.array([len(self.y_) - 1]), h, (50, 80, 95))
        n = len(self.y_)
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.plot(np.arange(n - hist, n), self.y_[-hist:], color="k", lw=0.8, label="history")
        t = np.arange(n, n + h)
        for lv, alpha in ((95, 0.15), (80, 0.25), (50, 0.35)):
            ax.fill_between(t, fc.lower[lv][0], fc.upper[lv][0], alpha=alpha, color="C0", label=f"{lv}%")
        ax.plot(t, fc.mean[0], color="C0", lw=1, label="mean")
        ax.set_title(f"GBM fan chart ({self.config.n_paths} Monte-Carlo paths)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return {"gbm_fan_chart.png": fig}
