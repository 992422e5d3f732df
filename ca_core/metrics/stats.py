"""Statistics over per-image metric values: bootstrap confidence intervals and a paired test.

Values are fractions per image (e.g. AD in [0,1], AI in {0,1}); results are in percent (x100),
the unit of the paper's tables.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

Values = torch.Tensor | np.ndarray | Sequence[float]

#: Up to this many images the sign-flip test enumerates every sign pattern (exact p).
EXACT_SIGN_FLIPS = 12


def _as_array(values: Values, name: str) -> np.ndarray:
    """Finite 1-D float64 array of at least one value."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of per-image values, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf at indices {np.flatnonzero(~np.isfinite(array)).tolist()[:10]}")
    return array


def _bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement, same size) of ``values``."""
    return values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)


def summarize(values: Values, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean x100 with a percentile-bootstrap 95% confidence interval: ``{"mean", "lo", "hi"}``."""
    array = _as_array(values, "values")
    means = _bootstrap_means(array, n_boot, np.random.default_rng(seed))
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": 100 * float(array.mean()), "lo": 100 * float(lo), "hi": 100 * float(hi)}


def paired_test(a: Values, b: Values, n_boot: int = 10000, seed: int = 0) -> dict[str, float]:
    """Compare two settings on the same images (e.g. GAP vs CA for one saliency method).

    Returns ``diff`` = mean(b - a) x100, its percentile-bootstrap 95% interval ``lo``/``hi``
    (resampling images, which keeps the pairing), and a two-sided ``p`` from a sign-flip
    randomisation test (under the null that a and b are exchangeable per image, each difference
    is as likely negated): with up to :data:`EXACT_SIGN_FLIPS` images, the exact share of all
    2^n sign patterns whose mean difference is at least as far from 0 as the observed one (4 equal
    positive differences: 2/16); beyond, the share of ``n_boot`` random flips, counting the observed
    one, so p >= 1/(n_boot+1).
    """
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired_test needs a and b on the same images, got {x.size} and {y.size} values")
    diff = y - x
    rng = np.random.default_rng(seed)
    lo, hi = np.percentile(_bootstrap_means(diff, n_boot, rng), [2.5, 97.5])
    exact = diff.size <= EXACT_SIGN_FLIPS
    if exact:  # every sign pattern once: row k flips the images whose bit is set in k
        signs = 1.0 - 2.0 * ((np.arange(2 ** diff.size)[:, None] >> np.arange(diff.size)) & 1)
    else:
        signs = rng.choice(np.array([-1.0, 1.0]), size=(n_boot, diff.size))
    null = np.abs((signs * diff).mean(axis=1))
    observed = abs(diff.mean())
    extreme = np.count_nonzero(null >= observed - 1e-12 * max(1.0, observed))
    p = extreme / len(signs) if exact else (1 + extreme) / (1 + n_boot)
    return {"diff": 100 * float(diff.mean()), "lo": 100 * float(lo), "hi": 100 * float(hi), "p": float(p)}


#: Two-sided 5 % test at 80 % power: an effect must be this many standard errors from 0 to be
#: detected four times out of five (z_0.975 + z_0.8).
DETECTABLE_SE = 1.96 + 0.84


def two_level_test(diffs: Sequence[Values], n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean per-image difference across training seeds, with both sources of variation.

    ``diffs`` holds one array per training seed of per-image differences (e.g. CA - GAP on the same
    images). A two-level bootstrap resamples seeds with replacement, then images within each drawn
    seed, so the interval covers what another training run *and* other images would give. Returns
    ``diff`` (mean over seeds of the per-seed means, x100), its percentile 95 % interval ``lo``/``hi``,
    a two-sided bootstrap ``p`` (twice the share of resampled means on the far side of 0), the
    standard error ``se`` and ``detectable``: the smallest true difference this design detects with
    80 % power at the 5 % level (:data:`DETECTABLE_SE` x se), all in points (x100).

    With few seeds (3) the seed level of a bootstrap is coarse and its interval somewhat too narrow:
    report the per-seed verdicts beside it.
    """
    groups = [_as_array(d, f"diffs[{i}]") for i, d in enumerate(diffs)]
    if not groups:
        raise ValueError("two_level_test needs at least one seed's differences")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    picks = rng.integers(0, len(groups), size=(n_boot, len(groups)))
    for b in range(n_boot):
        means[b] = np.mean([_bootstrap_means(groups[s], 1, rng)[0] for s in picks[b]])
    observed = float(np.mean([g.mean() for g in groups]))
    lo, hi = np.percentile(means, [2.5, 97.5])
    far = np.count_nonzero(means <= 0) if observed > 0 else np.count_nonzero(means >= 0)
    se = float(means.std(ddof=1)) if n_boot > 1 else 0.0
    return {"diff": 100 * observed, "lo": 100 * float(lo), "hi": 100 * float(hi),
            "p": min(1.0, 2 * (far + 1) / (n_boot + 1)), "se": 100 * se, "detectable": 100 * DETECTABLE_SE * se}
