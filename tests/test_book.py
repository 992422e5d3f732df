"""The smoke book, built as ``make book`` builds it and opened in headless Chromium.

One session-scoped build: ``python -m ca_core.pipeline --profile smoke`` runs the notebooks and
``jupyter-book build`` in a copy of the project (so the repository's own book is left alone);
``tests/browser_check.js`` (playwright-core driving Debian's chromium) then opens every page over
a loopback server, aborts and records any request that would leave the machine, and reports the
tables, math, widgets and what choosing an explorer option does to the visible image.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ca_core.repro.paper import METRIC_LABELS

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
NEEDED = {
    REPO / "book/_assets/widgets/embed-amd.js": "make assets",
    REPO / "node_modules/playwright-core": "make assets",
    CHROMIUM: "make browser",
}
STATIC_PAGES = ["intro.html", "running.html"]


def project_copy(root: Path) -> Path:
    """Copy the config, notebooks and book sources to ``root``; the built assets are linked."""
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    skip = shutil.ignore_patterns("_build", "generated", "_assets")
    shutil.copytree(REPO / "book", root / "book", ignore=skip)
    (root / "book/_assets").symlink_to(REPO / "book/_assets", target_is_directory=True)
    return root


def run(command: list[str], cwd: Path, timeout: int) -> str:
    """Run a command; fail the test with the tail of its output when it exits non-zero."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        pytest.fail(f"{' '.join(command)} exited {result.returncode}:\n{tail}")
    return result.stdout


def train_like_a_cluster(root: Path, config: str) -> dict[str, int]:
    """README's cluster workflow on the smoke profile: every stage trained by ``torchrun
    --nproc_per_node 2 -m ca_core.train`` into its stage folder; the checkpoints' write times."""
    from ca_core.repro.config import load_profile

    profile = load_profile("smoke", root / "_config.yml")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                "-m", "ca_core.train", "--profile", "smoke", "--config", config, "--no-progress", "--threads", "1"]
    written = {}
    for backbone in profile.models:
        train = root / "runs/smoke/train" / backbone
        gap = ["--stage", "gap", "--out", str(train / "gap")]
        streams = [["--stage", "ca", "--gap-checkpoint", str(train / "gap/model.safetensors"),
                    "--set", f"seed={seed}", "--out", str(train / ("ca" if i == 0 else f"ca-seed{seed}"))]
                   for i, seed in enumerate(profile.seeds)]
        for stage in [gap, *streams]:
            run(torchrun + ["--backbone", backbone, *stage], cwd=root, timeout=300)
            written[stage[-1]] = (Path(stage[-1]) / "model.safetensors").stat().st_mtime_ns
    return written


@pytest.fixture(scope="session")
def book(tmp_path_factory) -> dict:
    """Build the smoke book once and open all its pages; the browser's report plus the HTML dir."""
    missing = [f"{path} (run `{how}`)" for path, how in NEEDED.items() if not path.exists()]
    if missing:
        pytest.fail("missing: " + ", ".join(missing))
    root = project_copy(tmp_path_factory.mktemp("project"))
    config = str(root / "_config.yml")
    trained = train_like_a_cluster(root, config)
    run([sys.executable, "-m", "ca_core.pipeline", "--profile", "smoke", "--config", config], cwd=root, timeout=900)
    html = root / "book/_build/html"
    notebooks = sorted(p.stem for p in (REPO / "notebooks").glob("0*.ipynb"))
    pages = STATIC_PAGES + [f"generated/{name}.html" for name in notebooks]
    shots = tmp_path_factory.mktemp("screenshots")
    report = json.loads(run(["node", str(REPO / "tests/browser_check.js"), str(html), str(shots), *pages],
                            cwd=REPO, timeout=300))
    (shots / "report.json").write_text(json.dumps(report, indent=1))
    return report | {"html": html, "notebooks": notebooks, "root": root, "trained": trained}


def page_with_title(book: dict, title: str) -> dict:
    """The report of the generated page whose title starts with ``title``."""
    found = [page for name, page in book["pages"].items() if page["title"].startswith(title)]
    assert found, f"no page titled {title!r} among {[p['title'] for p in book['pages'].values()]}"
    return found[0]


def test_every_notebook_is_a_page_and_no_script_fails(book):
    for name in book["notebooks"]:
        assert (book["html"] / "generated" / f"{name}.html").is_file(), f"{name}.ipynb did not become a page"
    assert book["errors"] == []


def test_every_saved_widget_view_is_rendered_without_a_kernel(book):
    for name, page in book["pages"].items():
        assert page["rendered"] == page["views"], f"{name}: {page['rendered']} of {page['views']} widget views shown"


def test_no_request_leaves_the_machine(book):
    assert book["requests"]["external"] == []
    served = book["requests"]["local"]
    for asset in ("require.js", "embed-amd.js", "mathjax/tex-chtml.js"):
        asset = f"_static/widgets/{asset}"
        assert any(asset in url for url in served), f"{asset} was never requested from the book"


