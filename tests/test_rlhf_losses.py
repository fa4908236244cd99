"""Known-answer tests of the reward-model, DPO and PPO losses (values worked out by hand)."""

from __future__ import annotations

import math

import torch

from tasks.text.rlhf_losses import (dpo_loss, gae, kl_penalty, ppo_policy_loss, ppo_rewards, ppo_value_loss,
                                    reward_model_loss, token_kl, token_logprobs, whiten)

LOG1P_EXP_M1 = math.log1p(math.exp(-1))  # -log sigmoid(1) = 0.31326...


def test_reward_model_loss_is_minus_log_sigmoid_of_the_margin():
    assert math.isclose(reward_model_loss(torch.tensor([1.0]), torch.tensor([0.0])).item(), LOG1P_EXP_M1, rel_tol=1e-6)
    assert math.isclose(reward_model_loss(torch.tensor([0.0, 3.0]), torch.tensor([0.0, 3.0])).item(), math.log(2),
                        rel_tol=1e-6)


def test_dpo_loss_known_answers():
    # margin = (-1 - -2) - (-3 - -2) = 2, beta 0.5 -> -log sigmoid(1)
    loss, reward = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.5)
    assert math.isclose(loss.item(), LOG1P_EXP_M1, rel_tol=1e-6) and math.isclose(reward.item(), 1.0)
    # the policy equal to the reference: log 2, whatever the log-probs
    loss, _ = dpo_loss(torch.tensor([-5.0]), torch.tensor([-1.0]), torch.tensor([-5.0]), torch.tensor([-1.0]), 0.1)
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6)


def test_gae_known_answers():
    r = torch.tensor([[0.0, 0.0, 1.0]])
    adv, ret = gae(r, torch.zeros(1, 3), torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[1.0, 1.0, 1.0]]))
    adv, _ = gae(r, torch.zeros(1, 3), torch.ones(1, 3), gamma=0.5, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[0.25, 0.5, 1.0]]))
    # a non-action in the middle (a tool result) is skipped: A_2 = 1 - 0.2, A_0 = 0 + 0.2 - 0.5 + A_2
    adv, ret = gae(r, torch.tensor([[0.5, 9.0, 0.2]]), torch.tensor([[1.0, 0.0, 1.0]]), gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[0.5, 0.0, 0.8]]))
    assert torch.allclose(ret, torch.tensor([[1.0, 0.0, 1.0]]))


def test_ppo_rewards_put_the_score_on_the_last_action_and_the_kl_on_every_action():
    logp_old = torch.tensor([[0.1, 0.2, 0.3]])
    rewards, kl = ppo_rewards(torch.tensor([2.0]), logp_old, torch.zeros(1, 3), torch.tensor([[1.0, 1.0, 0.0]]), 0.5,
                              estimator="k1")
    assert torch.allclose(rewards, torch.tensor([[-0.05, 1.9, 0.0]]))
    assert math.isclose(kl.item(), 0.3, rel_tol=1e-6)
    _, kl3 = ppo_rewards(torch.tensor([2.0]), logp_old, torch.zeros(1, 3), torch.tensor([[1.0, 1.0, 0.0]]), 0.5)
    assert math.isclose(kl3.item(), math.expm1(-0.1) + 0.1 + math.expm1(-0.2) + 0.2, rel_tol=1e-6)


def test_k3_estimate_is_never_negative_and_k1_can_be():
    logp, ref = torch.tensor([-2.0, -0.5, -1.0]), torch.tensor([-1.0, -1.5, -1.0])
    k1, k3 = kl_penalty(logp, ref, "k1"), kl_penalty(logp, ref, "k3")
    assert k1[0] < 0 and (k3 >= 0).all() and k3[2] == 0
    assert math.isclose(k3[0].item(), math.e - 1 - 1, rel_tol=1e-6)  # r = ref/pi = e: (e - 1) - 1


def test_ipo_loss_regresses_the_margin_to_one_over_two_beta():
    # margin 2, beta 0.25 -> target 2: loss 0; margin 0 -> 4
    loss, _ = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.25, "ipo")
    assert loss.item() == 0.0
    loss, _ = dpo_loss(torch.tensor([-2.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.25, "ipo")
    assert math.isclose(loss.item(), 4.0)


def test_token_kl_is_the_exact_divergence_of_the_distributions():
    # one action position: p = (0.5, 0.5), q = (0.25, 0.75): KL = 0.5 ln 2 + 0.5 ln(2/3)
    p = torch.log(torch.tensor([[[0.5, 0.5], [0.5, 0.5]]]))
    q = torch.log(torch.tensor([[[0.25, 0.75], [0.9, 0.1]]]))
    kl = token_kl(p, q, torch.tensor([[1.0]]))
    assert math.isclose(kl.item(), 0.5 * math.log(2) + 0.5 * math.log(2 / 3), rel_tol=1e-5)
    assert token_kl(p, p, torch.tensor([[1.0]])).item() == 0.0


def test_ppo_clipped_surrogate_known_answers():
    m = torch.ones(1, 1)
    zero = torch.zeros(1, 1)
    loss, frac = ppo_policy_loss(zero, zero, torch.ones(1, 1), m, 0.2)
    assert math.isclose(loss.item(), -1.0) and frac.item() == 0.0
    # ratio 1.5 with A = +1: clipped to 1.2 -> loss -1.2
    loss, frac = ppo_policy_loss(torch.log(torch.tensor([[1.5]])), zero, torch.ones(1, 1), m, 0.2)
    assert math.isclose(loss.item(), -1.2, rel_tol=1e-6) and frac.item() == 1.0
    # ratio 0.5 with A = -1: clipped to 0.8 -> loss 0.8 (the pessimistic side)
    loss, _ = ppo_policy_loss(torch.log(torch.tensor([[0.5]])), zero, -torch.ones(1, 1), m, 0.2)
    assert math.isclose(loss.item(), 0.8, rel_tol=1e-6)
    # ratio 0.5 with A = +1: not clipped (the unclipped term is the larger loss) -> -0.5
    loss, _ = ppo_policy_loss(torch.log(torch.tensor([[0.5]])), zero, torch.ones(1, 1), m, 0.2)
    assert math.isclose(loss.item(), -0.5, rel_tol=1e-6)


def test_ppo_value_loss_known_answers():
    m = torch.ones(1, 1)
    assert math.isclose(ppo_value_loss(torch.tensor([[2.0]]), torch.zeros(1, 1), torch.zeros(1, 1), m, 0.5).item(), 2.0)
    v = ppo_value_loss(torch.tensor([[0.1]]), torch.zeros(1, 1), torch.ones(1, 1), m, 0.5).item()
    assert math.isclose(v, 0.405, rel_tol=1e-6)


def test_token_logprobs_of_uniform_logits_and_whiten():
    ids = torch.tensor([[1, 2, 3]])
    lp = token_logprobs(torch.zeros(1, 3, 8), ids)
    assert lp.shape == (1, 2) and torch.allclose(lp, torch.full((1, 2), -math.log(8)))
    w = whiten(torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    assert math.isclose(w[0, :3].mean().item(), 0.0, abs_tol=1e-6) and w[0, 3].item() == 0.0
