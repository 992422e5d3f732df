"""Figures of the book: samples with masks, training curves, saliency grids, insertion/deletion
curves, attention at every depth, and the pre-rendered explorer images.

All saliency maps and attention maps use one colour map (:data:`CMAP`, 0 = blue, 1 = red),
overlaid on the image at :data:`ALPHA`, so that every figure reads the same way.
"""
from __future__ import annotations

import io
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..saliency import upsample

CMAP = "jet"
ALPHA = 0.5
MASK_COLOUR = "white"
POOLING_STYLE = {"gap": dict(ls="--"), "ca": dict(ls="-")}
KIND_COLOUR = {"insertion": "tab:green", "deletion": "tab:purple"}
#: The article's width at a 1280 px window (inches at the notebooks' 100 dpi): no figure is wider,
#: so none is scaled down in the book.
BOOK_WIDTH = 9.4
#: The smallest side of a saliency thumbnail (inches at 100 dpi: 1.25 -> 125 CSS px).
THUMB = 1.3


def upsampled(smap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) map bilinearly upsampled to ``size`` (the metrics' convention: align_corners False)."""
    return upsample(torch.as_tensor(np.asarray(smap, dtype=np.float32))[None], size)[0].numpy()


def show_overlay(ax, rgb: np.ndarray, smap: np.ndarray | None, title: str = "",
                 mask: np.ndarray | None = None, fontsize: float = 9) -> None:
    """Draw an (H, W, 3) image with a saliency map (any resolution, values in [0, 1]) on top and,
    when given, the ground-truth object mask as a contour."""
    ax.imshow(rgb)
    if smap is not None:
        ax.imshow(upsampled(smap, rgb.shape[:2]), cmap=CMAP, alpha=ALPHA, vmin=0, vmax=1)
    if mask is not None:
        ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors=MASK_COLOUR, linewidths=1.0)
    ax.set_title(title, fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])


def _grid(rows: int, cols: int, size: float = 1.6, extra_width: float = 0.0) -> tuple[Figure, np.ndarray]:
    """A rows x cols grid of square panels, at most :data:`BOOK_WIDTH` wide (with ``extra_width``
    inches for labels and a colour bar)."""
    size = min(size, (BOOK_WIDTH - extra_width) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols + extra_width, 1.08 * size * rows + 0.6), squeeze=False,
                             layout="constrained")
    fig.get_layout_engine().set(w_pad=0.01, h_pad=0.01, wspace=0.02, hspace=0.02)
    return fig, axes


def _colorbar(fig: Figure, axes: np.ndarray, label: str, location: str = "right") -> None:
    mappable = plt.cm.ScalarMappable(cmap=CMAP, norm=plt.Normalize(0, 1))
    fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.5, aspect=30, pad=0.02, label=label, location=location)


def sample_grid(rgbs: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], titles: Sequence[str]) -> Figure:
    """Images (top row) and their ground-truth masks outlined on them (bottom row, for data with masks)."""
    with_masks = all(m is not None for m in masks)
    fig, axes = _grid(2 if with_masks else 1, len(rgbs))
    for j, (rgb, mask, title) in enumerate(zip(rgbs, masks, titles)):
        show_overlay(axes[0, j], rgb, None, title)
        if with_masks:
            show_overlay(axes[1, j], rgb, None, "mask", mask=mask)
    fig.suptitle("Test images (top) and their ground-truth object masks (bottom, outlined)" if with_masks
                 else "Test images (these data have no object masks)", fontsize=10)
    return fig


