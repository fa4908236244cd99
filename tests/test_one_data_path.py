"""One data path: global models get their panel from the clean table through the harness,
cut at the training end; models never read files; the layers import downwards only."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from models.base import Forecast, Forecaster
from seqcast.config import load_params
from tasks.backtest import evaluate
from tasks.series import models_for, protocol_for, split_table


def market_table(ids: list[str], n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A clean market table: business days, each series on its own calendar (holidays differ)."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, uid in enumerate(ids):
        ds = pd.bdate_range("2016-03-08", periods=n + k, tz="Asia/Seoul")
        ds = ds.delete(np.arange(5 + k, len(ds), 50))  # series-specific holidays
        y = 1000 + np.cumsum(rng.normal(size=len(ds)))
        frames.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": y, "close": y, "volume": 1e6}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def params():
    return load_params()


class PanelSpy(Forecaster):
    """A global model that records what the harness handed it."""

    name = "panel_spy"
    uses_panel = True

    def _fit(self, y, X):
        self.seen = [(p.unique_id, p.ds.max(), len(p.y)) for p in self.panel_]

    def _predict(self, h, levels, X_future):
        return Forecast.gaussian(np.full((1, h), self.y_[-1]), 1.0, levels)


def test_panel_is_the_other_series_cut_at_the_training_end(params):
    parts = split_table(market_table(["^KS11", "^GSPC", "^N100"]))
    assert list(parts) == ["^KS11", "^GSPC", "^N100"]  # the table's order: the first is the reference
    proto = protocol_for("^KS11", parts, "market", params)
    assert [p.unique_id for p in proto.panel] == ["^GSPC", "^N100"]  # never the series itself
    for p in proto.panel:
        assert p.ds.max() <= proto.train_end  # nothing from the test period of any series
        other = parts[p.unique_id]
        assert len(p.y) == int((other["ds"] <= proto.train_end).sum())
        np.testing.assert_array_equal(p.y, other["y"].to_numpy()[: len(p.y)])


def test_only_global_models_receive_the_panel(params):
    parts = split_table(market_table(["^KS11", "^GSPC", "^N100"]))
    proto = protocol_for("^KS11", parts, "market", params)
    spy = PanelSpy(season=5)
    evaluate(spy, proto)
    assert [s[0] for s in spy.seen] == ["^GSPC", "^N100"] and all(s[1] <= proto.train_end for s in spy.seen)
    from models.registry import create

    local = create("naive", season=5)
    evaluate(local, proto)
    assert local.panel_ == ()


def test_deepar_trains_across_the_panel(params):
    from models.registry import create

    parts = split_table(market_table(["^KS11", "^GSPC", "^N100"]))
    proto = protocol_for("^KS11", parts, "market", params)
    model = create("deepar", season=5, epochs=1, hidden=8, num_samples=20, max_windows=256)
    result = evaluate(model, proto)
    assert model.n_extra_series_ == 2
    assert np.isfinite(result.metrics["P2a_mase"])
    alone = create("deepar", season=5, epochs=1, hidden=8, num_samples=20, max_windows=256, use_panel=False)
    evaluate(alone, proto)
    assert alone.n_extra_series_ == 0


def test_reference_series_runs_every_model_the_others_the_multi_series_list():
    params = load_params()
    series = params.dataset("market").series
    ref = series[0]
    assert models_for(ref, ref, "market", params)[0] == "naive"
    assert set(params.models_run("market")) <= set(models_for(ref, ref, "market", params))
    every = sorted(params.dataset("market").models.every_series, key=lambda n: n != "naive")
    held_out = params.gpt_forecaster_train.held_out["market"]  # the GPT forecaster's zero-shot series
    for uid in series[1:]:
        expected = every + ["gpt_forecaster"] if uid == held_out else every
        assert models_for(uid, ref, "market", params) == expected, uid


# ------------------------------------------------------------------------------------ static rules

CORE = ["seqcast/config.py", "seqcast/config_base.py", "seqcast/gpt_config.py", "seqcast/contract.py",
        "seqcast/paths.py", "seqcast/tracking.py", "seqcast/errors.py", "seqcast/env.py", "seqcast/dataset_config.py",
        "seqcast/frequency.py"]
FRONT_DOORS = {"cli", "seqcast.chat"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def offenders(files: list[Path], forbidden: tuple[str, ...] | set[str]) -> dict[str, list[str]]:
    bad = {}
    for f in files:
        hits = sorted(m for m in imported_modules(f) if any(m == p or m.startswith(p + ".") for p in forbidden))
        if hits:
            bad[str(f.relative_to(ROOT))] = hits
    return bad


def test_the_core_imports_no_flows_tasks_or_models():
    core = [ROOT / f for f in CORE] + [p for p in (ROOT / "seqcast").glob("*.py")
                                      if p.stem not in {"chat", "__init__"}]
    assert offenders(sorted(set(core)), ("flows", "tasks", "models", "benchmarks", *FRONT_DOORS)) == {}


def test_models_import_no_tasks_or_flows():
    assert offenders(sorted((ROOT / "models").rglob("*.py")), ("tasks", "flows", "benchmarks", *FRONT_DOORS)) == {}


def test_tasks_and_flows_never_import_the_front_doors():
    files = sorted((ROOT / "tasks").rglob("*.py")) + sorted((ROOT / "flows").rglob("*.py"))
    assert offenders(files, FRONT_DOORS) == {}
    assert offenders(sorted((ROOT / "tasks").rglob("*.py")), ("flows",)) == {}


def test_models_never_open_data_files():
    """Data are handed to models; they save and load only their own artifacts."""
    readers = {"read_csv", "read_parquet", "read_table", "data_mirror", "load_corpus"}
    bad = {}
    for f in sorted((ROOT / "models").rglob("*.py")):
        names = {n.attr if isinstance(n, ast.Attribute) else n.id for n in ast.walk(ast.parse(f.read_text()))
                 if isinstance(n, (ast.Attribute, ast.Name))}
        if names & readers:
            bad[str(f.relative_to(ROOT))] = sorted(names & readers)
    assert bad == {}


def test_a_table_of_many_time_zones_keeps_each_series_calendar(mirror):
    """Sydney and Seoul closes in one table: ds is stored in UTC, each series gets its own
    clock back (a Sydney Monday close is not a Sunday in Seoul time)."""
    from seqcast.contract import local_time
    from tasks.connectors.yahoo import parse_csv
    from tasks.ingest import concat_series, window

    frames = [window(parse_csv(mirror / "market" / f"{stem}.csv", t, tz, "market"), "2016-03-08", "2016-06-30")
              for stem, t, tz in (("KS11", "^KS11", "Asia/Seoul"), ("AXJO", "^AXJO", "Australia/Sydney"))]
    table = concat_series(frames)
    assert str(table["ds"].dt.tz) == "UTC"
    for uid, tz in (("^KS11", "Asia/Seoul"), ("^AXJO", "Australia/Sydney")):
        local = local_time(table[table["unique_id"] == uid])
        assert str(local["ds"].dt.tz) == tz
        assert (local["ds"].dt.hour == 0).all() and local["ds"].dt.weekday.max() <= 4  # midnights, weekdays
