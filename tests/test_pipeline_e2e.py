"""End to end, for real: a fresh git copy of the project, `seqcast run` (the README's command:
`dvc repro` with one temporary Prefect API for the run) on the real data (mirror), real GX,
real MLflow store, real Prefect flows; a second `dvc repro` does nothing. Then the Prefect
front door, and a failing validation that stops the pipeline before any model is trained."""

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from conftest import child_env, copy_project

pytestmark = pytest.mark.slow

BASELINES = {"market": {"naive", "drift", "arima"}, "pm25": {"naive", "arima"}}
# the forecasting stages down to the champion's forecast (the GPT stages have tests of their own)
TARGETS = ["forecast@market", "forecast@pm25", "charts@market"]  # + the static charts of `dvc plots show`
TICKERS = ["^KS11", "^N100"]  # a second index: the multi-series leaderboard runs on both


def dvc(args, cwd, env):
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def repro(tmp_path_factory, mirror):
    ws = copy_project(tmp_path_factory.mktemp("e2e") / "project", {
        "_series": {"market": TICKERS},
        "datasets": {d: {"models": {"run": sorted(v), "every_series": ["naive"] if d == "market" else []}}
                     for d, v in BASELINES.items()},
        "models": {"arima": {"fit_window": 2000}},
        "stationarity": {"max_points": 4000},
        "backtest": {"workers": 2},
    })
    env = child_env(ws, mirror)
    first = subprocess.run([str(Path(sys.executable).parent / "seqcast"), "run", "--targets", *TARGETS], cwd=ws,
                           env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Starting temporary server" not in first.stdout + first.stderr  # no stage started its own API
    return ws, env, first


def test_second_repro_does_nothing(repro):
    ws, env, _ = repro
    second = dvc(["repro", *TARGETS], ws, env)
    assert second.returncode == 0
    assert "Running stage" not in second.stdout
    assert "up to date" in second.stdout
    assert dvc(["status", *TARGETS], ws, env).stdout.strip().startswith("Data and pipelines are up to date")


def test_mlflow_runs_record_models_metrics_and_data_version(repro):
    ws, _, _ = repro
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
    try:
        for dataset, protocol in (("market", "P2"), ("pm25", "P1")):
            clean_md5 = next(o["md5"] for o in lock["stages"][f"validate@{dataset}"]["outs"]
                             if o["path"].endswith(f"{dataset}.parquet"))
            runs = mlflow.search_runs(experiment_names=[f"seqcast-{dataset}"],
                                      filter_string="tags.family != 'report'")
            assert set(runs["tags.model"]) == BASELINES[dataset]
            if dataset == "market":  # every series went ingest -> validate -> clean: one data version
                assert set(runs["tags.series"]) == set(TICKERS)
                assert set(runs.loc[runs["tags.series"] == "^N100", "tags.model"]) == {"naive"}
            assert set(runs["tags.data_version"]) == {clean_md5}  # the model leads back to its data
            assert set(runs["tags.source"]) == {"mirror"}
            for task in ("a", "b"):
                for metric in ("mae", "rmse", "mase", "cov80", "cov95"):
                    assert runs[f"metrics.{protocol}{task}_{metric}"].notna().all()
            run = mlflow.get_run(runs.iloc[0]["run_id"])
            inputs = run.inputs.dataset_inputs
            assert inputs and inputs[0].dataset.digest == clean_md5
            arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
            assert {"forecasts", "plots"} <= arts
            assert (ws / "mlruns").is_dir()  # artifacts under the project's mlruns/
    finally:
        mlflow.set_tracking_uri(None)


def test_metrics_and_reports(repro):
    ws, env, _ = repro
    shown = dvc(["metrics", "show", "--json"], ws, env)
    assert shown.returncode == 0
    assert "P2a_mase" in shown.stdout and "P1b_cov95" in shown.stdout
    # one narrow row per model of a dataset: readable at 120 columns
    table = dvc(["metrics", "show", "reports/metrics/pm25", "--md"], ws, env).stdout.splitlines()
    assert [c.strip() for c in table[0].split("|")[2:-1]] == ["P1a_cov95", "P1a_mase", "P1b_cov95", "P1b_mase", "score"]
    assert max(len(line) for line in table) <= 120, table
    board = json.loads((ws / "reports" / "backtest" / "pm25.json").read_text())["us_embassy"]
    assert board["naive"]["P1a_rmse"] == pytest.approx(22.14, abs=0.01)
    assert board["arima"]["P1a_rmse"] < board["naive"]["P1a_rmse"]
    verdicts = json.loads((ws / "reports" / "stationarity" / "market.json").read_text())
    assert verdicts["^KS11"]["d"] == 1 and verdicts["^KS11"]["verdict"] == "difference-stationary"
    validation = json.loads((ws / "reports" / "validation" / "market.json").read_text())
    assert validation["^KS11"]["rows_dropped_null"] == 2
    assert (ws / "reports" / "data_docs" / "pm25" / "index.html").is_file()
    plots = dvc(["plots", "show", "--json"], ws, env)
    assert plots.returncode == 0 and "charts/market/KS11_arima.svg" in plots.stdout
    assert '"type": "image"' in plots.stdout and '"type": "vega"' not in plots.stdout  # images: no script to load
    summary = json.loads((ws / "reports" / "backtest" / "market.summary.json").read_text())
    assert summary["series"] == TICKERS and summary["mean_over_series"]["naive"]["series"] == 2
    both = json.loads((ws / "reports" / "backtest" / "market.json").read_text())
    assert summary["mean_over_series"]["naive"]["P2a_mase"] == pytest.approx(
        (both["^KS11"]["naive"]["P2a_mase"] + both["^N100"]["naive"]["P2a_mase"]) / 2, abs=1e-5)


def test_the_pipeline_ends_with_a_champion_and_its_forecast(repro):
    """A fresh `dvc repro` leaves models:/seqcast-<dataset>@champion and reports/forecast/."""
    ws, _, _ = repro
    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
    try:
        for dataset, h in (("market", 5), ("pm25", 24)):
            champion = mlflow.MlflowClient().get_model_version_by_alias(f"seqcast-{dataset}", "champion")
            promotion = json.loads((ws / "reports" / "promotion" / f"{dataset}.json").read_text())
            assert promotion["champion"]["version"] == int(champion.version)
            assert champion.tags["model"] in BASELINES[dataset]
            table = (ws / "reports" / "forecast" / f"{dataset}.csv").read_text().splitlines()
            assert len(table) == 1 + h and table[0] == "unique_id,ds,step,mean,lo-80,hi-80,lo-95,hi-95"
            assert (ws / "reports" / "forecast" / f"{dataset}.png").stat().st_size > 10_000
    finally:
        mlflow.set_tracking_uri(None)


def test_forecast_command_after_the_pipeline_and_without_a_champion(repro, tmp_path):
    """`python -m flows.forecast --dataset market` as a user types it: after the pipeline it
    forecasts with the champion; against an empty store it says what to do, without a traceback."""
    ws, env, _ = repro
    ok = subprocess.run([sys.executable, "-m", "flows.forecast", "--dataset", "market"], cwd=ws, env=env,
                        capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "forecast_table" in ok.stdout
    empty = dict(env, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'empty.db'}")
    no = subprocess.run([sys.executable, "-m", "flows.forecast", "--dataset", "market"], cwd=ws, env=empty,
                        capture_output=True, text=True, timeout=600)
    assert no.returncode == 1
    assert "no model seqcast-market@champion" in no.stderr and "seqcast run" in no.stderr
    assert "Traceback" not in no.stderr.split("forecast: no model")[-1]


def test_bench_gpt_forecaster_after_the_pipeline(repro):
    """`seqcast bench gpt_forecaster` as a user types it, on the pipeline's clean tables: a variant
    trains and is scored on the validation window inside the training periods, beside naive."""
    ws, env, _ = repro
    out = subprocess.run([str(Path(sys.executable).parent / "seqcast"), "bench", "gpt_forecaster",
                          "--variants", "samples_128", "--seeds", "0", "--iters", "2"], cwd=ws, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["split"] == "validation inside the training periods"
    (row,) = result["rows"]
    assert row["variant"] == "samples_128"
    for task in ("P1b", "P2a"):
        assert row[f"{task}_mase"] > 0 and row[f"{task}_naive_mase"] > 0
        assert 0 <= row[f"{task}_cov80"] <= row[f"{task}_cov95"] <= 1
        # scored with the checkpoint the variant trained, cut before the window (not the pipeline's)
        assert pd.Timestamp(row[f"{task}_trained_until"]) < pd.Timestamp(row[f"{task}_window_start"])
    # the window is the validation one, not the test period: naive scores differ from the committed test run
    board = json.loads((ws / "reports" / "backtest" / "pm25.json").read_text())["us_embassy"]
    assert row["P1b_naive_mase"] != pytest.approx(board["naive"]["P1b_mase"], abs=1e-3)


def test_prefect_pipeline_stops_on_bad_data_before_training(tmp_path, mirror, prefect_server, monkeypatch):
    """A corrupted source: the flow fails at validation, no model run is logged, raw kept."""
    bad_mirror = tmp_path / "mirror"
    (bad_mirror / "market").mkdir(parents=True)
    lines = (mirror / "market" / "KS11.csv").read_text().splitlines(keepends=True)
    idx = next(i for i, line in enumerate(lines) if line.startswith("2017-05-02"))
    f = lines[idx].split(",")
    f[4] = "-" + f[4]  # a negative close
    lines[idx] = ",".join(f)
    (bad_mirror / "market" / "KS11.csv").write_text("".join(lines))
    ws = copy_project(tmp_path / "project")
    monkeypatch.setenv("SEQCAST_HOME", str(ws))
    monkeypatch.setenv("SEQCAST_DATA_MIRROR", str(bad_mirror))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from flows.pipeline import pipeline_flow
    from seqcast.errors import DataValidationError

    with pytest.raises(DataValidationError, match="2017-05-02") as err:
        pipeline_flow(["market"], ["forecast@market"])
    assert "KS11.csv" in str(err.value) and "column 'y'" in str(err.value)
    assert not (ws / "data" / "clean" / "market.parquet").exists()
    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
    try:
        assert mlflow.get_experiment_by_name("seqcast-market") is None  # no model was trained
        failed = mlflow.search_runs(experiment_names=["seqcast-market-data"])
        assert list(failed["status"]) == ["FAILED"]
    finally:
        mlflow.set_tracking_uri(None)
    assert (ws / "data" / "raw" / "market" / "KS11.csv").read_text() == "".join(lines)  # raw untouched


def test_prefect_pipeline_runs_the_same_stages(workspace, prefect_server):
    from flows.pipeline import pipeline_flow

    done = pipeline_flow(None, ["backtest@market"])
    # what backtest@market needs, in DVC's order: its data stages and the GPT forecaster's checkpoint
    # (trained on both datasets' clean tables, so the PM2.5 data stages too), and nothing after it
    assert list(done)[-1] == "backtest@market"
    assert {"ingest@market", "validate@market", "stationarity@market", "gpt_forecaster_train"} <= set(done)
    assert list(done).index("validate@market") < list(done).index("stationarity@market")
    assert "backtest@pm25" not in done and "promote@market" not in done
    board = done["backtest@market"]
    assert set(board["^KS11"]) == {"naive", "drift", "arima"}
    assert board["^KS11"]["naive"]["P2a_mae"] == pytest.approx(15.06, abs=0.005)
