"""Coverage and size of :func:`ca_core.metrics.crossed_test` on simulated crossed designs.

Each setting draws ``--reps`` synthetic (seeds x images) designs d_si = a_s + b_i + e_si with seed,
image and noise variances in the given ratio (only ratios matter), and prints the share of 95 %
intervals that cover the true 0 and the share of p < 0.05 (the size; 1 - coverage at effect 0),
with the seeds' share of the mean's variance, var_seed / S / Var(m), which governs the coverage.
The grid crosses seed-to-image and noise-to-image ratios; ``--ratios`` adds settings, e.g. the
ratios that :func:`ca_core.metrics.stats.variance_ratios` measures on a run (seed_to_image, 1,
noise_to_image).

    python benchmarks/crossed_coverage.py                       # the grid at S = 3, I = 500 and 200, ~10 s
    python benchmarks/crossed_coverage.py --ratios 0.1,1,0.5 --ratios 0.002,1,3 --images 500
"""
from __future__ import annotations

import argparse

import numpy as np

from ca_core.metrics.stats import simulate_crossed
from ca_core.utils import progress_bar

SEED_TO_IMAGE = (0.0, 0.0005, 0.002, 0.006, 0.02, 0.05, 0.2, 1.0)
NOISE_TO_IMAGE = (0.1, 1.0, 10.0)


def ratio_triple(text: str) -> tuple[float, float, float]:
    """'seed,image,noise' variances (any unit) -> a float triple."""
    values = tuple(float(v) for v in text.split(","))
    if len(values) != 3 or min(values) < 0 or values[1] + values[2] == 0:
        raise argparse.ArgumentTypeError(f"--ratios takes seed,image,noise variances >= 0 (image + noise > 0), "
                                         f"got {text!r}")
    return values


def seed_share(variances: tuple[float, float, float], seeds: int, images: int) -> float:
    """var_seed / S as a share of Var(m) = var_seed / S + var_image / I + var_noise / (S I)."""
    seed, image, noise = variances
    return seed / seeds / (seed / seeds + image / images + noise / (seeds * images))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratios", type=ratio_triple, action="append", default=[],
                        help="seed,image,noise variances of an extra setting (repeatable), e.g. 0.1,1,0.5")
    parser.add_argument("--only", action="store_true", help="only the --ratios settings, not the grid")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds S (default 3)")
    parser.add_argument("--images", type=int, nargs="+", default=[500, 200], help="images I (default 500 200)")
    parser.add_argument("--reps", type=int, default=4000, help="simulated designs per setting (default 4000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    grid = [] if args.only else [(s, 1.0, n) for n in NOISE_TO_IMAGE for s in SEED_TO_IMAGE]
    jobs = [(images, v) for images in args.images for v in grid + args.ratios]
    print(f"S = {args.seeds} seeds, {args.reps} designs per setting: Monte Carlo s.e. of a coverage near 0.95 is "
          f"{np.sqrt(0.95 * 0.05 / args.reps):.4f}")
    print(f"{'I':>5} {'seed':>8} {'image':>6} {'noise':>6} {'seed share':>10} {'coverage':>9} {'size':>6}")
    for images, variances in progress_bar(jobs, desc="settings", unit="setting", leave=False):
        coverage, size = simulate_crossed(args.seeds, images, *variances, n_rep=args.reps, seed=args.seed)
        flag = "" if 0.93 <= coverage <= 0.97 else "  <- outside 0.93-0.97"
        print(f"{images:>5} {variances[0]:>8g} {variances[1]:>6g} {variances[2]:>6g} "
              f"{seed_share(variances, args.seeds, images):>10.3f} {coverage:>9.3f} {size:>6.3f}{flag}")


if __name__ == "__main__":
    main()
