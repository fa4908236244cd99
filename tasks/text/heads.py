"""GPT-1 fine-tuning with a task head, on two tasks of Tiny Shakespeare, and what pretraining buys.

Tasks (``gpt.heads.task``):

- ``acceptability`` (GPT-1's CoLA, made from the corpus): is a line as written, or are its
  words shuffled? Train lines come from the P3 train part, test lines from the P3
  validation part, which the pretrained decoder never read; half of each are shuffled
  (a seeded choice per line, never both versions of one line). Only the words move: the
  punctuation stays in its slots and the line-start capital on the first word, so a line's
  first and last characters, its marks and its spacing are those of a line as written
  (shuffling whole tokens let "first character a capital" alone score 0.87 and "last
  character a mark" 0.76 on the test lines; :func:`surface_rules` measures such rules);
- ``speaker``: who of the ``n_speakers`` most frequent speakers says a line, held out **by
  speech** (whole speeches go to train or test), so no test line has a neighbour line of
  its speech in training. The pretrained decoder read most test lines' text (never labels).

Variants on one split (:func:`run_variants`): the majority class; ``linear``, the
pretrained decoder frozen and a linear head on its pooled hidden state (``pool``: the last
token's, GPT-1, or the line's mean; features computed once); ``finetune``, the whole
network fine-tuned, task loss + ``lm_coef`` x the language-model loss on the same lines
(GPT-1, lambda = 0.5); ``scratch``, the same network and recipe from a random initialisation. On the acceptability
task three more heads read what a language model knows of word order, its likelihood (GPT-1's zero-shot
heuristic for CoLA, made a head): :func:`likelihood_features`, a line's log-probability per character and its
margin over ``reshuffles`` orders of its own words, and a logistic head on those two numbers fit on the
labelled lines; ``score`` on the frozen pretrained decoder, ``score_finetune`` and ``score_scratch`` on the
networks of ``finetune`` and ``scratch`` (the same recipe, only the initialisation differs). :func:`learning_curve` repeats them over
numbers of labelled examples and seeds (the paper's claim: pretraining matters most when
labels are few); iterations follow the data (``epochs`` passes, at least ``min_iters``, at
most ``iters``). The recipe (learning rates, steps, pooling) is chosen on
:func:`validation_task`, lines carved from the training lines, never on the test lines.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections import Counter

import torch
import torch.nn.functional as F

from models.text.gpt import GPT, GPTConfig
from models.text.heads import POOLS, SequenceHead

SPEAKER = re.compile(r"^([A-Z][A-Za-z' ]+):$")


def speeches(text: str) -> list[tuple[str, list[str]]]:
    """(speaker, lines) of every speech: a block "NAME:" + its lines, blocks separated by blank lines."""
    out = []
    for block in text.split("\n\n"):
        lines = [ln for ln in block.strip("\n").split("\n") if ln.strip()]
        if len(lines) >= 2 and SPEAKER.match(lines[0]):
            out.append((lines[0][:-1], lines[1:]))
    return out


def speaker_task(text: str, n_speakers: int, test_fraction: float, seed: int) -> dict:
    """{speakers, train: [(line, label)], test: [(line, label)]} split by speech."""
    sp = speeches(text)
    top = [s for s, _ in Counter(s for s, _ in sp).most_common(n_speakers)]
    label = {s: i for i, s in enumerate(top)}
    mine = [(s, lines) for s, lines in sp if s in label]
    order = list(range(len(mine)))
    random.Random(seed).shuffle(order)
    n_test = int(len(mine) * test_fraction)
    test_ids = set(order[:n_test])
    split = {"train": [], "test": []}
    for i, (s, lines) in enumerate(mine):
        split["test" if i in test_ids else "train"] += [(ln, label[s]) for ln in lines]
    return {"speakers": top, **split}


def encode_lines(pairs: list[tuple[str, int]], tok, max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids (N, T), lengths (N,), labels (N,); a line longer than ``max_len`` keeps its start."""
    ids = [tok.encode(line)[:max_len] or [0] for line, _ in pairs]
    x = torch.zeros(len(ids), max_len, dtype=torch.long)
    for i, row in enumerate(ids):
        x[i, : len(row)] = torch.tensor(row)
    lengths = torch.tensor([len(r) for r in ids])
    return x, lengths, torch.tensor([y for _, y in pairs])


