"""Model parameter randomisation test (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS
2018), cascading version: a saliency method that explains the model must give different maps once
the model's learned weights are destroyed.

Starting from the logits, the layers are re-initialised cumulatively, top-down (the classifier, then
a CA model's stream blocks from last to first and its class token, then the backbone's stages from last
to first and its stem), and after each step the maps are compared with the trained model's maps by
their Spearman rank correlation, per image. For the trained maps M and the maps M_s after step s::

    rho_s = pearson(rank(M), rank(M_s))          (ranks over the h*w positions of one image)

A method passes when the median of rho over the images is at most a threshold once every layer is
random. Maps that ignore the model fail by construction: ``centre`` is one fixed map, and ``random``
is seeded by the image's bytes (not by the model), so both give rho = 1 at every step.

Conventions:

* Re-initialisation: each parameter tensor is redrawn from a normal with its own trained mean and
  standard deviation, from a generator seeded by ``seed`` and the parameter's name. The learned
  arrangement of the values is gone while every layer keeps its scale, whatever init the family uses
  (He, trunc-normal 0.02, Xavier), so activations neither vanish nor explode. A constant tensor (zero
  std, e.g. untrained BatchNorm weights) stays as it is: it holds nothing learned.
* Norm layers: their affine weights and biases are parameters and are redrawn; BatchNorm's running
  mean and variance are buffers and are kept, as in Adebayo et al., who re-initialise the weights
  only (the models run in eval mode, so these statistics still normalise the activations).
* Constant maps: rank correlation is undefined for a constant map; two constant maps give 1 (equal
  rankings), a constant map against a non-constant one gives 0 (no relation). Ties get average ranks
  (the conventions of :mod:`ca_core.metrics.correlation`).
* Targets: ``None`` means the trained model's predicted classes, kept fixed through the cascade so
  that every map explains the same class.
"""
from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from timm.models import group_parameters
from torch import nn

from ..models import backbone_of, is_ca_model
from ..saliency import Targets, explain
from ..utils import chunks
from .correlation import spearman

Step = tuple[str, list[str]]


@dataclass(frozen=True, eq=False)
class SanityResult:
    """Rank correlations between the trained model's maps and the maps after each randomisation step.

    ``correlations[s, i]``: Spearman correlation for image ``i`` after the cumulative steps
    ``steps[0..s]`` (a read-only float64 array, (n_steps, B)).
    """

    method: str
    steps: tuple[str, ...]
    correlations: np.ndarray

    def __post_init__(self) -> None:
        values = np.array(self.correlations, dtype=np.float64)
        if values.shape[:1] != (len(self.steps),) or values.ndim != 2:
            raise ValueError(f"correlations must be (n_steps={len(self.steps)}, B), got shape {values.shape}")
        values.setflags(write=False)
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "correlations", values)

    def summary(self) -> dict[str, float]:
        """Median correlation over the images after each step, in cascade order."""
        return {step: float(np.median(row)) for step, row in zip(self.steps, self.correlations)}

    def passes(self, threshold: float = 0.5) -> bool:
        """False when the median correlation of the fully randomised model is above ``threshold``:
        the maps barely changed, so the method does not depend on what the model learned."""
        return float(np.median(self.correlations[-1])) <= threshold


def randomisation_steps(model: nn.Module) -> list[Step]:
    """The cascade, top-down: ``(step name, parameter names of model)`` per step.

    Steps: ``"classifier"`` (every backbone parameter after the last stage: ResNet ``fc``, ConvNeXt
    ``head.norm`` and ``head.fc``), for a CA model ``"stream.block{k}"`` from the last block to the
    first, then ``"stream.token"`` (the class token, the first block's query), then ``"stage{k}"``
    from the last stage to the first and ``"stem"``. The backbone is split with timm's coarse
    ``group_matcher`` (stem and stages), so any timm model that defines one works.

    Example:
        >>> from ca_core import build_model
        >>> [name for name, _ in randomisation_steps(build_model("resnet_mini", "gap", num_classes=5))]
        ['classifier', 'stage4', 'stage3', 'stage2', 'stage1', 'stem']
    """
    backbone = backbone_of(model)
    prefix = next(name for name, module in model.named_modules() if module is backbone)
    prefix = f"{prefix}." if prefix else ""
    stem, stages, classifier = _backbone_groups(backbone)
    steps: list[Step] = [("classifier", [prefix + n for n in classifier])]
    if is_ca_model(model):
        blocks = model.stream.blocks
        for k in reversed(range(len(blocks))):
            steps.append((f"stream.block{k}", [f"stream.blocks.{k}.{n}" for n, _ in blocks[k].named_parameters()]))
        steps.append(("stream.token", ["stream.cls_token"]))
    for k in reversed(range(len(stages))):
        steps.append((f"stage{k + 1}", [prefix + n for n in stages[k]]))
    steps.append(("stem", [prefix + n for n in stem]))
    return steps


