"""The notices a generated page opens with, and the mark of what depends on a stale stage.

A profile may keep training stages made by older code or settings (``keep_stale``) or show another
profile's models (``models_from``); every page that shows numbers, figures or explorer views says so
first (:func:`show_notices`), and every backbone label of a table, figure or explorer view that
depends on a kept stage carries :data:`STALE_MARK` (:func:`backbone_label`).
"""
from __future__ import annotations

from .runs import Run

STALE_MARK = " †"


def kept_stale(run: Run) -> list[str]:
    """The training stages kept under older code or settings (the profile's ``keep_stale``)."""
    return [a.path.removeprefix("train/") for a in run.artefacts(("train",)) if a.kept_stale]


def stale_notice(run: Run) -> str:
    """A Markdown warning naming the stages kept under older code, and the mark of the numbers
    that depend on them; empty when there are none."""
    kept = kept_stale(run)
    if not kept:
        return ""
    return (f"**Warning: stale training stages kept on request.** The profile's `keep_stale` kept "
            f"{', '.join(f'`{k}`' for k in kept)} although the code or settings that made them have changed "
            f"since. Every table row, figure and explorer view of a backbone marked{STALE_MARK} depends on them; "
            "the training table names the kept stages.")


def source_notice(run: Run) -> str:
    """A Markdown note for a profile that evaluates another profile's models (``models_from``):
    where they were trained, and what the maps explain; empty otherwise."""
    profile = run.profile
    if not profile.models_from:
        return ""
    explained = ("the models' own predictions (the data's classes are not theirs), so no accuracy is reported"
                 if not profile.labelled else "the data's labels")
    return (f"**Models of profile `{profile.models_from}`.** This profile trains nothing: it shows the GAP and "
            f"CA models trained by profile `{profile.models_from}` "
            f"(`{profile.shown(run.train_folder)}/`) on its own {profile.data_kind} images. "
            f"The maps and metrics explain {explained}.")


def show_notices(run: Run) -> None:
    """Display :func:`source_notice` and :func:`stale_notice` in a notebook, those that apply."""
    from IPython.display import Markdown, display

    for notice in (source_notice(run), stale_notice(run)):
        if notice:
            display(Markdown(notice))


def backbone_label(run: Run, backbone: str) -> str:
    """The backbone's name, marked when one of its training stages is a kept stale one."""
    stale = any(k.split("/")[0] == backbone for k in kept_stale(run))
    return backbone + (STALE_MARK if stale else "")


def backbone_labels(run: Run) -> dict[str, str]:
    """:func:`backbone_label` of every backbone of the profile, for figures' titles."""
    return {backbone: backbone_label(run, backbone) for backbone in run.profile.models}
