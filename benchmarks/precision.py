"""Speed of the memory-format and precision settings, side by side in one process, with fidelity.

For each setting -- float32 in the default (contiguous) layout, float32 channels-last, bfloat16
autocast channels-last -- it prints seconds per image of every saliency method and of the metrics
(:func:`ca_core.metrics.evaluate_maps`), the smallest per-image correlation of the maps with the
float32-contiguous ones, the largest difference of a metric's mean (points), and pytorch-grad-cam's
Score-CAM on the same model and images (its own float32 default) as the reference speed. A last
table times a training step of the embedded experiment's backbones.

    python benchmarks/precision.py                  # resnet18 at 112 px, about 3 minutes on 2 cores
    python benchmarks/precision.py --model resnet50 --size 96 --threads 2
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from pytorch_grad_cam import ScoreCAM

from ca_core import build_model
from ca_core.metrics import evaluate_maps
from ca_core.saliency import explain
from ca_core.saliency.base import resolve_layer
from ca_core.utils import autocast
from saliency import correlation, theirs
from timing import best_time

SETTINGS = (("fp32 contiguous", False, "fp32"), ("fp32 channels-last", True, "fp32"),
            ("bf16 channels-last", True, "bf16"))
METRICS = ("ad", "ag", "ai", "insertion", "deletion")


def models_for(name: str, channels_last: bool) -> dict[str, torch.nn.Module]:
    """GAP and CA models with the same seeded weights, in the requested layout."""
    torch.manual_seed(0)
    gap = build_model(name, pooling="gap", num_classes=1000, channels_last=channels_last).eval()
    torch.manual_seed(1)
    return {"gap": gap, "ca": build_model(gap, pooling="ca").eval()}


def saliency_rows(args, x: torch.Tensor, scorecam_x: torch.Tensor) -> list[tuple]:
    """(setting, method, images, seconds, map correlation vs fp32 contiguous) per setting and method."""
    jobs = [("gradcam", "gap", x), ("gradcampp", "gap", x), ("scorecam", "gap", scorecam_x), ("attention", "ca", x)]
    rows, reference = [], {}
    for label, channels_last, precision in SETTINGS:
        models = models_for(args.model, channels_last)
        for method, pooling, images in jobs:
            run = lambda: explain(models[pooling], images, method, precision=precision,  # noqa: E731
                                  batch_size=args.scorecam_batch if method == "scorecam" else len(images))
            run() if method != "scorecam" else None  # warm-up (Score-CAM is long enough without one)
            seconds, maps = best_time(run, 1 if method == "scorecam" else args.repeats)
            reference.setdefault(method, maps)
            rows.append((label, method, len(images), seconds, correlation(maps, reference[method])))
    return rows


def metric_rows(args, x: torch.Tensor) -> list[tuple]:
    """(setting, images, seconds, largest |mean difference| in points vs fp32 contiguous) per setting."""
    rows, reference = [], None
    maps = torch.rand(len(x), 7, 7, generator=torch.Generator().manual_seed(3))
    for label, channels_last, precision in SETTINGS:
        model = models_for(args.model, channels_last)["gap"]
        run = lambda: evaluate_maps(model, x, maps, None, batch_size=args.metric_batch, precision=precision)  # noqa: E731
        seconds, scores = best_time(run, args.repeats)
        means = {k: 100 * scores[k].mean().item() for k in METRICS}
        reference = reference or means
        rows.append((label, len(x), seconds, max(abs(means[k] - reference[k]) for k in METRICS)))
    return rows


def training_rows(args) -> list[tuple]:
    """(backbone, setting, ms per step) for a GAP training step at batch 64, 56 px."""
    rows = []
    x, y = torch.randn(64, 3, 56, 56), torch.randint(0, 10, (64,))
    for backbone in ("resnet_mini", "convnext_mini"):
        for label, channels_last, precision in SETTINGS:
            torch.manual_seed(0)
            model = build_model(backbone, pooling="gap", num_classes=10, channels_last=channels_last).train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

            def step() -> None:
                with autocast("cpu", precision):
                    loss = F.cross_entropy(model(x).float(), y)
                opt.zero_grad()
                loss.backward()
                opt.step()

            step()
            seconds, _ = best_time(step, args.repeats)
            rows.append((backbone, label, 1000 * seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18", help="timm architecture (random weights)")
    parser.add_argument("--size", type=int, default=112, help="input size in pixels")
    parser.add_argument("--images", type=int, default=8, help="images for the gradient methods and the metrics")
    parser.add_argument("--scorecam-images", type=int, default=2)
    parser.add_argument("--scorecam-batch", type=int, default=128, help="masked images per Score-CAM forward")
    parser.add_argument("--metric-batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many (Score-CAM: 1)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(2))
    scorecam_x = x[: args.scorecam_images]
    print(f"model {args.model} (random weights), {args.size} px, CPU, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}")

    reference = models_for(args.model, False)["gap"]
    layer, _ = resolve_layer(reference, None, None)
    t_theirs, _ = best_time(lambda: theirs(ScoreCAM, reference, layer, scorecam_x, batch_size=args.scorecam_batch), 1)
    per_theirs = t_theirs / len(scorecam_x)

    print(f"\n{'setting':<20} {'method':<10} {'images':>6} {'s/img':>8} {'vs fp32':>8} {'map corr':>9} "
          f"{'vs pytorch-grad-cam':>20}")
    base = {}
    for label, method, n, seconds, corr in saliency_rows(args, x, scorecam_x):
        base.setdefault(method, seconds / n)
        vs_theirs = f"{per_theirs / (seconds / n):.2f}x faster" if method == "scorecam" else ""
        print(f"{label:<20} {method:<10} {n:>6} {seconds / n:>8.4f} {base[method] / (seconds / n):>7.2f}x {corr:>9.5f} "
              f"{vs_theirs:>20}")
    print(f"pytorch-grad-cam Score-CAM (fp32, contiguous, batch {args.scorecam_batch}): {per_theirs:.4f} s/img")

    print(f"\n{'setting':<20} {'metrics: images':>15} {'s/img':>8} {'vs fp32':>8} {'max |mean diff| (points)':>25}")
    first = None
    for label, n, seconds, diff in metric_rows(args, x):
        first = first or seconds
        print(f"{label:<20} {n:>15} {seconds / n:>8.4f} {first / seconds:>7.2f}x {diff:>25.3f}")

    print(f"\n{'backbone':<14} {'setting':<20} {'train step ms (batch 64, 56 px)':>32}")
    firsts = {}
    for backbone, label, ms in training_rows(args):
        firsts.setdefault(backbone, ms)
        print(f"{backbone:<14} {label:<20} {ms:>24.1f} ({firsts[backbone] / ms:.2f}x)")


if __name__ == "__main__":
    main()
