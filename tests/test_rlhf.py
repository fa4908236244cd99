"""Preference pairs, reward model / DPO / PPO steps on a tiny model, and `seqcast bench rlhf` as typed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.gpt import GPT, GPTConfig
from models.gpt_pyfunc import save_slim
from models.text_tokenizers import CHATML_SPECIALS, CharTokenizer
from seqcast.gpt_config import RLHFParams
from tasks import rlhf, tool_data

TINY = RLHFParams(n_pairs=8, batch_size=4, rm_iters=30, rm_lr=3e-3, dpo_iters=15, dpo_lr=3e-3, ppo_iters=1,
                  ppo_batch=2, ppo_epochs=1, max_new_tokens=6)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


def tiny():
    t = CharTokenizer.train(tool_data.training_alphabet(), byte_fallback=True)
    t.add_special_tokens(CHATML_SPECIALS)
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=512, vocab_size=t.vocab_size, n_layer=1, n_head=2, n_embd=16, rope=True)), t


def test_preference_pairs_differ_only_in_the_answer_and_say_why():
    pairs = rlhf.preference_pairs(60, seed=0)
    assert {p["kind"] for p in pairs} == set(rlhf.KINDS)
    for p in pairs:
        assert p["chosen"] != p["rejected"] and p["prompt"][0]["role"] == "system"
        answer = p["chosen"][-1]["content"]
        if p["kind"] == "invented":
            assert len(p["rejected"]) == 1 and not p["rejected"][0]["content"].startswith("{")  # no tool call
        if p["kind"] == "wrong_call":
            assert "error" in json.loads(p["rejected"][1]["content"])
        if p["kind"] in ("wrong_number", "style"):
            assert p["rejected"][:2] == p["chosen"][:2] and p["rejected"][-1]["content"] != answer


def test_encode_batch_masks_the_assistant_tokens_of_each_row():
    _, t = tiny()
    p = rlhf.preference_pairs(1, seed=1)[0]
    x, lengths, m = rlhf.encode_batch([p["prompt"] + p["chosen"], p["prompt"]], t, 512)
    assert x.shape[0] == 2 and m.shape == (2, x.shape[1] - 1)
    assert m[1].sum() == 0 and m[0].sum() > 0  # a prompt alone has no actions
    assert lengths[0] > lengths[1]


def test_reward_model_and_dpo_learn_the_training_pairs():
    model, t = tiny()
    pairs = rlhf.preference_pairs(8, seed=2)
    # 90 iterations fit 6-8 of the 8 pairs depending on seed and float rounding (a clean CI fitted 4);
    # 200 fit all 8 for seeds 0-3 here
    rm = rlhf.train_reward_model(model, t, pairs, TINY.model_copy(update={"rm_iters": 200}), seed=0)
    assert rlhf.pair_accuracy(rm, t, pairs)["accuracy"] >= 0.75  # it fits its own 8 pairs
    policy, log = rlhf.train_dpo(model, t, pairs, TINY, seed=0)
    assert log[-1]["loss"] < log[0]["loss"]
    x, _, m = rlhf.encode_batch([pairs[0]["prompt"] + pairs[0]["chosen"]], t, 512)
    with torch.no_grad():
        assert rlhf.sequence_logprob(policy, x, m) > rlhf.sequence_logprob(model, x, m)  # chosen made likelier


def test_ppo_step_runs_and_reports_kl_and_score():
    model, t = tiny()
    rm = rlhf.train_reward_model(model, t, rlhf.preference_pairs(4, seed=3), TINY.model_copy(update={"rm_iters": 1}), 0)
    policy, log = rlhf.train_ppo(model, rm, t, TINY, seed=0)
    assert len(log) == 1 and {"score", "kl", "pg_loss", "vf_loss", "clipfrac"} <= set(log[0])
    assert abs(log[0]["kl"]) < 1e-4  # the first rollouts come from the SFT model itself: KL 0


def test_seqcast_bench_rlhf_quick_as_typed(tmp_path):
    model, t = tiny()
    save_slim(model, tmp_path / "model.pt")
    t.save(tmp_path / "tokenizer.json")
    (tmp_path / "reports" / "backtest").mkdir(parents=True)
    (tmp_path / "reports" / "backtest" / "market.json").write_text(json.dumps({"^KS11": {"naive": {"P2a_mae": 12.5}}}))
    seqcast = str(Path(sys.executable).parent / "seqcast")
    proc = subprocess.run([seqcast, "bench", "rlhf", "--quick", "--no-mlflow", "--checkpoint", str(tmp_path),
                           "--reports", str(tmp_path / "reports")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"rm_pair_accuracy", "sft_accuracy", "ppo_accuracy", "dpo_accuracy", "ppo_kl", "dpo_kl"} <= set(out)
    assert 0 <= out["rm_pair_accuracy"] <= 1 and out["quick"] is True
