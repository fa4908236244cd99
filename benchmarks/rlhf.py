"""Reward model, PPO and DPO (with its remedies) on the tool-using chat model, judged by ground truth, over seeds.

    seqcast bench rlhf [--quick] [--seeds 1 2 3] [--sft-iters N] [--base checkpoints/gpt]
                       [--checkpoint checkpoints/gpt-chat] [--reports reports] [--no-mlflow]

Per seed: the SFT model preference tuning starts from (``gpt.rlhf.sft_iters`` steps of the chat
fine-tune's recipe on the pretrained GPT of ``--base``; 0: the chat model of the ``gpt_chat_sft``
stage, ``--checkpoint``), preference pairs (rule-made and from the SFT model's own greedy and sampled
answers), the reward model (held-out pair accuracy, trained on all pairs), DPO in each of
``gpt.rlhf.dpo_variants`` (plain, length-normalised, IPO, + an SFT term; on the model's own mistakes,
``gpt.rlhf.dpo_pairs``), the control ``sft_chosen`` (the SFT term alone, the same steps: what the
preference term adds) and PPO against the reward model with a KL penalty, plain and as InstructGPT's
PPO-ptx (+ a supervised term on the chosen answers, ``gpt.rlhf.ppo_ptx_coef``). Then for every
model: exact-answer accuracy on held-out questions (made-up worlds of unseen seeds and the pipeline's
real reports, in trained and unseen phrasings), the reward model's mean score of its answers and the
exact KL to the SFT model along its own samples. Reward hacking (reward up, accuracy down) is flagged.
Prints a table per seed and the mean ± spread over seeds; MLflow: one run per seed and step (tags
family=gpt, model=reward_model / ppo / <dpo variant>). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def heldout_sets(reports, hp, seed: int) -> dict:
    """{synthetic, real}: (questions, reports) pairs, trained and unseen phrasings, none ever trained on."""
    from tasks.text import tool_data

    synth = tool_data.synthetic_sets(hp.eval_worlds, seed) + tool_data.synthetic_sets(hp.eval_worlds, seed + 500, "heldout")
    real = []
    if reports.backtest:
        real = [(tool_data.heldout_questions(reports, hp.eval_per_kind, seed, "train"), reports),
                (tool_data.heldout_questions(reports, hp.eval_per_kind, seed + 1, "heldout"), reports)]
    return {"synthetic": synth, "real": real}


def run_seed(seed: int, p, hp, base, base_tok, chat_dir: Path, reports, quick: bool) -> dict:
    """Every step for one seed; returns {table, rm, logs, models, tok}."""
    import torch

    from tasks.text import chat_sft, rlhf
    from tasks.text.tool_chat import accuracy_on_sets, load_chat_model
    from tasks.text.tools import Toolbox

    torch.manual_seed(seed)
    t = {"start": time.perf_counter()}
    if hp.sft_iters:
        ps = p.model_copy(update={"seed": seed})
        with tempfile.TemporaryDirectory() as d:
            res = chat_sft.fine_tune(ps, base, base_tok, Path(d), max_iters=hp.sft_iters, resume=False, progress=False)
        sft, tok = res["model"], res["tok"]
    else:
        sft, tok = load_chat_model(chat_dir)
    t["sft"] = time.perf_counter()
    sampled = rlhf.sampled_pairs(sft, tok, hp.n_sampled_pairs, seed, hp.samples_per_prompt, hp.sample_temperature,
                                 hp.max_new_tokens, greedy=hp.greedy_sample)
    pairs = rlhf.rule_pairs(hp.n_pairs, seed) + sampled  # the reward model learns from all of them
    held = rlhf.rule_pairs(hp.n_heldout_pairs, seed + 99) + rlhf.sampled_pairs(
        sft, tok, max(1, hp.n_sampled_pairs // 4), seed + 99, hp.samples_per_prompt, hp.sample_temperature,
        hp.max_new_tokens, greedy=hp.greedy_sample)
    dpo_pairs = sampled if hp.dpo_pairs == "sampled" and sampled else pairs
    t["pairs"] = time.perf_counter()
    rm = rlhf.train_reward_model(sft, tok, pairs, hp, seed)
    rm_acc = rlhf.pair_accuracy(rm, tok, held)
    t["reward_model"] = time.perf_counter()
    models, logs = {"sft": sft}, {}
    for v in hp.dpo_variants:
        models[v], logs[v] = rlhf.train_dpo(sft, tok, dpo_pairs, hp, seed, v)
    t["dpo"] = time.perf_counter()
    models["ppo"], logs["ppo"] = rlhf.train_ppo(sft, rm, tok, hp, seed)
    if hp.ppo_ptx_coef:  # InstructGPT's PPO-ptx: the same run + a supervised term on the chosen answers
        hp_ptx = hp.model_copy(update={"ppo_lr": hp.ppo_ptx_lr, "ppo_iters": hp.ppo_ptx_iters})
        models["ppo_ptx"], logs["ppo_ptx"] = rlhf.train_ppo(sft, rm, tok, hp_ptx, seed,
                                                            [p["prompt"] + p["chosen"] for p in dpo_pairs], hp.ppo_ptx_coef)
    t["ppo"] = time.perf_counter()

    sets = heldout_sets(reports, hp, seed + 20_000)
    everything = sets["synthetic"] + sets["real"]
    kl_prompts = [{"messages": q["messages"], "toolbox": Toolbox(rep)} for qs, rep in everything for q in qs]
    kl_prompts = kl_prompts[:: max(1, len(kl_prompts) // 48)]  # a spread-out sample of the held-out prompts
    table = {}
    for name, model in models.items():
        ev = {k: accuracy_on_sets(model, tok, s, hp.max_new_tokens) for k, s in sets.items() if s}
        rows = [r for e in ev.values() for r in e["rows"]]
        convs = [[{"role": "system", "content": r["system"]}, {"role": "user", "content": r["question"]},
                  *([{"role": "assistant", "content": r["call"]}] if r["call"] else []),
                  {"role": "assistant", "content": r["answer"]}] for r in rows]
        table[name] = {
            "accuracy": sum(r["correct"] for r in rows) / max(len(rows), 1),
            **{f"{k}_accuracy": e["accuracy"] for k, e in ev.items()},
            "unseen_accuracy": _share([r for r in rows if r["family"] == "heldout"]),
            "reward": rlhf.mean_reward(rm, tok, convs) if convs else float("nan"),
            "kl": 0.0 if name == "sft" else rlhf.exact_kl(model, sft, tok, kl_prompts, hp.max_new_tokens, seed),
            "n": len(rows),
        }
    t["eval"] = time.perf_counter()
    for name in table:
        table[name]["hacking"] = (name != "sft" and table[name]["reward"] > table["sft"]["reward"]
                                  and table[name]["accuracy"] < table["sft"]["accuracy"])
    steps = list(t)
    seconds = {b: t[b] - t[a] for a, b in zip(steps, steps[1:])}
    return {"table": table, "rm": rm_acc, "logs": logs, "models": models, "tok": tok, "seconds": seconds,
            "n_pairs": len(pairs), "n_sampled": sum(q["kind"] == "sampled" for q in pairs)}


def _share(rows: list[dict]) -> float:
    return sum(r["correct"] for r in rows) / len(rows) if rows else float("nan")


def summary(per_seed: dict[int, dict]) -> dict:
    """Mean, standard deviation, min and max over seeds of each model's accuracy, and of its gain over SFT."""
    names = list(next(iter(per_seed.values()))["table"])
    out = {}
    for name in names:
        acc = [r["table"][name]["accuracy"] for r in per_seed.values()]
        gain = [r["table"][name]["accuracy"] - r["table"]["sft"]["accuracy"] for r in per_seed.values()]
        kl = [r["table"][name]["kl"] for r in per_seed.values()]
        sd = (lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0)  # noqa: E731
        out[name] = {"accuracy": statistics.fmean(acc), "accuracy_sd": sd(acc), "gain": statistics.fmean(gain),
                     "gain_sd": sd(gain), "gain_min": min(gain), "kl": statistics.fmean(kl),
                     "hacking": sum(r["table"][name]["hacking"] for r in per_seed.values())}
    return out


