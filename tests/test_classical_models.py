"""Known-answer tests of the classical models: each recovers what was simulated."""

import numpy as np
import pytest

from models.box_jenkins import AutoArima
from models.fourier import Fourier, dominant_periods
from models.geometric_brownian_motion import GeometricBrownianMotion, black_scholes, mc_option_price
from models.regime import Regime
from seqcast.model_config import AutoArimaParams, FourierParams, RegimeParams


def simulate_arma11(n: int, phi: float, theta: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.normal(size=n + 200)
    y = np.zeros(n + 200)
    for t in range(1, n + 200):
        y[t] = phi * y[t - 1] + e[t] + theta * e[t - 1]
    return 10.0 + y[200:]


def test_box_jenkins_recovers_arma11_coefficients():
    y = simulate_arma11(2000, phi=0.6, theta=0.3)
    model = AutoArima(AutoArimaParams(max_p=1, max_q=2, fit_window=None)).fit(y)  # a bounded search: 6 orders at most
    assert (model.config.p, model.config.q) == (1, 1), model.search_
    coef = dict(zip(model.param_names_, model.params_))
    assert coef["ar.L1"] == pytest.approx(0.6, abs=0.07)
    assert coef["ma.L1"] == pytest.approx(0.3, abs=0.07)
    assert coef["sigma2"] == pytest.approx(1.0, abs=0.08)
    extras = model.log_extras()
    assert extras["tags"]["residuals_white"] == "true"  # the right order leaves white residuals


def test_box_jenkins_flags_residuals_that_fail():
    y = simulate_arma11(800, phi=0.6, theta=0.3)
    t = np.arange(len(y))
    y = y + 5 * np.sin(2 * np.pi * t / 7)  # a cycle no ARMA(<=1, <=1) absorbs
    model = AutoArima(AutoArimaParams(max_p=1, max_q=1, fit_window=None), season=7).fit(y)
    assert model.log_extras()["tags"]["residuals_white"] == "false"


def test_periodogram_finds_the_periods_of_a_sum_of_sinusoids():
    t = np.arange(24 * 7 * 20)
    rng = np.random.default_rng(1)
    y = 3 * np.sin(2 * np.pi * t / 24) + 2 * np.cos(2 * np.pi * t / 168 + 0.4) + rng.normal(scale=0.5, size=len(t))
    found = dominant_periods(y, k=2, max_period=500)
    assert sorted(round(p) for p in found) == [24, 168]


def test_harmonic_regression_uses_the_found_periods():
    t = np.arange(1200)
    rng = np.random.default_rng(2)
    y = 50 + 8 * np.sin(2 * np.pi * t / 24) + rng.normal(size=len(t))
    model = Fourier(FourierParams(k=1, p=1, q=0, fit_window=None, filter_window=None), season=24).fit(y[:1000])
    assert model.config.periods[0] == pytest.approx(24, rel=0.02)
    fc = model.forecast_origins(y, np.arange(999, 1199), 1)
    assert np.sqrt(np.mean((fc.mean[:, 0] - y[1000:1200]) ** 2)) < 1.3  # noise sd is 1


def test_regime_model_separates_two_simulated_regimes():
    rng = np.random.default_rng(4)
    n, stay = 1500, 0.98
    states = np.zeros(n, dtype=int)
    for t in range(1, n):
        states[t] = states[t - 1] if rng.random() < stay else 1 - states[t - 1]
    sd = np.where(states == 0, 0.005, 0.03)
    r = rng.normal(0.0, sd)
    price = 100 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))
    model = Regime(RegimeParams(k_regimes=2)).fit(price)
    calm = int(np.argmin(model.sd_))
    assert model.sd_[calm] == pytest.approx(0.005, rel=0.15)
    assert model.sd_[1 - calm] == pytest.approx(0.03, rel=0.15)
    volatile_prob = model.smoothed_[:, 1 - calm]
    accuracy = np.mean((volatile_prob > 0.5) == (states == 1))  # one return per state
    assert accuracy > 0.9


def test_gbm_recovers_drift_and_volatility():
    rng = np.random.default_rng(5)
    m, sigma, n = 0.0004, 0.012, 20000
    price = 50 * np.exp(np.cumsum(np.concatenate([[0.0], rng.normal(m, sigma, n)])))
    model = GeometricBrownianMotion().fit(price)
    assert model.sigma_ == pytest.approx(sigma, rel=0.02)
    assert abs(model.m_ - m) < 3 * sigma / np.sqrt(n)
    assert model.mu_ == pytest.approx(model.m_ + model.sigma_**2 / 2)
    # Monte-Carlo quantiles agree with the log-normal closed form
    fc = model.predict(5, (95,))
    S = price[-1]
    exact_hi = S * np.exp(model.m_ * 5 + 1.959964 * model.sigma_ * np.sqrt(5))
    assert fc.upper[95][0, -1] == pytest.approx(exact_hi, rel=0.01)


def test_black_scholes_closed_form_parity_and_monte_carlo():
    S, K, T, r, sigma = 100.0, 100.0, 1.0, 0.05, 0.2
    call = black_scholes(S, K, T, r, sigma, "call")
    put = black_scholes(S, K, T, r, sigma, "put")
    assert call == pytest.approx(10.4506, abs=1e-4)  # the textbook value
    assert call - put == pytest.approx(S - K * np.exp(-r * T), abs=1e-10)  # put–call parity
    for K2 in (80.0, 120.0):
        mc, se = mc_option_price(S, K2, T, r, sigma, "call")
        assert abs(mc - black_scholes(S, K2, T, r, sigma, "call")) < 4 * se


def test_sarimax_filters_a_window_where_a_regressor_is_constant():
    """Found by the full pipeline: the calibration slice (autumn) has zero snow hours throughout; the
    filter pass with fitted parameters must not refuse a regressor that is constant in its window."""
    from models import registry

    rng = np.random.default_rng(0)
    n = 600
    snow = np.where(np.arange(n) < 400, rng.integers(0, 3, n), 0).astype(float)  # varies, then all zero
    X = np.column_stack([rng.normal(size=n), rng.normal(size=n), rng.normal(size=n), snow])
    y = 50 + np.cumsum(rng.normal(size=n)) * 0.1 + 2 * snow
    model = registry.create("sarimax_weather", season=24, p=1, q=0, P=0, Q=0, fit_window=400, filter_window=100,
                            maxiter=20, trend="c")
    model.fit(y[:400], X[:400])
    fc = model.forecast_origins(y, np.arange(500, 590), 3, (80, 95), X)
    assert fc.mean.shape == (90, 3) and np.isfinite(fc.mean).all()
    assert np.abs(fc.mean[:, 0] - y[500:590]).mean() < 5  # a forecast of the level, not garbage
