"""The Markdown tables of the reports and what the MLflow UI opens with: known answers."""

import json
import math

import mlflow

from seqcast import experiments, tracking
from tasks import tables

RESULTS = {
    "naive": {"P1a_mase": 0.171, "P1b_mase": 0.707, "P1a_cov80": 0.9, "P1a_cov95": 0.96, "P1b_cov80": 0.84,
              "P1b_cov95": 0.946},
    "arima": {"P1a_mase": 0.170, "P1b_mase": 0.683, "P1a_cov80": 0.91, "P1a_cov95": 0.97, "P1b_cov80": 0.844,
              "P1b_cov95": 0.957, "P1b_dm_pvalue": 0.00036},
    "broken": {"P1a_mase": math.nan},
}


def test_the_leaderboard_ranks_by_the_champion_score_and_says_why_a_model_has_none():
    text = tables.leaderboard(RESULTS, ["P1a", "P1b"], "naive", unscored={"prophet": {"kind": "skipped",
                                                                                      "reason": "hourly"}})
    lines = text.splitlines()
    assert lines[0] == ("| model | score | P1a MASE | P1b MASE | P1a cov80 / cov95 | P1b cov80 / cov95 | "
                        "P1b DM p vs naive |")
    assert lines[2] == "| `arima` | 0.427 | 0.170 | 0.683 | 0.91 / 0.97 | 0.84 / 0.96 | < 0.001 |"
    assert lines[3] == "| `naive` | 0.439 | 0.171 | 0.707 | 0.90 / 0.96 | 0.84 / 0.95 | – |"
    assert lines[4].startswith("| `broken` | – |") and lines[5].startswith("| `prophet` | skipped: hourly |")


def test_series_means_and_the_language_model_tables():
    summary = {"mean_over_series": {"naive": {"P1a_mase": 0.175, "P1b_mase": 0.708, "series": 10.0},
                                    "arima": {"P1a_mase": 0.172, "P1b_mase": 0.677, "series": 10.0},
                                    "lstm": {"P1a_mase": 0.170, "P1b_mase": 0.582, "series": 1.0}}}
    means = tables.series_means(summary, ["P1a", "P1b"]).splitlines()
    assert means[2:] == ["| `arima` | 10 | 0.172 | 0.677 |", "| `naive` | 10 | 0.175 | 0.708 |"]
    ladder = tables.ladder({"6-gram": {"val_loss": 1.5581, "perplexity": 4.7496, "train_s": 8.5863}})
    assert ladder.splitlines()[2] == "| `6-gram` | 1.5581 | 4.75 | 8.6 |"
    assert "| frozen decoder + linear head | 0.185 |" in tables.heads({"linear": 0.18475, "n_test": 1299,
                                                                        "speakers": ["A", "B"]})


def test_experiments_open_on_their_runs_with_a_description_and_the_leaderboard_view(mlflow_store):
    exp_id = tracking.ensure_experiment("seqcast-somedata")
    tags = mlflow.MlflowClient().get_experiment(exp_id).tags
    assert tags[experiments.KIND_TAG] == "custom_model_development"
    note = tags[experiments.NOTE_TAG]
    assert note.startswith("Backtests of somedata: one run per (series, model)")
    assert experiments.view_link(exp_id) in note and "`score`" in note
    data = mlflow.MlflowClient().get_experiment(tracking.ensure_experiment("seqcast-somedata-data")).tags
    assert data[experiments.NOTE_TAG].startswith("Data runs of somedata")
    assert experiments.NOTE_TAG not in mlflow.MlflowClient().get_experiment(tracking.ensure_experiment("other")).tags

    view = json.loads(experiments.leaderboard_view("us_embassy", ["P1a", "P1b"]))
    state = json.loads(view["state"])
    assert view["name"] == "Leaderboard" and state["orderByKey"] == "metrics.`score`" and state["orderByAsc"]
    assert state["searchFilter"] == "tags.series = 'us_embassy' and tags.family != 'report'"
    assert state["selectedColumns"] == ["metrics.`score`", "metrics.`P1a_mase`", "metrics.`P1b_mase`",
                                        "metrics.`P1a_cov95`", "metrics.`P1b_cov95`", "metrics.`P1b_dm_pvalue`"]
