"""The language-model side lives in rooms of its own (models/text/, tasks/text/, flows/text_*.py): it imports
the shared core and nothing of the forecasting side, and its modules and the configuration form no circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT_FILES = sorted((ROOT / "models" / "text").rglob("*.py")) + sorted((ROOT / "tasks" / "text").rglob("*.py")) \
    + sorted((ROOT / "flows").glob("text_*.py"))
TEXT_ROOMS = ("models.text", "tasks.text", "flows.text_")


def module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # `from tasks.text import rlhf`
    return out


def project_modules() -> dict[str, Path]:
    files = [p for d in ("models", "tasks", "flows", "seqcast", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    return {module_of(p): p for p in files}


def test_the_text_rooms_import_nothing_of_the_forecasting_side():
    known = project_modules()
    bad = {}
    for f in TEXT_FILES:
        hits = sorted(m for m in imports(f) & set(known)
                      if m.split(".")[0] in ("models", "tasks", "flows") and not m.startswith(TEXT_ROOMS)
                      and m not in ("models", "tasks", "flows"))
        hits += sorted(m for m in imports(f) & set(known) if m in ("seqcast.model_config", "seqcast.contract",
                                                                 "seqcast.gpt_forecaster_config"))
        if hits:
            bad[str(f.relative_to(ROOT))] = hits
    assert bad == {}


def test_the_text_side_has_every_module_in_its_rooms():
    """No language-model module left among the forecasters (the old flat names are gone)."""
    flat = ["models/gpt.py", "models/muon.py", "models/copy_head.py", "models/chat_template.py", "models/gpt_heads.py",
            "models/gpt_pyfunc.py", "models/ngram.py", "models/word_lm.py", "models/char_rnn.py",
            "models/text_tokenizers.py", "tasks/gpt_train.py", "tasks/gpt_pretrain.py", "tasks/chatml.py",
            "tasks/tools.py", "tasks/tool_data.py", "tasks/tool_chat.py", "tasks/rlhf.py", "tasks/rlhf_losses.py",
            "tasks/gpt_heads.py", "tasks/lm_ladder.py", "tasks/recurrent_lm.py", "tasks/text_data.py",
            "flows/gpt.py", "flows/gpt_chat.py", "flows/gpt_heads.py", "seqcast/chat.py"]
    assert [f for f in flat if (ROOT / f).exists()] == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary circle found by a depth-first walk (one per back edge)."""
    found, state, stack = [], {}, []

    def walk(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                walk(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            walk(n)
    return found


def test_no_import_circle_in_the_configuration_and_the_text_side():
    known = project_modules()
    nodes = {m for m in known if m.startswith(("seqcast.", *TEXT_ROOMS)) and m != "seqcast.cli"}
    graph = {m: {i for i in imports(known[m]) if i in nodes and i != m} for m in nodes}
    assert _cycles(graph) == []
