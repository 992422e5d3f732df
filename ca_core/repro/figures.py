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
POOLING_STYLE = {"gap": dict(color="tab:blue", ls="--"), "ca": dict(color="tab:red", ls="-")}


def upsampled(smap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) map bilinearly upsampled to ``size`` (the metrics' convention: align_corners False)."""
    return upsample(torch.as_tensor(np.asarray(smap, dtype=np.float32))[None], size)[0].numpy()


def show_overlay(ax, rgb: np.ndarray, smap: np.ndarray | None, title: str = "") -> None:
    """Draw an (H, W, 3) image with a saliency map (any resolution, values in [0, 1]) on top."""
    ax.imshow(rgb)
    if smap is not None:
        ax.imshow(upsampled(smap, rgb.shape[:2]), cmap=CMAP, alpha=ALPHA, vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def _grid(rows: int, cols: int, size: float = 1.7) -> tuple[Figure, np.ndarray]:
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + 0.4), squeeze=False)
    return fig, axes


def _colorbar(fig: Figure, axes: np.ndarray, label: str) -> None:
    mappable = plt.cm.ScalarMappable(cmap=CMAP, norm=plt.Normalize(0, 1))
    fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.6, label=label)


def sample_grid(rgbs: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], titles: Sequence[str]) -> Figure:
    """Images (top row) and their ground-truth masks outlined on them (bottom row, for data with masks)."""
    if any(m is None for m in masks):
        fig, axes = _grid(1, len(rgbs))
        for j, (rgb, title) in enumerate(zip(rgbs, titles)):
            show_overlay(axes[0, j], rgb, None, title)
        fig.suptitle("Test images (these data have no object masks)", fontsize=9)
        return fig
    fig, axes = _grid(2, len(rgbs))
    for j, (rgb, mask, title) in enumerate(zip(rgbs, masks, titles)):
        show_overlay(axes[0, j], rgb, None, title)
        show_overlay(axes[1, j], rgb, None, "mask")
        axes[1, j].contour(np.asarray(mask, dtype=float), levels=[0.5], colors="yellow", linewidths=1.2)
    fig.suptitle("Test images (top) and their ground-truth object masks (bottom, yellow outline)", fontsize=9)
    return fig