def majority_accuracy(train_y: torch.Tensor, test_y: torch.Tensor) -> float:
    """Accuracy of always answering the most frequent training class."""
    return (test_y == torch.mode(train_y).values).float().mean().item()


@torch.no_grad()
def features(gpt: GPT, x: torch.Tensor, lengths: torch.Tensor, batch: int = 256, pool: str = "last") -> torch.Tensor:
    """Pooled hidden states (N, C) of the frozen decoder (``pool``: the last token's or the line's mean)."""
    gpt.eval()
    return torch.cat([POOLS[pool](gpt.hidden(x[i : i + batch]), lengths[i : i + batch])
                      for i in range(0, x.size(0), batch)])


def train_linear(feats: torch.Tensor, y: torch.Tensor, n_classes: int, iters: int, lr: float, seed: int) -> torch.nn.Linear:
    """The frozen variant's head: multinomial logistic regression on the features (full batch, AdamW)."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(feats.size(1), n_classes)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-2)
    for _ in range(iters):
        loss = F.cross_entropy(head(feats), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return head


def head_loss(model: SequenceHead, x: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor, lm_coef: float) -> torch.Tensor:
    """GPT-1's L3 = L_task + lambda * L_LM (the LM loss on each line's own next characters)."""
    if lm_coef <= 0:
        return F.cross_entropy(model(x, lengths), y)
    logits, lm_logits = model(x, lengths, with_lm=True)  # (B, K), (B, T, V)
    T = x.size(1)
    targets = torch.where(torch.arange(T)[None, :] < (lengths[:, None] - 1), x.roll(-1, dims=1), -1)  # (B, T)
    lm = F.cross_entropy(lm_logits.reshape(-1, lm_logits.size(-1)), targets.reshape(-1), ignore_index=-1)
    return F.cross_entropy(logits, y) + lm_coef * lm


def train_head(model: SequenceHead, data: tuple, iters: int, batch: int, lr: float, lm_coef: float, seed: int) -> SequenceHead:
    """Fine-tune the whole network (backbone + head) with AdamW, a short warm-up and linear decay."""
    x, lengths, y = data
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, iters // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min((i + 1) / warm, max(0.0, (iters - i) / (iters - warm + 1))))
    model.train()
    for _ in range(iters):
        ix = torch.randint(x.size(0), (batch,), generator=g)
        T = int(lengths[ix].max())  # trim the padding every row of this batch has
        loss = head_loss(model, x[ix, :T], lengths[ix], y[ix], lm_coef)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def head_accuracy(model: SequenceHead, x: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    model.eval()
    pred = torch.cat([model(x[i : i + batch], lengths[i : i + batch]).argmax(-1) for i in range(0, x.size(0), batch)])
    return (pred == y).float().mean().item()


AFFIX = re.compile(r"^([^\w']*)(.*?)([^\w']*)$")  # a token's leading marks, its word (apostrophes kept), trailing marks


def layout_words(line: str) -> tuple[list[tuple[str, str, str]], list[int]]:
    """A line's tokens as (leading marks, word, trailing marks) and the slots that hold a word."""
    toks = [AFFIX.match(t).groups() for t in line.split()]
    return toks, [i for i, (_, w, _) in enumerate(toks) if w]


def lower_words(text: str) -> set[str]:
    """The words that occur in lower case somewhere in ``text`` (a capital on them is the line start's)."""
    return {w for t in text.split() for w in [AFFIX.match(t).group(2)] if w[:1].islower()}


