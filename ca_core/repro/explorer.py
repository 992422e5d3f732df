"""Image explorers that work without a kernel.

A static book page has no Python behind it, so ``observe``/``interact`` callbacks do nothing
there. The explorer below therefore pre-renders every image and links standard widgets in the
browser: each Dropdown's ``index`` is ``jslink``-ed to the ``selected_index`` of the ipywidgets
``Stack`` containers at its level. The same widget works live in Jupyter and, from its saved
widget state, in the static book.

For several key positions the Stacks are nested: the first Dropdown picks a child of the
outermost Stack, the second Dropdown picks a child of every Stack one level down, and so on;
the leaves hold the images (and their optional HTML captions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import product

import ipywidgets as widgets

Key = tuple[str, ...]


class StackExplorer(widgets.VBox):
    """A row of Dropdowns above nested Stacks of pre-rendered images, linked in the browser.

    Attributes:
        dropdowns: one Dropdown per key position, in key order.
        links: the browser-side links, one per (Dropdown, Stack at the Dropdown's level) pair.
        options: the values of each key position, in first-seen order.
    """

    def __init__(
        self,
        images: Mapping[Key, bytes],
        labels: Sequence[str],
        captions: Mapping[Key, str] | None = None,
    ) -> None:
        self.options = _key_options(images, labels, captions or {})
        self.dropdowns = tuple(
            widgets.Dropdown(
                options=values, index=0, description=label, style={"description_width": "initial"},
                layout=widgets.Layout(width="auto", margin="2px 1.5em 2px 0"),
            )
            for label, values in zip(labels, self.options)
        )
        levels: list[list[widgets.Stack]] = [[] for _ in labels]
        root = _nested_stack((), self.options, images, captions or {}, levels)
        self.links = tuple(
            widgets.jslink((dropdown, "index"), (stack, "selected_index"))
            for dropdown, stacks in zip(self.dropdowns, levels)
            for stack in stacks
        )
        controls = widgets.HBox(list(self.dropdowns), layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__([controls, root])


def stack_explorer(
    images: Mapping[Key, bytes],
    labels: Sequence[str],
    captions: Mapping[Key, str] | None = None,
) -> StackExplorer:
    """Build an explorer over pre-rendered PNG images that needs no kernel.

    Args:
        images: PNG or JPEG bytes for every combination of options, keyed by a tuple with one string per
            position in ``labels``, e.g. ``{("img 0", "resnet", "CA", "Grad-CAM"): png, ...}``.
            Every combination of the values seen at each position must be present.
        labels: the Dropdown label of each key position, e.g. ``["image", "backbone", ...]``.
        captions: optional HTML shown under each image (e.g. its scores), same keys as ``images``.

    Returns:
        A VBox of Dropdowns over nested Stacks; choosing an option switches the visible image in
        the browser, both in Jupyter and in the static book.

    Raises:
        ValueError: no images or labels, a key of the wrong length or type, a missing combination,
            a caption for an unknown key, or an image that is not PNG or JPEG bytes.
    """
    return StackExplorer(images, labels, captions)


def _key_options(
    images: Mapping[Key, bytes], labels: Sequence[str], captions: Mapping[Key, str]
) -> list[list[str]]:
    """Check the keys against the labels and return each position's values in first-seen order."""
    if not labels or not images:
        raise ValueError(
            f"stack_explorer needs labels and images, got {len(labels)} labels and {len(images)} images"
        )
    for key, value in images.items():
        if not isinstance(key, tuple) or len(key) != len(labels) or not all(isinstance(k, str) for k in key):
            raise ValueError(
                f"image key {key!r} must be a tuple of {len(labels)} strings, one per label {list(labels)}"
            )
        if not isinstance(value, bytes) or image_format(value) is None:
            raise ValueError(f"image {key!r} must be PNG or JPEG bytes, got {type(value).__name__}")
    options = [list(dict.fromkeys(key[i] for key in images)) for i in range(len(labels))]
    missing = [key for key in product(*options) if key not in images]
    if missing:
        raise ValueError(f"{len(missing)} option combinations have no image, e.g. {missing[0]!r}")
    unknown = [key for key in captions if key not in images]
    if unknown:
        raise ValueError(f"caption key {unknown[0]!r} has no image")
    return options


def _nested_stack(
    prefix: Key,
    options: list[list[str]],
    images: Mapping[Key, bytes],
    captions: Mapping[Key, str],
    levels: list[list[widgets.Stack]],
) -> widgets.Stack:
    """Stack for the key positions after ``prefix``; each Stack is recorded in ``levels`` by depth."""
    depth = len(prefix)
    children = [
        _leaf(prefix + (value,), images, captions)
        if depth + 1 == len(options)
        else _nested_stack(prefix + (value,), options, images, captions, levels)
        for value in options[depth]
    ]
    stack = widgets.Stack(children, selected_index=0)
    levels[depth].append(stack)
    return stack


def image_format(data: bytes) -> str | None:
    """``"png"`` or ``"jpeg"`` from the bytes' signature; ``None`` for anything else."""
    if data.startswith(b"\x89PNG"):
        return "png"
    return "jpeg" if data.startswith(b"\xff\xd8") else None


def _leaf(key: Key, images: Mapping[Key, bytes], captions: Mapping[Key, str]) -> widgets.Widget:
    """The image of one combination, with its caption underneath when there is one."""
    image = widgets.Image(value=images[key], format=image_format(images[key]))
    if key not in captions:
        return image
    return widgets.VBox([image, widgets.HTML(captions[key])])
