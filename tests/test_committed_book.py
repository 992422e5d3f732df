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

from ca_core.repro.pipeline import STEPS, stale_steps, stamp_path, step_keys

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


GENERATED = STEPS  # every executed notebook of the pipeline is a page


def pages(root: Path) -> dict[str, str]:
    """The built HTML of each generated page (absent: not in the book)."""
    html = root / "book/_build/html/generated"
    return {page: (html / f"{page}.html").read_text() for page in GENERATED if (html / f"{page}.html").is_file()}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict:
    """A fresh clone, built once: what the tests read is taken right after the build (its output, the
    generated pages, :func:`stale_steps`), so :func:`changed` may then edit and rebuild the same clone."""
    root = clone(tmp_path_factory.mktemp("clone"))
    output = build(root)
    profile, stale = stale_steps(root)
    return {"root": root, "output": output, "pages": pages(root), "profile": profile, "stale": stale,
            "explorer_size": (root / "book/_build/html/generated/05_explorer.html").stat().st_size}


@pytest.fixture(scope="module")
def changed(fresh) -> dict:
    """The built clone with its stamps set to the current keys (as if ``make book`` had just run, so
    this does not depend on whether the committed book is fresh), then one step made stale: a
    comment line added to a code cell of ``notebooks/04_figures.ipynb``, which changes that step's
    key and no other; built again (an incremental build, as a user's would be)."""
    root, profile = fresh["root"], fresh["profile"]
    assert profile is not None
    keys = step_keys(profile, root / "_config.yml")
    for step, key in keys.items():
        path = stamp_path(root / "book/generated" / f"{step}.ipynb")
        path.write_text(json.dumps({**json.loads(path.read_text()), "code_key": key}))
    before = stale_steps(root)
    notebook = root / "notebooks/04_figures.ipynb"
    nb = json.loads(notebook.read_text())
    cell = next(c for c in nb["cells"]
                if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", []))
    cell["source"] = ["# a comment: the step's code changed\n", *cell["source"]]
    notebook.write_text(json.dumps(nb, indent=1))
    after = stale_steps(root)
    output = build(root)
    return {"before": before, "after": after, "output": output, "pages": pages(root), "profile": profile}


def test_a_fresh_clone_builds_the_committed_report(fresh):
    assert set(fresh["pages"]) == set(GENERATED), f"not in the book: {set(GENERATED) - set(fresh['pages'])}"
    results = fresh["pages"]["04_figures"]
    assert 'id="at-a-glance"' in results and "<img" in results
    assert fresh["explorer_size"] < 2_000_000


def test_the_committed_book_matches_the_code_and_says_nothing_is_stale(fresh):
    """The committed executed notebooks were made by the code and settings at hand: no step is
    stale, the build does not warn and no page carries the warning (``make book`` and commit
    ``book/generated/`` when this fails)."""
    assert fresh["profile"] is not None
    assert fresh["stale"] == [], f"book/generated/ is stale for steps {fresh['stale']}: run `make book`"
    assert "book/generated/ is out of date" not in fresh["output"], fresh["output"][-2000:]
    assert [page for page, html in fresh["pages"].items() if "ca-stale" in html] == []


def test_a_step_whose_code_changed_is_named_and_warned_on_every_page(changed):
    assert changed["before"] == (changed["profile"], [])  # the stamps as `make book` leaves them
    assert changed["after"] == (changed["profile"], ["04_figures"])  # exactly the edited step
    assert (f"book/generated/ is out of date for profile {changed['profile']!r}: steps 04_figures were produced"
            in changed["output"]), changed["output"][-2000:]
    for page, html in changed["pages"].items():
        assert "ca-stale" in html and "pipeline steps 04_figures have changed" in html, f"{page} does not warn"
        assert "to regenerate them" in html
