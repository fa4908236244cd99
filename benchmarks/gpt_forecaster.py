"""The GPT forecaster's levers, measured on validation slices inside the training parts.

``seqcast bench gpt_forecaster [ablation] [--variants NAME ...] [--seeds 0 1 2] [--iters N]``:
every variant trains the model from scratch, once per seed, on each series cut *before* a
validation slice at the end of its training part (:func:`tasks.backtest.holdout_protocol`,
``--validation`` of it: 10 % by default), then forecasts those slices through the harness
beside the naive baseline: in domain (the tasks of ``--tasks`` on the first ``--max-series``
series of each dataset; all of them train), zero
shot on the held-out series (``gpt_forecaster_train.held_out``), and zero shot on the
packaged series of other frequencies (tasks/packaged_series.py: P4 inside their own training
parts, against seasonal naive). No test period is read, so a lever chosen here is not tuned
on the test. Variants that change inference only share the seed's trained model.

``seqcast bench gpt_forecaster zero_shot [--checkpoint PATH]``: the pipeline's checkpoint
(``gpt_forecaster_train.checkpoint``) on the packaged series' P4 *test* parts, against
seasonal naive and naive, with Diebold-Mariano p-values: the figures to report, not to tune on.

Relative MASE (``rel``) is the GPT's MASE over the baseline's on the same slice; over several
series, their geometric mean (Chronos's aggregate). The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

# overrides of params.yaml (any other: --set KEY.PATH=VALUE)
BEFORE = {"gpt_forecaster_train": {"mix": {"market": 0.3, "pm25": 0.5, "synthetic": 0.2},
                                   "synthetic": {"kernel_synth": {"n_series": 0}}, "tsmixup": {"prob": 0.0},
                                   "train": {"max_iters": 400, "lr_decay_iters": 400}},
          "models": {"gpt_forecaster": {"quantiles": "samples"}}}
VARIANTS: dict[str, dict] = {
    "default": {},
    "before": BEFORE,  # the recipe before KernelSynth, TSMixup, the new mix, 800 iterations and mixture quantiles
    "no_kernel_synth": {"gpt_forecaster_train": {"synthetic": {"kernel_synth": {"n_series": 0}}}},
    "no_tsmixup": {"gpt_forecaster_train": {"tsmixup": {"prob": 0.0}}},
    "reference_series_only": {"gpt_forecaster_train": {"train_series": "reference"}},
    "mean_scaling": {"gpt_forecaster_train": {"tokenizer": {"scaling": "mean", "low": -15.0, "high": 15.0}}},
    "iters_400": {"gpt_forecaster_train": {"train": {"max_iters": 400, "lr_decay_iters": 400}}},
    "bins_256": {"gpt_forecaster_train": {"tokenizer": {"n_bins": 256}}},
    "bins_1024": {"gpt_forecaster_train": {"tokenizer": {"n_bins": 1024}}},
    "no_log1p": {"models": {"gpt_forecaster": {"by_dataset": {"pm25": {"transform": "none"}}}}},
    "context_48": {"models": {"gpt_forecaster": {"context": 48}}},
    "history_scaling": {"models": {"gpt_forecaster": {"scale_by": "history"}}},
    "samples_128": {"models": {"gpt_forecaster": {"n_samples": 128}}},
    "sampled_quantiles": {"models": {"gpt_forecaster": {"quantiles": "samples"}}},
}
DEFAULT_VARIANTS = ["default", "no_kernel_synth", "no_tsmixup", "reference_series_only", "mean_scaling", "iters_400",
                    "samples_128", "sampled_quantiles"]
COLUMNS = ["P1b_rel", "P1b_wins", "P2a_rel", "P2a_worse", "held_P1b_rel", "held_P2a_rel", "P4a_rel", "P4b_rel",
           "P4_worse", "train_s"]


def set_variant(item: str) -> dict:
    """``a.b.c=VALUE`` (a dotted params.yaml key, the value read as YAML) as an override of params.yaml."""
    import yaml

    key, eq, value = item.partition("=")
    if not eq or not key or any(not part for part in key.split(".")):
        raise SystemExit(f"--set takes KEY.PATH=VALUE (a params.yaml key), not {item!r}")
    patch: dict = yaml.safe_load(value)
    for part in reversed(key.split(".")):
        patch = {part: patch}
    return patch


def merge(base: dict, patch: dict) -> dict:
    for k, v in patch.items():
        base[k] = merge(dict(base.get(k) or {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def variant_params(params, patch: dict, seed: int, checkpoint: str | None = None):
    """params.yaml with the variant's overrides, the seed (training and sampling) and the checkpoint to score."""
    from seqcast.config import Params

    # the values params.yaml set, as set: a dump of every field would fill each by_dataset
    # override with None for the keys it leaves alone (and fail validation)
    raw = merge(params.model_dump(mode="json", exclude_unset=True), json.loads(json.dumps(patch)))
    raw = merge(raw, {"gpt_forecaster_train": {"seed": params.gpt_forecaster_train.seed + seed},
                      "models": {"gpt_forecaster": {"seed": seed}}})
    if checkpoint:  # the variant's training writes it and its scoring reads it (the two keys agree)
        raw = merge(raw, {"models": {"gpt_forecaster": {"checkpoint": checkpoint}},
                          "gpt_forecaster_train": {"checkpoint": checkpoint}})
    return Params.model_validate(raw)


