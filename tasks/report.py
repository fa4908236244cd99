"""What a backtest leaves behind: the leaderboard, DVC metrics/plots files and figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from seqcast import atomic
from seqcast.contract import DS, Y, hi, lo
from seqcast.paths import inside
from tasks.backtest import BacktestResult


def plot_window(result: BacktestResult) -> pd.DataFrame:
    """The one-step-ahead forecasts shown in plots: the first ``protocol.plot_steps`` test steps
    (P1a: 14 days of hours), or the whole test part."""
    task = result.protocol.tasks[0].name
    frame = result.forecasts[task]
    if result.protocol.plot_steps:
        frame = frame.iloc[: result.protocol.plot_steps]
    levels = result.protocol.levels
    out = pd.DataFrame({DS: frame[DS].astype(str), "actual": frame[Y], "forecast": frame[result.model]})
    top = max(levels)
    out[f"lo_{top}"], out[f"hi_{top}"] = frame[lo(result.model, top)], frame[hi(result.model, top)]
    return out


def forecast_figure(result: BacktestResult):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    proto = result.protocol
    fig, axes = plt.subplots(len(proto.tasks), 1, figsize=(12, 3.2 * len(proto.tasks)))
    for ax, task in zip(np.atleast_1d(axes), proto.tasks):
        frame = result.forecasts[task.name]
        if proto.plot_steps:  # the first plot_steps test steps (half as many origins of a multi-step task)
            frame = frame.iloc[: proto.plot_steps if task.h == 1 else proto.plot_steps // 2]
        elif task.h > 1:
            frame = frame[frame["h"] == task.h]
        ds = pd.to_datetime(frame[DS])
        top = max(proto.levels)
        ax.fill_between(ds, frame[lo(result.model, top)], frame[hi(result.model, top)], alpha=0.25,
                        label=f"{top}% interval")
        ax.plot(ds, frame[Y], color="black", lw=1, label="actual")
        ax.plot(ds, frame[result.model], lw=1, label=result.model)
        what = "1 step ahead" if task.h == 1 else f"{task.h} steps ahead"
        ax.set_title(f"{proto.unique_id} — {task.name} ({what}): {result.model}")
        ax.set_ylabel(f"{Y} ({proto.unit})" if proto.unit else Y)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def leaderboard(results: dict[str, dict[str, dict[str, float]]],
                unscored: dict[str, dict[str, dict[str, str]]] | None = None) -> pd.DataFrame:
    """One row per (series, model) with every metric; a model without scores on a series is a
    row whose ``note`` says why (skipped: it does not apply; failed: the error it raised)."""
    rows = [{"series": uid, "model": model, **m} for uid, models in results.items() for model, m in models.items()]
    rows += [{"series": uid, "model": model, "note": f"{why['kind']}: {why['reason']}"}
             for uid, models in (unscored or {}).items() for model, why in models.items()]
    return pd.DataFrame(rows)


def calibration_table(results: dict[str, dict[str, float]], tasks: list[str], levels: list[int]) -> pd.DataFrame:
    """Interval coverage of every model of one series (the reference series), one row per
    (task, model): on the validation slice, on the test period before and after the
    split-conformal factor chosen on that slice (1.0: within the tolerance, left alone)."""
    rows = []
    for model, m in results.items():
        for task in tasks:
            if f"{task}_cov{levels[0]}_val" not in m:
                continue
            row: dict[str, object] = {"task": task, "model": model}
            for lv in levels:
                row.update({f"cov{lv}_val": m.get(f"{task}_cov{lv}_val"), f"cov{lv}_test_raw": m.get(f"{task}_cov{lv}_raw"),
                            f"factor{lv}": m.get(f"{task}_calib{lv}"), f"cov{lv}_test": m.get(f"{task}_cov{lv}")})
            rows.append(row)
    return pd.DataFrame(rows)


def leaderboard_figure(board: pd.DataFrame, protocol_tasks: list[str]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(protocol_tasks), figsize=(6 * len(protocol_tasks), 0.5 + 0.4 * len(board)))
    for ax, task in zip(np.atleast_1d(axes), protocol_tasks):
        col = f"{task}_mase"
        if col not in board:
            continue
        data = board.sort_values(col, ascending=False)
        labels = data["model"] + (" · " + data["series"] if data["series"].nunique() > 1 else "")
        bars = ax.barh(labels, data[col])
        cov = data.get(f"{task}_cov95")
        if cov is not None:
            for bar, c in zip(bars, cov):
                ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" cov95 {c:.2f}", va="center", fontsize=8)
        ax.axvline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{task}: MASE (lower is better)")
    fig.tight_layout()
    return fig


def series_summary(results: dict[str, dict[str, dict[str, float]]], tasks: list[str]) -> dict:
    """The multi-series leaderboard: per model, the mean MASE of each task over the series it ran on."""
    models = list(dict.fromkeys(m for by_model in results.values() for m in by_model))
    mean = {}
    for m in models:
        row: dict[str, float | int | None] = {}
        for task in tasks:
            vals = [by_model[m].get(f"{task}_mase") for by_model in results.values() if m in by_model]
            vals = [v for v in vals if v is not None and np.isfinite(v)]
            row[f"{task}_mase"] = float(np.mean(vals)) if vals else None
        row["series"] = sum(m in by_model for by_model in results.values())
        mean[m] = row
    return {"mean": mean, "series": list(results)}


def write_summary(path: Path, summary: dict) -> None:
    """``{"mean": {model: {<task>_mase, series}}}``: a DVC metrics file, one row per model; the
    series in order (the first is the reference series), the models without scores and why,
    and the series the protocol could not judge."""
    rounded = {m: _rounded(row) for m, row in summary["mean"].items()}
    out = {"mean_over_series": rounded, "series": summary["series"], "reference": summary.get("reference")}
    for key in ("unscored", "unjudged"):
        if summary.get(key):
            out[key] = summary[key]
    atomic.write_json(path, out, sort_keys=True)


def _rounded(vals: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else round(float(v), 6))
            for k, v in vals.items()}


def headline(metrics: dict[str, float], tasks: list[str]) -> dict[str, float | None]:
    """What a model's DVC metrics file holds: the champion rule's score (mean MASE over the tasks)
    and each task's MASE and 95 % coverage — a few columns, so that ``dvc metrics show
    reports/metrics/<dataset>`` reads at 120 columns (every metric is in the leaderboard file)."""
    from tasks.tables import score

    keys = [f"{t}_mase" for t in tasks] + [f"{t}_cov95" for t in tasks]
    return _rounded({"score": score(metrics, tasks), **{k: metrics.get(k) for k in keys}})


def write_metrics(board_path: Path, metrics_dir: Path, results: dict, reference: str | None = None,
                  tasks: list[str] | None = None) -> None:
    """The leaderboard ``{series: {model: metrics}}`` as one file, and one DVC metrics file per
    model with its headline on the reference series (default: the first), so ``dvc metrics
    show`` prints a row per model."""
    clean = {uid: {m: _rounded(vals) for m, vals in models.items()} for uid, models in results.items()}
    reference = reference if reference is not None else next(iter(clean), None)
    on_reference = clean.get(reference, {})
    tasks = tasks or sorted({k[: -len("_mase")] for vals in on_reference.values() for k in vals if k.endswith("_mase")})
    atomic.write_json(board_path, clean, sort_keys=True)  # first: a board that does not fit changes nothing
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for model, vals in sorted(on_reference.items()):
        atomic.write_json(inside(metrics_dir, f"{model}.json", what="model name"), headline(vals, tasks), sort_keys=False)
    for stale in metrics_dir.glob("*.json"):  # a model no longer run leaves no row behind
        if stale.stem not in on_reference:
            stale.unlink()
