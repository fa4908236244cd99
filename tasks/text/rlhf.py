"""InstructGPT's steps 2 and 3 (reward model, PPO) and DPO with its known remedies, on the tool-using chat model.

Preference pairs, built openly for questions about made-up worlds (``tasks/text/tool_data.py``):
the *chosen* conversation is the correct one (the right call, the answer copied from the
result in the system message's style); the *rejected* one is, by ``kind``:

- ``sampled``: the SFT model's own wrong conversation for that question (its greedy answer,
  else one sampled at temperature 1, judged by the tools' ground truth), against one of its
  right ones (or the reference when it never got it right): preferences where the model
  actually errs;
- ``wrong_value``: the same call and result, the answer with another value;
- ``invented``: no tool call, an answer with an invented number;
- ``style``: the right value in the other style (terse for "full sentence" and vice versa);
- ``wrong_call``: a call with another name of the world in one argument, its result, its answer;
- ``refusal``: a question no tool answers, the refusal against an invented answer.

The reward model is the SFT model's backbone + a scalar head (pairwise loss); PPO
optimises the policy against it with a KL penalty to the SFT model (the non-negative k3
estimate); DPO optimises the same pairs directly, with the remedies against its
over-optimisation (``dpo_variant``): its ``beta``, IPO's loss, length-normalised log-probs,
and an SFT term on the chosen answer (RPO); beside them, the control ``sft_chosen`` (the SFT term
alone, the same steps) says what the preference term adds. All are judged by ground truth: exact answers
on held-out questions; the KL to the SFT model is the exact divergence of the next-token
distributions along the policy's own samples.
"""

from __future__ import annotations

import json
import random

import torch

from models.text.gpt import GPT
from models.text.heads import SequenceHead, ValueHead
from tasks.text import tool_data
from tasks.text.chatml import encode_chat, pad_right
from tasks.text.phrasings import CANT_ANSWER, out_of_scope, question
from tasks.text.rlhf_losses import (dpo_loss, gae, masked_mean, masked_sum, ppo_policy_loss, ppo_rewards,
                                    ppo_value_loss, reward_model_loss, token_kl, token_logprobs, whiten)
from tasks.text.tool_chat import chat_turn
from tasks.text.tools import Toolbox, fmt3

RULE_KINDS = ("wrong_value", "invented", "style", "wrong_call", "refusal")
KINDS = ("sampled", *RULE_KINDS)
DPO_VARIANTS = {  # the remedies against DPO's reward hacking, measured side by side (seqcast bench rlhf)
    "dpo": {"loss": "sigmoid", "length_norm": False, "sft_term": False},
    "dpo_norm": {"loss": "sigmoid", "length_norm": True, "sft_term": False},
    "ipo": {"loss": "ipo", "length_norm": True, "sft_term": False},
    "rpo": {"loss": "sigmoid", "length_norm": False, "sft_term": True},  # + rpo_alpha x the SFT term
    "sft_chosen": {"loss": None, "length_norm": False, "sft_term": True},  # the control: the SFT term alone
}
CONTROLS = ("sft_chosen",)  # not preference tuning: what the same steps of supervised learning on the chosen give


def copy_gpt(model: GPT) -> GPT:
    m = GPT(model.config)
    m.load_state_dict(model.state_dict())
    return m


# ----------------------------------------------------------------- preference pairs


def _question(rng: random.Random) -> tuple[str, dict, Toolbox, str, list[dict], str, dict]:
    """A fresh made-up world and a question about it whose call succeeds: (kind, slots, box, system, msgs, answer, result)."""
    kinds, weights = zip(*tool_data.KIND_WEIGHTS.items())
    while True:
        world = tool_data.random_reports(rng)
        kind = rng.choices(kinds, weights)[0]
        q = tool_data.slots_of(world, kind, rng)
        if q is None:
            continue
        box = Toolbox(world)
        system = rng.choice(tool_data.SYSTEMS)
        msgs, ans, _ = tool_data.conversation(kind, q, box, system, question(kind, q, rng, "train"))
        result = json.loads(msgs[3]["content"])
        if "error" not in result:
            return kind, q, box, system, msgs, ans, result


