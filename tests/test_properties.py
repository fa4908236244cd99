"""Property-based tests (hypothesis): the window builder is causal and has the stated shapes,
the neural scalers see only the fit part of the training history, the metrics keep their
algebra, and the validators accept frames that satisfy the rules and name the one rule a
broken frame breaks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models import registry
from models.neural.windows import window_index
from seqcast.config import load_params
from seqcast.errors import DataValidationError
from tasks import metrics
from tasks.validate import validate_table

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)


# ---------------------------------------------------------------------------- windows
@FAST
@given(n=st.integers(20, 200), L=st.integers(1, 12), data=st.data())
def test_window_index_is_causal_with_shape(n, L, data):
    ends = np.array(sorted(data.draw(st.lists(st.integers(L - 1, n - 1), min_size=1, max_size=30))))
    idx = window_index(ends, L)
    assert idx.shape == (len(ends), L)
    assert (idx[:, -1] == ends).all() and (idx <= ends[:, None]).all()  # nothing after the origin
    assert (np.diff(idx, axis=1) == 1).all() and (idx[:, 0] == ends - L + 1).all() and idx.min() >= 0


def _neural(L: int, H: int):
    return registry.create("lstm", season=5, input_size=L, horizon=H, device="cpu", use_exog=False)


@FAST
@given(n=st.integers(40, 150), L=st.integers(2, 10), H=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_windows_shapes_targets_and_causality(n, L, H, seed):
    rng = np.random.default_rng(seed)
    model = _neural(L, H)
    feats = rng.normal(size=(n, 3)).astype(np.float32)
    y_raw = rng.normal(size=n)
    y_raw[rng.random(n) < 0.1] = np.nan
    ends = np.arange(L - 1, n - H)
    x, target, mask = model.inputs_.windows(feats, y_raw, ends)
    assert x.shape == (len(ends), L, 3) and target.shape == (len(ends), H) and mask.shape == (len(ends), H)
    i = len(ends) // 2
    e = ends[i]
    assert np.array_equal(x[i], feats[e - L + 1 : e + 1])  # the window ends at the origin
    assert np.allclose(target[i], feats[e + 1 : e + H + 1, 0] - feats[e, 0])  # changes from the origin
    assert np.array_equal(mask[i], ~np.isnan(y_raw[e + 1 : e + H + 1]))
    changed = feats.copy()
    changed[e + 1 :] += 100.0  # the future moves: the input window at e does not
    assert np.array_equal(model.inputs_.windows(changed, y_raw, ends)[0][i], x[i])


# ---------------------------------------------------------------------------- scalers
def _fitted_scalers(model, y):
    model.train_network = lambda *a, **k: None  # only the split and the scalers are under test
    model._fit_spread = lambda *a, **k: None
    model._fit(np.asarray(y, float), None)
    return model.target_


@FAST
@given(n=st.integers(60, 300), seed=st.integers(0, 10_000), shift=finite, scale=st.floats(0.01, 100))
def test_scalers_never_see_past_the_fit_part(n, seed, shift, scale):
    rng = np.random.default_rng(seed)
    y = rng.gamma(2.0, 10.0, n)
    model = _neural(8, 3)
    n_fit, _, _ = model._split(n)
    before = _fitted_scalers(model, y)
    after_split = y.copy()
    after_split[n_fit:] = after_split[n_fit:] * scale + shift  # validation slice and beyond changed
    after_split[n_fit + 1 :: 7] = np.nan
    assert _fitted_scalers(_neural(8, 3), after_split) == before
    inside = y.copy()
    inside[n_fit // 2] += 1e3  # a change inside the fit part does move the scaler
    assert _fitted_scalers(_neural(8, 3), inside).loc != before.loc


@FAST
@given(n=st.integers(60, 200), seed=st.integers(0, 10_000), t=st.integers(30, 59))
def test_features_are_causal(n, seed, t):
    rng = np.random.default_rng(seed)
    y = rng.gamma(2.0, 10.0, n)
    y[rng.random(n) < 0.1] = np.nan
    model = _neural(8, 3)
    _fitted_scalers(model, y)
    feats = model.inputs_.features(y, None)
    future = y.copy()
    future[t + 1 :] = rng.normal(size=n - t - 1) * 1e3
    assert np.array_equal(model.inputs_.features(future, None)[: t + 1], feats[: t + 1])


# ---------------------------------------------------------------------------- metrics
def pairs(min_size=3):
    return st.integers(min_size, 60).flatmap(lambda n: st.tuples(arrays(float, n, elements=finite),
                                                                  arrays(float, n, elements=finite),
                                                                  arrays(bool, n)))


@FAST
@given(pairs())
def test_mae_at_most_rmse_and_nans_ignored(p):
    actual, pred, hole = p
    assume((~hole).any())
    actual = np.where(hole, np.nan, actual)
    mae, rmse = metrics.mae(actual, pred), metrics.rmse(actual, pred)
    assert 0 <= mae <= rmse + 1e-9 * max(1.0, rmse)
    keep = ~hole
    assert mae == pytest.approx(metrics.mae(actual[keep], pred[keep]))  # missing actuals simply drop out
    assert rmse == pytest.approx(metrics.rmse(actual[keep], pred[keep]))


@FAST
@given(pairs(min_size=8), st.floats(0.01, 1000), st.integers(1, 5))
def test_mase_is_scale_free(p, c, season):
    actual, pred, _ = p
    train = np.cumsum(actual)  # any series with some movement
    scale = np.mean(np.abs(train[season:] - train[:-season])) if len(train) > season else 0
    assume(scale > 1e-6)
    mase = metrics.mae(actual, pred) / metrics.mase_scale(train, season)
    mase_c = metrics.mae(c * actual, c * pred) / metrics.mase_scale(c * train, season)
    assert mase_c == pytest.approx(mase, rel=1e-6, abs=1e-12)


@FAST
@given(pairs(), arrays(float, 60, elements=st.floats(0, 1e3)))
def test_coverage_is_a_share(p, width):
    actual, pred, hole = p
    assume((~hole).any())
    w = width[: len(actual)]
    cov = metrics.coverage(np.where(hole, np.nan, actual), pred - w, pred + w)
    assert 0.0 <= cov <= 1.0
    assert metrics.coverage(actual, actual - w, actual + w) == 1.0  # an interval around the truth covers it


@FAST
@given(st.integers(10, 200), st.integers(1, 5), st.integers(0, 10_000))
def test_diebold_mariano_is_antisymmetric(n, h, seed):
    rng = np.random.default_rng(seed)
    actual = rng.normal(size=n)
    a, b = actual + rng.normal(size=n), actual + rng.normal(scale=1.5, size=n)
    s_ab, p_ab = metrics.diebold_mariano(actual, a, b, h=h)
    s_ba, p_ba = metrics.diebold_mariano(actual, b, a, h=h)
    if np.isnan(s_ab):
        assert np.isnan(s_ba)
    else:
        assert s_ab == pytest.approx(-s_ba) and p_ab == pytest.approx(p_ba) and 0 <= p_ab <= 1


# ---------------------------------------------------------------------------- validators
RULES = {  # a way to break the PM2.5 suite -> (rule, column) the failure must name
    "above_range": ("expect_column_values_to_be_between", "y"),
    "negative": ("expect_column_values_to_be_between", "y"),
    "duplicate_hour": ("expect_compound_columns_to_be_unique", "unique_id/ds"),
    "missing_hour": ("expect_column_values_to_be_between", "steps"),
    "future": ("expect_column_values_to_be_between", "hours_ahead"),
    "too_many_missing": ("expect_column_values_to_not_be_null", "y"),
}


def pm25_frame(values: np.ndarray, start: pd.Timestamp) -> pd.DataFrame:
    ds = pd.date_range(start, periods=len(values), freq="h", tz="Asia/Shanghai")
    return pd.DataFrame({"unique_id": "s", "ds": ds, "y": values.astype(float)})


valid_values = st.integers(30, 120).flatmap(
    lambda n: arrays(float, n, elements=st.floats(0, 1999.9, allow_nan=False)))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=valid_values, start=st.datetimes(min_value=pd.Timestamp("2000-01-01").to_pydatetime(),
                                                max_value=pd.Timestamp("2020-01-01").to_pydatetime()),
       rule=st.sampled_from(sorted(RULES)), where=st.floats(0.1, 0.9))
def test_validator_accepts_valid_frames_and_names_the_broken_rule(values, start, rule, where):
    params = load_params()
    frame = pm25_frame(values, pd.Timestamp(start).floor("h"))
    report = validate_table(frame, "pm25", params.dataset("pm25"), ["generated"])
    assert report["s"]["success"] and report["s"]["warning_count"] == 0
    i = int(where * (len(frame) - 2)) + 1
    broken = frame.copy()
    if rule == "above_range":
        broken.loc[i, "y"] = 2000.0
    elif rule == "negative":
        broken.loc[i, "y"] = -1.0
    elif rule == "duplicate_hour":
        broken = pd.concat([broken.iloc[: i + 1], broken.iloc[i:]], ignore_index=True)
    elif rule == "missing_hour":
        broken = broken.drop(index=i).reset_index(drop=True)
    elif rule == "future":
        broken["ds"] = broken["ds"] + (pd.Timestamp.now(tz="Asia/Shanghai") - broken["ds"].iloc[0]) + pd.Timedelta(days=3)
    elif rule == "too_many_missing":
        broken.loc[broken.index % 5 == 0, "y"] = np.nan  # 20 % missing; allowed 10 %
    with pytest.raises(DataValidationError) as err:
        validate_table(broken, "pm25", params.dataset("pm25"), ["generated"])
    named = {(f.rule.split("(")[0], f.column) for f in err.value.failures}
    assert RULES[rule] in named, (rule, named)
