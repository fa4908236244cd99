"""The one interface every forecaster implements.

A forecaster is fitted on a history, predicts a horizon with point forecasts and
prediction intervals at requested levels, and takes new observations without
refitting where the model allows (``update``). Positions, not timestamps: ``y`` is a
float array in time order, ``NaN`` where the value is missing; a model handles
missing values causally (forward fill, or its own filtering).

The backtest harness only calls :meth:`Forecaster.forecast_origins`: given the whole
series (training part first, exactly as fitted, then what came after) and a set of
origins, it returns the ``h``-step forecasts issued at each origin using ``y[:o+1]``
only. The default implementation walks the origins with ``update`` + ``predict``
(correct for every model); models override it with an equivalent vectorised path
(the contract test checks both agree and that no future value leaks in).

Exogenous inputs ``X`` (shape ``(n, k)``, aligned with ``y``) follow the same rule:
at origin ``o`` a model may read ``X[:o+1]`` only, unless its class sets
``oracle_exog = True`` (then it is labelled "oracle" everywhere it is reported).

Global models (``uses_panel = True``) are also handed a *panel* at fit time: the other
series of the dataset, each cut at the training end (objects with ``unique_id``, ``ds``,
``y`` and ``X``; see :class:`tasks.backtest.PanelSeries`). They train across it; they
never read files. Models that read neighbouring stations (``uses_neighbours = True``) get
them as extra columns of ``X`` named ``nb:<station>`` (``exog_names`` at fit time names
every column), under the same causal rule.

A model that never trains on the end of its history (``holdout_start_``: a network's
early-stopping slice, a booster's validation rows) says so, so that the harness can check
its intervals there without fitting it again.
"""

from __future__ import annotations

import copy
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy import stats

from seqcast.model_config import ForecasterParams

Levels = tuple[int, ...]


@dataclass
class Forecast:
    """Forecasts for ``n`` origins and ``h`` steps: ``mean[i, j]`` is origin i, step j+1."""

    mean: np.ndarray  # (n, h)
    lower: dict[int, np.ndarray] = field(default_factory=dict)  # level -> (n, h)
    upper: dict[int, np.ndarray] = field(default_factory=dict)

    @classmethod
    def gaussian(cls, mean: np.ndarray, std: np.ndarray, levels: Levels) -> Forecast:
        """Symmetric normal intervals around ``mean`` with standard deviation ``std``."""
        mean = np.atleast_2d(mean)
        std = np.broadcast_to(std, mean.shape)
        lower, upper = {}, {}
        for level in levels:
            z = stats.norm.ppf(0.5 + level / 200.0)
            lower[level], upper[level] = mean - z * std, mean + z * std
        return cls(mean, lower, upper)

    @classmethod
    def stack(cls, parts: list[Forecast]) -> Forecast:
        return cls(
            np.vstack([p.mean for p in parts]),
            {lv: np.vstack([p.lower[lv] for p in parts]) for lv in parts[0].lower},
            {lv: np.vstack([p.upper[lv] for p in parts]) for lv in parts[0].upper},
        )

    @property
    def levels(self) -> Levels:
        return tuple(sorted(self.lower))


