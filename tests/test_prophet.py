"""Prophet's two variants: the residual-AR update and Prophet's own forecast with its
sampled intervals, refitted on the history up to the origin; the change points they log."""

import numpy as np
import pandas as pd
import pytest

from models.registry import create

N = 400
DATES = [d.isoformat() for d in pd.date_range("2020-01-01", periods=N + 40, freq="D")]
PLAIN = {"dates": DATES, "freq": "D", "country_holidays": None, "weekly_seasonality": False,
         "yearly_seasonality": False}


def kinked(seed=0, sd=1.0):
    """Slope 0.1 per day for 250 days, then 0.6 per day (a change of +0.5/day at day 250)."""
    t = np.arange(N + 40, dtype=float)
    trend = 100 + 0.1 * t + 0.5 * np.clip(t - 250, 0, None)
    return trend + np.random.default_rng(seed).normal(scale=sd, size=len(t))


def test_changepoints_find_the_kink_and_its_rate_change():
    model = create("prophet", **PLAIN).fit(kinked()[:N])
    cps = model.changepoints()
    assert len(cps) == 25 and set(cps.columns) == {"date", "delta", "rate_change_per_day", "significant"}
    big = cps[cps.significant]
    near = abs(pd.to_datetime(cps.date) - pd.Timestamp(DATES[250])) <= pd.Timedelta(days=30)
    assert near[cps.delta.abs().nlargest(2).index].all()  # the two largest changes sit at the kink
    assert cps.rate_change_per_day[near].sum() == pytest.approx(0.5, abs=0.05)  # the slope change, in y per day
    assert cps.rate_change_per_day[~near].abs().sum() < 0.05
    extras = model.log_extras()
    assert extras["metrics"]["n_changepoints_significant"] == len(big)
    assert extras["dicts"]["changepoints.json"]["changepoints"][0].keys() == {"date", "delta", "rate_change_per_day",
                                                                              "significant"}
    fig = model.figures()["prophet_changepoints.png"]
    assert len(fig.axes[0].lines) == 3 + len(big)  # series, fit, trend, one dashed line per change point


def test_native_intervals_are_prophets_own_samples():
    """On a straight line plus N(0, 2^2) noise, one day ahead, Prophet's sampled 95 % interval is
    the noise's: half-width ~ 1.96 * 2 (the trend's own uncertainty is small one day out)."""
    y = kinked(seed=1, sd=2.0)[:240]  # before the kink: one straight line
    model = create("prophet_native", **PLAIN, uncertainty_samples=2000).fit(y)
    fc = model.predict(1, (80, 95))
    half95 = (fc.upper[95] - fc.lower[95])[0, 0] / 2
    half80 = (fc.upper[80] - fc.lower[80])[0, 0] / 2
    assert half95 == pytest.approx(1.96 * 2.0, rel=0.15)
    assert half80 == pytest.approx(1.2816 * 2.0, rel=0.15)
    assert fc.mean[0, 0] == pytest.approx(100 + 0.1 * 240, abs=1.0)
    again = create("prophet_native", **PLAIN, uncertainty_samples=2000).fit(y).predict(1, (80, 95))
    np.testing.assert_allclose(again.lower[95], fc.lower[95])  # seeded


def test_native_refits_on_the_history_up_to_its_block_start():
    """Origins 399..438 with refit_every 20: the training fit serves 399..418, a refit on y[:419]
    serves 419..438. Prophet's own forecast does not move with the news between refits; the
    refit does."""
    y = kinked()
    model = create("prophet_native", **PLAIN, refit_every=20, uncertainty_samples=200).fit(y[:N])
    origins = np.arange(N - 1, N + 39)
    fc = model.forecast_origins(y, origins, 1)
    assert len(model.refits_) == 1 and next(iter(model.refits_))[0] == N - 1 + 20
    shocked = y.copy()
    shocked[N + 5:] += 50.0  # from inside the first block on
    fc2 = model.forecast_origins(shocked, origins, 1)
    np.testing.assert_allclose(fc2.mean[:20], fc.mean[:20])  # the training fit's forecasts: no update
    assert np.all(fc2.mean[20:] > fc.mean[20:] + 5)  # the refit on y[:419] saw the shock
    assert np.all(fc.lower[95] < fc.mean) and np.all(fc.mean < fc.upper[95])
    assert np.all(fc.lower[95] <= fc.lower[80]) and np.all(fc.upper[80] <= fc.upper[95])


def test_both_variants_are_registered_with_their_own_schemas():
    with pytest.raises(Exception, match="refit_every"):
        create("prophet", **PLAIN, refit_every=5)
    native = create("prophet_native", **PLAIN)
    assert native.config.refit_every == 20 and native.update_method.startswith("refit every")
