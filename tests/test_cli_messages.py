"""What the command line tells a user, run as typed: `seqcast bench --help` lists the
benchmarks; `seqcast validate` says what to fix for a date format no setting controls and for
a file separated by semicolons (not "the rule in params.yaml", not "renamed")."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SEQCAST = str(Path(sys.executable).parent / "seqcast")


def seqcast(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SEQCAST, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_bench_help_lists_every_benchmark_with_its_line():
    out = seqcast("bench", "--help")
    assert out.returncode == 0, out.stderr
    names = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if not p.stem.startswith("_"))
    assert {"accuracy", "classical", "datasets", "gpt", "rlhf", "scale"} <= set(names)
    listing = out.stdout.split("benchmarks:", 1)[1]
    for name in names:
        line = next((ln for ln in listing.splitlines() if ln.strip().startswith(name + " ")), None)
        assert line is not None and len(line.split(None, 1)[1]) > 10, f"{name} missing or undescribed:\n{out.stdout}"


@pytest.fixture(scope="module")
def ks11(mirror, tmp_path_factory) -> list[str]:
    return (mirror / "market" / "KS11.csv").read_text().splitlines()[:120]


def test_a_date_in_another_format_is_a_fix_of_the_file(ks11, tmp_path):
    path = tmp_path / "KS11.csv"
    rows = [ks11[0]] + [ln if i != 5 else "23/11/2009" + ln[10:] for i, ln in enumerate(ks11[1:], start=1)]
    path.write_text("\n".join(rows) + "\n")
    out = seqcast("validate", str(path), "--dataset", "market")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "rule date format YYYY-MM-DD on column 'ds' (file column Date): 1 of 119 rows fail" in out.stderr
    assert re.search(r"^\s+6\s+23/11/2009", out.stderr, flags=re.M), out.stderr  # the row, by its file line
    assert "Yahoo's CSV layout writes dates as YYYY-MM-DD; fix the file" in out.stderr
    assert "params.yaml" not in out.stderr  # no setting controls this layout's date format


def test_a_semicolon_separated_file_is_named_as_such(ks11, tmp_path):
    path = tmp_path / "KS11.csv"
    path.write_text("\n".join(ln.replace(",", ";") for ln in ks11) + "\n")
    out = seqcast("validate", str(path), "--dataset", "market")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "separated by semicolons" in out.stderr and "save the file with commas between its columns" in out.stderr
    assert "renamed" not in out.stderr and "params.yaml" not in out.stderr
    assert out.stderr.count("comma-separated columns") == 1  # one failure, not one per column
