"""Train and score the recurrent character LMs (RNN, LSTM) of the ladder, on the P3 split.

Training is Karpathy's char-rnn / Mikolov's recipe: the training ids are cut into
``batch_size`` contiguous streams, read ``seq_len`` characters at a time with the
hidden state carried from chunk to chunk (truncated BPTT), Adam with a linear decay
to a tenth of the lr, gradient clipping. Scoring reads the whole validation text as
one stream after warming the state on the end of train (the n-gram rungs get the same
context), so the loss is exact, in nats per character.

:func:`train_rungs` trains several rungs side by side, one process and one thread each,
since a small recurrent net cannot use two cores but two nets can.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import torch

from models.text.char_rnn import RecurrentLM, RecurrentLMConfig, detach_state
from seqcast.gpt_config import RecurrentLMParams


def streams(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N,) ids -> (batch_size, N // batch_size): row b is the b-th contiguous slice of the text."""
    n = len(ids) // batch_size
    return ids[: n * batch_size].view(batch_size, n)


@torch.no_grad()
def exact_stream_loss(model: RecurrentLM, ids: torch.Tensor, context: torch.Tensor | None = None,
                      chunk: int = 4096) -> float:
    """Mean cross-entropy of every character of ``ids`` read as one stream, the state carried throughout.

    ``context`` (e.g. the end of train) is read first and not scored; without it the
    first character of ``ids`` has nothing to be predicted from and is skipped.
    """
    was_training = model.training
    model.eval()
    full = ids if context is None else torch.cat([context, ids])
    first = max(1, len(full) - len(ids))  # index in ``full`` of the first scored character
    total, count, state = 0.0, 0, None
    for s in range(0, len(full) - 1, chunk):
        tgt = full[s + 1 : s + 1 + chunk]  # position j predicts j + 1
        logits, _, state = model(full[s : s + len(tgt)][None], None, state)  # (1, t, V)
        keep = max(0, first - 1 - s)  # positions whose target lies in the context: not scored
        if keep < len(tgt):
            total += torch.nn.functional.cross_entropy(logits[0, keep:], tgt[keep:], reduction="sum").item()
            count += len(tgt) - keep
    model.train(was_training)
    return total / count


def train_recurrent_lm(cell: str, p: RecurrentLMParams, train_ids: torch.Tensor, val_ids: torch.Tensor,
                       vocab_size: int, seed: int = 1337, context: int = 1024) -> dict:
    """Train one rung for ``p.max_iters`` chunks; returns {model, val_loss, train_s, iters, params}."""
    torch.set_num_threads(p.threads)
    torch.manual_seed(seed)
    model = RecurrentLM(RecurrentLMConfig(vocab_size, cell, p.embd, p.hidden, p.layers))
    opt = torch.optim.Adam(model.parameters(), lr=p.lr, fused=True)
    data = streams(train_ids, p.batch_size)  # (B, N)
    span = data.size(1) - 1
    state, pos, step_s = None, 0, 0.0
    for it in range(p.max_iters):
        t0 = time.perf_counter()
        if pos + p.seq_len > span:  # an epoch is over: back to the start of every stream, fresh state
            state, pos = None, 0
        x = data[:, pos : pos + p.seq_len]  # (B, T)
        y = data[:, pos + 1 : pos + 1 + p.seq_len]
        pos += p.seq_len
        for g in opt.param_groups:  # linear decay to lr / 10
            g["lr"] = p.lr * (1 - 0.9 * it / max(1, p.max_iters - 1))
        _, loss, state = model(x, y, state)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
        opt.step()
        state = detach_state(state)
        step_s += time.perf_counter() - t0
    val = exact_stream_loss(model, val_ids, train_ids[-context:])
    return {"model": model, "val_loss": val, "train_s": step_s, "iters": p.max_iters,
            "params": model.num_params(), "tokens": p.max_iters * p.batch_size * p.seq_len}


def _rung(job: tuple) -> dict:
    cell, p, train_ids, val_ids, vocab_size, seed = job
    res = train_recurrent_lm(cell, p, train_ids, val_ids, vocab_size, seed)
    res["state_dict"] = res.pop("model").state_dict()
    return res


def train_rungs(jobs: dict[str, RecurrentLMParams], train_ids: torch.Tensor, val_ids: torch.Tensor,
                vocab_size: int, seed: int = 1337, parallel: bool = True) -> dict[str, dict]:
    """{cell: params} -> {cell: result}; with ``parallel`` one spawned process per rung (one core each)."""
    args = [(cell, p, train_ids, val_ids, vocab_size, seed) for cell, p in jobs.items()]
    if not parallel or len(args) < 2:
        return {a[0]: _rung(a) for a in args}
    with ProcessPoolExecutor(max_workers=len(args), mp_context=get_context("spawn")) as pool:
        return dict(zip(jobs, pool.map(_rung, args)))
