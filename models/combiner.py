"""Forecast combination: registered models weighted on a validation slice of the training part.

Combining forecasts usually beats picking one (Bates & Granger 1969; the M4 competition's
winners were combinations). The combiner fits every member on the training part *less*
its last ``val_fraction`` (the validation slice), forecasts the slice from each origin in
it, and chooses per step ``k`` either

- ``inverse_mse``: weights proportional to ``1 / MSE_k`` of each member on the slice, or
- ``stack``: a stacked linear model, the non-negative least-squares weights of the members'
  forecasts for the actual, rescaled to sum to one (Breiman 1996's stacked regressions).

Its intervals are split-conformal (models/residual_quantiles.py): the quantiles of the
combined forecast's errors on the same slice, per step. Members are not refitted on the slice afterwards (that would double
the training cost): at every later origin they read the history up to it, as every model
does when it is updated without refitting. Nothing after the training end is ever seen:
the harness hands the combiner the training part only, like any model.

Inputs are routed as each member declares: the exogenous columns to members that support
them, the neighbour columns (``nb:<station>``) to members that read neighbours, the panel
to global members.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models import registry
from models.base import Forecast, Forecaster, Levels
from models.registry import register
from models.residual_quantiles import ResidualQuantiles
from seqcast.model_config import CombinerParams

NEIGHBOUR_PREFIX = "nb:"


def inverse_mse_weights(preds: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """(m,) weights from members' forecasts (n, m) of ``actual`` (n,): 1/MSE, normalised."""
    ok = np.isfinite(actual) & np.isfinite(preds).all(axis=1)
    if not ok.any():
        return np.full(preds.shape[1], 1.0 / preds.shape[1])
    mse = np.mean((preds[ok] - actual[ok, None]) ** 2, axis=0)
    inv = 1.0 / np.maximum(mse, 1e-12)
    return inv / inv.sum()


