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
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from models.base import DirectForecaster, Forecast, ffill
from models.registry import register
from seqcast.model_config import ProphetParams


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
        from prophet import Prophet

        logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
        logging.getLogger("prophet").setLevel(logging.WARNING)
        cfg = self.config
        frame = pd.DataFrame({"ds": self._dates(len(y)).normalize(), "y": y})
        model = Prophet(weekly_seasonality=cfg.weekly_seasonality, yearly_seasonality=cfg.yearly_seasonality,
                        daily_seasonality=False, uncertainty_samples=0)
        if cfg.country_holidays:
            model.add_country_holidays(country_name=cfg.country_holidays)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(frame.dropna())
        self.model_ = model
        self._residual_ar(y)

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


    def get_state(self):
        from prophet.serialize import model_to_json

        return {**super().get_state(), "prophet_json": np.array(model_to_json(self.model_)),
                "residual_ar": np.array([self.phi_, self.s_])}

    def set_state(self, state):
        from prophet.serialize import model_from_json

        self.y_ = np.asarray(state["y"], dtype=float)
        self.model_ = model_from_json(str(state["prophet_json"]))
        self.phi_, self.s_ = (float(v) for v in state["residual_ar"])
        self.fitted = True

    def describe(self):
        out = {k: v for k, v in super().describe().items() if k != "dates"}
        if self.fitted:
            out.update({"residual_phi": round(self.phi_, 4), "residual_sd": round(self.s_, 4),
                        "n_calendar_dates": len(self.config.dates or [])})
        return out