def main(argv: list[str] | None = None) -> int:
    from seqcast.env import configure

    configure()
    import torch

    from seqcast.config import load_params
    from seqcast.paths import project_root

    params = load_params()
    p = params.gpt
    ap = argparse.ArgumentParser(prog="seqcast bench rlhf", description=__doc__.split("\n")[0])
    ap.add_argument("--base", default=str(project_root() / p.paths.checkpoints))
    ap.add_argument("--checkpoint", default=str(project_root() / p.paths.chat_checkpoints))
    ap.add_argument("--reports", default=str(project_root() / params.paths.reports))
    ap.add_argument("--seeds", type=int, nargs="+", default=p.rlhf.seeds)
    ap.add_argument("--sft-iters", type=int, default=p.rlhf.sft_iters, help="0: start from --checkpoint")
    ap.add_argument("--quick", action="store_true", help="tiny settings (tests): a few iterations of everything")
    ap.add_argument("--no-mlflow", action="store_true")
    a = ap.parse_args(argv)

    from models.text.gpt import model_from_checkpoint
    from models.text.tokenizers import load_tokenizer
    from tasks.text import rlhf
    from tasks.text.gpt_train import load_checkpoint
    from tasks.text.tools import Reports

    hp = p.rlhf.model_copy(update={"sft_iters": a.sft_iters})
    if a.quick:
        hp = hp.model_copy(update={"n_pairs": 10, "n_sampled_pairs": 2, "samples_per_prompt": 2, "n_heldout_pairs": 5,
                                   "batch_size": 4, "rm_iters": 2, "dpo_iters": 2, "ppo_iters": 1, "ppo_ptx_iters": 1,
                                   "ppo_batch": 2, "ppo_epochs": 1, "max_new_tokens": 8, "eval_per_kind": 1, "eval_worlds": 1})
        p = p.model_copy(update={"sft": p.sft.model_copy(update={"n_conversations": 40, "batch_size": 4})})
        if hp.sft_iters:
            hp = hp.model_copy(update={"sft_iters": 2})
    torch.set_num_threads(p.train.threads or torch.get_num_threads())
    base = base_tok = None
    if hp.sft_iters:
        base = model_from_checkpoint(load_checkpoint(Path(a.base) / "model.pt"))
        base_tok = load_tokenizer(Path(a.base) / "tokenizer.json")
    reports = Reports.load(a.reports)
    load, t0, c0 = os.getloadavg()[0], time.perf_counter(), time.process_time()
    per_seed = {}
    for seed in a.seeds:
        r = per_seed[seed] = run_seed(seed, p, hp, base, base_tok, Path(a.checkpoint), reports, a.quick)
        print(f"seed {seed}: {r['n_pairs']} pairs ({r['n_sampled']} from the SFT model's samples); reward model "
              f"held-out pair accuracy {r['rm']['accuracy']:.3f} " + " ".join(f"{k}={v:.2f}" for k, v in r["rm"]["by_kind"].items()))
        print(f"  {'model':9} {'accuracy':>9} {'synth':>6} {'real':>6} {'unseen':>7} {'reward':>8} {'KL':>8}")
        for k, row in r["table"].items():
            print(f"  {k:9} {row['accuracy']:9.3f} {row.get('synthetic_accuracy', float('nan')):6.3f} "
                  f"{row.get('real_accuracy', float('nan')):6.3f} {row['unseen_accuracy']:7.3f} {row['reward']:8.3f} "
                  f"{row['kl']:8.3f}" + ("  reward hacking" if row["hacking"] else ""))
        print("  seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items()))
    agg = summary(per_seed)
    print(f"over seeds {a.seeds}: accuracy mean ± sd, gain over SFT mean ± sd (min), exact KL to SFT")
    for k, row in agg.items():
        print(f"  {k:9} {row['accuracy']:.3f} ± {row['accuracy_sd']:.3f}   {row['gain']:+.3f} ± {row['gain_sd']:.3f} "
              f"({row['gain_min']:+.3f})   KL {row['kl']:.3f}" + (f"  hacking in {row['hacking']} seeds" if row["hacking"] else ""))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{seconds:.0f} s ({cpu:.0f} s of CPU); loadavg at start {load:.2f}")
    dpo_names = [v for v in hp.dpo_variants if v not in rlhf.CONTROLS]
    best_dpo = max(dpo_names, key=lambda v: agg[v]["gain"]) if dpo_names else None
    best_ppo = max([k for k in ("ppo", "ppo_ptx") if k in agg], key=lambda v: agg[v]["gain"])
    if not a.no_mlflow:
        _log_mlflow(hp, per_seed, agg)
    out = {"seeds": a.seeds, "sft_iters": hp.sft_iters, "summary": agg, "best_dpo": best_dpo, "best_ppo": best_ppo,
           "rm_pair_accuracy": statistics.fmean(r["rm"]["accuracy"] for r in per_seed.values()),
           "sft_accuracy": agg["sft"]["accuracy"], "ppo_accuracy": agg[best_ppo]["accuracy"],
           "dpo_accuracy": agg[best_dpo]["accuracy"] if best_dpo else None,
           "ppo_kl": agg[best_ppo]["kl"], "dpo_kl": agg[best_dpo]["kl"] if best_dpo else None,
           "seconds": seconds, "cpu_s": cpu, "loadavg": load, "quick": a.quick}
    print(json.dumps(out))
    return 0


def _log_mlflow(hp, per_seed: dict, agg: dict) -> None:
    """One run per seed and step; the summary over seeds on the reward model's runs."""
    import mlflow

    from seqcast.tracking import model_run, use_store
    from tasks.text.tracking import DATASET, FAMILY

    use_store()
    for seed, r in per_seed.items():
        with model_run(DATASET, "reward_model", FAMILY, tags={"protocol": "P3", "step": "reward_model", "seed": str(seed)}):
            mlflow.log_params({k: str(v) for k, v in hp.model_dump().items()})
            mlflow.log_metrics({"P3_rm_pair_accuracy": r["rm"]["accuracy"],
                                **{f"P3_rm_pair_accuracy_{k}": v for k, v in r["rm"]["by_kind"].items()}})
        for name, log in r["logs"].items():
            row = r["table"][name]
            with model_run(DATASET, name, FAMILY, tags={"protocol": "P3", "step": name, "seed": str(seed),
                                                        "reward_hacking": str(row["hacking"])}):
                for entry in log:
                    mlflow.log_metrics({f"P3_{name}_{k}_curve": v for k, v in entry.items() if k != "iter"},
                                       step=entry["iter"])
                mlflow.log_metrics({f"P3_chat_{k}": v for k, v in row.items() if isinstance(v, int | float)} |
                                   {f"P3_sft_{k}": v for k, v in r["table"]["sft"].items() if isinstance(v, int | float)} |
                                   {"P3_gain_mean_over_seeds": agg[name]["gain"], "P3_gain_sd_over_seeds": agg[name]["gain_sd"]})


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
