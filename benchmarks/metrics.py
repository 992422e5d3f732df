"""Benchmark of ca_core.metrics on this machine: seconds per image for AD/AG/AI and for
Insertion+Deletion, next to the floor (the same number of plain forward passes at the best batch
size) and next to a straightforward per-image, per-step loop (batch 1).

    .venv/bin/python benchmarks/metrics.py            # resnet18, 160 px, paper protocol, ~1 min idle
    .venv/bin/python benchmarks/metrics.py --size 112 --protocol rise

Weights are random: the time of a forward pass does not depend on them. Each time is the best
of ``--repeats`` runs, metric and floor timed alternately (the machine is shared); "own work" is
the metric run with a model that costs nothing, i.e. what the metric adds to its forward passes.
"""
from __future__ import annotations

import argparse
import os
from typing import Callable

import torch

from ca_core import build_model
from timing import best_time
from ca_core.metrics import PROTOCOLS, blur, blur_kernel, causal_curves, confidence_metrics, get_protocol
from ca_core.metrics.confidence import mask_images, masked_probs
from ca_core.models import normalisation
from ca_core.utils import chunks, target_scores


def best_batch_size(model, size: int, batch_sizes: list[int], repeats: int) -> int:
    """The batch size with the shortest plain forward pass per image."""
    per_image = {}
    for b in batch_sizes:
        x = torch.randn(b, 3, size, size)
        model(x)  # warm-up
        per_image[b] = best_time(lambda: model(x), repeats)[0] / b
        print(f"  plain forward, batch {b:3d}: {per_image[b] * 1e3:7.1f} ms/image")
    return min(per_image, key=per_image.get)


def versus_floor(fn: Callable[[], object], model, n_forwards: int, batch: int, size: int,
                 repeats: int) -> tuple[float, float, object]:
    """Best time of ``fn`` and of ``n_forwards`` plain forward passes in batches of ``batch``.

    The two are timed alternately, so that a change in the shared machine's load hits both.
    """
    x = torch.randn(batch, 3, size, size)
    floor = lambda: [model(x[: s.stop - s.start]) for s in chunks(n_forwards, batch)]  # noqa: E731
    best, best_floor, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        best_floor = min(best_floor, best_time(floor, 1)[0])
        seconds, result = best_time(fn, 1)
        best = min(best, seconds)
    return best, best_floor, result


