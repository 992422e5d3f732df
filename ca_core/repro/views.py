"""Views of a run's results for the book: what the figures and the explorer show, as arrays.

Each function reads saved results or trained models of a :class:`~ca_core.repro.runs.Run` (the data
alone: of its :class:`~ca_core.repro.config.Profile`) and returns plain data; drawing is
:mod:`ca_core.repro.figures`' job.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from . import paper
from .config import Profile
from .notices import backbone_label
from .experiment import class_names, eval_split, initial_model, load_trained, rgb
from .runs import Run
from ..evaluation import images_for
from ..metrics import energy_pointing_game, paper_tolerance, pearson, pointing_game
from ..saliency import upsample
from ..saliency.base import minmax

CURVES = ("train_loss", "val_loss", "train_acc", "val_acc")


def curve_keys(logs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The losses and accuracies that the logs record per epoch, in :data:`CURVES` order."""
    return [k for k in CURVES if any(k in r for records in logs.values() for r in records)]


def samples(profile: Profile, dataset: Dataset, n: int) -> tuple[list[np.ndarray], list[np.ndarray | None], list[str]]:
    """The first ``n`` images of ``dataset``: RGB arrays, their masks (``None`` without) and titles."""
    names = class_names(dataset, profile.num_classes)
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    titles = getattr(dataset, "names", None) or [names[y] for _, y, *_ in items]  # photos: no labels, their names
    return ([rgb(x, dataset) for x, *_ in items], [m[0].numpy() if m else None for _, _, *m in items],
            [f"#{i} {title}" for i, title in enumerate(titles[: len(items)])])


def shown_images(profile: Profile) -> tuple[list[int], list[np.ndarray], list[np.ndarray | None], list[str]]:
    """Indices, RGB arrays, masks (``None`` without) and titles of the first ``figure_images``
    evaluated test images."""
    test = eval_split(profile)
    n = min(profile.eval.figure_images, *(images_for(m, profile.eval, len(test)) for m in profile.eval.methods))
    rgbs, masks, titles = samples(profile, test, n)
    return list(range(len(rgbs))), rgbs, masks, titles


def mean_curves(run: Run, backbone: str) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Insertion/deletion curves per (method label, pooling) of one backbone."""
    return {(paper.METHOD_LABELS[m], p): run.results(backbone, p, m)
            for b, m, p in run.evaluated_cells() if b == backbone}


def saliency_rows(run: Run, backbone: str) -> tuple[list[np.ndarray], list[np.ndarray | None],
                                                             dict[str, dict[str, list[np.ndarray] | None]], list[str]]:
    """The qualitative grid of one backbone: images, masks, and per method label and pooling the
    saved maps of the shown images (``None`` where the pooling has no such map), and titles."""
    idx, rgbs, masks, titles = shown_images(run.profile)
    rows: dict[str, dict[str, list[np.ndarray] | None]] = {}
    for b, method, pooling in run.evaluated_cells():
        if b == backbone:
            maps = run.results(backbone, pooling, method)["maps"]
            row = rows.setdefault(paper.METHOD_LABELS[method], {"gap": None, "ca": None})
            row[pooling] = [maps[i].astype(np.float32) for i in idx]
    return rgbs, masks, rows, titles


@torch.no_grad()
def depth_attention(run: Run, backbone: str) -> tuple[list[np.ndarray], list[np.ndarray], list[str],
                                                               list[np.ndarray | None]]:
    """Images, every CA block's attention (N, h, w) for them, the blocks' tap names, and the masks."""
    idx, rgbs, masks, _ = shown_images(run.profile)
    model = load_trained(run, backbone, "ca")
    test = eval_split(run.profile)
    x = torch.stack([test[i][0] for i in idx]).to(next(model.parameters()).device)
    attentions = [a.cpu().numpy() for a in model.forward_attention(x)]
    return rgbs, attentions, [f"block {k}\n{t}" for k, t in enumerate(model.taps, 1)], masks


def explorer_views(run: Run) -> tuple[dict[tuple[str, ...], bytes], dict[tuple[str, ...], str], list[str]]:
    """Pre-rendered explorer views and score captions, keyed (image, backbone, method): each view
    shows the GAP and the CA map side by side with the image's curves under both.

    Raw attention exists only for the stream; its GAP panel says so. The explorer opens on the
    first method of the profile.
    """
    from .figures import explorer_image

    idx, rgbs, masks, titles = shown_images(run.profile)
    evaluated = set(run.evaluated_cells())
    images, captions = {}, {}
    for backbone in run.profile.models:
        for method in run.profile.eval.methods:
            results = {p: run.results(backbone, p, method) if (backbone, method, p) in evaluated else None
                       for p in ("gap", "ca")}
            for i, rgb_i, mask, title in zip(idx, rgbs, masks, titles):
                key = (title, backbone_label(run, backbone), paper.METHOD_LABELS[method])
                maps = {p: None if r is None else r["maps"][i].astype(np.float32) for p, r in results.items()}
                curves = {p: None if r is None else {k: r[f"{k}_curve"][i] for k in ("insertion", "deletion")}
                          for p, r in results.items()}
                images[key] = explorer_image(rgb_i, mask, maps, curves, key[2])
                captions[key] = scores_caption({p.upper(): None if r is None else {k: float(v[i]) for k, v in r.items()
                                                                                  if np.ndim(v) == 1}
                                                for p, r in results.items()})
    return images, captions, ["image", "backbone", "method"]


def scores_caption(scores: dict[str, dict[str, float] | None]) -> str:
    """An HTML table of one image's scores (percent), one row per pooling (``None``: no map)."""
    labels = {**paper.METRIC_LABELS, "pointing_tol": "pointing (15 px)↑", "energy": "energy↑"}
    keys = [k for k in labels if any(s and k in s for s in scores.values())]
    head = "".join(f"<th style='padding:0 .6em'>{labels[k]}</th>" for k in keys)
    body = "".join(
        f"<tr><th style='padding:0 .6em'>{pooling}</th>"
        + ("".join(f"<td style='padding:0 .6em'>{100 * s[k]:.1f}</td>" for k in keys) if s else
           f"<td colspan='{len(keys)}'><i>no map under {pooling}</i></td>") + "</tr>"
        for pooling, s in scores.items())
    return f"<table style='font-size:0.85rem'><tr><th></th>{head}</tr>{body}</table>"


