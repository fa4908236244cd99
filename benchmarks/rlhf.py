"""Reward model, PPO and DPO on the tool-using chat model, judged by ground truth (tasks/text/rlhf.py).

    seqcast bench rlhf [--quick] [--checkpoint checkpoints/gpt-chat] [--reports reports] [--no-mlflow]

Starts from the chat model of the ``gpt_chat_sft`` stage. Builds the preference pairs,
trains the reward model (held-out pair accuracy), DPO on the pairs and PPO against the
reward model with a KL penalty to the SFT model; then for SFT, PPO and DPO: exact-answer
accuracy on held-out questions (the pipeline's real reports and made-up worlds never
trained on), the reward model's mean score of their answers, and the KL to the SFT model.
Reward hacking (reward up, accuracy down) is flagged. MLflow: one run per step (tags
family=gpt, model=reward_model / ppo / dpo). Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main(argv: list[str] | None = None) -> int:
    from seqcast.env import configure

    configure()
    import torch

    from seqcast.config import load_params
    from seqcast.paths import project_root

    params = load_params()
    p = params.gpt
    ap = argparse.ArgumentParser(prog="seqcast bench rlhf", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(project_root() / p.paths.chat_checkpoints))
    ap.add_argument("--reports", default=str(project_root() / params.paths.reports))
    ap.add_argument("--quick", action="store_true", help="tiny settings (tests): a few iterations of everything")
    ap.add_argument("--no-mlflow", action="store_true")
    a = ap.parse_args(argv)

    from tasks.text import rlhf, tool_data
    from tasks.text.tool_chat import accuracy_on_sets, load_chat_model
    from tasks.text.tools import Reports, Toolbox

    hp = p.rlhf
    if a.quick:
        hp = hp.model_copy(update={"n_pairs": 16, "n_heldout_pairs": 8, "batch_size": 4, "rm_iters": 2, "dpo_iters": 2,
                                   "ppo_iters": 1, "ppo_batch": 2, "ppo_epochs": 1, "max_new_tokens": 8,
                                   "eval_per_form": 1, "eval_worlds": 1})
    torch.set_num_threads(p.train.threads or torch.get_num_threads())
    torch.manual_seed(p.seed)
    sft, tok = load_chat_model(a.checkpoint)
    reports = Reports.load(a.reports)
    load = os.getloadavg()
    t0 = time.perf_counter()
    pairs, held_pairs = rlhf.preference_pairs(hp.n_pairs, p.seed), rlhf.preference_pairs(hp.n_heldout_pairs, p.seed + 99)
    rm = rlhf.train_reward_model(sft, tok, pairs, hp, p.seed)
    rm_acc = rlhf.pair_accuracy(rm, tok, held_pairs)
    t_rm = time.perf_counter()
    dpo, dpo_log = rlhf.train_dpo(sft, tok, pairs, hp, p.seed)
    t_dpo = time.perf_counter()
    ppo, ppo_log = rlhf.train_ppo(sft, rm, tok, hp, p.seed)
    t_ppo = time.perf_counter()

    sets = tool_data.heldout_sets(reports, hp.eval_per_form, hp.eval_worlds, p.seed)
    everything = sets["real"] + sets["synthetic"]
    kl_prompts = [{"messages": q["messages"], "toolbox": Toolbox(rep)} for qs, rep in everything for q in qs]
    table = {}
    for name, model in (("sft", sft), ("ppo", ppo), ("dpo", dpo)):
        ev = {k: accuracy_on_sets(model, tok, s, hp.max_new_tokens) for k, s in sets.items()}
        convs = _conversations(ev)
        table[name] = {
            "accuracy": _pooled(ev),
            "real_accuracy": ev["real"]["accuracy"], "synthetic_accuracy": ev["synthetic"]["accuracy"],
            "reward": rlhf.mean_reward(rm, tok, convs) if convs else float("nan"),
            "kl": 0.0 if model is sft else rlhf.sampled_kl(model, sft, tok, kl_prompts, hp.max_new_tokens, p.seed),
        }
    t_eval = time.perf_counter()
    hacking = {k: table[k]["reward"] > table["sft"]["reward"] and table[k]["accuracy"] < table["sft"]["accuracy"]
               for k in ("ppo", "dpo")}
    print(f"preference pairs: {len(pairs)} train, {len(held_pairs)} held out; kinds {rlhf.KINDS}")
    print(f"reward model: held-out pair accuracy {rm_acc['accuracy']:.3f} " +
          " ".join(f"{k}={v:.2f}" for k, v in rm_acc["by_kind"].items()))
    print(f"{'model':6} {'accuracy':>9} {'real':>6} {'synth':>6} {'reward':>8} {'KL':>8}")
    for k, r in table.items():
        print(f"{k:6} {r['accuracy']:9.3f} {r['real_accuracy']:6.3f} {r['synthetic_accuracy']:6.3f} "
              f"{r['reward']:8.3f} {r['kl']:8.3f}" + ("  reward hacking" if hacking.get(k) else ""))
    seconds = {"reward_model": t_rm - t0, "dpo": t_dpo - t_rm, "ppo": t_ppo - t_dpo, "eval": t_eval - t_ppo}
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + f"; loadavg at start {load[0]:.2f}")
    best = max(("sft", "ppo", "dpo"), key=lambda k: (table[k]["accuracy"], k == "sft"))  # ties keep the SFT model
    print(f"best by held-out accuracy: {best}" + ("" if best == "sft" else " (registered as the chat model)"))
    if not a.no_mlflow:
        _log_mlflow(p, hp, rm_acc, table, dpo_log, ppo_log, hacking,
                    register={"ppo": ppo, "dpo": dpo}.get(best) if not a.quick else None, best=best, tok=tok)
    out = {"rm_pair_accuracy": rm_acc["accuracy"], "sft_accuracy": table["sft"]["accuracy"],
           "ppo_accuracy": table["ppo"]["accuracy"], "dpo_accuracy": table["dpo"]["accuracy"],
           "ppo_kl": table["ppo"]["kl"], "dpo_kl": table["dpo"]["kl"], "sft_reward": table["sft"]["reward"],
           "ppo_reward": table["ppo"]["reward"], "dpo_reward": table["dpo"]["reward"],
           "reward_hacking": hacking, "seconds": seconds, "loadavg": load[0], "quick": a.quick}
    print(json.dumps(out))
    return 0


def _pooled(ev: dict) -> float:
    n = sum(e["n"] for e in ev.values())
    return sum(e["accuracy"] * e["n"] for e in ev.values()) / max(n, 1)


def _conversations(ev: dict) -> list[list[dict]]:
    """The evaluated conversations rebuilt from the transcripts (prompt + the model's final answer)."""
    out = []
    for rows in (e["rows"] for e in ev.values()):
        for r in rows:
            out.append([{"role": "system", "content": r["system"]}, {"role": "user", "content": r["question"]},
                        *([{"role": "assistant", "content": r["call"]}] if r["call"] else []),
                        {"role": "assistant", "content": r["answer"]}])
    return out


def _log_mlflow(p, hp, rm_acc: dict, table: dict, dpo_log: list, ppo_log: list, hacking: dict, register=None,
                best: str = "sft", tok=None) -> None:
    """One run per step; the best model by held-out accuracy, when it is PPO's or DPO's, is registered as the chat model."""
    import mlflow

    from models.text.pyfunc import save_slim
    from seqcast.paths import project_root
    from seqcast.tracking import model_run, use_store
    from tasks.text.tracking import DATASET, FAMILY, log_pyfunc

    use_store()
    with model_run(DATASET, "reward_model", FAMILY, tags={"protocol": "P3", "step": "reward_model"}):
        mlflow.log_params({k: v for k, v in hp.model_dump().items() if k.startswith(("rm_", "n_", "batch"))})
        mlflow.log_metrics({"P3_rm_pair_accuracy": rm_acc["accuracy"],
                            **{f"P3_rm_pair_accuracy_{k}": v for k, v in rm_acc["by_kind"].items()}})
    for name, log in (("dpo", dpo_log), ("ppo", ppo_log)):
        with model_run(DATASET, name, FAMILY, tags={"protocol": "P3", "step": name,
                                                    "reward_hacking": str(hacking[name])}):
            mlflow.log_params({k: v for k, v in hp.model_dump().items() if k.startswith(name) or k in ("kl_coef", "clip")})
            for row in log:
                mlflow.log_metrics({f"P3_{name}_{k}_curve": v for k, v in row.items() if k != "iter"}, step=row["iter"])
            mlflow.log_metrics({f"P3_chat_{k}": v for k, v in table[name].items()} |
                               {f"P3_sft_{k}": v for k, v in table["sft"].items()})
            if register is not None and name == best:
                folder = project_root() / f"{p.paths.chat_checkpoints}-{name}"
                folder.mkdir(parents=True, exist_ok=True)
                save_slim(register, folder / "model.pt", {"sampling": {"temperature": 0.0, "max_new_tokens": hp.max_new_tokens}})
                tok.save(folder / "tokenizer.json")
                log_pyfunc(folder, p.registry.chat_model, p.registry.alias, True,
                           {"temperature": 0.0, "max_new_tokens": hp.max_new_tokens})


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
