"""InstructGPT's steps 2 and 3 (reward model, PPO) and DPO, on the tool-using chat model.

Preference pairs (:func:`preference_pairs`) are built automatically, and openly: for a
question about a made-up world (``tasks/text/tool_data.py``) the *chosen* conversation is
the correct one (the right call, the answer copied from the result in the system
message's style); the *rejected* one is, by ``kind``:

- ``wrong_number``: the same call and result, the answer with a wrong value (or name, or verdict);
- ``invented``: no tool call, an answer with an invented number;
- ``style``: the right value in the other style (terse for "full sentence" and vice versa);
- ``wrong_call``: a call with a mis-copied series name, the tool's error, the error answer.

The reward model is the SFT model's backbone + a scalar head (pairwise loss); PPO
optimises the policy against it with a KL penalty to the SFT model; DPO optimises the
same pairs directly. All are judged by ground truth: exact answers on held-out questions.
"""

from __future__ import annotations

import json
import random

import torch

from models.text.gpt import GPT
from models.text.heads import SequenceHead, ValueHead
from tasks.text import tool_data
from tasks.text.chatml import encode_chat
from tasks.text.rlhf_losses import (dpo_loss, gae, masked_sum, ppo_policy_loss, ppo_rewards,
                               ppo_value_loss, reward_model_loss, token_logprobs, whiten)
from tasks.text.tool_chat import chat_turn
from tasks.text.tools import Toolbox, fmt3

KINDS = ("wrong_number", "invented", "style", "wrong_call")


def copy_gpt(model: GPT) -> GPT:
    m = GPT(model.config)
    m.load_state_dict(model.state_dict())
    return m


# ----------------------------------------------------------------- preference pairs


def _wrong(answer: str, result: dict, rng: random.Random) -> str:
    """The answer with its value replaced by a wrong one (a number x a factor, another verdict, another model)."""
    for key in ("value", "mean"):
        if key in result:
            v = float(result[key])
            wrong = fmt3(v * rng.choice([0.5, 0.8, 1.3, 2.0, 10.0]) + (1 if v == 0 else 0))
            return answer.replace(result[key], wrong) if wrong != result[key] else answer.replace(result[key], fmt3(v + 1))
    if "verdict" in result:
        other = rng.choice([v for v in tool_data.VERDICTS if v != result["verdict"]])
        return answer.replace(result["verdict"], other).replace(str(result["d"]), str((result["d"] + 1) % 3))
    if "d" in result:
        return answer.replace(str(result["d"]), str((result["d"] + 1) % 3))
    return answer + "0"


def preference_pair(rng: random.Random) -> dict:
    """One {prompt, chosen, rejected, kind} on a fresh made-up world."""
    forms, weights = zip(*tool_data.FORM_WEIGHTS.items())
    while True:
        world = tool_data.random_reports(rng)
        form = rng.choices(forms, weights)[0]
        q = tool_data.questions_of(world, form, rng)
        box = Toolbox(world)
        system = rng.choice(tool_data.SYSTEMS)
        msgs, ans = tool_data.conversation(form, q, box, system)
        result = json.loads(msgs[3]["content"])
        if "error" not in result:
            break
    prompt, chosen = msgs[:2], msgs[2:]
    kind = rng.choice(KINDS)
    if kind == "wrong_number":
        rejected = chosen[:2] + [{"role": "assistant", "content": _wrong(ans, result, rng)}]
    elif kind == "invented":
        rejected = [{"role": "assistant", "content": _wrong(ans, result, rng)}]
    elif kind == "style":
        other = tool_data.final_answer(form, q, result, terse=system != tool_data.SYSTEM_TERSE)
        rejected = chosen[:2] + [{"role": "assistant", "content": other}]
    else:
        call = json.loads(chosen[0]["content"])
        key = "series" if "series" in call else next(k for k in call if k != "tool")
        call[key] = call[key][:-1] + ("X" if call[key][-1] != "X" else "Y")
        bad = tool_data.compact(call)
        rejected = [{"role": "assistant", "content": bad}, {"role": "tool", "content": box.call(bad)},
                    {"role": "assistant", "content": tool_data.ERROR_ANSWER}]
    if rejected == chosen:  # e.g. a terse answer whose wrong value equals the right one: try again
        return preference_pair(rng)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "kind": kind}


def preference_pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [preference_pair(rng) for _ in range(n)]


def encode_batch(convs: list[list[dict]], tok, block_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T), lengths (B,), and the action mask (B, T-1) of each *target* token (assistant tokens)."""
    enc = [encode_chat(c, tok) for c in convs]
    enc = [(ids[-block_size:], m[-block_size:]) for ids, m in enc]
    T = max(len(ids) for ids, _ in enc)
    x = torch.zeros(len(enc), T, dtype=torch.long)
    mask = torch.zeros(len(enc), T, dtype=torch.float32)
    for i, (ids, m) in enumerate(enc):
        x[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
    return x, torch.tensor([len(ids) for ids, _ in enc]), mask[:, 1:]


def sequence_logprob(model: GPT, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probabilities (B,) of the action tokens of each row."""
    return masked_sum(token_logprobs(model.head(x, model.hidden(x)), x), mask)


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
    by_kind = {k: sum(o for o, p in zip(ok, pairs) if p["kind"] == k) / max(1, sum(p["kind"] == k for p in pairs))
               for k in KINDS}
    return {"accuracy": sum(ok) / max(len(ok), 1), "by_kind": by_kind}