class Stub(torch.nn.Module):
    """A model that costs nothing: 1000 logits read off one pixel, to time the metrics' own work."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1, 0, 0].expand(-1, 1000)


def naive_confidence(model, images, maps, targets, mean, std, masking: str) -> dict[str, torch.Tensor]:
    """AD/AG/AI one image at a time (two batch-1 forwards per image)."""
    clean, masked = [], []
    for x, s, t in zip(images, maps, targets):
        clean.append(target_scores(model(x[None]), t[None]))
        masked.append(target_scores(model(mask_images(x[None], s[None], masking, mean, std)), t[None]))
    return confidence_metrics(torch.cat(clean), torch.cat(masked))


def naive_causal(model, images, maps, targets, protocol) -> torch.Tensor:
    """Insertion and deletion curves one image, one curve and one step at a time (batch 1)."""
    _, c, h, w = images.shape
    step, n_points = protocol.pixels_per_step(w), protocol.n_points(h, w)
    kernel = blur_kernel(protocol.blur_size, protocol.blur_sigma)
    curves = torch.empty(len(images), 2, n_points)
    for i, (x, s, t) in enumerate(zip(images, maps, targets)):
        order = s.flatten().argsort(descending=True, stable=True)
        blurred, zeros = blur(x[None], kernel)[0], torch.zeros_like(x)
        substrate = {"blur": blurred, "zeros": zeros}
        starts = (substrate[protocol.insertion_substrate], x)
        sources = (x, substrate[protocol.deletion_substrate])
        for curve, (start, source) in enumerate(zip(starts, sources)):
            for k in range(n_points):
                current = start.clone().view(c, -1)
                changed = order[: k * step]
                current[:, changed] = source.reshape(c, -1)[:, changed]
                curves[i, curve, k] = target_scores(model(current.view(1, c, h, w)), t[None], protocol.score)[0]
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--protocol", default="paper", choices=list(PROTOCOLS))
    parser.add_argument("--images", type=int, default=4, help="images for Insertion+Deletion")
    parser.add_argument("--conf-images", type=int, default=32, help="images for AD/AG/AI")
    parser.add_argument("--naive-images", type=int, default=2, help="images for the per-image loops")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--threads", type=int, default=1,
                        help="1 by default: on a busy 2-core machine, 2 OpenMP threads stall each other")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    protocol = get_protocol(args.protocol)
    model = build_model(args.model, pooling="gap", num_classes=1000).eval()
    n_points = protocol.n_points(args.size, args.size)
    print(f"{args.model} {args.size}px, protocol {protocol.name} ({n_points} points), "
          f"{args.threads} threads, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")

    with torch.inference_mode():
        batch = best_batch_size(model, args.size, args.batch_sizes, args.repeats)
        print(f"  best batch size {batch}: the metrics and the floor run with it")
        mean, std = normalisation(model, None, None, 3, torch.device("cpu"))
        n, m = args.conf_images, args.naive_images
        images, maps = torch.randn(n, 3, args.size, args.size), torch.rand(n, args.size, args.size)
        targets = torch.randint(0, 1000, (n,))

        def confidence(net=model):  # the clean forward + one masked forward per image
            clean = torch.cat([target_scores(net(images[s]), targets[s]) for s in chunks(n, batch)])
            (masked,) = masked_probs(net, images, maps, targets, masking=protocol.masking,
                                     mean=mean, std=std, batch_size=batch)  # one row: temperature 1
            return confidence_metrics(clean, masked)

        t_conf, t_floor, fast = versus_floor(confidence, model, 2 * n, batch, args.size, args.repeats)
        t_own = best_time(lambda: confidence(Stub()), args.repeats)[0]
        t_naive, slow = best_time(lambda: naive_confidence(model, images[:m], maps[:m], targets[:m], mean, std,
                                                           protocol.masking), 1)
        agree = max((fast[k][:m] - slow[k]).abs().max().item() for k in ("ad", "ag"))
        report(f"AD/AG/AI (2 forwards/image, {n} images)", t_conf / n, t_floor / n, t_own / n, t_naive / m, agree)

        # Every point except the two clean ones, whose scores come from the clean forward.
        n = args.images
        images, maps, targets = images[:n], maps[:n], targets[:n]

        def causal(net=model):
            clean_logits = torch.cat([net(images[s]) for s in chunks(n, batch)])
            return causal_curves(net, images, maps, targets, protocol=protocol, batch_size=batch,
                                 clean_logits=clean_logits)

        forwards = 1 + 2 * (n_points - 1)
        t_causal, t_floor, fast = versus_floor(causal, model, forwards * n, batch, args.size, args.repeats)
        t_own = best_time(lambda: causal(Stub()), args.repeats)[0]
        t_naive, slow = best_time(lambda: naive_causal(model, images[:m], maps[:m], targets[:m], protocol), 1)
        fast_curves = torch.stack([fast["insertion_curve"], fast["deletion_curve"]], dim=1)[:m]
        report(f"Insertion+Deletion ({forwards} forwards/image, {n} images)", t_causal / n, t_floor / n,
               t_own / n, t_naive / m, (fast_curves - slow).abs().max().item())


def report(name: str, seconds: float, floor: float, own: float, naive: float, agreement: float) -> None:
    """Seconds per image next to the floor, the metric's own work (forwards excluded) and the naive loop."""
    print(f"{name}:\n  {seconds:.3f} s/image | floor {floor:.3f} s/image (x{seconds / floor:.2f}) | "
          f"own work without forwards {own:.3f} s/image ((floor + own) / floor = x{(floor + own) / floor:.2f}) | "
          f"per-image per-step loop {naive:.3f} s/image (x{naive / seconds:.1f} slower) | "
          f"max |batched - loop| = {agreement:.1e}")


if __name__ == "__main__":
    main()