def training_key(vp, datasets: list[str]) -> str:
    """What training reads: equal keys, equal models (inference-only variants share one)."""
    m = {d: vp.models.params_for("gpt_forecaster", d) for d in datasets}
    return json.dumps([vp.gpt_forecaster_train.model_dump(mode="json"),
                       {d: [c.context, c.transform, c.scale_by] for d, c in m.items()}], sort_keys=True)


def score(model, reference, proto) -> dict:
    """Metrics of ``model`` beside ``reference`` (an unfitted forecaster each) on ``proto``'s tasks."""
    from tasks.backtest import dm_against, evaluate

    ours, ref = evaluate(model, proto), evaluate(reference, proto)
    dm = dm_against(ours, ref)
    out = {"trained_until": ours.forecaster.meta.get("series", {}).get(proto.unique_id, {}).get("train_end"),
           "window_start": str(proto.ds[proto.n_train])}
    for t in proto.tasks:
        k = t.name
        out[k] = {"mase": ours.metrics[f"{k}_mase"], "ref_mase": ref.metrics[f"{k}_mase"],
                  "dm_p": dm[f"{k}_dm_pvalue"], "cov80": ours.metrics[f"{k}_cov80"], "cov95": ours.metrics[f"{k}_cov95"],
                  "rmse_ratio": ours.metrics[f"{k}_rmse"] / ref.metrics[f"{k}_rmse"]}
    return out


def packaged_forecasters(vp, series, checkpoint: str):
    """(GPT forecaster, seasonal naive, naive) for a packaged series: its season and transform are its properties."""
    from models import registry
    from models.gpt_forecaster import GPTForecaster

    config = {**vp.models.config_for("gpt_forecaster"), "checkpoint": checkpoint, "transform": series.transform,
              "scale_by": series.scale_by, "series": series.name}
    gpt = GPTForecaster(GPTForecaster.Params.model_validate(config), season=series.season)
    return gpt, registry.create("seasonal_naive", season=series.season), registry.create("naive", season=series.season)


def geo_mean(x: list[float]) -> float:
    x = [v for v in x if v is not None and np.isfinite(v) and v > 0]
    return float(np.exp(np.mean(np.log(x)))) if x else float("nan")