def _wrong(answer: str, result: dict, rng: random.Random) -> str:
    """The answer with its value replaced by a wrong one (a number x a factor, another verdict, another d)."""
    for key in ("value", "mean"):
        if key in result and result[key] in answer:
            v = float(result[key])
            wrong = fmt3(v * rng.choice([0.5, 0.8, 1.3, 2.0, 10.0]) + (1 if v == 0 else 0))
            return answer.replace(result[key], wrong if wrong != result[key] else fmt3(v + 1))
    if "verdict" in result and result["verdict"] in answer:
        return answer.replace(result["verdict"], rng.choice([v for v in tool_data.VERDICTS if v != result["verdict"]]))
    if "d" in result:
        return answer.replace(str(result["d"]), str((result["d"] + 1) % 3))
    return answer + " 0"


def rule_pair(rng: random.Random, kind: str | None = None) -> dict:
    """One {prompt, chosen, rejected, kind} of a :data:`RULE_KINDS` kind on a fresh made-up world."""
    kind = kind or rng.choice(RULE_KINDS)
    if kind == "refusal":
        system = rng.choice(tool_data.SYSTEMS)
        names = {"series": tool_data.random_series(rng), "model": tool_data.random_model(rng),
                 "metric": tool_data.random_metric(rng), "dataset": tool_data.random_dataset(rng)}
        prompt = tool_data.no_tool_conversation(system, out_of_scope(names, rng, "train"), "")[:2]
        invented = fmt3(tool_data.random_value(rng))
        return {"prompt": prompt, "chosen": [{"role": "assistant", "content": CANT_ANSWER}],
                "rejected": [{"role": "assistant", "content": invented if system == tool_data.SYSTEM_TERSE
                              else f"It is {invented}."}], "kind": kind}
    qkind, q, box, system, msgs, ans, result = _question(rng)
    prompt, chosen = msgs[:2], msgs[2:]
    if kind == "wrong_value":
        rejected = chosen[:2] + [{"role": "assistant", "content": _wrong(ans, result, rng)}]
    elif kind == "invented":
        rejected = [{"role": "assistant", "content": _wrong(ans, result, rng)}]
    elif kind == "style":
        other = tool_data.final_answer(qkind, q, result, terse=system != tool_data.SYSTEM_TERSE)
        rejected = chosen[:2] + [{"role": "assistant", "content": other}]
    else:  # wrong_call: another name of the world in one argument (what a copy model confuses)
        call = json.loads(chosen[0]["content"])
        names = [v for k, v in call.items() if k != "tool"] + sorted(box.reports.backtest)
        key = rng.choice([k for k in call if k != "tool"])
        others = [n for n in names if n != call[key]] or [call[key] + "X"]
        call[key] = rng.choice(others)
        bad = tool_data.compact(call)
        res = box.call(bad)
        wrong_q = {**q, **{k: v for k, v in call.items() if k in q}}
        rejected = [{"role": "assistant", "content": bad}, {"role": "tool", "content": res},
                    {"role": "assistant", "content": tool_data.final_answer(qkind, wrong_q, json.loads(res),
                                                                          system == tool_data.SYSTEM_TERSE)}]
    if rejected == chosen:  # e.g. a swapped name equal to the right one: try again
        return rule_pair(rng, kind)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "kind": kind}


def rule_pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [rule_pair(rng, RULE_KINDS[i % len(RULE_KINDS)]) for i in range(n)]


