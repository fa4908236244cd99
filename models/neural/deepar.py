"""DeepAR-style global probabilistic RNN (Salinas et al., 2020).

An LSTM reads ``z_{t-1}`` (each series standardised by its own training statistics,
``log1p`` first for PM2.5) and emits the parameters of ``p(z_t)``: Gaussian (mu, sigma)
or Student-t (mu, sigma, nu). Training maximises the likelihood over windows of
``input_size + horizon`` steps with teacher forcing, **across many series at once**:
the series being backtested plus the panel the harness hands to global models (the
other series of the same clean, validated table, each cut at this series' training
end, so no test-period value of any series is seen; ``use_panel: false`` trains on
the own series only).
Forecasts are ancestral samples (``num_samples`` paths per origin, each step's draw fed
back as the next input, clipped to the training range widened by 2 sd); the point
forecast is the sample median (``point: mean`` for the mean), intervals are sample quantiles. CRPS (from the samples) is kept per call for MLflow: the harness
passes the whole series, and the score reads the actuals only after forecasting.

**DeepAR+** (``deepar_plus``, ``covariates: true``): as in the paper, each step's input also
carries covariates ``x_t`` beside ``z_{t-1}``: the position in the season (sin/cos of the
hour of day for P1; known in advance) and the exogenous columns (weather) scaled by the
fit part's statistics. The weather ahead is not known: up to the origin each step reads
the weather of the step before it (like ``z_{t-1}``), past the origin it is held at the
origin's value, in training and in forecasting alike. Panel series bring their columns
matched by name (absent: the fit-part mean).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from models.base import Forecast
from models.neural.base import NeuralForecaster
from models.neural.windows import scaled_series, window_index
from models.registry import register
from models.residual_quantiles import ResidualQuantiles
from models.target_transform import TargetTransform
from seqcast.model_config import DeepARParams, DeepARPlusParams


class DeepARNet(nn.Module):
    def __init__(self, hidden: int, layers: int, likelihood: str, dropout: float, n_inputs: int = 1) -> None:
        super().__init__()
        self.likelihood = likelihood
        self.rnn = nn.LSTM(n_inputs, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden, 3 if likelihood == "student_t" else 2)

    def forward(self, x: torch.Tensor, state=None):
        """x (B, T, 1 + k) = z_{t-1} (and covariates) -> (mu, sigma, nu) each (B, T), and the LSTM state."""
        out, state = self.rnn(x, state)
        p = self.head(out)
        mu = p[..., 0]
        sigma = nn.functional.softplus(p[..., 1]) + 1e-3
        nu = nn.functional.softplus(p[..., 2]) + 2.01 if self.likelihood == "student_t" else None
        return (mu, sigma, nu), state

    def nll(self, mu, sigma, nu, z):
        if nu is None:
            return 0.5 * ((z - mu) / sigma) ** 2 + torch.log(sigma) + 0.5 * math.log(2 * math.pi)
        return -torch.distributions.StudentT(nu, mu, sigma).log_prob(z)

    def sample(self, mu, sigma, nu, eps, eps2):
        """Draws from standard normal noise ``eps`` (and ``eps2`` for Student-t's chi-square,
        by the Wilson-Hilferty approximation), so a path is a function of its own noise."""
        if nu is not None:
            a = 2.0 / (9.0 * nu)
            chi2_over_nu = torch.clamp(1 - a + eps2 * torch.sqrt(a), min=0.05) ** 3
            eps = eps / torch.sqrt(chi2_over_nu)
        return mu + sigma * eps


def crps_from_samples(samples: np.ndarray, actual: np.ndarray) -> float:
    """Mean CRPS over observed actuals; samples (n, S, h), actual (n, h). E|X-y| - E|X-X'|/2."""
    s = np.sort(samples, axis=1)
    S = s.shape[1]
    term1 = np.abs(s - actual[:, None, :]).mean(axis=1)
    w = (2 * np.arange(1, S + 1) - S - 1)[None, :, None]  # sum_{i<j} |x_i - x_j| via sorted ranks
    term2 = (w * s).sum(axis=1) / (S * S)
    crps = term1 - term2
    return float(np.nanmean(np.where(np.isnan(actual), np.nan, crps)))


