"""The charts ``dvc plots show`` puts on its page, as static SVG files: Vega-Lite specs rendered
by vl-convert (no browser, no network), so the page renders offline — DVC embeds image plots
as images and loads no script for them.

- ``--dataset NAME``: for every forecast-vs-actual table the backtest wrote
  (``reports/plots/<dataset>/<series>_<model>.csv``: the first test steps, one step ahead),
  ``reports/charts/<dataset>/<series>_<model>.svg``: the actuals, the forecast and its 95 %
  interval, the target's unit on the axis (``data.unit``).
- ``--loss``: the GPT's loss curve (``reports/gpt/loss_curve.json``) as
  ``reports/charts/gpt/loss_curve.svg``.

    python -m flows.charts --dataset <name>
    python -m flows.charts --loss
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
from prefect import flow

from seqcast import atomic


def svg(spec: dict) -> str:
    import vl_convert

    return vl_convert.vegalite_to_svg(spec)


def forecast_spec(frame: pd.DataFrame, title: str, unit: str) -> dict:
    """Actual, forecast and the widest interval of one model on one series over time."""
    band = sorted(c for c in frame.columns if c.startswith("lo_"))[-1:]  # lo_95
    level = band[0][3:] if band else ""
    rows = frame.assign(ds=frame["ds"].astype(str)).to_dict(orient="records")
    x = {"field": "ds", "type": "temporal", "title": None}
    layers = []
    if band:
        layers.append({"mark": {"type": "area", "opacity": 0.25, "color": "#4c78a8"},
                       "encoding": {"x": x, "y": {"field": f"lo_{level}", "type": "quantitative"},
                                    "y2": {"field": f"hi_{level}"}}})
    long = [{"ds": r["ds"], "series": name, "value": r[col]} for r in rows
            for col, name in (("actual", "actual"), ("forecast", "forecast")) if r.get(col) == r.get(col)]
    layers.append({"data": {"values": long}, "mark": {"type": "line", "strokeWidth": 1},
                   "encoding": {"x": x, "y": {"field": "value", "type": "quantitative",
                                              "title": f"y ({unit})" if unit else "y"},
                                "color": {"field": "series", "type": "nominal", "title": None,
                                          "scale": {"domain": ["actual", "forecast"], "range": ["#222", "#e45756"]}}}})
    subtitle = f"shaded: the {level} % interval" if band else ""
    return {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "width": 760, "height": 240,
            "title": {"text": title, "subtitle": subtitle}, "data": {"values": rows}, "layer": layers}


def loss_spec(curve: list[dict]) -> dict:
    keys = [k for k in ("train_loss", "val_loss") if any(k in row for row in curve)]
    return {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "width": 760, "height": 240,
            "title": "P3: GPT loss (nats/char)", "data": {"values": curve},
            "transform": [{"fold": keys, "as": ["curve", "loss"]}],
            "mark": {"type": "line"},
            "encoding": {"x": {"field": "iter", "type": "quantitative", "title": "iteration"},
                         "y": {"field": "loss", "type": "quantitative", "title": "nats per character"},
                         "color": {"field": "curve", "type": "nominal", "title": None}}}


def write_charts(tables: Path, out: Path, dataset: str, unit: str) -> list[Path]:
    """One SVG per forecast table; the folder holds exactly these (a model dropped, its chart too)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written = []
    for csv in sorted(tables.glob("*.csv")):
        frame = pd.read_csv(csv)
        target = out / f"{csv.stem}.svg"
        atomic.write_text(target, svg(forecast_spec(frame, f"{dataset}: {csv.stem} (1 step ahead)", unit)))
        written.append(target)
    return written


@flow(name="charts", log_prints=True)
def charts_flow(dataset: str | None = None, loss: bool = False) -> list[str]:
    from seqcast.config import load_params
    from seqcast.paths import project_root

    params = load_params()
    written: list[Path] = []
    if dataset is not None:
        written += write_charts(params.path("reports", "plots", dataset), params.path("reports", "charts", dataset),
                                dataset, params.dataset(dataset).data.unit)
    if loss:
        curve = json.loads((project_root() / params.gpt.paths.reports / "loss_curve.json").read_text())
        target = params.path("reports", "charts", "gpt", "loss_curve.svg")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(target, svg(loss_spec(curve)))
        written.append(target)
    print(f"{len(written)} charts: {', '.join(p.name for p in written[:5])}{' ...' if len(written) > 5 else ''}")
    return [str(p) for p in written]


def main(argv: list[str] | None = None):
    from flows.entry import flow_parser

    parser = flow_parser(__doc__, required=False)
    parser.add_argument("--loss", action="store_true", help="the GPT's loss curve")
    args = parser.parse_args(argv)
    if args.dataset is None and not args.loss:
        parser.error("give --dataset NAME or --loss")
    return charts_flow(args.dataset, args.loss)


if __name__ == "__main__":
    main()