def shuffle_words(line: str, rng: random.Random, lower: set[str]) -> str | None:
    """The line's words in a new order with its layout kept: the punctuation stays in its slots and the
    line-start capital on the first slot (the word that leaves it is lower-cased when ``lower`` holds that
    form; I, names), so the line's ends and its marks are those of the line as written and only the order of
    the words differs. None when the line has fewer than 2 different words (no other order exists)."""
    toks, slots = layout_words(line)
    words = [toks[i][1] for i in slots]
    if len({w.lower() for w in words}) < 2:
        return None
    cap = words[0][:1].isupper()
    if cap and (plain := words[0][:1].lower() + words[0][1:]) in lower:
        words[0] = plain
    mixed = words[:]
    while [w.lower() for w in mixed] == [w.lower() for w in words]:
        rng.shuffle(mixed)
    if cap:
        mixed[0] = mixed[0][:1].upper() + mixed[0][1:]
    for i, w in zip(slots, mixed):
        toks[i] = (toks[i][0], w, toks[i][2])
    return " ".join(a + w + b for a, w, b in toks)


def acceptability_task(text: str, seed: int, min_words: int = 4) -> dict:
    """{classes, train, test}: lines of the P3 train part / validation part, half of them with their words
    shuffled (:func:`shuffle_words`: the layout kept, so the first and last characters, the punctuation and the
    line-start capital are the same in both classes and only the word order tells them apart; a seeded choice
    per line, never both versions of one line). A line as written is its tokens joined by one space, like a
    shuffled one."""
    from tasks.text.corpus import split_text

    rng = random.Random(seed)
    lower = lower_words(text)
    out = {"classes": ["shuffled", "as written"], "train": [], "test": []}
    for part, chunk in zip(("train", "test"), split_text(text)):
        for line in chunk.split("\n"):
            toks, slots = layout_words(line)
            if len(slots) < min_words or SPEAKER.match(line.strip()):
                continue
            if len({toks[i][1].lower() for i in slots}) < 2:
                continue  # no other order of its words
            if rng.random() < 0.5:
                out[part].append((" ".join(line.split()), 1))
            else:
                out[part].append((shuffle_words(line, rng, lower), 0))
    return out


def surface_rules(pairs: list[tuple[str, int]]) -> dict[str, float]:
    """Accuracy of rules that read no word order (a leak check of the acceptability task, label 1 = as
    written): the last character is punctuation, the first is a capital, no capital after the first
    character, one space between tokens. Near 0.5 when only word order differs."""
    marks = set(string.punctuation) - {"'"}
    rules = {
        "last_char_punctuation": lambda s: s[-1] in marks,
        "first_char_capital": lambda s: s[:1].isupper(),
        "no_capital_inside": lambda s: not any(c.isupper() for c in s[1:]),
        "single_spaces": lambda s: "  " not in s,
    }
    return {k: sum(int(bool(f(s))) == y for s, y in pairs) / max(1, len(pairs)) for k, f in rules.items()}


@torch.no_grad()
def line_logprobs(gpt: GPT, tok, lines: list[str], max_chars: int, batch: int = 128) -> torch.Tensor:
    """Each line's log-probability (N,) under the decoder: its first ``max_chars`` characters and the newline
    after them, each read after the newline that opens the line (a line of the corpus starts after one).
    Lines are read in batches of similar length (less padding), the result in the order given."""
    ids = [tok.encode("\n" + line[:max_chars] + "\n")[: gpt.config.block_size + 1] for line in lines]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    gpt.eval()
    out = torch.zeros(len(ids))
    for start in range(0, len(order), batch):
        rows = order[start : start + batch]
        T = max(len(ids[i]) for i in rows)
        x = torch.zeros(len(rows), T, dtype=torch.long)
        for j, i in enumerate(rows):
            x[j, : len(ids[i])] = torch.tensor(ids[i])
        n = torch.tensor([len(ids[i]) - 1 for i in rows])  # characters scored per line
        logp = F.log_softmax(gpt.lm_head(gpt.hidden(x[:, :-1])), -1).gather(-1, x[:, 1:, None]).squeeze(-1)
        out[rows] = (logp * (torch.arange(T - 1)[None, :] < n[:, None])).sum(1)
    return out