def stacked_weights(preds: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """(m,) non-negative least-squares weights, rescaled to sum to one (inverse MSE if all are 0)."""
    from scipy.optimize import nnls

    ok = np.isfinite(actual) & np.isfinite(preds).all(axis=1)
    if ok.sum() < preds.shape[1] + 1:
        return inverse_mse_weights(preds, actual)
    w, _ = nnls(preds[ok], actual[ok])
    return w / w.sum() if w.sum() > 0 else inverse_mse_weights(preds, actual)


@register
class CombinerForecaster(Forecaster):
    name = "combiner"
    Params = CombinerParams
    family = "combination"
    supports_exog = True  # routed to the members that read it
    uses_panel = True
    uses_neighbours = True
    update_method = "members read the extended history; weights fixed (no refit)"
    tiny_config: ClassVar[dict[str, Any]] = {"members": ["naive", "seasonal_naive", "drift"], "horizon": 6}

    def __init__(self, config: CombinerParams | None = None, *, season: int = 1) -> None:
        super().__init__(config, season=season)
        self.horizon = int(self.config.horizon or max(self.season, 1))
        self.members_: list[Forecaster] = []
        self.weights_ = np.empty((0, 0))  # (h, m)
        self.spread_ = ResidualQuantiles(np.empty((0, 0)))

    # -- members and their inputs --------------------------------------------------------
    def _member(self, name: str) -> Forecaster:
        cls = registry.get(name)
        return cls(cls.Params.model_validate(self.config.member_configs.get(name, {})), season=self.season)

    def _columns_for(self, member: Forecaster) -> list[int]:
        names = list(self.exog_names_) or [f"x{i}" for i in range(self.n_inputs_)]
        return [i for i, n in enumerate(names)
                if (member.uses_neighbours if n.startswith(NEIGHBOUR_PREFIX) else member.supports_exog)]

    def _inputs_for(self, member: Forecaster, X: np.ndarray | None) -> tuple[np.ndarray | None, list[str]]:
        cols = self._columns_for(member) if X is not None else []
        if not cols:
            return None, []
        names = [self.exog_names_[i] for i in cols] if self.exog_names_ else []
        return np.asarray(X, dtype=float)[:, cols], names

    def _member_forecasts(self, y: np.ndarray, origins: np.ndarray, h: int, X: np.ndarray | None) -> np.ndarray:
        """(m, n, h) members' point forecasts."""
        out = []
        for member in self.members_:
            Xm, _ = self._inputs_for(member, X)
            out.append(member.forecast_origins(y, origins, h, (80,), Xm).mean)
        return np.stack(out)

    # -- fit -----------------------------------------------------------------------------
    def _fit(self, y: np.ndarray, X: np.ndarray | None) -> None:
        c = self.config
        n = len(y)
        self.n_inputs_ = 0 if X is None else int(X.shape[1])
        n_fit = n - max(int(n * float(c.val_fraction)), self.horizon + 1)
        if n_fit < 2 * max(self.season, 1) + 2:
            raise ValueError(f"{self.name}: {n} points leave too little before the validation slice")
        self.n_fit_ = n_fit
        self.holdout_start_ = n_fit
        self.members_ = []
        for name in c.members:
            member = self._member(name)
            Xm, names = self._inputs_for(member, X)
            member.fit(y[:n_fit], None if Xm is None else Xm[:n_fit],
                       panel=self.panel_ if member.uses_panel else None, exog_names=names or None)
            self.members_.append(member)
        origins = np.arange(n_fit - 1, n - 1, int(c.val_stride))
        preds = self._member_forecasts(y, origins, self.horizon, X)  # (m, n_o, h)
        target = origins[:, None] + np.arange(1, self.horizon + 1)[None, :]
        actual = np.where(target < n, y[np.minimum(target, n - 1)], np.nan)  # (n_o, h)
        choose = stacked_weights if c.method == "stack" else inverse_mse_weights
        self.weights_ = np.stack([choose(preds[:, :, k].T, actual[:, k]) for k in range(self.horizon)])
        combined = np.einsum("mnh,hm->nh", preds, self.weights_)
        resid = actual - combined
        self.spread_ = ResidualQuantiles.fit(resid, self.horizon)

    # -- forecasting ---------------------------------------------------------------------
    def forecast_origins(self, y, origins, h, levels=(80, 95), X=None) -> Forecast:
        self._check_fitted()
        y = np.asarray(y, dtype=float)
        origins = np.asarray(origins, dtype=int)
        if len(origins) == 0:
            empty = np.empty((0, h))
            return Forecast(empty, {lv: empty for lv in levels}, {lv: empty for lv in levels})
        if X is not None and len(X) < len(y):  # new observations came without exog: hold the last row
            X = np.vstack([X, np.repeat(np.asarray(X)[-1:], len(y) - len(X), axis=0)])
        preds = self._member_forecasts(y, origins, h, X if self.n_inputs_ else None)
        steps = np.minimum(np.arange(h), self.horizon - 1)
        mean = np.einsum("mnh,hm->nh", preds, self.weights_[steps])
        lower, upper = {}, {}
        for level in levels:
            lo, hi = self.spread_.offsets(level, h)
            lower[level], upper[level] = mean + lo[None, :], mean + hi[None, :]
        return Forecast(mean, lower, upper)

    def _predict(self, h: int, levels: Levels, X_future: np.ndarray | None) -> Forecast:
        return self.forecast_origins(self.y_, np.array([len(self.y_) - 1]), h, levels, self.X_)

    def _update(self, y_new: np.ndarray, X_new: np.ndarray | None) -> None:
        pass  # members read the extended history at each origin; weights stay as chosen

    # -- reporting -----------------------------------------------------------------------
    def weights(self) -> dict[str, list[float]]:
        return {m.name: self.weights_[:, j].round(4).tolist() for j, m in enumerate(self.members_)}

    def describe(self) -> dict[str, Any]:
        out = dict(super().describe())
        out.pop("member_configs", None)
        if self.fitted:
            out["mean_weights"] = json.dumps({m.name: round(float(self.weights_[:, j].mean()), 4)
                                              for j, m in enumerate(self.members_)})
        return out

    def log_extras(self) -> dict[str, Any]:
        return {"metrics": {f"weight_{m.name}": float(self.weights_[:, j].mean()) for j, m in enumerate(self.members_)},
                "dicts": {"combiner_weights.json": self.weights()}}

    # -- persistence ---------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = super().save(folder)
        for j, member in enumerate(self.members_):
            member.save(folder / "members" / f"{j}_{member.name}")
        state = {"exog_names": list(self.exog_names_), "n_inputs": self.n_inputs_, "n_fit": self.n_fit_,
                 "weights": self.weights_.tolist(), "quantiles": self.spread_.tolist()}
        (folder / "combiner.json").write_text(json.dumps(state))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> CombinerForecaster:
        folder = Path(folder)
        model, state = cls._load_saved(folder, "combiner.json")
        model.exog_names_ = tuple(state["exog_names"])
        model.n_inputs_, model.n_fit_ = int(state["n_inputs"]), int(state["n_fit"])
        model.holdout_start_ = model.n_fit_
        model.weights_ = np.asarray(state["weights"], dtype=float)
        model.spread_ = ResidualQuantiles(np.asarray(state["quantiles"], dtype=float))
        model.members_ = [registry.load(folder / "members" / f"{j}_{name}") for j, name in enumerate(model.config.members)]
        model.fitted = True
        return model
