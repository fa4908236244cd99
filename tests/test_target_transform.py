"""The one target transform: known answers, the "auto" rule, exact inverses, and no leak from
the test part into what is fitted on the training part."""

import numpy as np
import pytest
from scipy import stats

from models import target_transform as tt
from models.target_transform import TargetTransform


def test_skewness_is_the_moment_coefficient():
    x = np.array([1.0, 2.0, 3.0, 10.0, np.nan])
    assert tt.skewness(x) == pytest.approx(stats.skew(x[:4], bias=True), rel=1e-9)
    assert tt.skewness(np.full(5, 3.0)) == 0.0  # a constant series: no skew, no division by zero


@pytest.mark.parametrize("y, expected", [
    (np.random.default_rng(0).gamma(1.0, 20.0, 2000), "log1p"),  # exponential: skewness 2
    (np.random.default_rng(0).normal(50, 5, 2000), "none"),  # symmetric
    (np.random.default_rng(0).gamma(1.0, 20.0, 2000) - 1.0, "none"),  # skewed but negative values
    (np.array([np.nan, np.nan]), "none"),  # nothing observed
])
def test_auto_takes_log1p_for_non_negative_skewed_training_data(y, expected):
    assert tt.resolve("auto", y) == expected
    if np.isfinite(y).any():
        assert TargetTransform.fit(y, "auto").kind == expected


def test_explicit_kinds_are_kept_and_unknown_ones_refused():
    y = np.random.default_rng(1).normal(size=50)
    assert tt.resolve("log1p", y) == "log1p" and tt.resolve("none", np.abs(y) ** 5) == "none"
    with pytest.raises(ValueError, match="unknown target transform 'sqrt'"):
        tt.resolve("sqrt", y)
    with pytest.raises(ValueError, match="resolved kind"):
        TargetTransform("auto")
    with pytest.raises(ValueError, match="unknown scaling"):
        TargetTransform.fit(y, "none", "minmax")


def test_pointwise_transforms_have_known_values():
    y = np.array([-2.0, 0.0, np.e - 1, 99.0, np.nan])
    np.testing.assert_allclose(tt.apply(y, "log1p"), [0.0, 0.0, 1.0, np.log(100.0), np.nan])
    np.testing.assert_allclose(tt.apply(np.array([1.0, np.e, 0.0]), "log"), [0.0, 1.0, np.log(1e-12)])
    np.testing.assert_array_equal(tt.apply(y, "none"), y)


def test_standard_scaling_known_answer():
    y = np.array([0.0, 1.0, 3.0, 7.0, np.nan])  # log1p: 0, log 2, log 4, log 8 = k log 2
    t = TargetTransform.fit(y, "log1p", "standard")
    logs = np.log(2.0) * np.arange(4)
    assert (t.kind, t.loc, t.scale) == ("log1p", pytest.approx(logs.mean()), pytest.approx(logs.std()))
    np.testing.assert_allclose(t.forward(y)[:4], (logs - logs.mean()) / logs.std())
    assert np.isnan(t.forward(y)[4])


def test_step_scaling_divides_by_the_sd_of_one_step_changes():
    y = np.array([100.0, 110.0, 99.0, 108.9])  # log: steps +log 1.1, -log(10/9), +log 1.1
    t = TargetTransform.fit(y, "log", "step")
    steps = np.diff(np.log(y))
    assert (t.kind, t.loc) == ("log", 0.0) and t.scale == pytest.approx(steps.std())
    np.testing.assert_allclose(np.diff(t.forward(y)), steps / steps.std())


def test_a_constant_series_scales_by_one():
    t = TargetTransform.fit(np.full(10, 4.0), "none", "standard")
    assert (t.loc, t.scale) == (4.0, 1.0)
    assert TargetTransform.fit(np.full(10, 4.0), "none", "step").scale == 1.0


@pytest.mark.parametrize("kind", ["none", "log1p", "log"])
@pytest.mark.parametrize("scaling", ["standard", "step", "none"])
def test_inverse_undoes_forward_for_points_intervals_and_samples(kind, scaling):
    rng = np.random.default_rng(2)
    y_train = rng.gamma(2.0, 10.0, 300) + 0.5
    t = TargetTransform.fit(y_train, kind, scaling)
    samples = rng.gamma(2.0, 10.0, (4, 50, 6)) + 0.5  # (origins, paths, steps)
    np.testing.assert_allclose(t.inverse(t.forward(samples)), samples, rtol=1e-12)
    mean = t.forward(samples).mean(axis=1)  # a point and a band in z
    fc = t.inverse_forecast(mean, {80: mean - 0.3}, {80: mean + 0.3})
    np.testing.assert_allclose(fc.mean, t.inverse(mean))
    assert (fc.lower[80] < fc.mean).all() and (fc.mean < fc.upper[80]).all()  # monotone: order kept


