"""Split-conformal residual quantiles (the networks, LightGBM, the combiner): known answers."""

import numpy as np
import pytest

from models.residual_quantiles import PROBS, ResidualQuantiles


def test_offsets_are_the_residual_quantiles_of_each_step():
    rng = np.random.default_rng(0)
    resid = np.column_stack([rng.normal(0, 1, 50_000), rng.normal(0, 3, 50_000)])  # step 2: three times wider
    q = ResidualQuantiles.fit(resid, 2)
    lo, hi = q.offsets(80, 2)
    np.testing.assert_allclose(hi, [1.2816, 3 * 1.2816], rtol=0.03)  # the normal's 90 % quantile
    np.testing.assert_allclose(lo, -hi, rtol=0.05)
    lo95, hi95 = q.offsets(95, 2)
    assert (lo95 < lo).all() and (hi < hi95).all()


def test_an_interval_always_contains_the_point():
    resid = np.full((100, 1), 2.0) + np.linspace(0, 1, 100)[:, None]  # the model always forecast too low
    lo, hi = ResidualQuantiles.fit(resid, 1).offsets(80, 1)
    assert lo[0] == 0.0 and hi[0] == pytest.approx(np.quantile(resid, 0.9), abs=0.01)


def test_steps_past_the_horizon_take_the_last_step_widened_by_the_block():
    q = ResidualQuantiles(np.tile(np.linspace(-1, 1, len(PROBS))[:, None], (1, 3)) * [1.0, 2.0, 3.0])
    lo, hi = q.offsets(80, 7)
    np.testing.assert_allclose(hi[3:], hi[2])  # held
    _, wide = q.offsets(80, 7, widen=True)
    np.testing.assert_allclose(wide, hi * np.sqrt(np.arange(7) // 3 + 1))  # blocks of 3 steps: 1, sqrt 2, sqrt 3


def test_missing_residuals_are_left_out_and_none_at_all_gives_a_zero_width():
    resid = np.array([[1.0, np.nan], [-1.0, np.nan], [np.nan, np.nan]])
    lo, hi = ResidualQuantiles.fit(resid, 2).offsets(80, 2)
    assert hi[0] == pytest.approx(0.8) and (lo[1], hi[1]) == (0.0, 0.0)  # step 2 has no residual: zero width
    lo, hi = ResidualQuantiles.fit(np.full((4, 2), np.nan), 2).offsets(95, 2)
    assert (lo == 0).all() and (hi == 0).all()
