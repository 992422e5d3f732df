"""What every notebook of ``notebooks/`` starts with: its profile, and a way to show tables."""
from __future__ import annotations

from typing import Any, Mapping

from .config import CONFIG_FILE, Profile, from_parameters
from .notices import show_notices
from .report import show

__all__ = ["setup", "show"]


def setup(profile: str, settings: Mapping[str, Any] | None = None, config: str = str(CONFIG_FILE)) -> Profile:
    """The validated profile of a notebook's parameters (``settings`` injected by the pipeline, else
    read from ``config``); the one setup call of every notebook. Displays the page's notices (models
    of another profile, training stages kept stale) first, when any apply."""
    resolved = from_parameters(profile, settings, config)
    show_notices(resolved)
    return resolved
