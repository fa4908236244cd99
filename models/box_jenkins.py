"""ARIMA the Box–Jenkins way: identification, estimation, diagnostics.

- Identification: ``d`` comes from the stationarity stage (ADF + KPSS); ``p`` and ``q``
  from a bounded stepwise search (Hyndman & Khandakar 2008) minimising an information
  criterion (AIC by default) on the training window only: start from the best of
  (2,2), (0,0), (1,0), (0,1), then move ±1 in p, q or both while the criterion improves.
- Estimation: exact Gaussian likelihood (statsmodels SARIMAX), on the last
  ``fit_window`` training points.
- Diagnostics: Ljung–Box on the standardised residuals at lags 10 and 2×season; a
  model whose residuals fail (p < 0.05) is tagged ``residuals_white=false`` in MLflow
  and the search record says so — it is reported, not silently trusted.
- Updates: Kalman filtering with the fitted parameters (no refit) in P1a/P2a.
"""

from __future__ import annotations

import warnings

import numpy as np

from models.registry import register
from models.sarimax_base import SarimaxForecaster
from seqcast.model_config import AutoArimaParams


@register
class AutoArima(SarimaxForecaster):
    name = "auto_arima"
    Params = AutoArimaParams
    uses_differencing_order = True
    tiny_config = {"max_p": 1, "max_q": 1, "fit_window": 200, "filter_window": None, "maxiter": 30}

    def _score(self, z: np.ndarray, p: int, q: int) -> float:
        self._record(p=p, q=q)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = self._model(z, None).fit(disp=False, maxiter=self.config.maxiter)
            return float(getattr(res, self.config.criterion))
        except (np.linalg.LinAlgError, ValueError):
            return np.inf

    def _fit(self, y: np.ndarray, X: np.ndarray | None) -> None:
        cfg = self.config
        window = cfg.fit_window
        z = self._z(y)[-int(window):] if window else self._z(y)
        scores: dict[tuple[int, int], float] = {}

        def score(p: int, q: int) -> float:
            if (p, q) not in scores and 0 <= p <= cfg.max_p and 0 <= q <= cfg.max_q:
                scores[(p, q)] = self._score(z, p, q)
            return scores.get((p, q), np.inf)

        starts = [(2, 2), (0, 0), (1, 0), (0, 1)]
        best = min(starts, key=lambda o: score(*o))
        for _ in range(cfg.max_steps):
            moves = [(best[0] + dp, best[1] + dq) for dp in (-1, 0, 1) for dq in (-1, 0, 1) if dp or dq]
            cand = min(moves, key=lambda o: score(*o))
            if score(*cand) >= score(*best):
                break
            best = cand
        self.search_ = {f"{p},{q}": s for (p, q), s in sorted(scores.items())}
        self._record(p=best[0], q=best[1])
        super()._fit(y, X)

    def log_extras(self) -> dict:
        out = super().log_extras()
        out.setdefault("metrics", {})["orders_tried"] = float(len(getattr(self, "search_", {})))
        if hasattr(self, "search_"):
            out["dicts"] = {"order_search.json": self.search_}
        return out