# ----------------------------------------------------------------- DPO


def train_dpo(sft: GPT, tok, pairs: list[dict], hp, seed: int) -> tuple[GPT, list[dict]]:
    """Direct preference optimisation of a copy of the SFT model (the SFT model is the frozen reference)."""
    torch.manual_seed(seed)
    policy, ref = copy_gpt(sft).train(), copy_gpt(sft).eval()
    opt = torch.optim.AdamW(policy.parameters(), lr=hp.dpo_lr, weight_decay=0.0)
    rng = random.Random(seed)
    T = sft.config.block_size
    log = []
    for it in range(hp.dpo_iters):
        batch = rng.sample(pairs, min(hp.batch_size, len(pairs)))
        x, _, m = encode_batch([p["prompt"] + p["chosen"] for p in batch] + [p["prompt"] + p["rejected"] for p in batch], tok, T)
        with torch.no_grad():
            ref_lp = sequence_logprob(ref, x, m)
        pi_lp = sequence_logprob(policy, x, m)
        n = len(batch)
        loss, margin = dpo_loss(pi_lp[:n], pi_lp[n:], ref_lp[:n], ref_lp[n:], hp.dpo_beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        log.append({"iter": it, "loss": loss.item(), "reward_accuracy": (margin > 0).float().mean().item()})
    return policy.eval(), log


# ----------------------------------------------------------------- PPO


def rollout(policy: GPT, tok, prompts: list[dict], temperature: float, max_new_tokens: int, seed: int) -> list[list[dict]]:
    """One sampled conversation per prompt {messages, toolbox}: the policy writes calls and answers, the tools run."""
    out = []
    for i, p in enumerate(prompts):
        msgs = [dict(m) for m in p["messages"]]
        chat_turn(policy, tok, msgs, p["toolbox"], max_new_tokens, temperature, seed + 7 * i, max_calls=1)
        out.append(msgs)
    return out


def train_ppo(sft: GPT, rm: SequenceHead, tok, hp, seed: int) -> tuple[GPT, list[dict]]:
    """PPO on fresh made-up-world questions: reward = RM score - kl_coef * KL(policy || SFT), clipped updates."""
    torch.manual_seed(seed)
    policy, ref = copy_gpt(sft), copy_gpt(sft).eval()
    value = ValueHead(sft.config.n_embd)
    opt = torch.optim.AdamW(list(policy.parameters()) + list(value.parameters()), lr=hp.ppo_lr, weight_decay=0.0)
    rng = random.Random(seed + 1)
    log = []
    T = sft.config.block_size
    for it in range(hp.ppo_iters):
        prompts = []
        for _ in range(hp.ppo_batch):
            world = tool_data.random_reports(rng)
            form = rng.choices(*zip(*tool_data.FORM_WEIGHTS.items()))[0]
            q = tool_data.questions_of(world, form, rng)
            msgs, _ = tool_data.conversation(form, q, Toolbox(world), rng.choice(tool_data.SYSTEMS))
            prompts.append({"messages": msgs[:2], "toolbox": Toolbox(world)})
        convs = rollout(policy, tok, prompts, hp.ppo_temperature, hp.max_new_tokens, seed + 1000 * it)
        x, lengths, m = encode_batch(convs, tok, T)
        with torch.no_grad():
            policy.eval()
            h = policy.hidden(x)
            logp_old = token_logprobs(policy.head(x, h), x)
            v_old = value(h)[:, :-1]  # V of the state before each target token
            logp_ref = token_logprobs(ref.head(x, ref.hidden(x)), x)
            s = rm(x, lengths).squeeze(-1)
            rewards, kl = ppo_rewards(s, logp_old, logp_ref, m, hp.kl_coef)
            adv, ret = gae(rewards, v_old, m, hp.gamma, hp.lam)
            adv = whiten(adv, m)
        policy.train()
        for _ in range(hp.ppo_epochs):
            h = policy.hidden(x)
            logp = token_logprobs(policy.head(x, h), x)
            pg, clipfrac = ppo_policy_loss(logp, logp_old, adv, m, hp.clip)
            vf = ppo_value_loss(value(h)[:, :-1], v_old, ret, m, hp.clip_value)
            loss = pg + hp.vf_coef * vf
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
        log.append({"iter": it, "score": s.mean().item(), "kl": kl.mean().item(), "pg_loss": pg.item(),
                    "vf_loss": vf.item(), "clipfrac": clipfrac.item()})
    return policy.eval(), log


# ----------------------------------------------------------------- judged by ground truth


@torch.no_grad()
def sampled_kl(policy: GPT, ref: GPT, tok, prompts: list[dict], max_new_tokens: int, seed: int) -> float:
    """KL(policy || ref) per conversation, estimated on the policy's own samples at temperature 1:
    the mean over conversations of the sum over its tokens of log pi - log ref."""
    convs = rollout(policy, tok, prompts, 1.0, max_new_tokens, seed)
    x, _, m = encode_batch(convs, tok, policy.config.block_size)
    return (sequence_logprob(policy, x, m) - sequence_logprob(ref, x, m)).mean().item()


@torch.no_grad()
def mean_reward(rm: SequenceHead, tok, convs: list[list[dict]]) -> float:
    return score(rm, tok, convs).mean().item()