def test_the_median_maps_to_the_median():
    """A transformed-space quantile is the original-space quantile (the transform is monotone):
    the inverse of the mean of log1p-normal draws is their median, not their mean."""
    rng = np.random.default_rng(3)
    y = np.expm1(rng.normal(3.0, 0.8, 200_000))
    t = TargetTransform.fit(y, "log1p", "standard")
    z = t.forward(y)
    assert t.inverse(np.mean(z)) == pytest.approx(np.median(y), rel=0.01)
    assert t.inverse(np.quantile(z, 0.9)) == pytest.approx(np.quantile(y, 0.9), rel=1e-9)
    assert np.mean(y) > 1.3 * t.inverse(np.mean(z))


@pytest.mark.parametrize("kind", ["auto", "log1p", "log", "none"])
@pytest.mark.parametrize("scaling", ["standard", "step", "none"])
def test_fitted_on_the_training_part_whatever_the_test_part_holds(kind, scaling):
    rng = np.random.default_rng(4)
    y = rng.gamma(1.5, 20.0, 500)
    n_train = 400
    shocked = y.copy()
    shocked[n_train:] = rng.normal(-1e4, 1e3, 100)  # the test part: negative, huge, symmetric
    a = TargetTransform.fit(y[:n_train], kind, scaling)
    b = TargetTransform.fit(shocked[:n_train], kind, scaling)
    assert a == b  # the same kind (the auto rule reads the training part only), loc and scale
    # and each value's transform reads that value only: the training part's do not move
    np.testing.assert_array_equal(a.forward(y)[:n_train], b.forward(shocked)[:n_train])


def test_round_trip_through_a_dict():
    t = TargetTransform.fit(np.random.default_rng(5).gamma(1.0, 5.0, 100), "auto", "step")
    assert TargetTransform.from_dict(t.to_dict()) == t


# -- the models that transform their target ----------------------------------------------------
FITTED_TRANSFORM = {  # model -> its fitted target transform; tiny configurations
    "lstm": ({"epochs": 1, "hidden": 4, "input_size": 24, "horizon": 6, "progress": False}, lambda m: m.target_),
    "deepar": ({"epochs": 1, "hidden": 4, "input_size": 24, "horizon": 6, "num_samples": 8, "progress": False},
               lambda m: m.target_),
    "lightgbm": ({"n_estimators": 5, "lags": [1, 2, 24], "windows": [6], "min_data_in_leaf": 10, "horizon": 6},
                 lambda m: m.scaler_.target),
}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", sorted(FITTED_TRANSFORM))
def test_models_fit_their_transform_before_their_validation_slice(name):
    """A model fits the transform on its fit part; its validation slice (the end of the training
    part) and, so, anything after it never move it."""
    from models import registry

    config, transform_of = FITTED_TRANSFORM[name]
    rng = np.random.default_rng(6)
    y = 10 + rng.gamma(1.0, 15.0, 480)  # skewed and positive: auto picks log1p
    n_fit = len(y) - max(int(len(y) * 0.1), 7)  # val_fraction 0.1 of every one of them
    shocked = y.copy()
    shocked[n_fit:] = rng.normal(500.0, 100.0, len(y) - n_fit)
    a = transform_of(registry.create(name, season=24, **config).fit(y))
    b = transform_of(registry.create(name, season=24, **config).fit(shocked))
    assert a == b and a.kind == "log1p"
    changed = y.copy()
    changed[n_fit // 2] += 500.0  # inside the fit part it does move
    assert transform_of(registry.create(name, season=24, **config).fit(changed)) != a


@pytest.mark.usefixtures("one_thread")
def test_models_saved_with_the_former_scaler_layout_still_load(tmp_path):
    import json

    from models import registry

    rng = np.random.default_rng(7)
    y = 10 + rng.gamma(1.0, 15.0, 400)
    lstm = registry.create("lstm", season=24, **FITTED_TRANSFORM["lstm"][0]).fit(y)
    lstm.save(tmp_path / "lstm")
    state = json.loads((tmp_path / "lstm" / "neural.json").read_text())
    inputs = state.pop("inputs")
    t = inputs["target"]
    state.update(mu=t["loc"], sd=t["scale"], log=t["kind"] == "log1p", x_mu=inputs["x_mu"], x_sd=inputs["x_sd"],
                 n_exog=0)
    (tmp_path / "lstm" / "neural.json").write_text(json.dumps(state))
    np.testing.assert_array_equal(registry.load(tmp_path / "lstm").predict(6).mean, lstm.predict(6).mean)
    lgb = registry.create("lightgbm", season=24, **FITTED_TRANSFORM["lightgbm"][0]).fit(y)
    lgb.save(tmp_path / "lgb")
    state = json.loads((tmp_path / "lgb" / "lightgbm.json").read_text())
    s = state["scaler"]
    state["scaler"] = [s["target"]["kind"], s["level"]["loc"], s["level"]["scale"], s["target"]["scale"]]
    (tmp_path / "lgb" / "lightgbm.json").write_text(json.dumps(state))
    np.testing.assert_array_equal(registry.load(tmp_path / "lgb").predict(6).mean, lgb.predict(6).mean)
