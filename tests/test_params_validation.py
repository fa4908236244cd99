"""params.yaml is checked before any work: unknown keys anywhere, out-of-range values,
unknown tickers and stations, empty date windows. Each problem is one line naming the key."""

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


# (patch, the line expected in the message)
BAD = {
    "unknown key deep inside": ({"models": {"lstm": {"by_dataset": {"pm25": {"input_sise": 72}}}}},
                                "params.yaml: models.lstm.by_dataset.pm25.input_sise: unknown key (known: input_size,"),
    "unknown key in a model": ({"models": {"lstm": {"hiden": 64}}}, "models.lstm.hiden: unknown key"),
    "unknown model section": ({"models": {"lstmm": {"hidden": 64}}}, "models.lstmm: unknown key"),
    "unknown model to run": ({"models": {"run": {"market": ["naive", "lstmm"]}}},
                             "models.run.market: unknown model 'lstmm'; known: naive,"),
    "unknown model on every series": ({"backtest": {"every_series": {"market": ["naive", "arimaa"]}}},
                                      "backtest.every_series.market: unknown model 'arimaa'"),
    "negative learning rate": ({"models": {"lstm": {"lr": -0.001}}}, "models.lstm.lr: must be > 0 (got -0.001)"),
    "no epochs": ({"models": {"rnn": {"epochs": 0}}}, "models.rnn.epochs: must be > 0 (got 0)"),
    "P1 horizon 0": ({"backtest": {"p1": {"horizon": 0}}}, "backtest.p1.horizon: must be >= 1 (got 0)"),
    "P2 horizon 0": ({"backtest": {"p2": {"horizon": 0}}}, "backtest.p2.horizon: must be >= 1 (got 0)"),
    "P2 season 0": ({"backtest": {"p2": {"season": 0}}}, "backtest.p2.season: must be >= 1 (got 0)"),
    "a fraction of 1": ({"backtest": {"p2": {"train_fraction": 1.0}}}, "backtest.p2.train_fraction: must be < 1"),
    "a level of 100": ({"backtest": {"levels": [80, 100]}}, "backtest.levels.1: must be < 100 (got 100)"),
    "unknown ticker": ({"market": {"tickers": ["^KS11", "^NOPE"]}},
                       "market.tickers: unknown ticker '^NOPE': a ticker must be listed in market.timezones"),
    "unknown station": ({"pm25": {"stations": ["Dongsi", "Tiantann"]}},
                        "pm25.stations: unknown station 'Tiantann'; known: us_embassy, Aotizhongxin,"),
    "empty market window": ({"market": {"start": "2019-01-15", "end": "2016-03-08"}},
                            "market.start: must come before end (got '2019-01-15' >= '2016-03-08')"),
    "a start that is no date": ({"market": {"start": "the beginning"}}, "market.start: not a date"),
    "inverted split": ({"backtest": {"p1": {"splits": {"us_embassy": {"test_end": "2013-06-30 23:00"}}}}},
                       "backtest.p1.splits.us_embassy.train_end: must come before test_end"),
    "unknown split": ({"backtest": {"p1": {"splits": {"us_embasy": {"train_end": "2013-12-31 23:00",
                                                                     "test_end": "2014-12-31 23:00"}}}}},
                      "backtest.p1.splits.us_embasy"),
    "a choice that is not offered": ({"models": {"deepar": {"likelihood": "cauchy"}}},
                                     "models.deepar.likelihood: must be 'gaussian' or 'student_t' (got 'cauchy')"),
    "a union": ({"models": {"lstm": {"phase_features": "maybe"}}},
                "models.lstm.phase_features: must be 'auto' or a valid boolean"),
    "rules across keys, laid over": ({"models": {"transformer": {"d_model": 30, "heads": 3,
                                                                 "by_dataset": {"pm25": {"heads": 4}}}}},
                                     "models.transformer.by_dataset.pm25: heads: must divide d_model=30 (got 4)"),
    "unknown rule in a per-series override": ({"validation": {"market": {"overrides": {"^JKSE": {"max_missing_rn": 7}}}}},
                                              "validation.market.overrides.^JKSE.max_missing_rn: unknown key"),
    "unknown top-level section": ({"modles": {}}, "params.yaml: modles: unknown key"),
}


def test_the_projects_params_load():
    params = load_params(ROOT / "params.yaml")
    assert params.backtest.p2.season == 5 and params.models.run["market"][0] == "naive"


@pytest.mark.parametrize("case", BAD)
def test_bad_params_are_refused_naming_the_key(case, tmp_path):
    patch, expected = BAD[case]
    with pytest.raises(ParamsError) as err:
        load_params(write_params(tmp_path, patch))
    assert expected in str(err.value), str(err.value)
    assert all(line.startswith("params.yaml: ") for line in str(err.value).splitlines())


def test_one_line_per_problem(tmp_path):
    path = write_params(tmp_path, {"models": {"lstm": {"lr": -1.0}}, "backtest": {"p2": {"horizon": 0}},
                                   "pm25": {"stations": ["Nowhere"]}})
    with pytest.raises(ParamsError) as err:
        load_params(path)
    lines = str(err.value).splitlines()
    assert len(lines) == 3 and len(err.value.problems) == 3
    assert {line.split(":")[1].strip() for line in lines} == {"models.lstm.lr", "backtest.p2.horizon", "pm25.stations"}


def test_yaml_that_does_not_parse(tmp_path):
    (tmp_path / "params.yaml").write_text("models: [unclosed\n")
    with pytest.raises(ParamsError, match="params.yaml: not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_a_good_override_still_loads(tmp_path):
    params = load_params(write_params(tmp_path, {"models": {"transformer": {"by_dataset": {"pm25": {"heads": 8}}}},
                                                 "pm25": {"stations": ["us_embassy", "Dongsi"]}}))
    assert params.models.params_for("transformer", "pm25").heads == 8
    assert params.models.params_for("transformer", "market").heads == 4


def test_a_validation_override_for_an_unknown_ticker_is_refused(tmp_path):
    import yaml

    from seqcast.config import load_params
    from seqcast.errors import ParamsError

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["validation"]["market"]["overrides"]["^NOPE"] = {"max_missing_run": 3}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"validation.market.overrides: unknown tickers \['\^NOPE'\]"):
        load_params(path)


def test_dvc_exp_run_set_param_leaves_params_yaml_readable(tmp_path):
    """`dvc exp run -S KEY=VALUE` (the README's sweeps) rewrites params.yaml through DVC's own
    override code, dropping quotes: the file must stay valid YAML with only the swept values
    changed (a date-time like "23:00" inside a {...} mapping became unreadable)."""
    from dvc.utils.hydra import apply_overrides
    from dvc.utils.serialize import load_yaml  # DVC's reader (ruamel, YAML 1.2): stricter than PyYAML

    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    expected = yaml.safe_load(path.read_text())
    apply_overrides(str(path), ["backtest.every_series.pm25=[naive,seasonal_naive,arima,lightgbm]", "models.arima.p=1"])
    expected["backtest"]["every_series"]["pm25"] = ["naive", "seasonal_naive", "arima", "lightgbm"]
    expected["models"]["arima"]["p"] = 1
    assert load_yaml(str(path)) == expected
    assert load_params(path).backtest.every_series["pm25"][-1] == "lightgbm"
