"""The docs site: `mkdocs build --strict` (a broken link or a page outside the nav is an error),
readable offline (no page loads anything from the network), and every results table between
`seqcast report` markers is what the reports give (`seqcast report --check`, run as typed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from tasks.offline_html import network_loads

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_the_site_builds_strict_with_every_page(site):
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")}
    assert {"index", "pipeline", "datasets", "forecasters", "results", "operations"} <= pages
    for name in pages:
        assert (site / f"{name}.html").is_file(), name


def test_no_page_references_the_network(site):
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert network_loads(html) == [], page.name
        assert not re.findall(r'href="https?://', html), page.name  # not even a link out
    for sheet in site.rglob("*.css"):
        assert not re.findall(r"url\(['\"]?https?://", sheet.read_text(encoding="utf-8")), sheet.name


def test_no_process_words_in_the_docs():
    for page in (ROOT / "docs").glob("*.md"):
        text = page.read_text(encoding="utf-8")
        assert not re.findall(r"\b(?:issue \d+|issue's|stop \d+|helper)\b", text, flags=re.I), page.name


def test_the_committed_results_tables_are_what_the_reports_give():
    done = subprocess.run([str(BIN / "seqcast"), "report", "--check"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    tables = sum(page.read_text(encoding="utf-8").count("<!-- seqcast report: ") for page in (ROOT / "docs").glob("*.md"))
    assert tables >= 10


def test_a_stale_table_is_found(tmp_path):
    """The check itself: a table edited by hand differs from its report."""
    from seqcast.config import load_params
    from tasks import docs_report

    page = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    (tmp_path / "results.md").write_text(page.replace("| `naive` |", "| `naive (edited)` |", 1), encoding="utf-8")
    assert docs_report.stale(tmp_path, load_params()) == ["results.md: leaderboard pm25"]
    docs_report.write(tmp_path, load_params())
    assert (tmp_path / "results.md").read_text(encoding="utf-8") == page


def test_every_file_the_readme_links_or_shows_is_in_the_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    local = [t for t in re.findall(r"\]\(([^)\s]+)\)", readme) if "://" not in t and not t.startswith("#")]
    assert local  # the README links the docs pages
    assert [t for t in local if not (ROOT / t.split("#")[0]).is_file()] == []
