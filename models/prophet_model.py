"""Prophet (the ``prophet`` package): trend, weekly/yearly seasonality, Korean holidays.

Prophet is a curve in calendar time, so it needs the dates of the positions: the
backtest passes the series' trading calendar (``dates``, known in advance, no values);
positions past the calendar continue on business days. Korean holidays come from the
``holidays`` package (offline). Stan's optimiser (MAP, no sampling) fits it once.

Update for rolling forecasts: Prophet has no state to filter, so the model's own
residual carries the news: ``yhat_{o+j} = f(t_{o+j}) + phi^j (y_o - f(t_o))`` with
``phi`` the AR(1) coefficient of the training residuals (``phi = 1`` would be the random
walk around the curve), and the interval variance ``s^2 (1 - phi^(2j)) / (1 - phi^2)``
from the residual innovations. No refit per origin. The fitted model is saved with
Prophet's own JSON serialiser (no pickle).

``prophet_native`` is Prophet as its users run it: its own point forecast (the
curve) and its own intervals, the empirical quantiles of ``predictive_samples`` (simulated
future trend changes plus the fitted observation noise), with the model fitted again every
``refit_every`` origins on the history up to that origin, as Prophet's own
``cross_validation`` refits at each cutoff. Between refits the forecast does not move with the
news. Both variants log the change points of the training fit: the dates, the rate changes
(``diagnostics/changepoints.json``, ``n_changepoints_significant``) and a plot of the fitted
trend with the significant ones marked (``|delta| >= 0.01`` on Prophet's scaled axis, the
threshold of Prophet's own ``add_changepoints_to_plot``).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from models.base import DirectForecaster, Forecast, ffill
from models.registry import register
from seqcast.model_config import ProphetNativeParams, ProphetParams

SIGNIFICANT_DELTA = 0.01  # Prophet's add_changepoints_to_plot threshold (scaled rate change)


@register
class ProphetForecaster(DirectForecaster):
    name = "prophet"
    Params = ProphetParams
    family = "classical"
    needs_calendar = True
    update_method = "AR(1) on the residual at the origin around the fitted curve (no refit)"
    tiny_config = {"yearly_seasonality": False}

    def _dates(self, n: int) -> pd.DatetimeIndex:
        known = pd.DatetimeIndex(pd.to_datetime(self.config.dates or [], utc=True)).tz_localize(None)
        if len(known) == 0:
            known = pd.DatetimeIndex([pd.Timestamp("2000-01-03")])
        if n <= len(known):
            return known[:n]
        extra = pd.date_range(known[-1], periods=n - len(known) + 1, freq=self.config.freq)[1:]
        return known.append(extra)

    def _curve(self, n: int) -> np.ndarray:
        frame = pd.DataFrame({"ds": self._dates(n).normalize()})
        return self.model_.predict(frame)["yhat"].to_numpy(dtype=float)

    def _fit(self, y, X):
        self.model_ = self._fit_prophet(y)
        self._residual_ar(y)

    def _fit_prophet(self, y: np.ndarray):
        """Prophet's MAP fit on ``y`` (positions 0..len(y)-1 of the calendar); points only."""
        from prophet import Prophet

        logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
        logging.getLogger("prophet").setLevel(logging.WARNING)
        cfg = self.config
        frame = pd.DataFrame({"ds": self._dates(len(y)).normalize(), "y": y})
        model = Prophet(weekly_seasonality=cfg.weekly_seasonality, yearly_seasonality=cfg.yearly_seasonality,
                        daily_seasonality=False, changepoint_prior_scale=cfg.changepoint_prior_scale,
                        uncertainty_samples=0)
        if cfg.country_holidays:
            model.add_country_holidays(country_name=cfg.country_holidays)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(frame.dropna())
        return model

    def _residual_ar(self, y: np.ndarray) -> None:
        e = y - self._curve(len(y))
        a, b = e[:-1], e[1:]
        ok = np.isfinite(a) & np.isfinite(b)
        self.phi_ = float(np.clip(np.dot(a[ok], b[ok]) / np.dot(a[ok], a[ok]), -0.999, 0.999))
        self.s_ = float(np.std(b[ok] - self.phi_ * a[ok]))

    def _forecast(self, y, origins, h, levels):
        n = int(origins[-1]) + 1 + h
        curve = self._curve(n)
        resid = ffill(y[: origins[-1] + 1]) - curve[: origins[-1] + 1]
        steps = np.arange(1, h + 1)
        phij = self.phi_ ** steps
        mean = curve[origins[:, None] + steps[None, :]] + resid[origins][:, None] * phij[None, :]
        std = self.s_ * np.sqrt((1 - self.phi_ ** (2 * steps)) / (1 - self.phi_**2))
        return Forecast.gaussian(mean, np.broadcast_to(std, mean.shape), levels)


    def _extra_state(self) -> dict[str, np.ndarray]:
        return {"residual_ar": np.array([self.phi_, self.s_])}

    def _set_extra_state(self, state) -> None:
        self.phi_, self.s_ = (float(v) for v in state["residual_ar"])

    def get_state(self):
        from prophet.serialize import model_to_json

        return {**super().get_state(), "prophet_json": np.array(model_to_json(self.model_)), **self._extra_state()}

    def set_state(self, state):
        from prophet.serialize import model_from_json

        self.y_ = np.asarray(state["y"], dtype=float)
        self.model_ = model_from_json(str(state["prophet_json"]))
        self._set_extra_state(state)
        self.fitted = True

    # -- the change points of the training fit ------------------------------------------
    def changepoints(self) -> pd.DataFrame:
        """Date, scaled rate change (Prophet's ``delta``) and the rate change in the series'
        units per day of each potential change point of the training fit."""
        m = self.model_
        delta = np.asarray(m.params["delta"], dtype=float).reshape(-1, len(m.changepoints)).mean(axis=0)
        per_day = delta * float(m.y_scale) / (m.t_scale / pd.Timedelta(days=1))
        return pd.DataFrame({"date": pd.DatetimeIndex(m.changepoints).strftime("%Y-%m-%d"), "delta": delta,
                             "rate_change_per_day": per_day, "significant": np.abs(delta) >= SIGNIFICANT_DELTA})

    def log_extras(self):
        if not self.fitted:
            return {}
        cps = self.changepoints()
        return {"metrics": {"n_changepoints": float(len(cps)), "n_changepoints_significant": float(cps.significant.sum())},
                "dicts": {"changepoints.json": {"threshold_abs_delta": SIGNIFICANT_DELTA,
                                                "changepoints": cps.to_dict(orient="records")}}}

    def figures(self):
        if not self.fitted:
            return {}
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        frame = pd.DataFrame({"ds": self._dates(len(self.y_)).normalize()})
        fitted = self.model_.predict(frame)
        cps = self.changepoints()
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.plot(frame.ds, self.y_, lw=0.6, color="k", label="training series")
        ax.plot(frame.ds, fitted["yhat"], lw=0.8, color="tab:blue", label="Prophet fit")
        ax.plot(frame.ds, fitted["trend"], lw=1.2, color="tab:red", label="trend")
        for date in pd.to_datetime(cps.date[cps.significant]):
            ax.axvline(date, color="tab:red", ls="--", lw=0.6)
        ax.set_title(f"Prophet change points: {int(cps.significant.sum())} of {len(cps)} with |delta| >= "
                     f"{SIGNIFICANT_DELTA} (dashed)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return {"prophet_changepoints.png": fig}

    def describe(self):
        out = {k: v for k, v in super().describe().items() if k != "dates"}
        if self.fitted:
            out.update({"n_calendar_dates": len(self.config.dates or []), **self._fit_summary()})
        return out

    def _fit_summary(self) -> dict[str, float]:
        return {"residual_phi": round(self.phi_, 4), "residual_sd": round(self.s_, 4)}


@register
class ProphetNative(ProphetForecaster):
    """Prophet's own forecast and sampled intervals, refitted every ``refit_every`` origins."""

    name = "prophet_native"
    Params = ProphetNativeParams
    update_method = "refit every refit_every origins on the history up to the origin (Prophet's own forecast between)"

    def _fit(self, y, X):
        self.model_ = self._fit_prophet(y)
        self.fit_end_ = len(y) - 1
        self.refits_: dict[tuple[int, float], object] = {}

    def _model_at(self, y: np.ndarray, b: int):
        """The fit serving origins from ``b``: the training fit at its own end, else a refit on
        ``y[:b+1]`` (kept for the other tasks over the same origins)."""
        if b == self.fit_end_:
            return self.model_
        refits = self.__dict__.setdefault("refits_", {})
        key = (b, float(np.nansum(y[: b + 1])))
        if key not in refits:
            refits[key] = self._fit_prophet(y[: b + 1])
        return refits[key]

    def _forecast(self, y, origins, h, levels):
        anchor, every = self.fit_end_, self.config.refit_every
        blocks = np.where(origins >= anchor, anchor + (origins - anchor) // every * every, origins)
        steps = np.arange(1, h + 1)
        span = every - 1 + h  # a block's fit forecasts b+1 .. b+every-1+h
        mean = np.empty((len(origins), h))
        lower = {lv: np.empty_like(mean) for lv in levels}
        upper = {lv: np.empty_like(mean) for lv in levels}
        dates = self._dates(int(blocks.max()) + 1 + span).normalize()
        for b in np.unique(blocks):
            rows = np.flatnonzero(blocks == b)
            # sampled over the block's whole span, whichever origins are asked: the same draws
            # for a target whether its origins come in one call or one at a time
            point, samples = self._sample(self._model_at(y, int(b)), dates[b + 1 : b + 1 + span], seed=int(b))
            at = origins[rows, None] + steps[None, :] - (b + 1)
            mean[rows] = point[at]
            for lv in levels:
                lo, hi = np.quantile(samples, [0.5 - lv / 200.0, 0.5 + lv / 200.0], axis=1)
                lower[lv][rows], upper[lv][rows] = lo[at], hi[at]
        return Forecast(mean, lower, upper)

    def _sample(self, model, dates: pd.DatetimeIndex, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Prophet's point forecast (``yhat``) at ``dates`` and its predictive samples, (dates, samples).
        Prophet draws from numpy's global generator: seeded here, and its state put back after."""
        frame = pd.DataFrame({"ds": dates})
        point = model.predict(frame)["yhat"].to_numpy(dtype=float)
        saved = np.random.get_state()
        try:
            np.random.seed([self.config.seed, seed])
            model.uncertainty_samples = self.config.uncertainty_samples
            samples = np.asarray(model.predictive_samples(frame)["yhat"], dtype=float)
        finally:
            model.uncertainty_samples = 0
            np.random.set_state(saved)
        return point, samples

    def _extra_state(self):
        return {"fit_end": np.array(self.fit_end_)}

    def _set_extra_state(self, state):
        self.fit_end_ = int(state["fit_end"])
        self.refits_ = {}

    def _fit_summary(self):
        return {}
