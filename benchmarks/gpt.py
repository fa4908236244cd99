"""``seqcast bench gpt``: the P3 reference run and the generation benchmark; the last line is one JSON object.

Training: the "baby" configuration (4 layers, 4 heads, 128-dim, context 64, batch 12,
no dropout, AdamW 1e-3, 2,000 iterations, 100 warm-up, cosine to 1e-4) with 2
threads; tokens/s = batch x context / median seconds per iteration (evaluation
iterations excluded); the share of FP32 peak = FLOPs per token x tokens/s / peak.
Validation loss: exact, on the whole validation text. Generation: batch 1, a model
of context 256 generating 256 new tokens greedily, with and without the KV cache.
"""

from __future__ import annotations

import os

# A shared CPU: spinning OpenMP threads wait for a descheduled sibling and stall every
# parallel region (measured here under load: ~3 s vs ~0.1 s per iteration). Sleep instead.
# Read once when torch loads its OpenMP runtime, hence before `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import statistics
import sys
import tempfile
import time

import torch


def generation_speed(block_size: int = 256, new_tokens: int = 256, repeats: int = 3, seed: int = 0) -> dict:
    """Tokens/s at batch 1 with and without the KV cache (median of ``repeats``), and whether they agree."""
    from models.gpt import GPT, GPTConfig

    torch.manual_seed(seed)
    model = GPT(GPTConfig(block_size=block_size)).eval()  # speed does not depend on the weights' values
    idx = torch.zeros((1, 1), dtype=torch.long)  # (1, 1): one prompt token, the sequence ends at block_size
    out, speed = {}, {}
    for cached in (True, False):
        model.generate(idx, 8, 0.0, use_cache=cached)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out[cached] = model.generate(idx, new_tokens, 0.0, use_cache=cached)
            times.append(time.perf_counter() - t0)
        speed[cached] = new_tokens / statistics.median(times)
    return {
        "gen_tokens_per_s_cached": speed[True],
        "gen_tokens_per_s_uncached": speed[False],
        "gen_speedup": speed[True] / speed[False],
        "gen_same_tokens": bool(torch.equal(out[True], out[False])),
    }


def main(argv: list[str] | None = None) -> int:
    from seqcast.env import configure

    configure()
    from models.gpt import GPTConfig
    from models.text_tokenizers import CharTokenizer
    from tasks.gpt_train import TrainConfig, fp32_peak_flops, train
    from tasks.text_data import estimate_loss, exact_loss, get_batch, load_corpus, split_text

    ap = argparse.ArgumentParser(prog="seqcast bench gpt", description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--progress", action="store_true", help="show the progress bar")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()[0]
    text = load_corpus()
    tok = CharTokenizer.train(text)
    tr, va = split_text(text)
    train_ids, val_ids = torch.tensor(tok.encode(tr)), torch.tensor(tok.encode(va))
    mc = GPTConfig(vocab_size=tok.vocab_size)  # the defaults are the reference configuration
    tc = TrainConfig(max_iters=a.iters, lr_decay_iters=a.iters, eval_interval=500, eval_iters=20,
                     dtype=a.dtype, compile=a.compile, device=a.device, threads=a.threads)
    eval_fn = lambda m: {"val_loss": estimate_loss(m, val_ids, mc.block_size, tc.batch_size, tc.eval_iters)}  # noqa: E731
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        res = train(mc, tc, lambda g: get_batch(train_ids, tc.batch_size, mc.block_size, g), eval_fn, d,
                    resume=False, progress=a.progress)
        wall = time.perf_counter() - t0
    model = res["model"].cpu()
    val = exact_loss(model, val_ids, mc.block_size)
    tps = res["timing"]["tokens_per_s"]
    fpt = model.flops_per_token()
    gen = generation_speed()
    load1 = os.getloadavg()[0]
    r = {
        "iters": a.iters, "threads": a.threads, "dtype": res["timing"]["dtype"], "params": model.num_params(),
        "val_loss": val, "perplexity": float(torch.tensor(val).exp()),
        "tokens_per_s": tps, "ms_per_iter": res["timing"]["ms_per_iter"], "train_wall_s": wall,
        "flops_per_token": fpt, "fp32_peak_share": fpt * tps / fp32_peak_flops(a.threads),
        **gen, "loadavg_start": load0, "loadavg_end": load1,
    }
    print(f"P3 reference: {a.iters} iters, {a.threads} threads, {r['dtype']}, {r['params']:,} params")
    print(f"  val loss {val:.4f} nats/char (exact, whole validation text), perplexity {r['perplexity']:.2f}")
    print(f"  {tps:,.0f} tokens/s, {r['ms_per_iter']:.2f} ms/iter (median), {wall:.1f} s wall")
    print(f"  {fpt / 1e6:.2f} MFLOP/token -> {100 * r['fp32_peak_share']:.1f}% of FP32 peak "
          f"({fp32_peak_flops(a.threads) / 1e9:.1f} GFLOP/s)")
    print(f"  generation (ctx 256, 256 new, batch 1): cached {gen['gen_tokens_per_s_cached']:.0f} tok/s, "
          f"uncached {gen['gen_tokens_per_s_uncached']:.0f} tok/s ({gen['gen_speedup']:.1f}x, same tokens: {gen['gen_same_tokens']})")
    print(f"  load average {load0:.2f} -> {load1:.2f} (other processes on the CPU distort these figures)")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
