"""Structure of the kernel-free explorer: nested Stacks, browser-side links, clear key errors."""

from itertools import product

import ipywidgets as widgets
import pytest

from ca_core.repro.explorer import stack_explorer

PNG = b"\x89PNG fake"


def grid(*options: list[str]) -> dict[tuple[str, ...], bytes]:
    """One distinct fake image per combination of the options."""
    return {key: PNG + "/".join(key).encode() for key in product(*options)}


def leaves(widget: widgets.Widget) -> list[widgets.Widget]:
    """The leaves of the nested Stacks, in option order."""
    if isinstance(widget, widgets.Stack):
        return [leaf for child in widget.children for leaf in leaves(child)]
    return [widget]


def test_one_dropdown_per_position_with_first_seen_options():
    images = grid(["b", "a"], ["x", "y", "z"])
    explorer = stack_explorer(images, ["image", "method"])
    assert [d.description for d in explorer.dropdowns] == ["image", "method"]
    assert [list(d.options) for d in explorer.dropdowns] == [["b", "a"], ["x", "y", "z"]]
    assert all(d.index == 0 for d in explorer.dropdowns)


def test_nested_stacks_hold_every_image_in_key_order():
    images = grid(["i0", "i1"], ["gap", "ca"], ["gradcam", "scorecam", "attention"])
    explorer = stack_explorer(images, ["image", "pooling", "method"])
    root = explorer.children[1]
    assert isinstance(root, widgets.Stack) and len(root.children) == 2
    assert [leaf.value for leaf in leaves(root)] == list(images.values())
    assert all(isinstance(leaf, widgets.Image) and leaf.format == "png" for leaf in leaves(root))


def test_each_dropdown_is_linked_to_every_stack_at_its_level():
    images = grid(["i0", "i1"], ["gap", "ca"], ["gradcam", "scorecam", "attention"])
    explorer = stack_explorer(images, ["image", "pooling", "method"])
    assert len(explorer.links) == 1 + 2 + 2 * 2
    for level, dropdown in enumerate(explorer.dropdowns):
        targets = [link.target for link in explorer.links if link.source[0] is dropdown]
        assert all(attr == "selected_index" and isinstance(stack, widgets.Stack) for stack, attr in targets)
        assert all(len(stack.children) == len(dropdown.options) for stack, _ in targets)
        assert len({id(stack) for stack, _ in targets}) == [1, 2, 4][level]
    assert all(isinstance(link, widgets.widget_link.Link) for link in explorer.links)
    assert all(link.source[1] == "index" for link in explorer.links)


def test_captions_are_html_under_their_image():
    images = grid(["i0", "i1"], ["gap", "ca"])
    explorer = stack_explorer(images, ["image", "pooling"], {("i1", "ca"): "<b>AG 12.3</b>"})
    boxes = [leaf for leaf in leaves(explorer.children[1]) if isinstance(leaf, widgets.VBox)]
    assert len(boxes) == 1
    image, caption = boxes[0].children
    assert image.value == images[("i1", "ca")] and caption.value == "<b>AG 12.3</b>"


@pytest.mark.parametrize(
    ("images", "labels", "captions", "message"),
    [
        ({}, ["image"], None, "needs labels and images"),
        (grid(["a"]), [], None, "needs labels and images"),
        ({("a", "x"): PNG, ("a",): PNG}, ["image", "method"], None, r"\('a',\) must be a tuple of 2 strings"),
        ({("a", 1): PNG}, ["image", "method"], None, "must be a tuple of 2 strings"),
        ({("a",): "not bytes"}, ["image"], None, r"image \('a',\) must be PNG or JPEG bytes, got str"),
        ({("a", "x"): PNG, ("b", "y"): PNG}, ["image", "method"], None,
         r"2 option combinations have no image, e.g. \('a', 'y'\)"),
        (grid(["a"]), ["image"], {("b",): "?"}, r"caption key \('b',\) has no image"),
    ],
)
def test_inconsistent_keys_are_clear_errors(images, labels, captions, message):
    with pytest.raises(ValueError, match=message):
        stack_explorer(images, labels, captions)
