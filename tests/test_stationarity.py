"""Known answers from the lecture: white noise and AR(1) are stationary, a random walk
and Brownian motion have a unit root in levels."""

import numpy as np
import pytest

from tasks.stationarity import analyse


def lecture_processes(seed: int = 2024, n: int = 1000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    e = rng.normal(size=n)
    ar = np.zeros(n)
    for t in range(1, n):  # the lecture's x_t = 0.5 x_{t-1} + e_t
        ar[t] = 0.5 * ar[t - 1] + e[t]
    brownian = np.cumsum(rng.normal(scale=np.sqrt(1 / 252), size=n))
    gbm = 100 * np.exp(np.cumsum((0.05 - 0.5 * 0.2**2) / 252 + 0.2 / np.sqrt(252) * rng.normal(size=n)))
    return {"white_noise": e, "random_walk": np.cumsum(e), "ar1": ar, "brownian": brownian, "gbm": gbm}


@pytest.mark.parametrize("name, verdict, d", [
    ("white_noise", "stationary", 0),
    ("ar1", "stationary", 0),
    ("random_walk", "difference-stationary", 1),
    ("brownian", "difference-stationary", 1),
    ("gbm", "difference-stationary", 1),
])
def test_lecture_processes(name, verdict, d):
    result = analyse(lecture_processes()[name], is_price=name == "gbm")
    assert (result["verdict"], result["d"]) == (verdict, d)
    level_adf = next(t for t in result["tests"] if t["test"] == "adf" and t["transform"] == "level"
                     and t["regression"] == "c")
    assert level_adf["rejects"] is (d == 0)  # unit root rejected exactly for the stationary ones


def test_log_returns_of_gbm_are_stationary():
    result = analyse(lecture_processes()["gbm"], is_price=True)
    adf = next(t for t in result["tests"] if t["test"] == "adf" and t["transform"] == "log_return")
    kpss = next(t for t in result["tests"] if t["test"] == "kpss" and t["transform"] == "log_return")
    assert adf["rejects"] and not kpss["rejects"]


def test_trend_stationary_series():
    rng = np.random.default_rng(7)
    t = np.arange(800)
    result = analyse(0.05 * t + rng.normal(size=800))
    assert result["verdict"] == "trend-stationary" and result["d"] == 0 and result["trend"] == "ct"


def test_too_short_series_is_an_error():
    with pytest.raises(ValueError, match="at least 20"):
        analyse(np.arange(10.0))