@register
class DeepARForecaster(NeuralForecaster):
    name = "deepar"
    Params = DeepARParams
    supports_exog = False
    uses_panel = True
    update_method = "recurrent: the LSTM re-reads the window ending at each origin, no refit"
    tiny_config = {**NeuralForecaster.tiny_config, "hidden": 8, "num_samples": 50}

    def build_network(self, n_features: int) -> nn.Module:
        c = self.config
        return DeepARNet(int(c.hidden), int(c.layers), str(c.likelihood), float(c.dropout), n_features)

    def loss_fn(self, net, x, target, mask):
        (mu, sigma, nu), _ = net(x)
        return net.nll(mu, sigma, nu, target)[mask].mean()

    # -- sequence windows ----------------------------------------------------------------
    def _relative(self) -> bool:
        """Windows relative to their origin's value (level-free: prices) unless log1p-scaled."""
        value = self.config.relative
        return self.target_.kind == "none" if value == "auto" else bool(value)

    def _sequences(self, z: np.ndarray, raw: np.ndarray, starts: np.ndarray, wx: np.ndarray | None = None):
        T = self.input_size + self.horizon
        idx = starts[:, None] + np.arange(T)[None, :]
        seq = z[idx]
        if self._relative():
            seq = seq - seq[:, self.input_size - 1 : self.input_size]
        inputs = seq[:, :-1, None]
        if self.n_cov_:  # covariates of each target step: its phase, the weather known before it
            held = np.minimum(idx[:, :-1], idx[:, self.input_size - 1 : self.input_size])  # never past the origin
            inputs = np.concatenate([inputs, self._covariates(wx, held, idx[:, 1:])], axis=-1)
        return inputs, seq[:, 1:], ~np.isnan(raw[idx[:, 1:]])

    # -- covariates (DeepAR+) -----------------------------------------------------------
    def _covariates(self, wx: np.ndarray | None, held: np.ndarray, target: np.ndarray) -> np.ndarray:
        """(..., k) inputs beside z: the weather at ``held`` positions, the phase of ``target`` positions."""
        cols = []
        if wx is not None:
            cols.append(wx[held])
        if self.inputs_.phase:
            cols.append(self.inputs_.phase_columns(target))
        return np.concatenate(cols, axis=-1).astype(np.float32)

    def _fit(self, y: np.ndarray, X: np.ndarray | None) -> None:
        covariates = bool(self.config.covariates)
        X = X if covariates and self._uses_exog(X) and X.shape[1] else None
        n_fit, _, _ = self._split(len(y))
        self.holdout_start_ = n_fit
        self.inputs_ = self._new_inputs().fit(y[:n_fit], None if X is None else X[:n_fit], self.config.transform)
        self.n_cov_ = (self.n_exog_ + 2 * self.inputs_.phase) if covariates else 0
        wx = self.inputs_.exog(X, len(y))
        T = self.input_size + self.horizon
        stride = int(self.config.stride)
        z = scaled_series(y, self.target_).astype(np.float32)  # own series: the transform of the fit part
        # sampled paths are clipped to the fit part's range widened by 2 sd: a heavy-tailed draw fed
        # back through log1p/expm1 would otherwise explode
        self.z_range_ = (float(z[:n_fit].min()) - 2.0, float(z[:n_fit].max()) + 2.0)
        if self._relative():
            width = self.z_range_[1] - self.z_range_[0]
            self.z_range_ = (-width, width)
        parts = [self._sequences(z, y, np.arange(0, n_fit - T + 1, stride), wx)]
        self.n_extra_series_ = 0
        for other in (self.panel_ if self.config.use_panel else ()):
            y_other = np.asarray(other.y, dtype=float)
            if np.sum(~np.isnan(y_other)) < T + 1:
                continue
            # the own series' kind of transform, scaled by the panel series' own (pre-cutoff) data only
            panel_transform = TargetTransform.fit(y_other, self.target_.kind, "standard")
            zo = scaled_series(y_other, panel_transform).astype(np.float32)
            wo = self.inputs_.exog(other.X, len(y_other), tuple(other.exog_names or ("",)), self.exog_names_)
            parts.append(self._sequences(zo, y_other, np.arange(0, len(y_other) - T + 1, stride), wo))
            self.n_extra_series_ += 1
        train = tuple(np.concatenate([p[i] for p in parts]) for i in range(3))
        val = self._sequences(z, y, np.arange(max(n_fit - self.input_size, 0), len(y) - T + 1, max(stride // 2, 1)), wx)
        # the checkpoint key covers the panel too: a resumed run must see the same training data
        data = np.concatenate([y, *[np.asarray(o.y, float) for o in self.panel_]]) if self.n_extra_series_ else y
        self.train_network(train, val, n_features=1 + self.n_cov_, fingerprint_data=data)
        self.spread_ = ResidualQuantiles.zeros(self.horizon)  # unused: intervals come from samples

    # -- forecasting ------------------------------------------------------------------
    @torch.no_grad()
    def sample_paths(self, y: np.ndarray, origins: np.ndarray, h: int, chunk: int = 1024,
                     X: np.ndarray | None = None) -> np.ndarray:
        """Ancestral samples (n, S, h) in original units, each path reading y[:o+1] only."""
        z = scaled_series(np.asarray(y, float), self.target_).astype(np.float32)
        pad = max(self.input_size - 1 - int(origins.min()), 0)
        z = np.concatenate([np.repeat(z[:1], pad), z])
        windows = z[window_index(origins + pad, self.input_size)]  # (n, L)
        anchor = windows[:, -1:].copy() if self._relative() else np.zeros((len(windows), 1), np.float32)
        windows = windows - anchor
        covs = ahead = None
        if self.n_cov_:  # window inputs: weather at each position (<= origin), phase of the next one
            wx = self.inputs_.exog(X, len(y))
            wx = None if wx is None else np.concatenate([np.repeat(wx[:1], pad, axis=0), wx])
            pos = window_index(origins, self.input_size)  # real positions (negative: padding)
            covs = self._covariates(wx, np.maximum(pos + pad, 0), pos + 1)  # (n, L, k)
            steps = origins[:, None] + np.arange(2, h + 1)[None, :]  # targets of the fed-back steps
            ahead = self._covariates(wx, np.repeat((origins + pad)[:, None], max(h - 1, 0), axis=1), steps)
        S = int(self.config.num_samples)
        seed = int(self.config.seed)
        # noise per origin from a generator seeded by (seed, origin): batching changes nothing
        noise = np.stack([np.random.default_rng([seed, int(o)]).standard_normal((2, S, h)) for o in origins])
        noise = torch.from_numpy(noise.astype(np.float32))  # (n, 2, S, h)
        self.net.eval()
        out = []
        for i in range(0, len(windows), chunk):
            w = torch.from_numpy(windows[i : i + chunk]).to(self.device)[:, :, None]  # (b, L, 1)
            if covs is not None:
                w = torch.cat([w, torch.from_numpy(covs[i : i + chunk]).to(self.device)], dim=-1)  # (b, L, 1+k)
                nxt = torch.from_numpy(ahead[i : i + chunk]).to(self.device).repeat_interleave(S, dim=0)
            b = w.shape[0]
            nz = noise[i : i + chunk].to(self.device)
            eps, eps2 = nz[:, 0].reshape(b * S, h), nz[:, 1].reshape(b * S, h)
            (mu, sigma, nu), (hs, cs) = self.net(w)  # last output: p(z_{o+1})
            rep = lambda t: t.repeat_interleave(S, dim=0)  # noqa: E731
            state = (hs.repeat_interleave(S, dim=1), cs.repeat_interleave(S, dim=1))
            mu, sigma = rep(mu[:, -1]), rep(sigma[:, -1])
            nu = None if nu is None else rep(nu[:, -1])
            draws = []
            for k in range(h):
                draw = self.net.sample(mu, sigma, nu, eps[:, k], eps2[:, k]).clamp(*self.z_range_)  # (b*S,)
                draws.append(draw)
                if k + 1 < h:
                    step_in = draw[:, None, None]  # (b*S, 1, 1)
                    if covs is not None:
                        step_in = torch.cat([step_in, nxt[:, k : k + 1]], dim=-1)  # (b*S, 1, 1+k)
                    (mu, sigma, nu), state = self.net(step_in, state)
                    mu, sigma = mu[:, -1], sigma[:, -1]
                    nu = None if nu is None else nu[:, -1]
            out.append(torch.stack(draws, dim=1).reshape(b, S, h).float().cpu().numpy())
        return self.target_.inverse(np.concatenate(out) + anchor[:, :, None])

    def forecast_origins(self, y, origins, h, levels=(80, 95), X=None) -> Forecast:
        self._check_fitted()
        origins = np.asarray(origins, dtype=int)
        if len(origins) == 0:
            empty = np.empty((0, h))
            return Forecast(empty, {lv: empty for lv in levels}, {lv: empty for lv in levels})
        samples = self.sample_paths(np.asarray(y, float), origins, h,
                                    X=X if self.n_exog_ else None)
        mean = samples.mean(axis=1) if self.config.point == "mean" else np.median(samples, axis=1)
        lower = {lv: np.quantile(samples, 0.5 - lv / 200, axis=1) for lv in levels}
        upper = {lv: np.quantile(samples, 0.5 + lv / 200, axis=1) for lv in levels}
        y = np.asarray(y, float)
        target = origins[:, None] + np.arange(1, h + 1)[None, :]
        if origins[0] >= len(self.y_) - 1:  # scored after forecasting, for MLflow
            actual = np.where(target < len(y), y[np.minimum(target, len(y) - 1)], np.nan)
            if (~np.isnan(actual)).any():
                self.crps_ = getattr(self, "crps_", {})
                self.crps_[f"crps_h{h}"] = crps_from_samples(samples, actual)
        return Forecast(mean, lower, upper)

    def log_extras(self) -> dict[str, Any]:
        extras = super().log_extras()
        extras["metrics"].update(getattr(self, "crps_", {}))
        extras["metrics"]["n_extra_series"] = float(getattr(self, "n_extra_series_", 0))
        return extras

    def neural_state(self) -> dict[str, Any]:
        return {**super().neural_state(), "n_extra_series": getattr(self, "n_extra_series_", 0),
                "z_range": list(self.z_range_), "n_cov": self.n_cov_}

    def set_neural_state(self, s: dict[str, Any]) -> None:
        super().set_neural_state(s)
        self.n_extra_series_, self.z_range_ = int(s["n_extra_series"]), tuple(s["z_range"])
        self.n_cov_ = int(s.get("n_cov", 0))


@register
class DeepARPlusForecaster(DeepARForecaster):
    """DeepAR with its covariates (phase of the season, weather known at the origin)."""

    name = "deepar_plus"
    Params = DeepARPlusParams
    supports_exog = True