class Forecaster(ABC):
    """Base class: subclasses implement ``_fit``, ``_predict`` and usually ``_update``.

    Capability flags are class attributes. Construction takes one validated
    configuration, an instance of the class's ``Params`` schema (seqcast/model_config.py;
    ``None``: the schema's defaults), kept whole in ``self.config`` and saved with the
    model, plus ``season``, the protocol's seasonal period (24 for hourly PM2.5, 5 for
    trading days). ``models.registry.create(name, season=..., **values)`` validates
    keyword values through the schema.
    """

    name: ClassVar[str] = "forecaster"
    Params: ClassVar[type[ForecasterParams]] = ForecasterParams
    family: ClassVar[str] = "baseline"
    supports_exog: ClassVar[bool] = False
    oracle_exog: ClassVar[bool] = False
    # a small configuration for the contract tests (fast to fit), validated by ``Params``
    tiny_config: ClassVar[dict[str, Any]] = {}
    # takes ``d`` (and ``trend``) from the stationarity stage
    uses_differencing_order: ClassVar[bool] = False
    # a global model: trained across the other series of the dataset (the panel) as well
    uses_panel: ClassVar[bool] = False
    # reads the other stations of the dataset (extra columns of X named "nb:<station>")
    uses_neighbours: ClassVar[bool] = False
    # how P1a-style rolling forecasts are produced; reported in MLflow and notes
    update_method: ClassVar[str] = "update with new observations, no refit"

    def __init__(self, config: ForecasterParams | None = None, *, season: int = 1) -> None:
        config = self.Params() if config is None else config
        if type(config) is not self.Params:
            raise TypeError(f"{self.name}: the configuration must be a {self.Params.__name__}, "
                            f"not {type(config).__name__}")
        self.config = config
        self.season = int(season)
        self.fitted = False
        self.y_: np.ndarray = np.empty(0)
        self.X_: np.ndarray | None = None
        self.panel_: tuple = ()
        self.exog_names_: tuple[str, ...] = ()
        # first position of the fitted history the model never trained on (None: it trained on all)
        self.holdout_start_: int | None = None

    # -- public API -------------------------------------------------------------------
    def fit(self, y: np.ndarray, X: np.ndarray | None = None, panel=None,
            exog_names: list[str] | tuple[str, ...] | None = None) -> Forecaster:
        """Fit on the history ``y`` (and ``X``, whose columns ``exog_names`` names); a global
        model also trains on ``panel``."""
        y = np.asarray(y, dtype=float)
        if y.ndim != 1 or len(y) < 2:
            raise ValueError(f"{self.name}: y must be a 1-d series of at least 2 points")
        if np.isnan(y).all():
            raise ValueError(f"{self.name}: y has no observed value")
        self.y_ = y.copy()
        self.X_ = None if X is None else np.asarray(X, dtype=float).copy()
        self.panel_ = tuple(panel or ()) if self.uses_panel else ()
        self.exog_names_ = tuple(str(n) for n in exog_names) if exog_names is not None else ()
        self._fit(self.y_, self.X_)
        self.fitted = True
        return self

    def predict(self, h: int, levels: Levels = (80, 95), X_future: np.ndarray | None = None) -> Forecast:
        """Forecast ``h`` steps past the end of the history seen so far (one origin)."""
        self._check_fitted()
        return self._predict(int(h), tuple(levels), X_future)

    def update(self, y_new: np.ndarray, X_new: np.ndarray | None = None) -> Forecaster:
        """Append observations that follow the history; no refit."""
        self._check_fitted()
        y_new = np.asarray(y_new, dtype=float)
        if len(y_new) == 0:
            return self
        self.y_ = np.concatenate([self.y_, y_new])
        if X_new is not None:
            self.X_ = np.vstack([self.X_, np.asarray(X_new, dtype=float)])
        self._update(y_new, None if X_new is None else np.asarray(X_new, dtype=float))
        return self

    def forecast_origins(
        self,
        y: np.ndarray,
        origins: np.ndarray,
        h: int,
        levels: Levels = (80, 95),
        X: np.ndarray | None = None,
    ) -> Forecast:
        """Forecasts issued at each origin ``o`` (last known position) for ``o+1 .. o+h``.

        ``y[:n_fit]`` must be the fitted history; origins are ascending and
        ``>= n_fit - 1``. This generic walk is always correct; subclasses may override
        it with a vectorised equivalent.
        """
        self._check_fitted()
        y = np.asarray(y, dtype=float)
        origins = np.asarray(origins, dtype=int)
        n_fit = len(self.y_)
        if len(origins) and (origins[0] < n_fit - 1 or np.any(np.diff(origins) < 0)):
            raise ValueError("origins must be ascending and start at or after the end of the fitted history")
        walker = copy.deepcopy(self)
        known = n_fit  # walker has seen y[:known]
        parts = []
        for o in origins:
            if o + 1 > known:
                walker.update(y[known : o + 1], None if X is None else X[known : o + 1])
                known = o + 1
            X_future = None
            if X is not None and self.oracle_exog:
                X_future = X[o + 1 : o + 1 + h]
            parts.append(walker.predict(h, levels, X_future))
        if not parts:
            return Forecast(np.empty((0, h)), {lv: np.empty((0, h)) for lv in levels}, {lv: np.empty((0, h)) for lv in levels})
        return Forecast.stack(parts)

    def _record(self, **chosen: Any) -> None:
        """Keep what fitting chose (an order, periods, a decay) in the configuration, so that
        ``describe`` reports it and a saved model reloads with it (validated again)."""
        self.config = self.Params.model_validate({**self.config.model_dump(), **chosen})

    # -- persistence ------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """Arrays that, with ``config``, rebuild the fitted model (saved as .npz, no pickle)."""
        state = {"y": self.y_}
        if self.X_ is not None:
            state["X"] = self.X_
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`get_state`; the default refits deterministically on ``y``."""
        self.fit(state["y"], state.get("X"))

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"name": self.name, "season": self.season, "config": self.config.model_dump(mode="json")}
        (folder / "forecaster.json").write_text(json.dumps(meta, indent=2, default=_json_default))
        np.savez(folder / "state.npz", **self.get_state())
        return folder

    @classmethod
    def _load_saved(cls, folder: str | Path, state_file: str) -> tuple[Forecaster, dict]:
        """For models with their own ``load``: the model rebuilt from ``forecaster.json`` with
        ``y_``/``X_`` from ``state.npz`` (no pickle), and the JSON state in ``state_file``."""
        folder = Path(folder)
        meta = json.loads((folder / "forecaster.json").read_text())
        model = cls(cls.Params.model_validate(meta["config"]), season=meta["season"])
        state = json.loads((folder / state_file).read_text())
        with np.load(folder / "state.npz", allow_pickle=False) as npz:
            model.y_ = npz["y"]
            model.X_ = npz["X"] if "X" in npz.files else None
        return model, state

    # -- to implement -----------------------------------------------------------------
    @abstractmethod
    def _fit(self, y: np.ndarray, X: np.ndarray | None) -> None: ...

    @abstractmethod
    def _predict(self, h: int, levels: Levels, X_future: np.ndarray | None) -> Forecast: ...

    def _update(self, y_new: np.ndarray, X_new: np.ndarray | None) -> None:
        """Default: refit on the extended history (override when the model can filter)."""
        self._fit(self.y_, self.X_)

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{self.name}: call fit() first")

    def describe(self) -> dict[str, Any]:
        """Parameters worth logging (hyperparameters plus what fitting chose)."""
        return {"season": self.season, **self.config.model_dump()}

    # -- optional MLflow extras (used by flows/backtest.py log_result) ------------------
    def log_extras(self) -> dict[str, Any]:
        """Extra MLflow content after fitting: ``{"tags": {...}, "metrics": {...},
        "step_metrics": [(key, value, step), ...]}`` (e.g. per-epoch losses). Default: none."""
        return {}

    def figures(self) -> dict[str, Any]:
        """Extra matplotlib figures to log, ``{"file_name.png": figure}``. Default: none."""
        return {}


class DirectForecaster(Forecaster):
    """A model whose forecast at an origin is a direct function of the history up to it,
    with the parameters fixed at fit time (baselines, ETS recursions, regimes, GBM, ...).

    Subclasses implement ``_forecast(y, origins, h, levels)`` over many origins at once;
    ``predict`` (the end of the history), ``update`` (nothing to refit) and the
    multi-origin path all go through it.
    """

    @abstractmethod
    def _forecast(self, y: np.ndarray, origins: np.ndarray, h: int, levels: Levels) -> Forecast: ...

    def _update(self, y_new: np.ndarray, X_new: np.ndarray | None) -> None:
        pass  # parameters stay as fitted; forecasts read the extended history

    def _predict(self, h: int, levels: Levels, X_future: np.ndarray | None) -> Forecast:
        return self._forecast(self.y_, np.array([len(self.y_) - 1]), h, levels)

    def forecast_origins(self, y, origins, h, levels=(80, 95), X=None) -> Forecast:
        self._check_fitted()
        origins = np.asarray(origins, dtype=int)
        if len(origins) == 0:
            return super().forecast_origins(y, origins, h, levels, X)
        return self._forecast(np.asarray(y, dtype=float), origins, h, tuple(levels))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def ffill(y: np.ndarray) -> np.ndarray:
    """Causal forward fill (leading NaNs stay NaN)."""
    y = np.asarray(y, dtype=float)
    idx = np.where(np.isnan(y), 0, np.arange(len(y)))
    np.maximum.accumulate(idx, out=idx)
    out = y[idx]
    if len(y) and np.isnan(y[0]):
        first = np.flatnonzero(~np.isnan(y))
        if len(first):
            out[: first[0]] = np.nan
    return out


def log_returns(y: np.ndarray) -> np.ndarray:
    """``log y_t - log y_{t-1}`` of the causally forward-filled prices, ``(n - 1,)``."""
    return np.diff(np.log(ffill(np.asarray(y, dtype=float))))