def run_seed(name: str, patch: dict, seed: int, params, protocols, packaged, tasks: list[str], iters: int | None,
             trained: dict, tmp: str) -> dict:
    """One variant at one seed: train (or reuse the seed's model of the same training), score everything."""
    from tasks.gpt_forecaster_train import train_forecaster
    from tasks.series import build_forecaster

    import torch

    vp = variant_params(params, patch, seed)
    datasets = list(dict.fromkeys(d for d, _ in protocols))
    key = (seed, training_key(vp, datasets))
    row: dict = {"variant": name, "seed": seed}
    if key not in trained:
        t0 = time.perf_counter()
        ckpt, _ = train_forecaster(vp, protocols, tmp, iters)
        path = os.path.join(tmp, f"model_{len(trained)}.pt")
        torch.save(ckpt, path)
        trained[key] = (path, round(time.perf_counter() - t0, 1),
                        {k: round(v, 4) for k, v in ckpt["train"].items() if k.endswith("loss")})
    path, row["train_s"], losses = trained[key]
    row.update(losses)
    vp = variant_params(params, patch, seed, checkpoint=path)
    held = vp.gpt_forecaster_train.held_out
    rel: dict[str, list] = {}
    t0 = time.perf_counter()
    for dataset, proto in protocols:
        proto.tasks[:] = [t for t in proto.tasks if t.name in tasks]
        if not proto.tasks:
            continue
        got = score(build_forecaster("gpt_forecaster", proto, vp, None), build_forecaster("naive", proto, vp, None),
                    proto)
        zero = proto.unique_id == held.get(dataset)
        for t in proto.tasks:
            g = got[t.name]
            ratio = g["mase"] / g["ref_mase"]
            rel.setdefault(("held_" if zero else "") + t.name, []).append(ratio)
            if not zero:
                better, worse = g["dm_p"] < 0.05 and ratio < 1, g["dm_p"] < 0.05 and ratio > 1
                row[f"{t.name}_wins"] = row.get(f"{t.name}_wins", 0) + int(better)
                row[f"{t.name}_worse"] = row.get(f"{t.name}_worse", 0) + int(worse)
            if proto.unique_id == next(p.unique_id for d, p in protocols if d == dataset):  # the reference series
                row.update({f"{t.name}_mase": round(g["mase"], 4), f"{t.name}_naive_mase": round(g["ref_mase"], 4),
                            f"{t.name}_dm_p": round(g["dm_p"], 4), f"{t.name}_cov80": round(g["cov80"], 4),
                            f"{t.name}_cov95": round(g["cov95"], 4), f"{t.name}_trained_until": got["trained_until"],
                            f"{t.name}_window_start": got["window_start"]})
    for series, proto in packaged:
        got = score(*packaged_forecasters(vp, series, path)[:2], proto)
        for t in proto.tasks:
            g = got[t.name]
            rel.setdefault(t.name, []).append(g["mase"] / g["ref_mase"])
            row["P4_worse"] = row.get("P4_worse", 0) + int(g["dm_p"] < 0.05 and g["mase"] > g["ref_mase"])
    row["eval_s"] = round(time.perf_counter() - t0, 1)
    row.update({f"{k}_rel": round(geo_mean(v), 4) for k, v in rel.items()})
    print(json.dumps(row), flush=True)
    return row


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and spread (sample standard deviation) over seeds of every column, one entry per variant."""
    out = []
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == name]
        entry = {"variant": name, "seeds": len(mine)}
        for c in COLUMNS:
            vals = [r[c] for r in mine if r.get(c) is not None and np.isfinite(r[c])]
            if vals:
                entry[c] = [round(float(np.mean(vals)), 4), round(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, 4)]
        out.append(entry)
    return out


def markdown(summary: list[dict]) -> str:
    head = ["variant", "seeds", *COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in summary:
        cells = [e["variant"], str(e["seeds"])]
        for c in COLUMNS:
            v = e.get(c)
            cells.append("–" if v is None else f"{v[0]:.3f} ± {v[1]:.3f}" if c.endswith("rel") else f"{v[0]:.1f} ± {v[1]:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scored_protocols(params, tables, validation: float, max_series: int | None) -> list:
    """The validation protocols of every series (training reads them all); the first ``max_series``
    of each dataset and its held-out series keep their tasks (scored), the others none."""
    from tasks.gpt_forecaster_data import dataset_protocols

    held, seen, out = params.gpt_forecaster_train.held_out, {}, []
    for dataset, proto in dataset_protocols(params, tables, validation):
        if proto.unique_id != held.get(dataset):
            seen[dataset] = seen.get(dataset, 0) + 1
            if max_series is not None and seen[dataset] > max_series:
                proto.tasks[:] = []
        out.append((dataset, proto))
    return out


def seed_rows(params, seed: int, a) -> list[dict]:
    """Every variant at one seed (a process of its own with ``--jobs``)."""
    from tasks.gpt_forecaster_data import clean_tables
    from tasks.packaged_series import PACKAGED, packaged_protocol

    if a.jobs > 1:  # one thread each: the jobs share the cores
        params = type(params).model_validate(merge(params.model_dump(mode="json", exclude_unset=True),
                                                   {"gpt_forecaster_train": {"train": {"threads": 1}}}))
    tables = clean_tables(params)
    levels = tuple(params.backtest.levels)
    rows, trained = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.variants:
            protocols = scored_protocols(params, tables, a.validation, a.max_series)
            packaged = [(s, packaged_protocol(s, validation=True, levels=levels)) for s in PACKAGED] if a.packaged else []
            rows.append(run_seed(name, a.patches[name], seed, params, protocols, packaged, a.tasks, a.iters,
                                 trained, tmp))
    return rows


def ablation(params, a) -> dict:
    if a.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(seed_rows, [params] * len(a.seeds), a.seeds, [a] * len(a.seeds)))
    else:
        parts = [seed_rows(params, seed, a) for seed in a.seeds]
    rows = [r for part in parts for r in part]
    summary = summarize(rows)
    print(markdown(summary))
    return {"split": "validation inside the training periods", "validation": a.validation,
            "max_series": a.max_series, "rows": rows, "summary": summary}


def zero_shot(params, a) -> dict:
    """The checkpoint on the packaged series' P4 test parts, against seasonal naive and naive."""
    from seqcast.paths import project_root
    from tasks.backtest import dm_against, evaluate
    from tasks.packaged_series import PACKAGED, packaged_protocol

    checkpoint = a.checkpoint or str(project_root() / params.gpt_forecaster_train.checkpoint)
    rows = []
    for series in PACKAGED:
        proto = packaged_protocol(series, levels=tuple(params.backtest.levels))
        gpt, snaive, naive = (evaluate(m, proto) for m in packaged_forecasters(params, series, checkpoint))
        dm_s, dm_n = dm_against(gpt, snaive), dm_against(gpt, naive)
        for t in proto.tasks:
            k = t.name
            rows.append({"series": series.name, "frequency": series.frequency, "season": series.season, "task": k,
                         "h": t.h, "origins": len(t.origins), "gpt_mase": round(gpt.metrics[f"{k}_mase"], 4),
                         "seasonal_naive_mase": round(snaive.metrics[f"{k}_mase"], 4),
                         "naive_mase": round(naive.metrics[f"{k}_mase"], 4),
                         "dm_p_seasonal_naive": round(dm_s[f"{k}_dm_pvalue"], 4),
                         "dm_p_naive": round(dm_n[f"{k}_dm_pvalue"], 4),
                         "cov80": round(gpt.metrics[f"{k}_cov80"], 3), "cov95": round(gpt.metrics[f"{k}_cov95"], 3)})
            print(json.dumps(rows[-1]), flush=True)
    return {"split": "P4 test parts of packaged series (zero shot)", "checkpoint": checkpoint, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    from seqcast.config import load_params

    ap = argparse.ArgumentParser(prog="seqcast bench gpt_forecaster", description=__doc__.split("\n")[0])
    ap.add_argument("mode", nargs="?", choices=["ablation", "zero_shot"], default="ablation")
    ap.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="one more variant per --set, named by it: params.yaml with that value changed")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="added to gpt_forecaster_train.seed")
    ap.add_argument("--iters", type=int, default=None, help="training iterations (default: params.yaml)")
    ap.add_argument("--tasks", nargs="*", default=["P1b", "P2a"], help="the pipeline's tasks scored in domain")
    ap.add_argument("--validation", type=float, default=0.1, help="share of each training part held out")
    ap.add_argument("--max-series", type=int, default=2,
                    help="series scored in domain per dataset, the first ones (all train; 0: none)")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run side by side in processes (one thread each)")
    ap.add_argument("--no-packaged", dest="packaged", action="store_false", help="skip the packaged series")
    ap.add_argument("--checkpoint", default=None, help="zero_shot: the model file (default: the pipeline's)")
    a = ap.parse_args(argv)
    a.patches = {**{v: VARIANTS[v] for v in a.variants}, **{item: set_variant(item) for item in a.set}}
    a.variants = [*a.variants, *a.set]
    params = load_params()
    load0, t0 = os.getloadavg(), time.perf_counter()
    result = ablation(params, a) if a.mode == "ablation" else zero_shot(params, a)
    print(json.dumps({"benchmark": "gpt_forecaster", **result, "wall_s": round(time.perf_counter() - t0, 1),
                      "loadavg_start": load0, "loadavg_end": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
