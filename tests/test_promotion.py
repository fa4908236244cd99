"""The promotion rule (a pure function, as a table) and the MLflow registry it drives:
champion alias, the previous champion as challenger, history, no promotion of a worse
model, and the champion loadable as models:/seqcast-market@champion."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from tasks.promotion import Candidate, candidate_from_metrics, decide


def cand(model, mase, cov_err=0.01, protocol="P2", series="^KS11", run=None):
    return Candidate(model, run or f"run-{model}", protocol, series, mase, cov_err)


CASES = [  # (candidates, champion, force, promote, best model, reason contains)
    ([cand("naive", 1.8), cand("arima", 1.7)], None, False, True, "arima", "no champion"),
    ([cand("arima", 1.7)], cand("naive", 1.8, run="old"), False, True, "arima", "ranks better"),
    ([cand("arima", 1.9)], cand("naive", 1.8, run="old"), False, False, "arima", "does not beat"),
    ([cand("arima", 1.8)], cand("naive", 1.8, run="old"), False, False, "arima", "does not beat"),  # equal: keep
    # MASE equal at 3 decimals: coverage decides, both between candidates and against the champion
    ([cand("a", 1.80001, 0.05), cand("b", 1.80004, 0.01)], None, False, True, "b", "no champion"),
    ([cand("b", 1.8, 0.01)], cand("naive", 1.8, 0.05, run="old"), False, True, "b", "ranks better"),
    ([cand("arima", 1.0, protocol="P1")], cand("naive", 1.8, run="old"), False, False, "arima", "not comparable"),
    ([cand("arima", 1.0, series="005930.KS")], cand("naive", 1.8, run="old"), False, False, "arima",
     "not comparable"),
    ([cand("arima", 2.5)], cand("naive", 1.8, run="old"), True, True, "arima", "forced"),
    ([cand("naive", 1.8, run="same")], cand("naive", 1.8, run="same"), False, False, "naive", "is the champion"),
    ([cand("nan", math.nan), cand("naive", 2.0)], None, False, True, "naive", "no champion"),
    ([cand("nan", math.nan)], None, False, False, None, "no candidate"),
]


@pytest.mark.parametrize("candidates, champion, force, promote, best, reason", CASES)
def test_promotion_rule(candidates, champion, force, promote, best, reason):
    d = decide(candidates, champion, force)
    assert d.promote is promote, d.reason
    assert (d.best.model if d.best else None) == best
    assert reason in d.reason


def test_score_is_the_protocol_mean_mase_and_coverage_error():
    c = candidate_from_metrics("m", "r", "P2", "^KS11",
                               {"P2a_mase": 1.0, "P2b_mase": 2.0, "P2a_cov95": 0.93, "P2b_cov95": 0.99})
    assert c.mase == pytest.approx(1.5) and c.coverage_error == pytest.approx(0.03)
    assert math.isnan(candidate_from_metrics("m", "r", "P1", "x", {"P2a_mase": 1.0}).mase)


def _backtest_run(model: str, mase: float, cov95: float = 0.95) -> str:
    """A run shaped like the backtest's: tags, protocol metrics, a logged naive forecaster."""
    from models import registry
    from models.pyfunc import log_forecaster
    from seqcast import tracking

    y = np.linspace(100.0, 110.0, 50)
    with tracking.model_run("market", model, "baseline", tags={"series": "^KS11", "protocol": "P2",
                                                                "data_version": "md5-test"}) as run:
        mlflow.log_params({"train_end": "2018-06-20 00:00:00+09:00"})
        mlflow.log_metrics({"P2a_mase": mase, "P2b_mase": mase, "P2a_cov95": cov95, "P2b_cov95": cov95})
        with tempfile.TemporaryDirectory() as tmp:
            log_forecaster(registry.create("naive", season=1).fit(y), Path(tmp) / "forecaster", (80, 95), 5)
        return run.info.run_id


def test_registry_champion_challenger_and_history(mlflow_store):
    from tasks.promotion import promote

    client = mlflow.MlflowClient()
    first = _backtest_run("naive", 1.8)
    _backtest_run("drift", 1.9)
    out = promote("market")
    assert out["promoted"] and out["best"]["run_id"] == first and out["version"] == 1
    assert client.get_model_version_by_alias("seqcast-market", "champion").run_id == first

    better = _backtest_run("arima", 1.5)  # the latest arima run is the new best
    out = promote("market")
    assert out["promoted"] and out["version"] == 2
    champ = client.get_model_version_by_alias("seqcast-market", "champion")
    old = client.get_model_version_by_alias("seqcast-market", "challenger")
    assert (champ.run_id, champ.tags["model"]) == (better, "arima")
    assert int(old.version) == 1
    assert old.tags["replaced_by"] == "2" and "demoted_at" in old.tags
    # the champion says why it won: its score, the runner-up's, the data version (not "no champion yet")
    assert champ.description.startswith("**arima** is the champion of market: score 1.500")
    assert "Runner-up: naive, score 1.800" in champ.description and "data version md5-test" in champ.description
    assert "ranks better: MASE 1.500 vs 1.800 (naive)" in champ.description
    assert client.get_registered_model("seqcast-market").description.startswith("Version 2 (alias `champion`)")
    assert old.description.startswith("**naive** is the champion") and "Runner-up: drift, score 1.900" in old.description
    history = json.loads(client.get_registered_model("seqcast-market").tags["champion_history"])
    assert [h["model"] for h in history] == ["naive", "arima"]

    _backtest_run("arima", 1.6)  # arima got worse this week: its latest run no longer beats the champion
    out = promote("market")
    assert not out["promoted"] and "does not beat" in out["reason"]
    assert client.get_model_version_by_alias("seqcast-market", "champion").run_id == better

    model = mlflow.pyfunc.load_model("models:/seqcast-market@champion")
    fc = model.predict(pd.DataFrame({"y": [111.0, 112.0]}), params={"h": 3})
    assert list(fc["mean"]) == [112.0, 112.0, 112.0]  # naive: the last new observation
    assert (fc["lo-95"] < fc["mean"]).all() and (fc["mean"] < fc["hi-95"]).all()
