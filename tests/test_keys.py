"""Every artefact's key covers exactly the code that computes it: an edit to one function in each of
data, the generator, saliency, statistics, models and figures changes the keys it should, and only
those (the real :func:`ca_core.provenance.code_digest` on an edited copy of the package, no stub)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from key_dependencies import EDITS, changed_keys  # noqa: E402

ARTEFACTS = {"shapes cache", "training stage", "evaluation"}
#: module edited -> the artefacts (not notebook steps) whose key must change.
EXPECTED = {
    "ca_core/data/transforms.py": {"training stage", "evaluation"},
    "ca_core/data/shapes.py": {"shapes cache", "training stage", "evaluation"},
    "ca_core/saliency/gradcam.py": {"evaluation"},
    "ca_core/metrics/stats.py": {"evaluation"},
    "ca_core/models/layers.py": {"training stage", "evaluation"},
    "ca_core/repro/figures.py": set(),
}


@pytest.mark.parametrize("module", list(EXPECTED))
def test_an_edit_recomputes_exactly_the_artefacts_whose_code_it_touches(module):
    changed = set(changed_keys(module, EDITS[module], REPO / "notebooks"))
    assert changed & ARTEFACTS == EXPECTED[module]


def test_an_edit_to_the_figures_reruns_the_figure_pages_not_the_evaluation_page():
    changed = changed_keys("ca_core/repro/figures.py", EDITS["ca_core/repro/figures.py"], REPO / "notebooks")
    assert "step 04_figures" in changed and "step 03_evaluate" not in changed


def test_the_training_loop_imports_no_saliency_metrics_or_statistics():
    from ca_core.provenance import import_graph, reachable
    from ca_core.repro.keys import TRAIN_CODE

    closure = reachable(list(TRAIN_CODE), import_graph())
    assert not {m for m in closure if m.startswith(("ca_core.saliency", "ca_core.metrics", "ca_core.evaluation"))}
