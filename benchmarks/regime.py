"""The regime search: which generated data and backbone make CAMs localise objects, as on ImageNet.

For each variant (data settings x backbone and its widths/dilation x GAP recipe) it trains the GAP
model from scratch, then on the first test images measures its accuracy and the localisation
(pointing game with the usual margin, energy in the mask) of Grad-CAM and of the sanity baselines
``centre`` and ``random``. The book's training page records the table this prints.

    python benchmarks/regime.py                       # every variant, 3-9 minutes each on 2 cores
    python benchmarks/regime.py --only medium medium-dilated
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass, field

from torch.utils.data import DataLoader, Subset

from ca_core import build_model
from ca_core.data import ShapesConfig, shapes_dataset
from ca_core.prediction import accuracy
from ca_core.metrics import evaluate_maps
from ca_core.saliency import explain
from ca_core.training import TrainConfig, train
from ca_core.utils import seed_everything

BASE = ShapesConfig()
MEDIUM = dataclasses.replace(BASE, scale=(0.16, 0.26))  # the default profile's data
WIDE = {"channels": (32, 64, 128, 256), "stem_width": 32}  # resnet_mini's widths before the regime search


@dataclass(frozen=True)
class Variant:
    """One row of the search: the data, the backbone (with timm keyword arguments) and its GAP recipe."""

    data: ShapesConfig
    backbone: str
    epochs: int
    lr: float = 3e-3
    model_args: dict = field(default_factory=dict)


VARIANTS: dict[str, Variant] = {
    "large-wide-dilated": Variant(BASE, "resnet_mini", 2, model_args={**WIDE, "dilated": True}),
    "small-wide-dilated": Variant(dataclasses.replace(BASE, scale=(0.12, 0.2)), "resnet_mini", 2,
                                  model_args={**WIDE, "dilated": True}),
    "medium-wide-dilated": Variant(MEDIUM, "resnet_mini", 3, model_args={**WIDE, "dilated": True}),
    "medium-dilated": Variant(MEDIUM, "resnet_mini", 3, model_args={"dilated": True}),
    "medium": Variant(MEDIUM, "resnet_mini", 3),
    "medium-convnext-narrow-dilated": Variant(MEDIUM, "convnext_mini", 6, 1e-2,
                                              {"dims": (16, 32, 64, 128), "dilated": True}),
    "medium-convnext": Variant(MEDIUM, "convnext_mini", 8, 1e-2),
}


def localisation(model, test, n: int, batch: int = 100) -> dict[str, dict[str, float]]:
    """Mean pointing game (margin) and energy (%) of Grad-CAM and the baselines on ``n`` test images."""
    sums: dict[str, dict[str, float]] = {}
    loader = DataLoader(Subset(test, range(min(n, len(test)))), batch_size=batch)
    for images, labels, masks in loader:
        for method in ("gradcam", "centre", "random"):
            maps = explain(model, images, method, targets=labels, batch_size=batch)
            scores = evaluate_maps(model, images, maps, labels, masks=masks, batch_size=batch)
            for key in ("pointing_tol", "energy"):
                sums.setdefault(method, {}).setdefault(key, 0.0)
                sums[method][key] += 100 * scores[key].sum().item()
    count = min(n, len(test))
    return {m: {k: v / count for k, v in d.items()} for m, d in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), help="variants to run (default: all)")
    parser.add_argument("--images", type=int, default=500, help="test images for the localisation")
    parser.add_argument("--precision", default="fp32", help="training precision")
    args = parser.parse_args()
    print(f"{'variant':<32} {'acc %':>6} {'Grad-CAM PG':>11} {'centre PG':>9} {'random PG':>9} "
          f"{'Grad-CAM E':>10} {'centre E':>8} {'train s':>7}")
    for name in args.only or VARIANTS:
        v = VARIANTS[name]
        sets = {s: shapes_dataset(v.data, s) for s in ("train", "val", "test")}
        seed_everything(0)
        model = build_model(v.backbone, "gap", num_classes=v.data.num_classes, **v.model_args)
        start = time.perf_counter()
        train(TrainConfig(gap_epochs=v.epochs, gap_lr=v.lr, batch_size=64, eval_batch_size=500,
                          precision=args.precision),
              model, sets["train"], sets["val"], f"runs/regime/{name}", stage="gap", progress=False)
        seconds = time.perf_counter() - start
        acc = 100 * accuracy(model, sets["test"], 500)
        loc = localisation(model.eval(), sets["test"], args.images)
        print(f"{name:<32} {acc:>6.1f} {loc['gradcam']['pointing_tol']:>11.1f} {loc['centre']['pointing_tol']:>9.1f} "
              f"{loc['random']['pointing_tol']:>9.1f} {loc['gradcam']['energy']:>10.1f} "
              f"{loc['centre']['energy']:>8.1f} {seconds:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