@torch.no_grad()
def attention_study(run: Run, backbone: str, n: int = 200) -> list[dict[str, Any]]:
    """What the stream's attention looks like at every block, on the first ``n`` test images.

    Per block (primary seed): positions ``T``; normalised entropy (1 = uniform), and the same for the
    stream as initialised before training (``entropy_init``: a block already sharp there is sharp
    because of the features, not because training made it so); the mean largest weight against the
    uniform ``1/T``; the feature vectors' mean norm and the correlation, across positions, of the
    attention with that norm (the attention logit is the token's dot product with the raw features
    over ``sqrt(C)``, so large norms make the softmax sharp and can dominate it); and, with masks, the
    pointing game (usual margin) and the energy inside the object mask of the block's map,
    upsampled to the image.
    """
    model = load_trained(run, backbone, "ca")
    test = eval_split(run.profile)
    items = [test[i] for i in range(min(n, len(test)))]
    device = next(model.parameters()).device
    x = torch.stack([item[0] for item in items]).to(device)
    masks = torch.stack([item[2] for item in items]).to(device) if len(items[0]) > 2 else None
    feats = model.tap_features(x)
    attentions = [a.mean(dim=1) for a in model.stream(feats)[1]]
    initial = initial_model(run, backbone, "ca", run.profile.seeds[0]).to(device).eval()
    at_init = [a.mean(dim=1) for a in initial.stream(feats)[1]]
    rows = []
    for k, (tap, f, a, a0) in enumerate(zip(model.taps, feats, attentions, at_init), 1):
        flat = a.flatten(1).float()
        t = flat.shape[1]
        norm = f.float().norm(dim=1).flatten(1)
        row = {"backbone": backbone, "block": k, "tap": tap, "positions": t,
               "entropy": _entropy(flat).mean().item(), "entropy_init": _entropy(a0.flatten(1).float()).mean().item(),
               "max_weight": flat.amax(1).mean().item(), "uniform": 1 / t, "feature_norm": norm.mean().item(),
               "norm_correlation": float(pearson(flat, norm).mean())}
        if masks is not None:
            size = masks.shape[-2:]
            maps = upsample(minmax(a.float()), tuple(size))
            row.update(pointing_tol=pointing_game(maps, masks, paper_tolerance(*size)).mean().item(),
                       energy=energy_pointing_game(maps, masks).mean().item())
        rows.append(row)
    return rows


def attention_table(run: Run) -> list[dict[str, Any]]:
    """:func:`attention_study` of every backbone as display rows (two decimals, the largest weight
    beside the uniform one, localisation in percent)."""
    rows = []
    for backbone in run.profile.models:
        for r in attention_study(run, backbone):
            row = {"Backbone": backbone_label(run, backbone), "Block": r["block"], "Tap": f"`{r['tap']}`",
                   "Positions": r["positions"],
                   "Entropy": f"{r['entropy']:.2f}", "Entropy at init": f"{r['entropy_init']:.2f}",
                   "Max weight (uniform)": f"{r['max_weight']:.2f} ({r['uniform']:.3f})",
                   "Feature norm": f"{r['feature_norm']:.1f}", "Corr. with norm": f"{r['norm_correlation']:.2f}"}
            if "pointing_tol" in r:
                row.update({"Pointing %": f"{100 * r['pointing_tol']:.1f}", "Energy %": f"{100 * r['energy']:.1f}"})
            rows.append(row)
    return rows


def _entropy(weights: torch.Tensor) -> torch.Tensor:
    """Normalised entropy of each row of ``weights`` (B, T), rows summing to 1: 1 is uniform, 0 one-hot."""
    return -(weights * weights.clamp_min(1e-12).log()).sum(1) / torch.log(torch.tensor(float(weights.shape[1])))
