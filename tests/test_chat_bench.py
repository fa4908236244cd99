"""`seqcast bench gpt_chat` as typed: a recipe fine-tuned on the fit forms and scored on the dev forms, over seeds."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.gpt_chat import SCORES, with_opener
from models.text.gpt import GPT, GPTConfig
from models.text.pyfunc import save_slim
from models.text.tokenizers import CharTokenizer
from tasks.text import tool_data
from tasks.text.phrasings import forms


def test_seqcast_bench_gpt_chat_quick_as_typed(tmp_path):
    """Two seeds on a tiny pretrained GPT: each score is a share, the summary is the mean over the seeds, a --set
    value reaches the recipe (schema-checked) and the questions scored as dev are in the dev forms."""
    torch.manual_seed(0)
    tok = CharTokenizer.train("To be, or not to be: that is the question.\n")
    base = GPT(GPTConfig(block_size=32, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, rope=True))
    save_slim(base, tmp_path / "model.pt")
    tok.save(tmp_path / "tokenizer.json")
    seqcast = str(Path(sys.executable).parent / "seqcast")
    proc = subprocess.run([seqcast, "bench", "gpt_chat", "--quick", "--no-mlflow", "--seeds", "1", "2", "--worlds", "1",
                           "--set", "lr=1.0e-3", "--checkpoint", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["seeds"] == [1, 2] and out["set"] == {"lr": 1e-3} and out["quick"] is True
    assert [r["seed"] for r in out["rows"]] == [1, 2]
    for s in SCORES:
        accs = [r[s]["accuracy"] for r in out["rows"]]
        assert all(0 <= a <= 1 for a in accs)
        assert out["aggregate"][s]["accuracy"] == statistics.fmean(accs)
        assert set(out["aggregate"][s]["by_kind"]) == set(tool_data.KINDS)
    oos = [r["out_of_scope"] for r in out["rows"]]  # two questions no tool answers per world, training forms
    assert [o["n"] for o in oos] == [2, 2] and out["aggregate"]["out_of_scope"]["n"] == 4
    assert out["aggregate"]["out_of_scope"]["accuracy"] == statistics.fmean(o["accuracy"] for o in oos)
    assert out["aggregate"]["out_of_scope"]["invented"] == sum(o["invented"] for o in oos)
    bad = subprocess.run([seqcast, "bench", "gpt_chat", "--quick", "--no-mlflow", "--set", "lr=-1",
                          "--checkpoint", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "lr" in bad.stderr


def test_dev_questions_come_from_dev_forms_and_the_opener_only_adds_words():
    sets = tool_data.synthetic_sets(2, 5, "dev")
    for qs, _ in sets:
        for q in qs:
            fixed = {f.split("{")[0].strip().lower() for f in forms(q["kind"], "dev")}
            assert any(q["question"].lower().split("{")[0].find(w) >= 0 or not w for w in fixed), q["question"]
    moved = with_opener(sets, 0)
    for (qs, w0), (ms, w1) in zip(sets, moved):
        assert w0 is w1
        for q, m in zip(qs, ms):
            assert m["question"].endswith(q["question"]) and len(m["question"].split()) > len(q["question"].split())
            assert m["messages"][1]["content"] == m["question"] and m["reference"] == q["reference"]
