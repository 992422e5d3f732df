"""The transfer profile's sizing: at which image size, object scale and background the frozen ImageNet
EfficientNet-Lite0 with a linear probe is a valid stand-in for the paper's regime, and at what cost.

For each variant it trains the linear probe (``train.gap_trains: classifier``) on the frozen features,
then on the first test images measures the probe's accuracy, the localisation of Grad-CAM and of the
``centre`` prior (pointing game with the usual margin, energy in the mask) and the time one image costs
per method (the map and every metric of the paper's protocol). The ``transfer`` profile of
``_config.yml`` takes the last row's image size and objects (with 1,500 training images, for time).

    python benchmarks/transfer_sizing.py              # every variant, 2-6 minutes each on 2 cores
    python benchmarks/transfer_sizing.py --only 224-calm

Measured here (2 cores, torch 2.14.1; the 160-192 px rows while another job shared the cores, so their
times are high), test accuracy / Grad-CAM pointing / centre pointing / Grad-CAM energy / centre energy (%)
/ ms per image and method. The first five rows on 100 test images (60 for the last two) of a test split of
200; the last three on the first 96 images of a split of 600 (``--images 96``), where the 224-calm probe
trained by the profile scores 78.1 % pointing: at 7x7 the pointing rate is 77-83 % depending on the images,
too close to the regime's 80 % to pass it reliably; the 8x8 map at 256 px clears it.

======================  =====  ====  ======  ====  ======  =====
variant                 acc.   PG    centre  E     centre  ms
======================  =====  ====  ======  ====  ======  =====
112-default (3,000)     60.5   25.0  43.0    12.4  14.2    85
160-default (3,000)     91.0   66.0  62.0    19.0  14.3    300
128-calm (2,000)        89.0   22.0  22.0    8.2   6.9     136
192-calm (1,500)        93.5   50.0  33.3    14.1  7.9     630
224-calm (2,500)        99.0   83.3  50.0    21.2  9.9     980
224-large (2,500)       98.2   77.1  52.1    29.5  14.9    1046
240-calm (2,000)        97.7   80.2  34.4    25.8  10.0    1287
256-calm (2,000)        97.7   84.4  26.0    24.9  9.1     1527
======================  =====  ====  ======  ====  ======  =====
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ca_core import build_model
from ca_core.data import ShapesConfig, shapes_dataset
from ca_core.evaluation import EvalConfig, explain_and_score
from ca_core.prediction import accuracy
from ca_core.repro.config import input_config
from ca_core.training import TrainConfig, train
from ca_core.weights import WEIGHTS_ROOT, convert

BACKBONE = "tf_efficientnet_lite0"
DEFAULT = ShapesConfig(val=200, test=200, scale=(0.16, 0.26))  # the default profile's objects and backgrounds
CALM = dataclasses.replace(DEFAULT, texture=0.15, distractors=(0, 1))


@dataclass(frozen=True)
class Variant:
    """One row: the data (its image size, objects and backgrounds, training images) and the probe's epochs."""

    data: ShapesConfig
    epochs: int = 3
    lr: float = 1e-2


VARIANTS = {
    "112-default": Variant(dataclasses.replace(DEFAULT, image_size=112, train=3000), epochs=2, lr=3e-3),
    "160-default": Variant(dataclasses.replace(DEFAULT, image_size=160, train=3000)),
    "128-calm": Variant(dataclasses.replace(CALM, image_size=128, train=2000, scale=(0.12, 0.2))),
    "192-calm": Variant(dataclasses.replace(CALM, image_size=192, train=1500, scale=(0.12, 0.2))),
    "224-calm": Variant(dataclasses.replace(CALM, image_size=224, train=2500, scale=(0.14, 0.22))),
    "224-large": Variant(dataclasses.replace(CALM, image_size=224, train=2500, test=600, scale=(0.18, 0.28))),
    "256-calm": Variant(dataclasses.replace(CALM, image_size=256, train=2000, test=600, scale=(0.14, 0.22))),
    "240-calm": Variant(dataclasses.replace(CALM, image_size=240, train=2000, test=600, scale=(0.14, 0.22))),
}


def measure(variant: Variant, folder: Path, images: int) -> dict[str, float]:
    """Train the probe on ``variant``'s data in ``folder``; its accuracy, localisation and cost per image."""
    inputs = input_config(BACKBONE)
    sets = {s: shapes_dataset(variant.data, s, folder / "shapes", inputs["mean"], inputs["std"])
            for s in ("train", "val", "test")}
    weights = WEIGHTS_ROOT / f"{BACKBONE}.safetensors"
    if not weights.is_file():
        convert("efficientnet-lite0", weights)
    torch.manual_seed(0)
    model = build_model(BACKBONE, "gap", num_classes=variant.data.num_classes, pretrained=weights)
    cfg = TrainConfig(gap_trains="classifier", gap_epochs=variant.epochs, gap_lr=variant.lr, gap_weight_decay=0.0,
                      batch_size=64, eval_batch_size=200)
    train(cfg, model, sets["train"], sets["val"], folder / "probe", stage="gap", progress=False)
    row = {"acc": 100 * accuracy(model, sets["test"], 100)}
    for method in ("gradcam", "centre"):
        start = time.perf_counter()
        out = explain_and_score(model, method, sets["test"], range(images), EvalConfig(batch_size=50),
                                torch.device("cpu"))
        row |= {f"{method}_pointing": 100 * out["pointing_tol"].mean(), f"{method}_energy": 100 * out["energy"].mean(),
                f"{method}_ms": 1000 * (time.perf_counter() - start) / images}
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", choices=list(VARIANTS), help="variants to measure (default: all)")
    p.add_argument("--images", type=int, default=60, help="test images scored per method")
    p.add_argument("--out", default="runs/transfer_sizing", help="folder of the data caches and probes")
    args = p.parse_args()
    torch.set_num_threads(2)
    print("variant         acc.   PG  centre    E  centre   ms/img")
    for name in args.only or VARIANTS:
        r = measure(VARIANTS[name], Path(args.out) / name, args.images)
        print(f"{name:14s} {r['acc']:5.1f} {r['gradcam_pointing']:5.1f} {r['centre_pointing']:6.1f} "
              f"{r['gradcam_energy']:5.1f} {r['centre_energy']:6.1f} {r['gradcam_ms']:7.0f}", flush=True)


if __name__ == "__main__":
    main()
