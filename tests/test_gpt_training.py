"""The training loop: schedule, parameter groups, checkpoint + resume after a real SIGKILL."""

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from models.text.gpt import GPT, GPTConfig, configure_optimizer
import yaml
from pydantic import ValidationError

from seqcast.config import load_params
from seqcast.errors import ParamsError
from seqcast.gpt_config import GPTParams, ModelParams, TrainParams
from tasks.text.gpt_train import CKPT, get_lr, load_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]

# The script the subprocesses run: a tiny model on a fixed token stream, checkpoint every 10 iterations.
SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    from models.text.gpt import GPTConfig
    from seqcast.gpt_config import TrainParams
    from tasks.text.gpt_train import train
    from tasks.text.corpus import get_batch, estimate_loss

    out, delay = sys.argv[1], float(sys.argv[2])
    data = torch.arange(3000) % 13  # a learnable stream
    mc = GPTConfig(block_size=16, vocab_size=13, n_layer=2, n_head=2, n_embd=16)
    tc = TrainParams(batch_size=4, max_iters=60, warmup_iters=5, lr_decay_iters=60, eval_interval=10,
                     eval_iters=2, grad_accum=2, threads=1, optimizer=sys.argv[3])

    def batch(g):
        time.sleep(delay)  # slow enough to be killed mid-run
        return get_batch(data, 4, 16, g)

    train(mc, tc, batch, lambda m: {"val_loss": estimate_loss(m, data, 16, 4, 2)}, out, progress=False)
    """
)


def _run(out: Path, delay: float, optimizer: str = "adamw") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(out), str(delay), optimizer], cwd=ROOT, env=env)


def test_warmup_then_cosine_to_min_lr():
    c = TrainParams(lr=1e-3, min_lr=1e-4, warmup_iters=100, lr_decay_iters=2000)
    assert get_lr(0, c) < get_lr(50, c) < get_lr(99, c) <= c.lr
    assert math.isclose(get_lr(100, c), c.lr)
    assert math.isclose(get_lr(1050, c), (c.lr + c.min_lr) / 2)
    assert math.isclose(get_lr(2000, c), c.min_lr) and get_lr(5000, c) == c.min_lr


def test_wsd_is_flat_then_a_straight_line_down():
    c = TrainParams(lr=1e-2, min_lr=1e-3, warmup_iters=10, lr_decay_iters=100, max_iters=100, schedule="wsd",
                    cooldown_frac=0.4)
    assert get_lr(0, c) < get_lr(9, c) < c.lr
    assert get_lr(10, c) == get_lr(59, c) == get_lr(60, c) == c.lr  # stable until the last 40 %
    assert math.isclose(get_lr(80, c), (c.lr + c.min_lr) / 2)
    assert math.isclose(get_lr(100, c), c.min_lr) and get_lr(150, c) == c.min_lr


def test_every_group_follows_the_schedule_in_proportion():
    from tasks.text.gpt_train import build_optimizers, set_lr

    m = GPT(GPTConfig(block_size=8, vocab_size=7, n_layer=1, n_head=1, n_embd=8))
    c = TrainParams(optimizer="muon", lr=1e-3, muon_lr=0.02, min_lr=1e-4, warmup_iters=0, lr_decay_iters=10)
    muon, adamw = build_optimizers(m, c, "cpu")
    set_lr([muon, adamw], 10, c)  # the end of the decay: every group at a tenth of its peak
    assert all(math.isclose(g["lr"], 0.002) for g in muon.param_groups)
    assert all(math.isclose(g["lr"], 1e-4) for g in adamw.param_groups)


def test_no_weight_decay_on_norms_and_biases():
    m = GPT(GPTConfig(block_size=8, vocab_size=7, n_layer=1, n_head=1, n_embd=8, bias=True))
    opt = configure_optimizer(m, 0.1, 1e-3, (0.9, 0.99))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in m.parameters())  # tied weight counted once, nothing lost


def test_params_yaml_section_validates_and_the_schema_defaults_are_the_reference():
    p = load_params().gpt
    assert p.train.max_iters >= 1 and p.model.n_embd % p.model.n_head == 0
    ref_m, ref_t = ModelParams(), TrainParams()  # nanoGPT's "baby": what `bench gpt --recipe reference` trains
    assert (ref_m.n_layer, ref_m.n_head, ref_m.n_embd, ref_m.block_size) == (4, 4, 128, 64)
    assert (ref_t.batch_size, ref_t.max_iters, ref_t.lr, ref_t.optimizer, ref_t.schedule) == (12, 2000, 1e-3, "adamw", "cosine")


@pytest.mark.parametrize("section, bad", [
    ("train", {"lr": 0}), ("train", {"lr": -1e-3}), ("train", {"max_iters": 0}), ("train", {"dtype": "fp16"}),
    ("train", {"device": "tpu"}), ("train", {"batch_size": -2}), ("model", {"n_embd": 130}),
    ("model", {"mlp": "swish"}), ("sample", {"serve": {"top_p": 1.5}}),
])
def test_out_of_range_gpt_values_are_rejected_with_their_key(section, bad):
    raw = {section: bad}
    with pytest.raises(ValidationError) as err:
        GPTParams(**raw)
    msg = ParamsError.from_validation("params.yaml", err.value, GPTParams).render()
    assert msg.startswith(f"params.yaml: {section}.") and next(iter(bad)) in msg
    with pytest.raises(ValidationError):
        GPTParams(tokenizer="word")


def test_flow_refuses_bad_params_with_a_message_not_a_traceback(tmp_path):
    bad = yaml.safe_load((ROOT / "params.yaml").read_text())
    bad["gpt"]["train"]["lr"] = -0.1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    env = {**os.environ, "SEQCAST_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "flows.text_gpt"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "gpt.train.lr" in proc.stderr and "> 0" in proc.stderr  # the key and the rule, one line
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, optimizer):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    a = _run(whole, 0.0, optimizer)
    b = _run(killed, 0.03, optimizer)
    deadline = time.time() + 60
    while not (killed / CKPT).exists():  # the first checkpoint (iteration 10) is written atomically
        assert time.time() < deadline and b.poll() is None, "no checkpoint before the run ended"
        time.sleep(0.05)
    b.send_signal(signal.SIGKILL)
    assert b.wait() == -signal.SIGKILL
    stopped_at = load_checkpoint(killed / CKPT)["iter_num"]
    assert 0 < stopped_at < 60
    assert _run(killed, 0.0, optimizer).wait() == 0  # resumes from the checkpoint
    assert a.wait() == 0
    ca, cb = load_checkpoint(whole / CKPT), load_checkpoint(killed / CKPT)
    assert ca["iter_num"] == cb["iter_num"] == 60
    for k, v in ca["model"].items():
        assert torch.allclose(v, cb["model"][k], atol=1e-6), k
    assert [h["val_loss"] for h in ca["history"]] == pytest.approx([h["val_loss"] for h in cb["history"]], abs=1e-6)


def test_training_reduces_loss_and_finished_run_is_a_no_op(tmp_path):
    torch.set_num_threads(1)
    data = torch.arange(2000) % 11
    mc = GPTConfig(block_size=16, vocab_size=11, n_layer=1, n_head=2, n_embd=16)
    tc = TrainParams(batch_size=8, max_iters=80, warmup_iters=5, lr_decay_iters=80, lr=3e-3, eval_interval=40, eval_iters=2)
    from tasks.text.corpus import estimate_loss, get_batch

    ev = lambda m: {"val_loss": estimate_loss(m, data, 16, 8, 2)}  # noqa: E731
    res = train(mc, tc, lambda g: get_batch(data, 8, 16, g), ev, tmp_path, progress=False)
    assert res["history"][-1]["val_loss"] < 0.5 * res["history"][0]["val_loss"]
    assert res["timing"]["tokens_per_s"] > 0
    again = train(mc, tc, lambda g: get_batch(data, 8, 16, g), ev, tmp_path, progress=False)
    assert again["iter_num"] == 80 and len(again["history"]) == len(res["history"])


def test_compiled_blocks_train_as_eager_and_hand_back_a_plain_model(tmp_path):
    """`train.compile`: each block compiled for the training forward; the same losses, evaluation eager."""
    import copy

    from torch._dynamo.utils import counters

    from tasks.text.corpus import estimate_loss, get_batch

    torch.set_num_threads(1)
    data = torch.arange(2000) % 11
    mc = GPTConfig(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=16, rope=True, qk_norm=True, mlp="relu2")
    ev = lambda m: {"val_loss": estimate_loss(m, data, 16, 8, 2)}  # noqa: E731
    runs = {}
    for compiled in (False, True):
        tc = TrainParams(batch_size=8, max_iters=20, warmup_iters=2, lr_decay_iters=20, lr=3e-3, eval_interval=10,
                         eval_iters=2, compile=compiled)
        frames = counters["stats"]["unique_graphs"]
        runs[compiled] = train(mc, tc, lambda g: get_batch(data, 8, 16, g), ev, tmp_path / str(compiled), progress=False)
        graphs = counters["stats"]["unique_graphs"] - frames
        assert (graphs > 0) == compiled and graphs <= 2  # one block graph serves both layers
    losses = {k: [h["val_loss"] for h in r["history"]] for k, r in runs.items()}
    assert losses[True] == pytest.approx(losses[False], rel=1e-3) and losses[True][-1] < losses[True][0]
    model = runs[True]["model"]
    assert model._compiled_blocks is None and model.state_dict().keys() == runs[False]["model"].state_dict().keys()
    assert copy.deepcopy(model).config == mc  # a plain module again: fine-tunes copy it


def test_the_served_sampling_defaults_come_from_params():
    from models.text.pyfunc import predict_params
    from seqcast.gpt_config import ServeParams

    serve = load_params().gpt.sample.serve
    d = predict_params(serve)
    assert d["temperature"] == serve.temperature and d["max_new_tokens"] == serve.max_new_tokens
    assert d["top_k"] == (serve.top_k or 0) and d["top_p"] == (serve.top_p or 1.0)  # 0 / 1.0: no cut
    chat = predict_params({"temperature": 0.0, "max_new_tokens": 7})  # some keys given: the rest from the schema
    assert chat["temperature"] == 0.0 and chat["max_new_tokens"] == 7 and chat["seed"] == ServeParams().seed
    with pytest.raises(ValidationError):
        predict_params({"temperature": -1.0})


def test_importing_the_gpt_code_sets_no_process_wide_setting():
    code = ("import os, torch; env = dict(os.environ); n = torch.get_num_threads(); "
            "import flows.text_gpt, benchmarks.gpt, benchmarks.gpt_ablation, benchmarks.scaling, tasks.text.gpt_train; "
            "changed = {k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)}; "
            "changed.discard('_MLFLOW_TELEMETRY_SESSION_ID'); "  # MLflow's own telemetry id, set when mlflow is imported
            "assert not changed, changed; assert torch.get_num_threads() == n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