def test_pages_reference_no_remote_script_or_style(book):
    remote = re.compile(r'<(?:script|link)\b[^>]*\b(?:src|href)="((?:https?:)?//[^"]+)"')
    for page in book["html"].rglob("*.html"):
        assert remote.findall(page.read_text()) == [], f"{page} loads from another machine"


def test_math_is_typeset_by_the_local_mathjax(book):
    intro = book["pages"]["intro.html"]
    assert intro["rawMath"] > 0 and intro["math"] >= intro["rawMath"]


def test_results_table_is_there_in_the_papers_form(book):
    results = page_with_title(book, "Results")
    wanted = {"Backbone", "Method", "Pooling", *METRIC_LABELS.values()}
    tables = [t for t in results["tables"] if wanted <= set(t["headers"])]
    assert tables, f"no table with headers {sorted(wanted)} in {results['tables']}"
    assert tables[0]["rows"] >= 2


def test_explorer_changes_the_visible_image_when_an_option_is_chosen(book):
    explorer = page_with_title(book, "Explorer")
    assert explorer["hasWidgetState"] and explorer["dropdowns"], "the explorer rendered no Dropdown"
    assert explorer["images"] >= 1
    changing = [d for d in explorer["dropdowns"] if d["options"] > 1]
    assert changing, "no Dropdown of the explorer has a second option"
    for dropdown in changing:
        assert dropdown["before"] and dropdown["after"], "no image visible around a Dropdown change"
        assert dropdown["after"] != dropdown["before"]


def test_no_table_reaches_past_the_article_at_1280_px(book):
    for name, page in book["pages"].items():
        for table in page["tables"]:
            assert table["overflow"] <= 0 and not table["scrolls"], \
                f"{name}: table {table['headers'][:4]} is wider than the article ({page['articleWidth']} px)"


def test_results_pages_use_the_width_the_right_sidebar_leaves(book):
    results = page_with_title(book, "Results")
    assert results["articleWidth"] >= 850, f"the results article is {results['articleWidth']} px wide at 1280 px"


def test_the_verdict_table_and_forest_plot_open_the_results_page(book):
    html = (book["html"] / "generated/04_figures.html").read_text()
    start = html.index('id="at-a-glance"')
    glance = html[start:html.index("<section", start)]
    assert "<table" in glance and "Claim" in glance, "no verdict table under 'At a glance'"
    assert "<img" in glance, "no forest plot under 'At a glance'"


def test_the_explorer_page_is_light(book):
    size = (book["html"] / "generated/05_explorer.html").stat().st_size
    assert size < 2_000_000, f"the explorer page weighs {size / 1e6:.2f} MB"


def test_the_live_explorer_notebook_opens_on_the_run(book, tmp_path):
    """``notebooks/explore_live.ipynb``, started from its own folder as Jupyter does, shows the live
    explorer over the smoke run's trained models."""
    import papermill

    root = book["html"].parents[2]
    out = tmp_path / "live.ipynb"
    papermill.execute_notebook(str(root / "notebooks/explore_live.ipynb"), str(out), parameters={"profile": "smoke"},
                               cwd=str(root / "notebooks"), kernel_name="python3", progress_bar=False)
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs), outputs


def test_the_cluster_workflow_trains_nothing_twice_and_loses_nothing(book):
    """Stages trained by torchrun before ``make book`` are adopted as they are: no checkpoint
    rewritten, nothing moved aside."""
    assert book["trained"] and {folder: (Path(folder) / "model.safetensors").stat().st_mtime_ns
                                for folder in book["trained"]} == book["trained"]
    assert not list((book["root"] / "runs/smoke/train").glob("*/*.orphan-*"))


def test_a_photos_profile_explains_the_smoke_models_own_predictions(book):
    """``kind: photos`` end to end: a profile that shows the smoke run's trained models (``models_from``)
    on scikit-image's photos, which have no labels, explains each model's own prediction."""
    from ca_core.repro.config import parse_profile, read_config
    from ca_core.repro.experiment import evaluate_all
    from ca_core.repro.runs import Run

    root = book["root"]
    profiles = read_config(root / "_config.yml")["profiles"]
    settings = {"models_from": "smoke", "models": ["resnet_mini"],
                "data": {"kind": "photos", "names": ["chelsea", "coffee", "astronaut"], "image_size": 32},
                "eval": profiles["smoke"]["eval"] | {"targets": "predicted", "num_images": None, "method_images": {},
                                                     "methods": ["attention", "gradcam", "random"]}}
    run = Run(parse_profile("photos", settings, root=root, profiles=profiles | {"photos": settings}))
    evaluate_all(run, progress=False)
    for pooling, seed in (("gap", None), ("ca", 1)):
        predicted = run.predictions("resnet_mini", pooling, seed)["pred"]
        results = run.results("resnet_mini", pooling, "gradcam", seed)
        assert (results["label"] == -1).all() and results["maps"].shape[0] == 3
        assert (results["target"] == predicted).all()
    assert "correct" not in run.predictions("resnet_mini", "gap")  # no labels, no accuracy