def sampled_pairs(model: GPT, tok, n: int, seed: int, samples: int = 4, temperature: float = 1.0,
                  max_new_tokens: int = 60, max_tries: int | None = None, greedy: bool = False) -> list[dict]:
    """Up to ``n`` pairs from the model's own samples: for a made-up-world question, ``samples`` conversations at
    ``temperature``; one it got wrong (the final answer is not the reference) is rejected, one it got right — or
    the reference conversation — is chosen. Questions it always answers right give no pair.

    ``greedy``: the first sample is the greedy one, so a wrong greedy answer — the mistake the model makes when
    it is judged — is the one rejected (samples at ``temperature`` err elsewhere, where greedy decoding never goes).
    """
    rng = random.Random(seed)
    out = []
    for t in range(max_tries or 4 * n):
        if len(out) >= n:
            break
        _, _, box, _, msgs, ans, _ = _question(rng)
        right, wrong = [], []
        for k in range(samples):
            conv = [dict(m) for m in msgs[:2]]
            temp = 0.0 if greedy and k == 0 else temperature
            got = chat_turn(model, tok, conv, box, max_new_tokens, temp, seed=seed + 97 * t + k, max_calls=1)
            (right if got == ans else wrong).append(conv[2:])
        if wrong:
            out.append({"prompt": msgs[:2], "chosen": right[0] if right else msgs[2:], "rejected": wrong[0],
                        "kind": "sampled"})
    return out


