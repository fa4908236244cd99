"""params.yaml is checked before any work: unknown keys anywhere, out-of-range values, names
that name no dataset, no series or no model, empty date windows, a frequency or a time zone
that does not exist. Each problem is one line naming the key."""

from pathlib import Path

import pytest
import yaml

from conftest import merge_params
from seqcast.config import ParamsError, load_params

ROOT = Path(__file__).resolve().parent.parent


def write_params(folder: Path, patch: dict) -> Path:
    """The project's params.yaml with ``patch`` laid over it, written to ``folder``."""
    params = merge_params(yaml.safe_load((ROOT / "params.yaml").read_text()), patch)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def mkt(**block) -> dict:
    """A patch of the market entry."""
    return {"datasets": {"market": block}}


def yahoo(**keys) -> dict:
    """A patch of the market entry's Yahoo source (the whole source list: lists are replaced)."""
    source = yaml.safe_load((ROOT / "params.yaml").read_text())["datasets"]["market"]["sources"][0]
    return mkt(sources=[{**source, **keys}])


# (patch, the line expected in the message)
BAD = {
    "unknown key deep inside": ({"models": {"lstm": {"by_dataset": {"pm25": {"input_sise": 72}}}}},
                                "params.yaml: models.lstm.by_dataset.pm25.input_sise: unknown key (known: input_size,"),
    "unknown key in a model": ({"models": {"lstm": {"hiden": 64}}}, "models.lstm.hiden: unknown key"),
    "unknown model section": ({"models": {"lstmm": {"hidden": 64}}}, "models.lstmm: unknown key"),
    "unknown model to run": (mkt(models={"run": ["naive", "lstmm"]}),
                             "datasets.market.models.run: unknown model 'lstmm'; known: naive,"),
    "unknown model on every series": (mkt(models={"every_series": ["naive", "arimaa"]}),
                                      "datasets.market.models.every_series: unknown model 'arimaa'"),
    "unknown default model": ({"backtest": {"default_models": ["naive", "arimaa"]}},
                              "backtest.default_models: unknown model 'arimaa'"),
    "negative learning rate": ({"models": {"lstm": {"lr": -0.001}}}, "models.lstm.lr: must be > 0 (got -0.001)"),
    "no epochs": ({"models": {"rnn": {"epochs": 0}}}, "models.rnn.epochs: must be > 0 (got 0)"),
    "a horizon of 0": ({"datasets": {"pm25": {"protocol": {"tasks": [{"name": "P1a", "horizon": 0}]}}}},
                       "datasets.pm25.protocol.tasks.0.horizon: must be > 0 (got 0)"),
    "a season of 0": (mkt(protocol={"season": 0}), "datasets.market.protocol.season: must be > 0 (got 0)"),
    "a fraction of 1": (mkt(protocol={"split": {"train_fraction": 1.0}}),
                        "datasets.market.protocol.split.train_fraction: must be < 1"),
    "two split rules": (mkt(protocol={"split": {"train_fraction": 0.8, "train_end": "2018-01-01"}}),
                        "datasets.market.protocol.split.split: give either train_end"),
    "a level of 100": ({"backtest": {"levels": [80, 100]}}, "backtest.levels.1: must be < 100 (got 100)"),
    "empty market window": (yahoo(start="2019-01-15", end="2016-03-08"),
                            "datasets.market.sources.0.start: must come before end (got '2019-01-15' >= '2016-03-08')"),
    "a start that is no date": (yahoo(start="the beginning"), "datasets.market.sources.0.start: not a date"),
    "an unknown connector": (yahoo(connector="yahooo"),
                             "datasets.market.sources.0: input tag 'yahooo' found using 'connector' does not match"),
    "an unknown exchange zone": (yahoo(timezones={"^KS11": "Asia/Seul"}),
                                 "datasets.market.sources.0.timezones.^KS11: unknown time zone 'Asia/Seul'"),
    "inverted split": ({"datasets": {"pm25": {"protocol": {"series_splits": {"us_embassy": {
        "test_end": "2013-06-30 23:00"}}}}}},
                       "datasets.pm25.protocol.series_splits.us_embassy.train_end: must come before test_end"),
    "not a frequency": (mkt(data={"frequency": "fortnightly"}),
                        "datasets.market.data.frequency: not a pandas frequency"),
    "not a time zone": ({"datasets": {"pm25": {"data": {"timezone": "Asia/Beijing"}}}},
                        "datasets.pm25.data.timezone: unknown time zone"),
    "drop rows of a regular series": ({"datasets": {"pm25": {"cleaning": {"drop_missing": True}}}},
                                      "datasets.pm25.cleaning.drop_missing: drops rows"),
    "midnight origins of daily data": (mkt(protocol={"tasks": [{"name": "P2a", "horizon": 1, "origins": "midnight"}]}),
                                       "datasets.market.protocol.tasks: ['P2a']: midnight origins need steps shorter"),
    "a dataset name that is no file name": ({"datasets": {"my data": {}}}, "datasets.my data.[key]: string should "
                                                                            "match pattern"),
    "a choice that is not offered": ({"models": {"deepar": {"likelihood": "cauchy"}}},
                                     "models.deepar.likelihood: must be 'gaussian' or 'student_t' (got 'cauchy')"),
    "a union": ({"models": {"lstm": {"phase_features": "maybe"}}},
                "models.lstm.phase_features: must be 'auto' or a valid boolean"),
    "rules across keys, laid over": ({"models": {"transformer": {"d_model": 30, "heads": 3,
                                                                 "by_dataset": {"pm25": {"heads": 4}}}}},
                                     "models.transformer.by_dataset.pm25: heads: must divide d_model=30 (got 4)"),
    "an override of no dataset": ({"models": {"lstm": {"by_dataset": {"pm2.5": {"input_size": 48}}}}},
                                  "models.lstm.by_dataset: names no dataset: ['pm2.5']"),
    "unknown rule in a per-series override": (mkt(validation={"overrides": {"^JKSE": {"max_missing_rn": 7}}}),
                                              "datasets.market.validation.overrides.^JKSE.max_missing_rn: unknown key"),
    "an override of no series": (mkt(validation={"overrides": {"^NOPE": {"max_missing_run": 3}}}),
                                 "datasets.market.validation.overrides: names series the dataset does not have: "
                                 "['^NOPE']"),
    "a block left out": ({"datasets": {"pm25": {"validation": None}}}, "datasets.pm25.validation:"),
    "unknown top-level section": ({"modles": {}}, "params.yaml: modles: unknown key"),
}


