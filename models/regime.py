"""Hidden Markov regimes: a Markov-switching model of daily log returns.

``r_t = mu_{S_t} + sigma_{S_t} e_t`` with ``S_t`` a ``k``-state Markov chain
(statsmodels ``MarkovRegression``, switching mean and variance; k = 2 or 3), fitted on
the training returns. Rolling forecasts: the fitted parameters run the Hamilton filter
over the returns up to each origin (causal; no refit), giving ``P(S_o | r_1..r_o)``;
the chain's transition matrix carries it ahead, ``pi_j = P^j pi_o``. One step ahead the
return is the exact mixture ``sum_i pi_1[i] N(mu_i, sigma_i^2)`` (quantiles by
bisection); over ``h`` steps the summed return is moment-matched by a normal with the
mixture means and variances added up (regimes of different steps treated as
independent: an approximation). Prices are ``y_o exp(R)``; the point forecast is the
median. The smoothed regime probabilities of the training period are plotted.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from models.base import DirectForecaster, Forecast, Levels, ffill, log_returns
from models.registry import register
from seqcast.model_config import RegimeParams


def _model(r: np.ndarray, k: int):
    from statsmodels.tsa.regime_switching.markov_regression import MarkovRegression

    return MarkovRegression(r, k_regimes=k, trend="c", switching_variance=True)


def mixture_quantile(q: float, w: np.ndarray, mu: np.ndarray, sd: np.ndarray, iters: int = 60) -> np.ndarray:
    """Quantile ``q`` of normal mixtures with weights ``w`` (n, k), by bisection (vectorised)."""
    lo = (mu - 10 * sd).min(axis=1)
    hi = (mu + 10 * sd).max(axis=1)
    for _ in range(iters):
        mid = (lo + hi) / 2
        cdf = (w * stats.norm.cdf((mid[:, None] - mu) / sd)).sum(axis=1)
        below = cdf < q
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2


@register
class Regime(DirectForecaster):
    name = "regime"
    Params = RegimeParams
    family = "classical"
    update_method = "Hamilton filter with the fitted parameters (no refit)"
    tiny_config = {"k_regimes": 2}

    def _fit(self, y, X):
        r = log_returns(y)
        r = r[np.isfinite(r)]
        k = self.config.k_regimes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the random starts of the search come from a seeded generator: the same fit in every process
            res = _model(r, k).fit(search_reps=self.config.search_reps, disp=False,
                                   rng=np.random.default_rng(self.config.seed))
        self.params_ = np.asarray(res.params, dtype=float)
        self.param_names_ = list(res.model.param_names)
        self._unpack()
        self.smoothed_ = np.asarray(res.smoothed_marginal_probabilities, dtype=float)

    def _unpack(self) -> None:
        k = self.config.k_regimes
        names = self.param_names_
        p = dict(zip(names, self.params_))
        self.mu_ = np.array([p[f"const[{i}]"] for i in range(k)])
        self.sd_ = np.sqrt(np.array([p[f"sigma2[{i}]"] for i in range(k)]))

    def _filtered(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Filtered regime probabilities at every position (row t: given r_1..r_t) and P."""
        r = log_returns(y)
        r = np.where(np.isfinite(r), r, 0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = _model(r, self.config.k_regimes).filter(self.params_)
        probs = np.asarray(res.filtered_marginal_probabilities, dtype=float)  # (n-1, k)
        probs = np.vstack([probs[:1], probs])  # position 0 has no return: use the first filter row
        P = np.asarray(res.model.regime_transition_matrix(self.params_))[:, :, 0]  # P[i, j] = P(S_t=i | S_{t-1}=j)
        return probs, P

    def _forecast(self, y: np.ndarray, origins: np.ndarray, h: int, levels: Levels) -> Forecast:
        probs, P = self._filtered(y[: origins[-1] + 1])
        pi = probs[origins]  # (n, k)
        last = ffill(y)[origins]
        mean_R = np.zeros(len(origins))
        var_R = np.zeros(len(origins))
        out_mean = np.empty((len(origins), h))
        lower = {lv: np.empty((len(origins), h)) for lv in levels}
        upper = {lv: np.empty((len(origins), h)) for lv in levels}
        mu, sd = self.mu_[None, :], self.sd_[None, :]
        for j in range(h):
            pi = pi @ P.T  # one step of the chain
            m = pi @ self.mu_
            mean_R = mean_R + m
            var_R = var_R + pi @ (self.sd_**2 + self.mu_**2) - m**2
            if j == 0:  # the exact mixture
                med = mixture_quantile(0.5, pi, mu, sd)
                out_mean[:, 0] = last * np.exp(med)
                for lv in levels:
                    a = (1 - lv / 100) / 2
                    lower[lv][:, 0] = last * np.exp(mixture_quantile(a, pi, mu, sd))
                    upper[lv][:, 0] = last * np.exp(mixture_quantile(1 - a, pi, mu, sd))
            else:
                s = np.sqrt(var_R)
                out_mean[:, j] = last * np.exp(mean_R)
                for lv in levels:
                    z = stats.norm.ppf(0.5 + lv / 200)
                    lower[lv][:, j] = last * np.exp(mean_R - z * s)
                    upper[lv][:, j] = last * np.exp(mean_R + z * s)
        return Forecast(out_mean, lower, upper)


    def get_state(self):
        return {**super().get_state(), "params": self.params_, "param_names": np.array(self.param_names_)}

    def set_state(self, state):
        self.y_ = np.asarray(state["y"], dtype=float)
        self.params_ = np.asarray(state["params"], dtype=float)
        self.param_names_ = [str(v) for v in state["param_names"]]
        self._unpack()
        self.fitted = True

    def describe(self):
        out = super().describe()
        if self.fitted:
            for i, (m, s) in enumerate(zip(self.mu_, self.sd_)):
                out[f"regime{i}_mean"] = round(float(m), 6)
                out[f"regime{i}_sd"] = round(float(s), 6)
        return out

    def figures(self) -> dict:
        if not hasattr(self, "smoothed_"):
            return {}
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
        r = log_returns(self.y_)
        ax0.plot(r, lw=0.6, color="k")
        ax0.set_title("Training log returns")
        for i in range(self.smoothed_.shape[1]):
            ax1.plot(self.smoothed_[:, i], lw=0.8, label=f"regime {i}: sd {self.sd_[i]:.4f}")
        ax1.set_title("Smoothed regime probabilities")
        ax1.legend(fontsize=8)
        fig.tight_layout()
        return {"regime_probabilities.png": fig}
