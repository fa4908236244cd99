"""seqcast.tracking: the data version a run logs (its table as an MLflow dataset input)."""

import json

import mlflow
import numpy as np
import pandas as pd
from mlflow.types.utils import _infer_schema

from seqcast import tracking


def _table(n: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    y = rng.normal(size=n)
    y[n - 7] = np.nan  # a null late in the table, past any sample of its head
    return pd.DataFrame({
        "unique_id": pd.Series(["a"] * (n // 2) + ["b"] * (n - n // 2), dtype="str"),
        "ds": pd.date_range("2020-01-01", periods=n, freq="h"),
        "y": y,
        "TEMP": rng.normal(size=n),
        "hour": np.arange(n) % 24,
        "observed": ~np.isnan(y),
        "wind": pd.Series([None] * 500 + ["NW", "SE"] * ((n - 500) // 2), dtype="str"),  # null in the head
    })


def test_table_schema_is_what_mlflow_infers_from_every_row():
    df = _table()
    assert tracking.table_schema(df) == _infer_schema(df)
    assert not tracking.table_schema(df).inputs[2].required  # "y" has a null after the sampled head


def test_log_data_version_logs_the_table_with_its_md5_and_schema(tmp_path, mlflow_store):
    df = _table()
    path = tmp_path / "table.parquet"
    df.to_parquet(path, index=False)
    mlflow.set_experiment("tracking-test")
    with mlflow.start_run() as run:
        md5 = tracking.log_data_version(df, path, name="toy-clean")
    got = mlflow.get_run(run.info.run_id)
    assert got.data.tags["data_version"] == md5 == tracking.file_md5(path)
    dataset = got.inputs.dataset_inputs[0].dataset
    assert dataset.digest == md5 and dataset.name == "toy-clean"
    assert json.loads(dataset.schema)["mlflow_colspec"] == _infer_schema(df).to_dict()
    assert json.loads(dataset.profile) == {"num_rows": len(df), "num_elements": int(df.size)}


def test_artifacts_go_beside_a_sqlite_store_never_into_the_working_directory(tmp_path, monkeypatch):
    from seqcast.paths import artifact_root

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    assert artifact_root() == (tmp_path / "store" / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert artifact_root() is None  # the tracking server decides
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("SEQCAST_HOME", str(tmp_path))
    assert artifact_root() == (tmp_path / "mlruns").as_uri()
