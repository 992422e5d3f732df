"""What every notebook of ``notebooks/`` starts with: its run (the profile and its folder), and a way
to show tables."""
from __future__ import annotations

from typing import Any, Mapping

from .config import CONFIG_FILE, from_parameters
from .notices import show_notices
from .report import show
from .runs import Run

__all__ = ["setup", "show"]


def setup(profile: str, settings: Mapping[str, Any] | None = None, config: str = str(CONFIG_FILE)) -> Run:
    """The run of a notebook's parameters: the validated profile ``profile`` (its ``settings`` injected
    by the pipeline, else read from ``config``) and its run folder; the one setup call of every
    notebook. Displays the page's notices (models of another profile, training stages kept stale)
    first, when any apply."""
    run = Run(from_parameters(profile, settings, config))
    show_notices(run)
    return run