def encode_batch(convs: list[list[dict]], tok, block_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T), lengths (B,), and the action mask (B, T-1) of each *target* token (assistant tokens)."""
    enc = [encode_chat(c, tok) for c in convs]
    enc = [(ids[-block_size:], m[-block_size:]) for ids, m in enc]
    x, mask = pad_right(enc)
    return x, torch.tensor([len(ids) for ids, _ in enc]), mask[:, 1:]


def sequence_logprob(model: GPT, x: torch.Tensor, mask: torch.Tensor, length_norm: bool = False) -> torch.Tensor:
    """Log-probabilities (B,) of the action tokens of each row: summed, or their mean with ``length_norm``."""
    lp = masked_sum(token_logprobs(model.head(x, model.hidden(x)), x), mask)
    return lp / mask.sum(-1).clamp(min=1) if length_norm else lp


# ----------------------------------------------------------------- reward model


def train_reward_model(sft: GPT, tok, pairs: list[dict], hp, seed: int) -> SequenceHead:
    """The SFT backbone + a scalar head on the last token, trained with the pairwise loss."""
    torch.manual_seed(seed)
    rm = SequenceHead(copy_gpt(sft), 1)
    opt = torch.optim.AdamW(rm.parameters(), lr=hp.rm_lr, weight_decay=0.0)
    rng = random.Random(seed)
    rm.train()
    for _ in range(hp.rm_iters):
        batch = rng.sample(pairs, min(hp.batch_size, len(pairs)))
        r_c, r_r = score_pairs(rm, tok, batch)
        loss = reward_model_loss(r_c, r_r)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
        opt.step()
    return rm.eval()


def score(rm: SequenceHead, tok, convs: list[list[dict]]) -> torch.Tensor:
    x, lengths, _ = encode_batch(convs, tok, rm.gpt.config.block_size)
    return rm(x, lengths).squeeze(-1)  # (B,)


def score_pairs(rm: SequenceHead, tok, pairs: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    r = score(rm, tok, [p["prompt"] + p["chosen"] for p in pairs] + [p["prompt"] + p["rejected"] for p in pairs])
    return r[: len(pairs)], r[len(pairs) :]


@torch.no_grad()
def pair_accuracy(rm: SequenceHead, tok, pairs: list[dict]) -> dict:
    """Share of held-out pairs whose chosen answer scores higher, overall and by kind."""
    rm.eval()
    ok = []
    for i in range(0, len(pairs), 32):
        r_c, r_r = score_pairs(rm, tok, pairs[i : i + 32])
        ok += (r_c > r_r).tolist()
    kinds = sorted({p["kind"] for p in pairs})
    by_kind = {k: sum(o for o, p in zip(ok, pairs) if p["kind"] == k) / sum(p["kind"] == k for p in pairs) for k in kinds}
    return {"accuracy": sum(ok) / max(len(ok), 1), "by_kind": by_kind}


# ----------------------------------------------------------------- DPO


def train_dpo(sft: GPT, tok, pairs: list[dict], hp, seed: int, variant: str = "dpo") -> tuple[GPT, list[dict]]:
    """Direct preference optimisation of a copy of the SFT model (the SFT model is the frozen reference).

    ``variant`` (:data:`DPO_VARIANTS`): the loss (DPO's sigmoid, IPO's square, or none for the control),
    summed or length-normalised log-probabilities, and with ``sft_term`` ``hp.rpo_alpha`` x the mean negative
    log-likelihood of the chosen answers' tokens (RPO).
    """
    v = DPO_VARIANTS[variant]
    torch.manual_seed(seed)
    policy, ref = copy_gpt(sft).train(), copy_gpt(sft).eval()
    opt = torch.optim.AdamW(policy.parameters(), lr=hp.dpo_lr, weight_decay=0.0)
    rng = random.Random(seed)
    T = sft.config.block_size
    log = []
    for it in range(hp.dpo_iters):
        batch = rng.sample(pairs, min(hp.batch_size, len(pairs)))
        x, _, m = encode_batch([p["prompt"] + p["chosen"] for p in batch] + [p["prompt"] + p["rejected"] for p in batch], tok, T)
        n = len(batch)
        with torch.no_grad():
            ref_lp = sequence_logprob(ref, x, m, v["length_norm"])
        logits = policy.head(x, policy.hidden(x))
        tok_lp = token_logprobs(logits, x)  # (2n, T-1)
        pi_lp = masked_sum(tok_lp, m)
        if v["length_norm"]:
            pi_lp = pi_lp / m.sum(-1).clamp(min=1)
        pref, margin = dpo_loss(pi_lp[:n], pi_lp[n:], ref_lp[:n], ref_lp[n:], hp.dpo_beta, v["loss"] or "sigmoid")
        loss = pref if v["loss"] else 0.0  # the control has no preference term (its margin is still logged)
        if v["sft_term"]:
            nll = -masked_mean(tok_lp[:n], m[:n])  # the chosen answers' tokens
            loss = loss + (hp.rpo_alpha if v["loss"] else 1.0) * nll
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        log.append({"iter": it, "loss": loss.item(), "reward_accuracy": (margin > 0).float().mean().item(),
                    "margin": margin.mean().item()})
    return policy.eval(), log


# ----------------------------------------------------------------- PPO


def rollout(policy: GPT, tok, prompts: list[dict], temperature: float, max_new_tokens: int,
            seed: int) -> tuple[list[list[dict]], list[tuple[list[int], list[int], int]]]:
    """One sampled conversation per prompt {messages, toolbox}: the policy writes calls and answers, the tools run.

    Returns the conversations (what the reward model reads) and the policy's turns as it took them: (the
    context's ids, the ids it wrote, the conversation's index). The turns, not a re-encoding of the text, are
    PPO's actions: with a copying tokenizer the text of a turn encodes to other tokens than the sampled ones
    (its slots are numbered anew, a word spelt out is read as a copy), and credit given to tokens the policy
    never chose moves it elsewhere.
    """
    convs, turns = [], []
    for i, p in enumerate(prompts):
        msgs, trace = [dict(m) for m in p["messages"]], []
        chat_turn(policy, tok, msgs, p["toolbox"], max_new_tokens, temperature, seed + 7 * i, max_calls=1, trace=trace)
        convs.append(msgs)
        turns += [(ctx, wrote, i) for ctx, wrote in trace]
    return convs, turns


def turn_batch(turns: list[tuple[list[int], list[int], int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The turns of :func:`rollout` as rows: right-padded ids (B, T) of context + written tokens, the action mask
    (B, T-1) of the written ones as targets, and each row's conversation (B,)."""
    x, mask = pad_right([(ctx + wrote, [0] * len(ctx) + [1] * len(wrote)) for ctx, wrote, _ in turns])
    return x, mask[:, 1:], torch.tensor([i for _, _, i in turns])


def ppo_prompts(n: int, rng: random.Random) -> list[dict]:
    out = []
    for _ in range(n):
        _, _, box, _, msgs, _, _ = _question(rng)
        out.append({"messages": msgs[:2], "toolbox": box})
    return out


