"""Preference pairs, reward model / DPO (and its remedies) / PPO steps on tiny models, and `seqcast bench rlhf` as typed."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.text.gpt import GPT, GPTConfig
from seqcast.gpt_config import RLHFParams
from tasks.text import chat_sft, rlhf, tool_data
from tasks.text.phrasings import CANT_ANSWER
from tasks.text.tools import Toolbox

TINY = RLHFParams(n_pairs=8, batch_size=4, rm_iters=30, rm_lr=3e-3, dpo_iters=15, dpo_lr=3e-3, ppo_iters=1,
                  ppo_batch=2, ppo_epochs=1, max_new_tokens=12)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


def tiny():
    convs = tool_data.training_conversations(200, seed=0)
    t = chat_sft.word_tokenizer(convs, 3, 32)
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=256, vocab_size=t.vocab_size, n_layer=1, n_head=2, n_embd=16, rope=True)), t


def test_rule_pairs_differ_where_their_kind_says():
    pairs = rlhf.rule_pairs(50, seed=0)
    assert {p["kind"] for p in pairs} == set(rlhf.RULE_KINDS)
    for p in pairs:
        assert p["chosen"] != p["rejected"] and p["prompt"][0]["role"] == "system"
        if p["kind"] == "invented":
            assert len(p["rejected"]) == 1 and not p["rejected"][0]["content"].startswith("{")  # no tool call
        if p["kind"] == "wrong_call":  # the rejected call names another thing than the chosen one
            assert json.loads(p["rejected"][0]["content"]) != json.loads(p["chosen"][0]["content"])
        if p["kind"] in ("wrong_value", "style"):
            assert p["rejected"][:2] == p["chosen"][:2] and p["rejected"][-1]["content"] != p["chosen"][-1]["content"]
        if p["kind"] == "refusal":
            assert p["chosen"] == [{"role": "assistant", "content": CANT_ANSWER}]
            assert any(c.isdigit() for c in p["rejected"][0]["content"])  # an invented number


def test_sampled_pairs_reject_the_models_own_wrong_conversation():
    model, t = tiny()
    pairs = rlhf.sampled_pairs(model, t, 3, seed=0, samples=2, max_new_tokens=8)
    assert len(pairs) == 3 and all(p["kind"] == "sampled" for p in pairs)
    for p in pairs:  # an untrained model is always wrong: the chosen is the reference conversation
        box_answer = p["chosen"][-1]["content"]
        assert p["rejected"][-1]["content"] != box_answer and p["chosen"][0]["content"].startswith("{")


def test_greedy_sampled_pairs_reject_the_answer_the_model_is_judged_by():
    from tasks.text.tool_chat import chat_turn

    model, t = tiny()
    pairs = rlhf.sampled_pairs(model, t, 2, seed=4, samples=3, max_new_tokens=8, greedy=True)
    rng = random.Random(4)
    for p in pairs:  # the same questions, in order: the rejected is the greedy conversation
        _, _, box, _, msgs, _, _ = rlhf._question(rng)
        conv = [dict(m) for m in msgs[:2]]
        chat_turn(model, t, conv, box, 8, 0.0, max_calls=1)
        assert p["prompt"] == msgs[:2] and p["rejected"] == conv[2:]


def test_the_control_only_learns_the_chosen_answers():
    """sft_chosen: the SFT term alone, the chosen answers likelier; no term pushes the rejected ones down."""
    model, t = tiny()
    pairs = rlhf.rule_pairs(8, seed=5)
    x, _, m = rlhf.encode_batch([p["prompt"] + p["chosen"] for p in pairs], t, 256)
    with torch.no_grad():
        before = rlhf.sequence_logprob(model, x, m).mean()
    policy, log = rlhf.train_dpo(model, t, pairs, TINY, seed=0, variant="sft_chosen")
    with torch.no_grad():
        assert rlhf.sequence_logprob(policy, x, m).mean() > before
    plain = TINY.model_copy(update={"rpo_alpha": 0.0})  # alpha weighs RPO's term, not the control's
    again, _ = rlhf.train_dpo(model, t, pairs, plain, seed=0, variant="sft_chosen")
    assert all(torch.equal(a, b) for a, b in zip(policy.state_dict().values(), again.state_dict().values()))
    assert "sft_chosen" in rlhf.CONTROLS


def test_encode_batch_masks_the_assistant_tokens_of_each_row():
    _, t = tiny()
    p = rlhf.rule_pairs(1, seed=1)[0]
    x, lengths, m = rlhf.encode_batch([p["prompt"] + p["chosen"], p["prompt"]], t, 256)
    assert x.shape[0] == 2 and m.shape == (2, x.shape[1] - 1)
    assert m[1].sum() == 0 and m[0].sum() > 0  # a prompt alone has no actions
    assert lengths[0] > lengths[1]


def test_reward_model_and_every_dpo_variant_learn_the_training_pairs():
    model, t = tiny()
    pairs = rlhf.rule_pairs(8, seed=2)
    rm = rlhf.train_reward_model(model, t, pairs, TINY.model_copy(update={"rm_iters": 200}), seed=0)
    assert rlhf.pair_accuracy(rm, t, pairs)["accuracy"] >= 0.75  # it fits its own 8 pairs
    x, _, m = rlhf.encode_batch([p["prompt"] + p["chosen"] for p in pairs] + [p["prompt"] + p["rejected"] for p in pairs],
                                t, 256)
    with torch.no_grad():
        before = rlhf.sequence_logprob(model, x, m)
    for variant in set(rlhf.DPO_VARIANTS) - set(rlhf.CONTROLS):
        policy, log = rlhf.train_dpo(model, t, pairs, TINY, seed=0, variant=variant)
        with torch.no_grad():
            after = rlhf.sequence_logprob(policy, x, m)
        margin_gain = ((after[:8] - before[:8]) - (after[8:] - before[8:])).mean()
        assert margin_gain > 0, variant  # chosen made likelier relative to rejected than in the reference
        assert log[-1]["margin"] > log[0]["margin"], variant
    rpo, _ = rlhf.train_dpo(model, t, pairs, TINY, seed=0, variant="rpo")
    dpo, _ = rlhf.train_dpo(model, t, pairs, TINY, seed=0, variant="dpo")
    with torch.no_grad():  # the SFT term keeps the chosen answers themselves likelier than plain DPO does
        assert rlhf.sequence_logprob(rpo, x, m)[:8].mean() > rlhf.sequence_logprob(dpo, x, m)[:8].mean()


def test_ppo_actions_are_the_tokens_the_policy_chose_in_the_context_it_saw():
    """Greedy rollouts: every action of the turn rows is the argmax of the policy's logits there, and each row's
    context is what the model was shown. Re-encoding the conversations' text can give other tokens (the copying
    tokenizer numbers its slots anew), which is why PPO must not learn from it."""
    model, t = tiny()
    convs, turns = rlhf.rollout(model, t, rlhf.ppo_prompts(6, random.Random(2)), 0.0, 12, seed=0)
    assert {i for _, _, i in turns} == set(range(6)) and len(turns) >= 6  # every conversation, a call and an answer
    x, m, conv = rlhf.turn_batch(turns)
    assert conv.tolist() == [i for _, _, i in turns] and m.sum().item() == sum(len(w) for _, w, _ in turns)
    with torch.no_grad():
        best = model.head(x, model.hidden(x))[:, :-1].argmax(-1)
    assert torch.equal(best[m > 0], x[:, 1:][m > 0])
    for row, (ctx, wrote, i) in enumerate(turns):
        assert x[row, : len(ctx)].tolist() == ctx and x[row, len(ctx) : len(ctx) + len(wrote)].tolist() == wrote


def test_ppo_first_rollouts_have_zero_kl_and_the_exact_kl_is_never_negative():
    model, t = tiny()
    rm = rlhf.train_reward_model(model, t, rlhf.rule_pairs(4, seed=3), TINY.model_copy(update={"rm_iters": 1}), 0)
    for tau in (1.0, 0.5):  # the policy is the model at its sampling temperature: so is the reference it is held to
        policy, log = rlhf.train_ppo(model, rm, t, TINY.model_copy(update={"ppo_temperature": tau}), seed=0)
        assert len(log) == 1 and log[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # sampled from the SFT model itself
        assert log[0]["clipfrac"] == 0.0  # one pass over fresh rollouts: every ratio is 1 (the same distribution)
    prompts = rlhf.ppo_prompts(3, random.Random(0))
    assert rlhf.exact_kl(model, model, t, prompts, 8, seed=0) == pytest.approx(0.0, abs=1e-6)
    noisy = rlhf.copy_gpt(model)
    with torch.no_grad():
        noisy.lm_head.weight.add_(torch.randn_like(noisy.lm_head.weight))
    assert rlhf.exact_kl(noisy, model, t, prompts, 8, seed=0) > 0.01


def test_ppo_ptx_keeps_the_supervised_answers_likelier_than_plain_ppo():
    """PPO-ptx (InstructGPT's eq. 2): the same prompts and rollouts as PPO, + the NLL of supervised conversations."""
    model, t = tiny()
    pairs = rlhf.rule_pairs(6, seed=6)
    convs = [p["prompt"] + p["chosen"] for p in pairs]
    rm = rlhf.train_reward_model(model, t, pairs, TINY.model_copy(update={"rm_iters": 1}), 0)
    hp = TINY.model_copy(update={"ppo_iters": 3, "ppo_lr": 3e-3})
    plain, _ = rlhf.train_ppo(model, rm, t, hp, seed=0)
    ptx, log = rlhf.train_ppo(model, rm, t, hp, seed=0, ptx=convs, ptx_coef=3.0)
    x, _, m = rlhf.encode_batch(convs, t, 256)
    with torch.no_grad():
        assert rlhf.sequence_logprob(ptx, x, m).mean() > rlhf.sequence_logprob(plain, x, m).mean()
    assert len(log) == 3 and log[0]["kl"] == pytest.approx(0.0, abs=1e-5)


def test_seqcast_bench_rlhf_quick_as_typed(tmp_path):
    """The bench on a saved chat model (--sft-iters 0): per seed the SFT row has no gain and no KL, every other
    row's gain is its accuracy minus the SFT's, its KL is non-negative, and the summary is over both seeds."""
    model, t = tiny()
    from models.text.pyfunc import save_slim

    save_slim(model, tmp_path / "model.pt")
    t.save(tmp_path / "tokenizer.json")
    (tmp_path / "reports" / "backtest").mkdir(parents=True)
    (tmp_path / "reports" / "backtest" / "market.json").write_text(json.dumps({"^KS11": {"naive": {"P2a_mae": 12.5}}}))
    seqcast = str(Path(sys.executable).parent / "seqcast")
    proc = subprocess.run([seqcast, "bench", "rlhf", "--quick", "--no-mlflow", "--sft-iters", "0", "--seeds", "1", "2",
                           "--checkpoint", str(tmp_path), "--reports", str(tmp_path / "reports")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    s = out["summary"]
    assert out["seeds"] == [1, 2] and out["quick"] is True
    assert set(s) == {"sft", "ppo", "ppo_ptx", *rlhf.DPO_VARIANTS}
    assert out["ppo_accuracy"] == s[out["best_ppo"]]["accuracy"] and out["best_ppo"] in ("ppo", "ppo_ptx")
    assert s["sft"]["gain"] == 0.0 and s["sft"]["kl"] == 0.0
    for name, row in s.items():
        assert row["gain"] == pytest.approx(row["accuracy"] - s["sft"]["accuracy"]) and row["kl"] >= 0, name
    assert out["dpo_accuracy"] == s[out["best_dpo"]]["accuracy"] and out["best_dpo"] not in rlhf.CONTROLS


def test_toolbox_of_a_pair_answers_its_call():
    """A rule pair's chosen conversation is what its world's tools say (the pairs are judged by ground truth)."""
    rng = random.Random(5)
    kind, q, box, system, msgs, ans, result = rlhf._question(rng)
    assert json.loads(box.call(msgs[2]["content"])) == result and msgs[4]["content"] == ans
    assert isinstance(box, Toolbox)