def training_curves(logs: Mapping[str, Sequence[Mapping[str, float]]], keys: Sequence[str]) -> Figure:
    """One panel per logged quantity (e.g. ``train_loss``, ``val_acc``) against epoch, one line per run."""
    rows = -(-len(keys) // 2)
    fig, axes = plt.subplots(rows, 2, figsize=(9, 3.2 * rows), squeeze=False)
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


def saliency_grid(rgbs: Sequence[np.ndarray], columns: Mapping[str, Sequence[np.ndarray | None]],
                  row_titles: Sequence[str]) -> Figure:
    """Images (rows) x maps (columns, e.g. "Grad-CAM · GAP"); a ``None`` map shows the plain image."""
    fig, axes = _grid(len(rgbs), len(columns) + 1)
    for i, rgb in enumerate(rgbs):
        show_overlay(axes[i, 0], rgb, None, "image" if i == 0 else "")
        axes[i, 0].set_ylabel(row_titles[i], fontsize=8)
        for j, (name, maps) in enumerate(columns.items(), 1):
            show_overlay(axes[i, j], rgb, maps[i], name if i == 0 else "")
    _colorbar(fig, axes, "saliency (min-max normalised)")
    return fig


def causal_curves(curves: Mapping[tuple[str, str], Mapping[str, np.ndarray]], title: str) -> Figure:
    """Mean insertion and deletion curves, one panel per method and curve, GAP dashed vs CA solid.

    ``curves[(method_label, pooling)]`` holds ``insertion_curve``/``deletion_curve`` arrays (N, points).
    """
    methods = list(dict.fromkeys(m for m, _ in curves))
    fig, axes = plt.subplots(2, len(methods), figsize=(3.2 * len(methods), 5.4), squeeze=False, sharey=True)
    for j, method in enumerate(methods):
        for i, kind in enumerate(("insertion", "deletion")):
            ax = axes[i, j]
            for pooling in ("gap", "ca"):
                if (method, pooling) not in curves:
                    continue
                mean = np.asarray(curves[(method, pooling)][f"{kind}_curve"], dtype=float).mean(axis=0)
                fraction = np.linspace(0, 1, len(mean))
                auc = float(np.trapezoid(mean, fraction))
                ax.plot(fraction, mean, label=f"{pooling.upper()} (AUC {100 * auc:.1f})", **POOLING_STYLE[pooling])
            ax.set_title(f"{method}: {kind}", fontsize=9)
            ax.set_xlabel("fraction of pixels " + ("inserted" if kind == "insertion" else "deleted"))
            ax.set_ylabel("target class probability")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def depth_grid(rgbs: Sequence[np.ndarray], attentions: Sequence[np.ndarray], block_names: Sequence[str]) -> Figure:
    """The stream's attention at every depth: images (rows) x CA blocks (columns), each map min-max scaled.

    ``attentions[k]`` is (N, h_k, w_k), the k-th block's softmax attention for the N images.
    """
    fig, axes = _grid(len(rgbs), len(attentions) + 1)
    for i, rgb in enumerate(rgbs):
        show_overlay(axes[i, 0], rgb, None, "image" if i == 0 else "")
        for j, (att, name) in enumerate(zip(attentions, block_names), 1):
            a = np.asarray(att[i], dtype=np.float32)
            a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
            show_overlay(axes[i, j], rgb, a, f"{name}\n{att.shape[1]}×{att.shape[2]}" if i == 0 else "")
    _colorbar(fig, axes, "attention (min-max per map)")
    return fig


def png(fig: Figure, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (closed afterwards, so it is not also shown inline)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def explorer_image(rgb: np.ndarray, smap: np.ndarray | None, curves: Mapping[str, np.ndarray] | None,
                   title: str) -> bytes:
    """One explorer view as PNG: the overlay and the image's insertion/deletion curves."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(6.4, 2.9), gridspec_kw={"width_ratios": [1, 1.3]})
    show_overlay(left, rgb, smap, title)
    if curves is None:
        right.text(0.5, 0.5, "no map for this choice", ha="center", va="center")
        right.set_axis_off()
    else:
        for kind, color in (("insertion", "tab:green"), ("deletion", "tab:purple")):
            values = np.asarray(curves[kind], dtype=float)
            right.plot(np.linspace(0, 1, len(values)), values, color=color, label=kind)
        right.set_xlabel("fraction of pixels inserted / deleted")
        right.set_ylabel("target class probability")
        right.set_ylim(0, 1)
        right.grid(alpha=0.3)
        right.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)


VERDICT_COLOURS = {"holds": "tab:green", "not significant": "tab:gray", "no: opposite, significant": "tab:red",
                   "no: significantly lower": "tab:red"}


def forest_plot(tests: Sequence[Mapping[str, object]], labels: Mapping[str, str]) -> Figure:
    """CA − GAP per claim x backbone x method with its 95 % interval, coloured by verdict, and the
    paper's difference as a black cross; one panel per metric (its claimed direction in the title).

    ``tests`` are :func:`ca_core.repro.report.claim_tests` rows; ``labels`` name the methods.
    """
    metrics = list(dict.fromkeys(str(t["metric"]) for t in tests))
    rows = {m: [t for t in tests if t["metric"] == m] for m in metrics}
    height = max(len(r) for r in rows.values())
    cols = min(3, len(metrics))
    grid_rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(grid_rows, cols, figsize=(11, grid_rows * (1.0 + 0.3 * height)), squeeze=False)
    for ax in axes.ravel()[len(metrics):]:
        ax.set_axis_off()
    for ax, metric in zip(axes.ravel(), metrics):
        group = rows[metric]
        y = np.arange(len(group))[::-1]
        ax.set_ylim(-0.7, max(len(group), 2) - 0.3)
        for yi, t in zip(y, group):
            colour = VERDICT_COLOURS.get(str(t["verdict"]), "tab:gray")
            ax.errorbar(t["diff"], yi, xerr=[[t["diff"] - t["lo"]], [t["hi"] - t["diff"]]], fmt="o", ms=4,
                        color=colour, capsize=2)
            if t["paper_diff"] is not None:
                ax.plot(t["paper_diff"], yi, "x", color="black", ms=6)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels([f"{t['backbone']} · {labels.get(str(t['method']), 'accuracy')}" for t in group], fontsize=8)
        direction = group[0]["direction"]
        ax.set_title(f"{metric} ({'higher' if direction == 'up' else 'lower'} is better)", fontsize=9)
        ax.set_xlabel("CA − GAP (points)", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=v)
               for v, c in list(VERDICT_COLOURS.items())[:3]]
    handles.append(plt.Line2D([], [], color="black", marker="x", ls="", label="paper (ImageNet)"))
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