def likelihood_features(gpt: GPT, tok, lines: list[str], lower: set[str], reshuffles: int, max_chars: int,
                        seed: int) -> torch.Tensor:
    """(N, 2): a line's log-probability per character, and its log-probability minus the mean over
    ``reshuffles`` orders of its own words (:func:`shuffle_words`, seeded): a line as written is likelier than
    its reorderings to a model that knows word order, a shuffled line is one of them. Both characters and words
    are those of the line, so only the model's knowledge of their order moves these numbers."""
    rng = random.Random(seed)
    own = line_logprobs(gpt, tok, lines, max_chars)
    others = [shuffle_words(line, rng, lower) or line for line in lines for _ in range(reshuffles)]
    mean_other = line_logprobs(gpt, tok, others, max_chars).view(len(lines), reshuffles).mean(1)
    chars = torch.tensor([min(len(line), max_chars) + 1 for line in lines], dtype=torch.float)
    return torch.stack([own / chars, own - mean_other], dim=1)


def score_head(train: torch.Tensor, y: torch.Tensor, test: torch.Tensor, hp, seed: int) -> torch.Tensor:
    """Predicted classes of the test lines from a logistic head on the standardised likelihood features."""
    mu, sd = train.mean(0), train.std(0).clamp_min(1e-6)
    head = train_linear((train - mu) / sd, y, 2, hp.linear_iters, hp.linear_lr, seed)
    with torch.no_grad():
        return head((test - mu) / sd).argmax(-1)


SCORED = {"score": "linear", "score_finetune": "finetune", "score_scratch": "scratch"}  # head -> its network's variant


def validation_task(task: dict, n_val: int, seed: int) -> dict:
    """The recipe's split: ``n_val`` of the task's training lines (drawn with ``seed``) as its test lines, the
    rest its training lines. Choices (learning rate, steps, pooling) are made here, never on the test lines."""
    order = list(range(len(task["train"])))
    random.Random(seed).shuffle(order)
    val = set(order[:n_val])
    return {"classes": task["classes"], "train": [p for i, p in enumerate(task["train"]) if i not in val],
            "test": [task["train"][i] for i in sorted(val)]}


def make_task(text: str, hp, seed: int) -> dict:
    """The task of ``hp.task`` (a ``gpt.heads`` section) as {classes, train, test}."""
    if hp.task == "acceptability":
        return acceptability_task(text, seed)
    t = speaker_task(text, hp.n_speakers, hp.test_fraction, seed)
    return {"classes": t["speakers"], "train": t["train"], "test": t["test"]}


def iterations(n_train: int, hp) -> int:
    """``epochs`` passes over the labelled lines, at least ``min_iters`` and at most ``iters`` steps."""
    return max(hp.min_iters, min(hp.iters, math.ceil(hp.epochs * n_train / hp.batch_size)))