def test_the_projects_params_load():
    params = load_params(ROOT / "params.yaml")
    assert params.dataset("market").protocol.season == 5 and params.models_run("market")[0] == "naive"
    assert [t.name for t in params.dataset("pm25").task_specs()] == ["P1a", "P1b"]


@pytest.mark.parametrize("case", BAD)
def test_bad_params_are_refused_naming_the_key(case, tmp_path):
    patch, expected = BAD[case]
    with pytest.raises(ParamsError) as err:
        load_params(write_params(tmp_path, patch))
    assert expected in str(err.value), str(err.value)
    assert all(line.startswith("params.yaml: ") for line in str(err.value).splitlines())


def test_one_line_per_problem(tmp_path):
    path = write_params(tmp_path, {"models": {"lstm": {"lr": -1.0}}, **mkt(protocol={"season": 0}),
                                   "backtest": {"levels": [0]}})
    with pytest.raises(ParamsError) as err:
        load_params(path)
    lines = str(err.value).splitlines()
    assert len(lines) == 3 and len(err.value.problems) == 3
    assert {line.split(":")[1].strip() for line in lines} == {"models.lstm.lr", "datasets.market.protocol.season",
                                                              "backtest.levels.0"}


def test_any_station_of_the_source_is_accepted_by_the_schema(tmp_path):
    """Which stations the UCI archive holds is learnt from the archive at ingest, not listed in code:
    a real station that the mirror lacks (Tiantan) loads here; ingest checks it against the source."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["datasets"]["pm25"]["sources"][1]["series"] = ["Dongsi", "Tiantan", "Huairou", "Nongzhanguan"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    assert load_params(path).dataset("pm25").series == ["us_embassy", "Dongsi", "Tiantan", "Huairou", "Nongzhanguan"]


def test_yaml_that_does_not_parse(tmp_path):
    (tmp_path / "params.yaml").write_text("models: [unclosed\n")
    with pytest.raises(ParamsError, match="params.yaml: not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_a_good_override_still_loads(tmp_path):
    params = load_params(write_params(tmp_path, {"models": {"transformer": {"by_dataset": {"pm25": {"heads": 8}}}}}))
    assert params.models.params_for("transformer", "pm25").heads == 8
    assert params.models.params_for("transformer", "market").heads == 4


def test_dvc_exp_run_set_param_leaves_params_yaml_readable(tmp_path):
    """`dvc exp run -S KEY=VALUE` (the README's sweeps) rewrites params.yaml through DVC's own
    override code, dropping quotes: the file must stay valid YAML with only the swept values
    changed (a date-time like "23:00" inside a {...} mapping became unreadable)."""
    from dvc.utils.hydra import apply_overrides
    from dvc.utils.serialize import load_yaml  # DVC's reader (ruamel, YAML 1.2): stricter than PyYAML

    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    expected = yaml.safe_load(path.read_text())
    apply_overrides(str(path), ["datasets.pm25.models.every_series=[naive,seasonal_naive,arima,lightgbm]",
                                "models.arima.p=1"])
    expected["datasets"]["pm25"]["models"]["every_series"] = ["naive", "seasonal_naive", "arima", "lightgbm"]
    expected["models"]["arima"]["p"] = 1
    assert load_yaml(str(path)) == expected
    assert load_params(path).dataset("pm25").models.every_series[-1] == "lightgbm"
