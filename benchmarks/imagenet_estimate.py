"""Back-of-envelope time of the ``imagenet`` profile's evaluation on N GPUs, from measured per-image costs.

The cost of each saliency method and of the metrics is *measured* here, on this machine, as the
number of image passes through the network that one evaluated image needs: forward passes counted
by a hook on the backbone's first convolution, backward passes by counting ``torch.autograd.grad``
calls (one image at a time, so each call is one image), for the GAP and the CA model of each
backbone (random weights and a small input: the counts do not depend on either). A backward pass
is counted as two forward passes (the usual FLOP ratio). The time then follows from a forward
throughput per GPU (images/s at 224 px): by default timm's published RTX 4090 AMP inference figures
(``results/benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv``: resnet50 4,218, convnext_base 2,095),
which ``--throughput`` replaces with what ``benchmarks/device.py`` measures on your GPU.

    python benchmarks/imagenet_estimate.py                 # the imagenet profile, 8 GPUs
    python benchmarks/imagenet_estimate.py --gpus 4 --throughput resnet50=6000 convnext_base=3000
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ca_core import build_model
from ca_core.evaluation import images_for, method_options
from ca_core.metrics import evaluate_maps
from ca_core.models import backbone_of
from ca_core.repro.config import load_profile
from ca_core.saliency import explain

#: timm's published AMP inference throughput on an RTX 4090 at 224 px (images/s).
PUBLISHED_THROUGHPUT = {"resnet50": 4217.6, "convnext_base": 2095.4}


@contextmanager
def counting(model: nn.Module) -> Iterator[dict[str, int]]:
    """Count images through the backbone's first convolution and ``torch.autograd.grad`` calls."""
    counts = {"forward": 0, "backward": 0}
    first = next(m for m in backbone_of(model).modules() if isinstance(m, nn.Conv2d))
    handle = first.register_forward_pre_hook(
        lambda _, args: counts.__setitem__("forward", counts["forward"] + len(args[0])))
    grad = torch.autograd.grad

    def counted(*args, **kwargs):
        counts["backward"] += 1
        return grad(*args, **kwargs)

    torch.autograd.grad = counted
    try:
        yield counts
    finally:
        torch.autograd.grad = grad
        handle.remove()


def passes_per_image(model: nn.Module, method: str, options: dict, size: int = 64) -> tuple[float, float]:
    """Forward-pass equivalents of one image: the map, then the paper's metrics of that map.

    Score-CAM skips channels that are constant on the image, so its count depends on the image and
    weights (at most the target layer's channels + 1); random weights at 64 px give a lower count.
    """
    x, target = torch.randn(1, 3, size, size), torch.tensor([0])
    with counting(model) as c:
        maps = explain(model, x, method, targets=target, **options)
    explained = c["forward"] + 2 * c["backward"]
    with counting(model) as c:
        evaluate_maps(model, x, maps, target, batch_size=options.get("batch_size", 32))
    return explained, c["forward"] + 2 * c["backward"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="imagenet", help="the profile whose evaluation is estimated")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs sharing the evaluation")
    parser.add_argument("--images", type=int, default=50000, help="test images (eval.num_images: null = all)")
    parser.add_argument("--size", type=int, default=64, help="input side of the counting runs (pixels)")
    parser.add_argument("--throughput", nargs="*", default=[], metavar="BACKBONE=IMG_PER_S",
                        help="forward images/s per GPU at the profile's size "
                             "(default: timm's published RTX 4090 figures)")
    args = parser.parse_args()
    profile = load_profile(args.profile, check_paths=False)
    throughput = PUBLISHED_THROUGHPUT | {k: float(v) for k, v in (t.split("=") for t in args.throughput)}
    cfg, total_hours = profile.eval, 0.0
    print(f"{'backbone':<14} {'pooling':<7} {'method':<10} {'images':>7} {'map passes':>10} {'metric passes':>13} "
          f"{'GPU-h':>7}")
    for backbone in profile.models:
        for pooling in ("gap", "ca"):
            torch.manual_seed(0)
            model = build_model(backbone, pooling, num_classes=profile.num_classes).eval()
            for method in cfg.methods:
                if method == "attention" and pooling == "gap":
                    continue
                n = images_for(method, cfg, args.images)
                explained, scored = passes_per_image(model, method, method_options(method, cfg), args.size)
                hours = n * (explained + scored) / throughput[backbone] / 3600
                total_hours += hours
                print(f"{backbone:<14} {pooling:<7} {method:<10} {n:>7} {explained:>10.0f} {scored:>13.0f} "
                      f"{hours:>7.2f}", flush=True)
    print(f"\nall: {total_hours:.1f} GPU-hours, {total_hours / args.gpus:.1f} h on {args.gpus} GPUs "
          f"(forward throughput per GPU: {', '.join(f'{k} {v:.0f}/s' for k, v in throughput.items())}; "
          "one CA stream per backbone; data loading and the stream's own cost left out)")


if __name__ == "__main__":
    main()
