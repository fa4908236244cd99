"""The losses of InstructGPT's steps 2-3 and of DPO, as small functions of tensors (known-answer tested).

Written here rather than taken from TRL: its trainers need ``transformers`` model
classes, the project's GPT is its own ``nn.Module``. The formulas follow TRL's
(``trl/trainer/ppo_trainer.py``, ``dpo_trainer.py``, ``reward_trainer.py``):

- reward model (Ouyang et al. 2022, eq. 1): ``-log sigmoid(r(x, y_w) - r(x, y_l))``;
- DPO (Rafailov et al. 2023, eq. 7): ``-log sigmoid(beta * [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))])``;
  IPO (Azar et al. 2023): the squared distance of that margin to ``1 / (2 beta)``;
- PPO (Schulman et al. 2017): per-token reward ``-kl_coef * KL estimate`` (k1 or k3) plus the reward model's score
  on the last token; advantages by GAE; the clipped surrogate ``max(-A r, -A clip(r, 1-eps, 1+eps))`` and the
  clipped value loss ``0.5 * max((V - R)^2, (clip(V, V_old +- eps_v) - R)^2)``.

Sequences are (B, T) with a 0/1 ``mask`` of the policy's own tokens (assistant tokens:
tool results and prompts are not actions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[t+1] | ids[:t+1]): logits (B, T, V) of a forward on ids (B, T) -> (B, T-1)."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
    return logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def reward_model_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Pairwise (Bradley-Terry) loss of a reward model: scores (B,) of the preferred and the other answer."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def dpo_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float, kind: str = "sigmoid") -> tuple[torch.Tensor, torch.Tensor]:
    """DPO's loss and its implicit reward margin; inputs: log-probs (B,) of the answers under policy / reference
    (summed, or per token for a length-normalised variant).

    ``kind="ipo"``: IPO (Azar et al. 2023, eq. 17), ``(margin - 1 / (2 beta))^2``: it regresses the margin to a
    finite target instead of pushing it to infinity, the over-fitting of DPO on deterministic preferences.
    """
    margin = (pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)  # (B,)
    if kind == "ipo":
        return ((margin - 1 / (2 * beta)) ** 2).mean(), beta * margin.detach()
    return -F.logsigmoid(beta * margin).mean(), beta * margin.detach()


def token_kl(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Exact KL(pi || ref) of the next-token distributions at every action, summed per row: (B,), never negative.

    logits (B, T, V) of a forward on ids (B, T); ``mask`` (B, T-1) marks the actions as in :func:`token_logprobs`.
    Summing over the vocabulary at each position (instead of the sampled token's log-ratio, which can go
    negative) gives the divergence of the whole distributions along the sampled conversations.
    """
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    logq = F.log_softmax(ref_logits[:, :-1].float(), dim=-1)
    kl = (logp.exp() * (logp - logq)).sum(-1).clamp_min(0.0)  # (B, T-1); clamp: float rounding only
    return masked_sum(kl, mask)


def kl_penalty(logp: torch.Tensor, logp_ref: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from the sampled token's log-probs (Schulman 2020, "Approximating KL
    divergence"): ``k1 = log pi - log ref`` (unbiased, can be negative), ``k3 = (r - 1) - log r`` with
    ``r = ref / pi`` (unbiased, never negative; TRL's ``kl_estimator="k3"``)."""
    k1 = logp - logp_ref
    if estimator == "k1":
        return k1
    return torch.expm1(-k1) + k1


def ppo_rewards(score: torch.Tensor, logp_old: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor,
                kl_coef: float, estimator: str = "k3") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards (B, T): -kl_coef * KL estimate (:func:`kl_penalty`) on every action, + score on each row's
    last action.

    Returns (rewards, kl per row (B,) = the sum over actions of the estimate).
    """
    kl = kl_penalty(logp_old, logp_ref, estimator) * mask  # (B, T)
    rewards = -kl_coef * kl
    last = mask.size(1) - 1 - mask.flip(-1).float().argmax(-1)  # (B,) index of each row's last action
    rewards[torch.arange(mask.size(0)), last] += score
    return rewards, kl.sum(-1)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the actions of each row (positions with mask 0 are skipped).

    delta_t = r_t + gamma * V_next - V_t, A_t = delta_t + gamma * lam * A_next, where "next" is the next action of
    the row (0 after the last). Returns (advantages, returns = advantages + values), both (B, T), 0 off the mask.
    """
    B, T = rewards.shape
    adv = torch.zeros_like(rewards)
    next_v = torch.zeros(B, dtype=rewards.dtype)
    next_a = torch.zeros(B, dtype=rewards.dtype)
    for t in reversed(range(T)):
        m = mask[:, t].to(rewards.dtype)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        a = delta + gamma * lam * next_a
        adv[:, t] = a * m
        next_v = torch.where(m > 0, values[:, t], next_v)  # skip non-actions: carry the later action's value
        next_a = torch.where(m > 0, a, next_a)
    return adv, (adv + values) * mask


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Advantages normalised to mean 0, variance 1 over the actions."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def ppo_policy_loss(logp: torch.Tensor, logp_old: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                    clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipped surrogate (to minimise) and the fraction of clipped actions."""
    ratio = torch.exp(logp - logp_old)
    losses = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip))
    clipped = ((-adv * ratio.clamp(1 - clip, 1 + clip)) > (-adv * ratio)).float()
    return masked_mean(losses, mask), masked_mean(clipped, mask)


def ppo_value_loss(v: torch.Tensor, v_old: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float) -> torch.Tensor:
    """0.5 * max((V - R)^2, (V_old + clip(V - V_old, -clip, clip) - R)^2), averaged over the actions."""
    v_clipped = v_old + (v - v_old).clamp(-clip, clip)
    return 0.5 * masked_mean(torch.max((v - returns) ** 2, (v_clipped - returns) ** 2), mask)
