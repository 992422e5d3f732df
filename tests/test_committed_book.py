"""The report kept in the repository: ``jupyter-book build book/`` on a fresh clone (no run, no
kernel) yields the results pages, and says so plainly when the code no longer matches them.

The executed notebooks of ``book/generated/`` and their stamps are committed (``make book``
regenerates them); ``book/_ext/freshness.py`` compares the stamps with the current keys.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ca_core.repro.pipeline import stale_steps

REPO = Path(__file__).resolve().parents[1]


def clone(root: Path) -> Path:
    """The repository's tracked files under ``root`` (what a fresh clone holds); the widget assets
    that ``make assets`` installs are linked in."""
    files = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True)
    tracked = [f for f in files.stdout.splitlines() if (REPO / f).is_file()]
    if not any(f.startswith("book/generated/0") for f in tracked):
        pytest.fail("no executed notebooks are committed under book/generated/: run `make book` and commit them")
    for name in tracked:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    (root / "book/_assets/widgets").symlink_to(REPO / "book/_assets/widgets", target_is_directory=True)
    return root


def build(root: Path) -> str:
    """``jupyter-book build book/`` in ``root``; its terminal output."""
    jb = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jb), "build", "book/"], cwd=root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    return clone(tmp_path_factory.mktemp("clone"))


def test_a_fresh_clone_builds_the_committed_report(fresh):
    output = build(fresh)
    html = fresh / "book/_build/html/generated"
    for page in ("01_data", "02_train", "03_evaluate", "04_figures", "04b_map_or_model", "05_explorer", "06_reproduction"):
        assert (html / f"{page}.html").is_file(), f"{page} is not in the book"
    results = (html / "04_figures.html").read_text()
    assert 'id="at-a-glance"' in results and "<img" in results
    assert (html / "05_explorer.html").stat().st_size < 2_000_000
    profile, stale = stale_steps(fresh)
    assert profile is not None
    # the book warns exactly when the committed notebooks do not match the code and settings at hand
    assert ("ca-stale" in results) == bool(stale) == ("book/generated/ is out of date" in output), (stale, output[-2000:])


def test_a_change_since_the_run_is_a_plain_warning_on_every_page(fresh):
    notebook = fresh / "notebooks/04_figures.ipynb"
    nb = json.loads(notebook.read_text())
    nb["cells"].append({"cell_type": "markdown", "id": "changed", "metadata": {}, "source": ["A new paragraph."]})
    notebook.write_text(json.dumps(nb))
    output = build(fresh)
    assert "book/generated/ is out of date" in output and "04_figures" in output
    for page in ("04_figures", "05_explorer", "06_reproduction"):
        html = (fresh / f"book/_build/html/generated/{page}.html").read_text()
        assert "ca-stale" in html and "to regenerate them" in html, f"{page} does not warn"