def training_curves(logs: Mapping[str, Sequence[Mapping[str, float]]], keys: Sequence[str]) -> Figure:
    """One panel per logged quantity (e.g. ``train_loss``, ``val_acc``) against epoch, one line per run."""
    rows = -(-len(keys) // 2)
    fig, axes = plt.subplots(rows, 2, figsize=(BOOK_WIDTH, 3.2 * rows), squeeze=False)
    for ax in axes.ravel()[len(keys):]:
        ax.set_axis_off()
    for ax, key in zip(axes.ravel(), keys):
        for label, records in logs.items():
            points = [(r["epoch"], r[key]) for r in records if key in r and "epoch" in r]
            if points:
                ax.plot(*zip(*points), marker="o", ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def saliency_grid(rgbs: Sequence[np.ndarray], masks: Sequence[np.ndarray | None],
                  rows: Mapping[str, Mapping[str, Sequence[np.ndarray] | None]], titles: Sequence[str]) -> Figure:
    """Methods (rows) x images, GAP and CA side by side for each image; the top row shows the
    images, every panel outlines the ground-truth mask. ``rows[method][pooling]`` holds one map per
    image, or ``None`` where the pooling has no such map (raw attention under GAP)."""
    cols = 2 * len(rgbs)
    fig, axes = _grid(len(rows) + 1, cols, size=THUMB, extra_width=1.0)
    for i, (rgb, mask, title) in enumerate(zip(rgbs, masks, titles)):
        for j, pooling in enumerate(("gap", "ca")):
            show_overlay(axes[0, 2 * i + j], rgb, None, f"{title}\n{pooling.upper()}", mask=mask)
        for r, (method, maps) in enumerate(rows.items(), 1):
            for j, pooling in enumerate(("gap", "ca")):
                ax, smaps = axes[r, 2 * i + j], maps.get(pooling)
                show_overlay(ax, rgb, None if smaps is None else smaps[i], mask=mask)
                if smaps is None:
                    ax.text(0.5, 0.5, "none", transform=ax.transAxes, ha="center", va="center", color="white",
                            bbox={"facecolor": "black", "alpha": 0.6})
    for r, method in enumerate(rows, 1):
        axes[r, 0].set_ylabel(method.replace(" (", "\n("), fontsize=9, rotation=0, ha="right", va="center")
    _colorbar(fig, axes, "saliency (min-max)", location="bottom")
    return fig


def causal_curves(curves: Mapping[tuple[str, str], Mapping[str, np.ndarray]], title: str) -> Figure:
    """Mean insertion (green) and deletion (purple) curves, one panel per method, GAP dashed and CA
    solid, the area under each curve in the legend.

    ``curves[(method_label, pooling)]`` holds ``insertion_curve``/``deletion_curve`` arrays (N, points).
    """
    methods = list(dict.fromkeys(m for m, _ in curves))
    cols = min(3, len(methods))
    grid_rows = -(-len(methods) // cols)
    fig, axes = plt.subplots(grid_rows, cols, figsize=(BOOK_WIDTH, 2.9 * grid_rows + 0.4), squeeze=False,
                             sharex=True, sharey=True)
    for ax in axes.ravel()[len(methods):]:
        ax.set_axis_off()
    for ax, method in zip(axes.ravel(), methods):
        for pooling in ("gap", "ca"):
            for kind in ("insertion", "deletion"):
                if (method, pooling) not in curves:
                    continue
                mean = np.asarray(curves[(method, pooling)][f"{kind}_curve"], dtype=float).mean(axis=0)
                fraction = np.linspace(0, 1, len(mean))
                auc = float(np.trapezoid(mean, fraction))
                ax.plot(fraction, mean, color=KIND_COLOUR[kind], label=f"{pooling.upper()} {kind[:3]}. {100 * auc:.1f}",
                        **POOLING_STYLE[pooling])
        ax.set_title(method, fontsize=10)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best", title="AUC", title_fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("fraction of pixels inserted / deleted", fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("target probability", fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def depth_grid(rgbs: Sequence[np.ndarray], attentions: Sequence[np.ndarray], block_names: Sequence[str],
               masks: Sequence[np.ndarray | None] | None = None) -> Figure:
    """The stream's attention at every depth: images (rows) x CA blocks (columns), each map min-max scaled.

    ``attentions[k]`` is (N, h_k, w_k), the k-th block's softmax attention for the N images.
    """
    masks = masks if masks is not None else [None] * len(rgbs)
    fig, axes = _grid(len(rgbs), len(attentions) + 1, extra_width=0.8)
    for i, (rgb, mask) in enumerate(zip(rgbs, masks)):
        show_overlay(axes[i, 0], rgb, None, "image" if i == 0 else "", mask=mask)
        for j, (att, name) in enumerate(zip(attentions, block_names), 1):
            a = np.asarray(att[i], dtype=np.float32)
            a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
            show_overlay(axes[i, j], rgb, a, f"{name}\n{att.shape[1]}×{att.shape[2]}" if i == 0 else "",
                         mask=mask, fontsize=8)
    _colorbar(fig, axes, "attention (min-max per map)")
    return fig


def encode(fig: Figure, dpi: int = 100, colours: int | None = None) -> bytes:
    """The figure as PNG bytes (closed afterwards, so it is not also shown inline); with ``colours``,
    quantised to a palette of that many colours (PNG-8, about a third of the bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    if colours is None:
        return buf.getvalue()
    from PIL import Image

    out = io.BytesIO()
    # octree keeps the rare colours of thin lines (legend and curves) that median cut merges away
    Image.open(buf).convert("RGB").quantize(colours, method=Image.Quantize.FASTOCTREE).save(out, "PNG", optimize=True)
    return out.getvalue()


#: The explorer's views: overlays of at least 224 px at :data:`EXPLORER_DPI`, as PNG-8 with
#: :data:`EXPLORER_COLOURS` colours, which keeps the default book's explorer page under 2 MB.
EXPLORER_DPI = 100
EXPLORER_COLOURS = 128


def explorer_image(rgb: np.ndarray, mask: np.ndarray | None, maps: Mapping[str, np.ndarray | None],
                   curves: Mapping[str, Mapping[str, np.ndarray] | None], title: str,
                   notes: Mapping[str, str] | None = None) -> bytes:
    """One explorer view as PNG bytes: the GAP and CA overlays side by side (224 px each, mask
    outlined) and the image's insertion/deletion curves for both, GAP dashed and CA solid.

    ``maps`` and ``curves`` are keyed by pooling (``"gap"``, ``"ca"``); ``None`` where the pooling
    has no such map. The panel of a pooling without a map says why: ``notes[pooling]``, by default
    "no map under" the pooling.
    """
    fig, axes = plt.subplots(1, 3, figsize=(9.2, 3.2), gridspec_kw={"width_ratios": [1, 1, 1.3]})
    for ax, pooling in zip(axes[:2], ("gap", "ca")):
        smap = maps.get(pooling)
        show_overlay(ax, rgb, smap, f"{title} · {pooling.upper()}", mask=mask)
        if smap is None:
            note = (notes or {}).get(pooling, f"no map\nunder {pooling.upper()}")
            ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center",
                    va="center", color="white", fontsize=11, bbox={"facecolor": "black", "alpha": 0.6})
    right = axes[2]
    for pooling in ("gap", "ca"):
        if curves.get(pooling) is None:
            continue
        for kind in ("insertion", "deletion"):
            values = np.asarray(curves[pooling][kind], dtype=float)
            right.plot(np.linspace(0, 1, len(values)), values, color=KIND_COLOUR[kind],
                       label=f"{pooling.upper()} {kind}", **POOLING_STYLE[pooling])
    right.set_xlabel("fraction of pixels inserted / deleted", fontsize=8)
    right.set_ylabel("target probability", fontsize=8)
    right.tick_params(labelsize=8)
    right.set_ylim(0, 1)
    right.grid(alpha=0.3)
    right.legend(fontsize=7)
    fig.tight_layout()
    return encode(fig, EXPLORER_DPI, EXPLORER_COLOURS)


VERDICT_COLOURS = {"holds": "tab:green", "not significant": "tab:gray", "opposite, significant": "tab:red",
                   "equivalence not shown": "tab:gray"}
#: The marker of each comparison of :class:`ca_core.repro.claims.Comparison` in the forest plot.
COMPARISON_MARKERS = {"raw": "o", "vs_random": "s", "vs_centre": "D", "calibrated": "^"}


def forest_plot(tests: Sequence, labels: Mapping[str, str],
                comparisons: Sequence[str] = ("raw", "vs_random")) -> Figure:
    """CA − GAP per claim x backbone x method with its 95 % interval, one marker per comparison
    (raw; the map effect against the random map), coloured by verdict (Holm-corrected), the baselines'
    own raw rows in grey italics and the paper's difference as a black cross; one row of panels per
    metric, one column per backbone.

    ``tests`` are :class:`ca_core.repro.claims.ClaimTest` records; ``labels`` name the methods and
    the backbones (:func:`ca_core.repro.notices.backbone_labels`: marked when kept stale).
    """
    if not tests:  # e.g. a run of raw attention alone, or without labels
        fig, ax = plt.subplots(figsize=(BOOK_WIDTH, 0.6))
        ax.set_axis_off()
        ax.text(0.5, 0.5, "No claim of the paper is testable on this run (it needs the paper's CAMs, or labels).",
                ha="center", va="center", fontsize=10)
        return fig
    metrics = list(dict.fromkeys(t.metric for t in tests))
    backbones = list(dict.fromkeys(t.backbone for t in tests))
    sizes = [max(len([t for t in tests if t.metric == m and t.backbone == b]) for b in backbones) for m in metrics]
    fig, axes = plt.subplots(len(metrics), len(backbones),
                             figsize=(BOOK_WIDTH, 0.75 * len(metrics) + 0.3 * sum(sizes) + 0.6),
                             squeeze=False, gridspec_kw={"height_ratios": [n + 1.5 for n in sizes]})
    offsets = np.linspace(0.18, -0.18, len(comparisons)) if len(comparisons) > 1 else [0.0]
    for (row, metric), (col, backbone) in ((r, c) for r in enumerate(metrics) for c in enumerate(backbones)):
        ax, group = axes[row][col], [t for t in tests if t.metric == metric and t.backbone == backbone]
        _forest_panel(ax, group, offsets, comparisons)
        ax.set_yticks(np.arange(len(group))[::-1])
        ax.set_yticklabels([labels.get(str(t.method), "accuracy").replace(" (baseline)", "") if col == 0 else ""
                            for t in group], fontsize=8.5)
        for tick, t in zip(ax.get_yticklabels(), group):
            if t.baseline:
                tick.set_color("dimgray")
                tick.set_fontstyle("italic")
        direction = group[0].direction if group else "up"
        ax.set_title(f"{labels.get(backbone, backbone)}: {metric} "
                     f"({'higher' if direction == 'up' else 'lower'} is better)", fontsize=9.5)
    for ax in axes[-1]:
        ax.set_xlabel("CA − GAP (points)", fontsize=9)
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=v)
               for v, c in list(VERDICT_COLOURS.items())[:3]]
    handles += [plt.Line2D([], [], color="black", marker=COMPARISON_MARKERS[c], ls="", mfc="none",
                           label={"raw": "raw", "vs_random": "map effect (− random's)",
                                  "vs_centre": "map effect (− centre's)", "calibrated": "matched calibration"}[c])
                for c in comparisons]
    handles.append(plt.Line2D([], [], color="black", marker="x", ls="", label="paper (ImageNet)"))
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=8.5, frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def _forest_panel(ax, group: Sequence, offsets: Sequence[float], comparisons: Sequence[str]) -> None:
    """One panel of :func:`forest_plot`: every test of one metric and backbone, top to bottom."""
    y = np.arange(len(group))[::-1]
    ax.set_ylim(-0.7, max(len(group), 2) - 0.3)
    drawn = [(yi + dy, comparison, t, t.tests[c])
             for yi, t in zip(y, group) for dy, comparison in zip(offsets, comparisons)
             if (c := next((k for k in t.tests if k.value == comparison), None)) is not None]
    lo, hi = _panel_range([(r.lo, r.hi) for *_, r in drawn], [t.paper_diff for t in group if t.paper_diff is not None])
    for yi, comparison, t, r in drawn:
        colour = VERDICT_COLOURS.get(r.verdict.value, "tab:gray")
        x, left, right = (min(max(v, lo), hi) for v in (r.diff, r.lo, r.hi))  # clipped to the panel
        ax.errorbar(x, yi, xerr=[[x - left], [right - x]], fmt=COMPARISON_MARKERS[comparison], ms=4.5, color=colour,
                    capsize=2.5, alpha=0.55 if t.baseline else 1.0)
        if r.lo < lo:  # the interval runs past the panel: an arrow at the edge says so
            ax.plot(lo, yi, "<", color=colour, ms=6, clip_on=False)
        if r.hi > hi:
            ax.plot(hi, yi, ">", color=colour, ms=6, clip_on=False)
    for yi, t in zip(y, group):
        if t.paper_diff is not None:
            ax.plot(t.paper_diff, yi, "x", color="black", ms=7)
    ax.set_xlim(lo, hi)
    ax.axvline(0, color="black", lw=0.8)
    ax.tick_params(axis="x", labelsize=8.5)
    ax.grid(axis="x", alpha=0.3)


def _panel_range(intervals: Sequence[tuple[float, float]], points: Sequence[float],
                 widest: float = 4.0) -> tuple[float, float]:
    """The x range of a forest panel: every interval at most ``widest`` times the median width, the
    ``points`` (the paper's differences) and 0, with a margin. A far wider interval (a method scored on
    a handful of images) would squeeze the others to dots: it runs past the edge, marked by an arrow."""
    widths = np.array([hi - lo for lo, hi in intervals])
    limit = widest * max(float(np.median(widths)), 1e-9) if len(widths) else np.inf
    kept = [end for interval, w in zip(intervals, widths) if w <= limit for end in interval]
    values = np.array(kept + list(points) + [0.0])
    lo, hi = float(values.min()), float(values.max())
    pad = 0.06 * max(hi - lo, 1e-6)
    return lo - pad, hi + pad


def reliability_diagrams(records: Mapping[str, Mapping[str, object]]) -> Figure:
    """One reliability diagram per model (``records``: name -> calibration record of
    :func:`ca_core.evaluation.calibrate`): accuracy against confidence per bin, raw and at the
    fitted temperature, with the diagonal of perfect calibration."""
    n = max(len(records), 1)
    cols = min(n, 4)
    grid_rows = -(-n // cols)
    fig, axes = plt.subplots(grid_rows, cols, figsize=(BOOK_WIDTH, 2.3 * grid_rows + 0.4), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    for ax, (name, record) in zip(axes.ravel(), records.items()):
        for kind, style in (("raw", dict(color="tab:red", marker="o")),
                            ("calibrated", dict(color="tab:blue", marker="s"))):
            bins = record[f"reliability_{kind}"]
            keep = np.asarray(bins["count"]) > 0
            ax.plot(np.asarray(bins["confidence"])[keep], np.asarray(bins["accuracy"])[keep], ms=3, lw=1, **style,
                    label=f"{kind} (ECE {100 * record[kind]['ece']:.1f})")
        ax.plot([0, 1], [0, 1], color="black", lw=0.7, ls=":")
        ax.set_title(f"{name}\nT = {record['temperature']:.2f}", fontsize=8.5)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6.5, loc="upper left", frameon=False)
    fig.supxlabel("confidence", fontsize=9)
    fig.supylabel("accuracy", fontsize=9)
    fig.tight_layout()
    return fig


def sanity_curves(checks: Sequence, labels: Mapping[str, str]) -> Figure:
    """The parameter randomisation check: the median Spearman correlation between trained and
    randomised maps after each top-down step, one panel per backbone x pooling, one line per method;
    ``labels`` name the methods and the backbones, as in :func:`forest_plot`."""
    panels = list(dict.fromkeys((b, p) for b, _, p, _ in checks))
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(BOOK_WIDTH, 3.1), squeeze=False, sharey=True)
    for ax, (backbone, pooling) in zip(axes[0], panels):
        for b, method, p, result in checks:
            if (b, p) == (backbone, pooling):
                ax.plot(range(len(result.steps)), list(result.summary().values()), marker=".", lw=1,
                        label=labels.get(method, method))
                steps = result.steps
        ax.axhline(0.5, color="black", lw=0.7, ls=":")
        ax.set_xticks(range(len(steps)))
        ax.set_xticklabels(steps, rotation=70, fontsize=6)
        ax.set_title(f"{labels.get(backbone, backbone)} · {pooling.upper()}", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("median Spearman ρ", fontsize=9)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=min(len(names), 5), fontsize=7.5, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    return fig