def run_variants(base: GPT, tok, task: dict, hp, seed: int, n_train: int | None = None,
                 variants: tuple[str, ...] | None = None, lower: set[str] | None = None,
                 cache: dict | None = None) -> dict:
    """Accuracies of the majority class and of ``variants`` (default: every variant the task has; the
    likelihood heads only on acceptability, where ``lower`` is :func:`lower_words` of the corpus) with
    ``n_train`` labelled lines (default ``hp.max_train_lines``, drawn with ``seed``) on the task's test lines.
    ``cache`` keeps the frozen decoder's test features between calls on the same task."""
    if variants is None:
        variants = ("linear", "finetune", "scratch") + (tuple(SCORED) if task["classes"] == ["shuffled", "as written"] else ())
    if set(variants) & set(SCORED) and lower is None:
        raise ValueError("the likelihood heads need lower: the corpus's lower-case words (lower_words)")
    cache = {} if cache is None else cache
    rng = random.Random(seed)
    n = min(n_train or hp.max_train_lines, len(task["train"]))
    train_pairs = rng.sample(task["train"], n)
    max_len = min(hp.max_chars, base.config.block_size)  # a line's start must fit the decoder's context
    tr = encode_lines(train_pairs, tok, max_len)
    te = encode_lines(task["test"], tok, max_len)
    K = len(task["classes"])
    iters = iterations(n, hp)
    out = {"classes": task["classes"], "n_train": n, "n_test": len(task["test"]), "iters": iters,
           "majority": majority_accuracy(tr[2], te[2])}

    def scored(variant: str, net: GPT) -> None:
        if variant not in variants:
            return
        lines = ([ln for ln, _ in train_pairs], [ln for ln, _ in task["test"]])
        f_tr = likelihood_features(net, tok, lines[0], lower, hp.reshuffles, max_len, seed)
        key = (seed, hash(tuple(lines[1])))
        if variant == "score" and key in cache:
            f_te = cache[key]
        else:
            f_te = likelihood_features(net, tok, lines[1], lower, hp.reshuffles, max_len, seed + 1)
            if variant == "score":
                cache[key] = f_te
        out[variant] = (score_head(f_tr, tr[2], f_te, hp, seed) == te[2]).float().mean().item()

    if "linear" in variants or "score" in variants:
        torch.manual_seed(seed)
        frozen = GPT(base.config)
        frozen.load_state_dict(base.state_dict())
        frozen.eval()
        if "linear" in variants:
            head = train_linear(features(frozen, tr[0], tr[1], pool=hp.pool), tr[2], K, hp.linear_iters, hp.linear_lr, seed)
            out["linear"] = (head(features(frozen, te[0], te[1], pool=hp.pool)).argmax(-1) == te[2]).float().mean().item()
        scored("score", frozen)
    if "finetune" in variants or "score_finetune" in variants:
        torch.manual_seed(seed)
        tuned = GPT(base.config)
        tuned.load_state_dict(base.state_dict())
        m = train_head(SequenceHead(tuned, K, hp.pool), tr, iters, hp.batch_size, hp.finetune_lr, hp.lm_coef, seed)
        if "finetune" in variants:
            out["finetune"] = head_accuracy(m, *te)
        scored("score_finetune", m.gpt)
    if "scratch" in variants or "score_scratch" in variants:
        torch.manual_seed(seed)
        scratch = GPT(GPTConfig(**base.config.to_dict()))
        m = train_head(SequenceHead(scratch, K, hp.pool), tr, iters, hp.batch_size, hp.scratch_lr, hp.lm_coef, seed)
        if "scratch" in variants:
            out["scratch"] = head_accuracy(m, *te)
        scored("score_scratch", m.gpt)
    return out


def learning_curve(base: GPT, tok, text: str, hp, sizes: list[int], seeds: list[int],
                   variants: tuple[str, ...] | None = None, split: str = "test") -> list[dict]:
    """One row per (size, seed): :func:`run_variants` with that many labelled lines (the task's split per seed),
    scored on the test lines, or with ``split="validation"`` on ``hp.val_lines`` lines carved from the training
    lines (:func:`validation_task`; where the recipe is chosen)."""
    if split not in ("test", "validation"):
        raise ValueError(f"split must be test or validation, not {split!r}")
    rows, lower, cache = [], lower_words(text), {}
    for seed in seeds:
        task = make_task(text, hp, seed)
        if split == "validation":
            task = validation_task(task, hp.val_lines, seed)
        for n in sizes:
            rows.append({"seed": seed, **run_variants(base, tok, task, hp, seed, n, variants, lower, cache)})
    return rows
