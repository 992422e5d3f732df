"""Sphinx extension of the book: say when the executed notebooks do not match the current code.

The book shows the executed notebooks of ``book/generated/`` (kept in the repository, regenerated
by ``make book``) and never executes them. At build time this extension recomputes each step's key
(:func:`ca_core.repro.pipeline.step_keys`: the profile's settings, the notebook, the source of the
code it reaches) and compares it with the stamp the pipeline wrote next to the notebook. When any
differs, the build prints a warning and every generated page opens with a plain warning saying
which steps are out of date and how to regenerate them; when there are no executed notebooks,
the build says so.
"""
from __future__ import annotations

from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

from ca_core.repro.pipeline import STEPS, stale_steps

logger = logging.getLogger(__name__)
GENERATED = "generated/"


def check(app: Sphinx) -> None:
    """Compare the stamps of ``generated/`` with the current keys; remember and report the result."""
    book = Path(app.srcdir)
    if not any((book / GENERATED).glob("0*.ipynb")):
        app.ca_stale = None
        logger.warning("book/generated/ holds no executed notebooks: the book has only its static pages. "
                       "Run `make book` (or `python -m ca_core.pipeline --profile default`).")
        return
    profile, stale = stale_steps(book.parent, STEPS)
    app.ca_stale = (profile, stale) if stale else None
    if stale:
        logger.warning(f"book/generated/ is out of date for profile {profile!r}: steps {', '.join(stale)} were "
                       "produced by other code or settings than the current ones. Run `make book` to regenerate.")


def mark(app: Sphinx, doctree: nodes.document) -> None:
    """Open each generated page with the staleness warning, when there is one."""
    if not getattr(app, "ca_stale", None) or not app.env.docname.startswith(GENERATED):
        return
    profile, stale = app.ca_stale
    text = (f"The numbers on this page may be out of date: the code or settings of the pipeline steps "
            f"{', '.join(stale)} have changed since these notebooks were executed (profile {profile}). Run ")
    paragraph = nodes.paragraph("", "", nodes.Text(text), nodes.literal(text="make book"),
                                nodes.Text(" to regenerate them."))
    warning = nodes.warning("", paragraph, classes=["ca-stale"])
    section = next(iter(doctree.findall(nodes.section)), doctree)
    title = next((i for i, child in enumerate(section.children) if isinstance(child, nodes.title)), -1)
    section.insert(title + 1, warning)


def outdated(app: Sphinx, env, added: set[str], changed: set[str], removed: set[str]) -> list[str]:
    """Re-read the generated pages when the staleness changed since the last build (their sources
    may not have changed, the code they came from did)."""
    previous = getattr(env, "ca_stale", "unknown")
    env.ca_stale = app.ca_stale
    return [d for d in env.found_docs if d.startswith(GENERATED)] if previous != app.ca_stale else []


def setup(app: Sphinx) -> dict[str, bool]:
    app.connect("builder-inited", check)
    app.connect("env-get-outdated", outdated)
    app.connect("doctree-read", mark)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