def _backbone_groups(backbone: nn.Module) -> tuple[list[str], list[list[str]], list[str]]:
    """Parameter names of the stem, of each stage in order, and of the classifier (the rest), from timm's
    coarse parameter groups (:func:`timm.models.group_parameters`: first the stem, last what no pattern matches)."""
    matcher = getattr(backbone, "group_matcher", None)
    groups = list(group_parameters(backbone, matcher(coarse=True)).values()) if matcher is not None else []
    if len(groups) < 3:
        raise ValueError(f"{type(backbone).__name__} has no timm coarse group_matcher that splits it into a stem, "
                         "stages and a classifier")
    return groups[0], groups[1:-1], groups[-1]


@torch.no_grad()
def randomise_(model: nn.Module, names: Sequence[str], seed: int = 0) -> None:
    """Redraw the named parameters of ``model`` in place, each from N(its mean, its std), seeded by
    ``seed`` and the name (the same values whichever other steps run, on any device)."""
    params = dict(model.named_parameters())
    for name in names:
        p = params[name]
        values = p.detach().float().cpu()
        g = torch.Generator().manual_seed(zlib.crc32(name.encode(), seed & 0xFFFFFFFF))
        drawn = torch.randn(p.shape, generator=g) * values.std(unbiased=False) + values.mean()
        p.copy_(drawn)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Spearman correlation per image of two map batches (B, h, w), float64 (B,): :func:`spearman`
    (average ranks for ties; two constant maps give 1, one constant map gives 0)."""
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"need two (B, h, w) map batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return spearman(a, b)


def cascading_randomisation(model: nn.Module, images: torch.Tensor, targets: Targets, method: str, *,
                            seed: int = 0, steps: Sequence[str] | None = None, **explain_options) -> SanityResult:
    """Adebayo et al.'s cascading model parameter randomisation test of a saliency method.

    Works on a deep copy (the caller's model is never changed): the maps of the trained model, then,
    after each cumulative step of :func:`randomisation_steps`, the maps again and their rank
    correlation with the trained ones (at the maps' own resolution, e.g. the CAM layer's).

    Args:
        model: a GAP or CA model (``ca_core.build_model``).
        images: normalised input batch (B, 3, H, W).
        targets: one class per image; ``None``: the trained model's predictions, fixed for every step.
        method: a saliency method name (:data:`ca_core.saliency.METHODS`).
        seed: seeds the re-initialisation; the same seed gives the same result. It is not passed on
            to ``explain`` (the ``random`` baseline keeps its default seed).
        steps: names of the steps to apply (default: all), applied cumulatively in cascade order.
        **explain_options: passed to :func:`ca_core.saliency.explain` (``layer``, ``batch_size``, ...).

    Example:
        >>> from ca_core import build_model
        >>> model = build_model("resnet_mini", "ca", num_classes=5)
        >>> result = cascading_randomisation(model, torch.randn(4, 3, 56, 56), None, "gradcam")
        >>> result.steps[:3], result.correlations.shape
        (('classifier', 'stream.block4', 'stream.block3'), (12, 4))
        >>> result.passes()  # median correlation of the fully random model <= 0.5
        True
    """
    cascade = _select(randomisation_steps(model), steps)
    layer = explain_options.get("layer")
    clone = copy.deepcopy(model)
    if isinstance(layer, nn.Module):  # the caller's module: hook its twin in the copy
        explain_options["layer"] = clone.get_submodule(_module_name(model, layer))
    if targets is None:
        targets = _predictions(clone, images, explain_options.get("batch_size", 32))
    trained = explain(clone, images, method, targets=targets, **explain_options)
    rows = []
    for _, names in cascade:
        randomise_(clone, names, seed)
        rows.append(rank_correlation(trained, explain(clone, images, method, targets=targets, **explain_options)))
    return SanityResult(method, tuple(name for name, _ in cascade), np.stack(rows))


def _select(cascade: list[Step], names: Sequence[str] | None) -> list[Step]:
    """The steps named in ``names`` (all when ``None``), in cascade order."""
    if names is None:
        return cascade
    known = [name for name, _ in cascade]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"steps must be a non-empty subset of {known}; unknown: {unknown}")
    return [step for step in cascade if step[0] in names]


def _module_name(model: nn.Module, module: nn.Module) -> str:
    """The dotted name of ``module`` inside ``model``."""
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    raise ValueError(f"layer {type(module).__name__} is not a module of the model")


@torch.no_grad()
def _predictions(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The model's predicted class per image (eval mode; ``model`` is the private copy)."""
    model.eval()
    param = next(model.parameters())
    x = images.to(param.device, param.dtype)
    return torch.cat([model(x[s]).argmax(dim=1) for s in chunks(len(x), batch_size)])
