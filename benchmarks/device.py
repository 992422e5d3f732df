"""Every speed benchmark on one accelerator, side by side with pytorch-grad-cam, printing ratios.

Runs on a CUDA GPU (``--device cuda``, the default) in well under 8 minutes on one H100: Grad-CAM,
Grad-CAM++ and Score-CAM against pytorch-grad-cam (same model, images, targets and Score-CAM chunk
size), the metrics (AD/AG/AI and Insertion/Deletion) against their floor of plain forward passes,
Opti-CAM against its floor (iterations x forward+backward), each in float32 and channels-last with
float16/bfloat16 autocast. ``--device cpu --quick`` checks the script itself on a laptop.

    python benchmarks/device.py                      # resnet50, 224 px, CUDA
    python benchmarks/device.py --device cpu --quick
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM

from ca_core import build_model
from ca_core.metrics import evaluate_maps, get_protocol
from ca_core.saliency import explain, upsample
from ca_core.saliency.base import resolve_layer
from ca_core.utils import autocast
from saliency import correlation


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 1) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls (synchronising the device), and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def theirs(cam_class, model, layer, images: torch.Tensor, targets: torch.Tensor, batch_size: int | None = None):
    """pytorch-grad-cam's maps (input size) for the given classes."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with cam_class(model=model, target_layers=[layer]) as cam:
        if batch_size is not None:
            cam.batch_size = batch_size
        maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return torch.from_numpy(maps)


@torch.no_grad()
def forward_per_image(model, x: torch.Tensor, device: torch.device, precision: str, repeats: int) -> float:
    """Seconds per image of a plain forward pass of batch ``x``."""
    with autocast(device, precision):
        model(x)
        return timed(lambda: model(x), device, repeats)[0] / len(x)


def forward_backward_per_image(model, x: torch.Tensor, device: torch.device, precision: str, repeats: int) -> float:
    """Seconds per image of a forward pass and a backward pass to the input (Opti-CAM's step)."""
    def step() -> None:
        leaf = x.detach().requires_grad_()
        with autocast(device, precision):
            out = model(leaf).float().sum()
        torch.autograd.grad(out, leaf)
    step()
    return timed(step, device, repeats)[0] / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=64, help="images for the gradient CAMs and the metrics")
    parser.add_argument("--score-images", type=int, default=8, help="images for Score-CAM")
    parser.add_argument("--opticam-images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64, help="forward batch (Score-CAM chunk, metrics)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    args = parser.parse_args()
    if args.quick:
        args.model, args.size, args.images, args.score_images, args.opticam_images, args.batch, args.repeats = (
            "resnet18", 64, 4, 1, 2, 32, 1)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("benchmarks/device.py: no CUDA device here (use --device cpu --quick to check the script)")
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.model}, {args.size} px, {name}, torch {torch.__version__}")
    torch.manual_seed(0)
    plain = build_model(args.model, "gap", channels_last=False).to(device).eval()
    fast = build_model(args.model, "gap", channels_last=True).to(device).eval()
    fast.load_state_dict(plain.state_dict())
    layer, _ = resolve_layer(plain, None, None)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.images, 3, args.size, args.size, generator=g).to(device)
    targets = torch.randint(0, 1000, (args.images,), generator=g).to(device)

    print(f"\n{'method':<10} {'setting':<22} {'ours s/img':>11} {'theirs s/img':>13} {'theirs/ours':>12} "
          f"{'map corr':>9}")
    for method, cam_class in (("gradcam", GradCAM), ("gradcampp", GradCAMPlusPlus), ("scorecam", ScoreCAM)):
        n = args.score_images if method == "scorecam" else args.images
        xs, ts = x[:n], targets[:n]
        chunk = {"batch_size": args.batch} if method == "scorecam" else {"batch_size": n}
        variant = {"variant": "pytorch_grad_cam"} if method == "scorecam" else {}
        t_theirs, their_maps = timed(lambda: theirs(cam_class, plain, layer, xs, ts, args.batch), device,
                                     1 if method == "scorecam" else args.repeats)
        for label, model, precision in ([("fp32", plain, "fp32")]
                                        + [(f"channels-last {p}", fast, p) for p in precisions]):
            run = lambda: explain(model, xs, method, targets=ts, precision=precision, **chunk, **variant)  # noqa: E731
            t_ours, maps = timed(run, device, 1 if method == "scorecam" else args.repeats)
            corr = correlation(upsample(maps, args.size).cpu(), their_maps)
            print(f"{method:<10} {label:<22} {t_ours / n:>11.5f} {t_theirs / n:>13.5f} {t_theirs / t_ours:>11.2f}x "
                  f"{corr:>9.5f}")

    print(f"\n{'metrics (paper protocol)':<32} {'setting':<22} {'s/img':>9} {'floor s/img':>12} {'ours/floor':>11}")
    points = get_protocol("paper").n_points(args.size, args.size)
    maps = torch.rand(args.images, 7, 7, generator=g).to(device)
    for label, model, precision in [("fp32", plain, "fp32")] + [(f"channels-last {p}", fast, p) for p in precisions]:
        t, _ = timed(lambda: evaluate_maps(model, x, maps, targets, batch_size=args.batch, precision=precision),
                     device, args.repeats)
        per_forward = forward_per_image(model, x[: args.batch], device, precision, args.repeats)
        floor = 2 * points * per_forward  # clean and masked (the curves' end points), then both curves
        print(f"{'AD/AG/AI + Insertion/Deletion':<32} {label:<22} {t / args.images:>9.5f} {floor:>12.5f} "
              f"{t / args.images / floor:>10.2f}x")

    print(f"\n{'Opti-CAM (50 steps)':<20} {'setting':<22} {'s/img':>9} {'floor s/img':>12} {'ours/floor':>11}")
    xo, to = x[: args.opticam_images], targets[: args.opticam_images]
    for label, model, precision in [("fp32", plain, "fp32")] + [(f"channels-last {p}", fast, p) for p in precisions]:
        t, _ = timed(lambda: explain(model, xo, "opticam", targets=to, precision=precision, batch_size=len(xo)), device)
        floor = 50 * forward_backward_per_image(model, xo, device, precision, args.repeats)
        print(f"{'':<20} {label:<22} {t / len(xo):>9.5f} {floor:>12.5f} {t / len(xo) / floor:>10.2f}x")


if __name__ == "__main__":
    main()