def train_ppo(sft: GPT, rm: SequenceHead, tok, hp, seed: int, ptx: list[list[dict]] | None = None,
              ptx_coef: float = 0.0) -> tuple[GPT, list[dict]]:
    """PPO on fresh made-up-world questions: reward = RM score - kl_coef * KL(policy || SFT), clipped updates.

    Each of the policy's turns (its call, its answer) is a row with the tokens it sampled as actions; both end
    with the conversation's score (gamma = 1: the call earns what the answer it leads to earns). The policy is
    the model at ``ppo_temperature``: it samples there and its ratios and KL are of the tempered distributions
    (the greedy answer, the one judged, is the mode of every temperature's).

    ``ptx`` and ``ptx_coef`` > 0: InstructGPT's PPO-ptx (Ouyang et al. 2022, eq. 2), every update also adds
    ``ptx_coef`` x the mean negative log-likelihood of a batch of these supervised conversations (the
    paper mixes in pretraining text; here the chosen answers of the preference pairs), against the
    regressions the reward model alone lets through.
    """
    torch.manual_seed(seed)
    policy, ref = copy_gpt(sft), copy_gpt(sft).eval()
    value = ValueHead(sft.config.n_embd)
    opt = torch.optim.AdamW(list(policy.parameters()) + list(value.parameters()), lr=hp.ppo_lr, weight_decay=0.0)
    rng, ptx_rng = random.Random(seed + 1), random.Random(seed + 2)  # the same prompts with and without ptx
    log = []
    T, tau = sft.config.block_size, hp.ppo_temperature
    for it in range(hp.ppo_iters):
        convs, turns = rollout(policy, tok, ppo_prompts(hp.ppo_batch, rng), tau, hp.max_new_tokens, seed + 1000 * it)
        x, m, conv = turn_batch(turns)
        with torch.no_grad():
            policy.eval()
            h = policy.hidden(x)
            logp_old = token_logprobs(policy.head(x, h) / tau, x)
            v_old = value(h)[:, :-1]  # V of the state before each target token
            logp_ref = token_logprobs(ref.head(x, ref.hidden(x)) / tau, x)
            s = score(rm, tok, convs)[conv]  # each turn: its conversation's score
            rewards, kl = ppo_rewards(s, logp_old, logp_ref, m, hp.kl_coef, hp.kl_estimator)
            adv, ret = gae(rewards, v_old, m, hp.gamma, hp.lam)
            adv = whiten(adv, m)
        policy.train()
        for _ in range(hp.ppo_epochs):
            h = policy.hidden(x)
            logp = token_logprobs(policy.head(x, h) / tau, x)
            pg, clipfrac = ppo_policy_loss(logp, logp_old, adv, m, hp.clip)
            vf = ppo_value_loss(value(h)[:, :-1], v_old, ret, m, hp.clip_value)
            loss = pg + hp.vf_coef * vf
            if ptx and ptx_coef:
                xs, _, ms = encode_batch(ptx_rng.sample(ptx, min(hp.batch_size, len(ptx))), tok, T)
                lp = token_logprobs(policy.head(xs, policy.hidden(xs)), xs)
                loss = loss - ptx_coef * masked_mean(lp, ms)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
        log.append({"iter": it, "score": s.mean().item(), "kl": kl.mean().item(), "pg_loss": pg.item(),
                    "vf_loss": vf.item(), "clipfrac": clipfrac.item()})
    return policy.eval(), log


# ----------------------------------------------------------------- judged by ground truth


@torch.no_grad()
def exact_kl(policy: GPT, ref: GPT, tok, prompts: list[dict], max_new_tokens: int, seed: int) -> float:
    """KL(policy || ref) per conversation along the policy's own samples at temperature 1: at every token it
    wrote, in the context it wrote it in, the exact divergence of the two next-token distributions, summed over
    the conversation; never negative."""
    _, turns = rollout(policy, tok, prompts, 1.0, max_new_tokens, seed)
    x, m, _ = turn_batch(turns)
    return (token_kl(policy.head(x, policy.hidden(x)), ref.head(x, ref.hidden(x)), m).sum() / len(prompts)).item()


@torch.no_grad()
def mean_reward(rm: SequenceHead, tok, convs: list[list[dict]]) -> float:
    return score(rm, tok, convs).mean().item()
