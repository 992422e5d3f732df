"""Speed of Opti-CAM (``ca_core.saliency``) against its floor, on CPU with random weights.

Opti-CAM takes ``iterations`` Adam steps, each one forward pass of the masked images and one
backward pass to the channel weights (through the input, no parameter gradients). Its floor at a
batch size is therefore ``iterations`` x (one forward + input-gradient backward of that batch),
timed here on plain random inputs; the ratio ours / floor is the overhead of everything else
(masking, upsampling, min-max, Adam, the initial and final passes).

    python benchmarks/opticam.py                        # resnet_mini 56 px and resnet18 112 px, about 1 minute
    python benchmarks/opticam.py --batch-sizes 1 8 --iterations 20 --threads 2
"""
from __future__ import annotations

import argparse

import torch

from ca_core import build_model
from ca_core.saliency import explain
from timing import best_time

MODELS = (("resnet_mini", 56), ("resnet18", 112))


def forward_backward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One forward pass and the backward pass of the summed top logits to the input only."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).amax(dim=1).sum(), x)
    return grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16],
                        help="images per chunk (one chunk each)")
    parser.add_argument("--iterations", type=int, default=50, help="Adam steps (Opti-CAM's default: 50)")
    parser.add_argument("--repeats", type=int, default=1, help="Opti-CAM timings: best of this many")
    parser.add_argument("--floor-repeats", type=int, default=5, help="forward + backward timings: best of this many")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 is stable on a shared 2-core machine)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    print(f"Opti-CAM, {args.iterations} iterations, float32, CPU, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}, random weights\n")
    print(f"{'model':<12} {'px':>4} {'batch':>5} {'ours s/img':>11} {'floor s/img':>12} {'ours/floor':>11}")
    for name, size in MODELS:
        torch.manual_seed(0)
        model = build_model(name, pooling="gap", num_classes=1000).eval()
        for b in args.batch_sizes:
            x = torch.randn(b, 3, size, size)
            forward_backward(model, x), explain(model, x[:1], "opticam", iterations=1)  # warm-up
            t_step, _ = best_time(lambda: forward_backward(model, x), args.floor_repeats)
            floor = args.iterations * t_step
            t_ours, _ = best_time(lambda: explain(model, x, "opticam", batch_size=b, iterations=args.iterations),
                                  args.repeats)
            print(f"{name:<12} {size:>4} {b:>5} {t_ours / b:>11.4f} {floor / b:>12.4f} {t_ours / floor:>11.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
