"""Speed of ca_core.saliency against pytorch-grad-cam, in one process, same timm model and images.

For Grad-CAM, Grad-CAM++ and Score-CAM it prints seconds per image for both libraries and the
ratio ours/theirs (< 1: ours is faster), the correlation of the two maps at input size (a check
that both compute the same thing; Score-CAM uses our ``pytorch_grad_cam`` variant, the same
computation as theirs, and both get the same chunk size), and Score-CAM's floor: the time of the
same number of plain forward passes (images x channels) at the best batch size.

    python benchmarks/saliency.py                      # resnet18 at 128 px, about 2 minutes
    python benchmarks/saliency.py --model resnet50 --size 96 --threads 2
"""
from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from typing import Iterator

import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM

from ca_core import build_model
from timing import best_time
from ca_core.saliency import explain, upsample
from ca_core.saliency.base import resolve_layer


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Smallest per-image Pearson correlation of two (B, H, W) map batches."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).min())


def theirs(cam_class, model, layer, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """pytorch-grad-cam's maps (input size) for the predicted classes, as used in its README."""
    with cam_class(model=model, target_layers=[layer]) as cam:
        if batch_size is not None:
            cam.batch_size = batch_size
        return torch.from_numpy(cam(input_tensor=images, targets=None))


@torch.no_grad()
def forward_seconds_per_image(model, size: int, batch_sizes: list[int], images_per_size: int) -> dict[int, float]:
    """Seconds per image of plain forward passes at each batch size."""
    out = {}
    for b in batch_sizes:
        x = torch.randn(b, 3, size, size)
        model(x)  # warm-up
        n = max(1, images_per_size // b)
        start = time.perf_counter()
        for _ in range(n):
            model(x)
        out[b] = (time.perf_counter() - start) / (n * b)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18", help="timm architecture (random weights)")
    parser.add_argument("--size", type=int, default=128, help="input size in pixels")
    parser.add_argument("--cam-images", type=int, default=8, help="images for Grad-CAM and Grad-CAM++")
    parser.add_argument("--score-images", type=int, default=2, help="images for Score-CAM")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64], help="candidates for the floor")
    parser.add_argument("--repeats", type=int, default=3, help="Grad-CAM(++) timings: best of this many")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 is stable on a shared 2-core machine)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model, pooling="gap", num_classes=1000).eval()
    layer, _ = resolve_layer(model, None, None)
    cam_x = torch.randn(args.cam_images, 3, args.size, args.size)
    score_x = cam_x[: args.score_images]
    print(f"model {args.model} (random weights), {args.size}x{args.size}, float32, CPU, "
          f"{torch.get_num_threads()} thread(s), torch {torch.__version__}")

    rows = []
    for name, cam_class in (("gradcam", GradCAM), ("gradcampp", GradCAMPlusPlus)):
        explain(model, cam_x[:1], name), theirs(cam_class, model, layer, cam_x[:1])  # warm-up
        t_ours, ours_maps = best_time(lambda: explain(model, cam_x, name, batch_size=len(cam_x)), args.repeats)
        t_theirs, their_maps = best_time(lambda: theirs(cam_class, model, layer, cam_x), args.repeats)
        rows.append((name, len(cam_x), t_ours, t_theirs, correlation(upsample(ours_maps, args.size), their_maps)))

    per_image = forward_seconds_per_image(model, args.size, args.batch_sizes, images_per_size=2 * max(args.batch_sizes))
    best = min(per_image, key=per_image.get)
    with counting(model) as ours_count:
        t_ours, ours_maps = best_time(
            lambda: explain(model, score_x, "scorecam", variant="pytorch_grad_cam", batch_size=best), 1
        )
    with counting(model) as their_count:
        t_theirs, their_maps = best_time(lambda: theirs(ScoreCAM, model, layer, score_x, batch_size=best), 1)
    rows.append(("scorecam", len(score_x), t_ours, t_theirs, correlation(upsample(ours_maps, args.size), their_maps)))

    print(f"\n{'method':<10} {'images':>6} {'ours s/img':>11} {'theirs s/img':>13} {'ours/theirs':>12} {'map corr':>9}")
    for name, n, a, b, r in rows:
        print(f"{name:<10} {n:>6} {a / n:>11.4f} {b / n:>13.4f} {a / b:>12.3f} {r:>9.5f}")

    masked = sum(their_count) - len(score_x)  # theirs: one plain pass, then every (image, channel) pair
    floor = masked * per_image[best]
    print("\nplain forward s/img by batch size: " + ", ".join(f"{b}: {s:.4f}" for b, s in per_image.items())
          + f" (best {best}, also Score-CAM's chunk size for both)")
    print(f"Score-CAM floor: {masked} masked forwards ({len(score_x)} images x {masked // len(score_x)} channels) "
          f"x {per_image[best]:.4f} s = {floor:.2f} s; ours {t_ours:.2f} s = {t_ours / floor:.3f} x floor, "
          f"theirs {t_theirs:.2f} s = {t_theirs / floor:.3f} x floor")
    ran = sum(ours_count)
    print(f"images forwarded by ours: {ran} (constant channels share one blank input), by theirs: "
          f"{sum(their_count)}; ours = {t_ours / (ran * per_image[best]):.3f} x plain forwards of what it ran")


@contextmanager
def counting(model: torch.nn.Module) -> Iterator[list[int]]:
    """Record the batch size of every forward pass of ``model`` inside the block."""
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda module, inputs: sizes.append(len(inputs[0])))
    try:
        yield sizes
    finally:
        handle.remove()

if __name__ == "__main__":
    main()
