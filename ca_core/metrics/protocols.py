"""Named evaluation protocols: every convention that silently changes the metric numbers.

Two presets exist:

* ``"paper"``: the CA-Stream / Opti-CAM evaluation code. AD/AG/AI mask in pixel space (the map
  multiplies the de-normalised image, so masked-out pixels are black); insertion and deletion
  change ``8 x image side`` pixels per step (29 points at 224 px); insertion starts from the
  normalised image blurred with RISE's 5x5 kernel of sigma 5, deletion replaces pixels by zeros of
  the normalised tensor (the mean colour); scores are softmax probabilities.
* ``"rise"``: the original RISE causal metrics (Petsiuk et al., BMVC 2018): ``image side`` pixels
  per step (225 points at 224 px) and an 11x11 blur of sigma 5; everything else as ``"paper"``.

Any single convention can be changed with :meth:`Protocol.replace`, e.g.
``PROTOCOLS["paper"].replace(masking="normalised", score="logit")``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

MASKINGS = ("pixel", "normalised")
SCORES = ("prob", "logit")
SUBSTRATES = ("blur", "zeros")


@dataclass(frozen=True)
class Protocol:
    """The conventions of AD/AG/AI and Insertion/Deletion.

    Attributes:
        name: a label for reports.
        masking: where AD/AG/AI apply the map: ``"pixel"`` (de-normalise, multiply, re-normalise:
            masked pixels are black) or ``"normalised"`` (multiply the normalised tensor: masked
            pixels take the mean colour, as in pytorch-grad-cam and TorchCAM).
        score: what Insertion/Deletion curves record: the target's softmax ``"prob"`` or its
            ``"logit"`` (logit AUCs are not bounded to [0, 1]). AD/AG/AI are defined on
            probabilities only and always use them.
        step_sides: pixels changed per step, in units of the image width (8 for the paper, 1 for RISE).
        blur_size: side of RISE's blur kernel.
        blur_sigma: sigma of RISE's blur kernel.
        insertion_substrate: what insertion starts from: ``"blur"`` or ``"zeros"`` (of the normalised tensor).
        deletion_substrate: what deletion replaces pixels by: ``"zeros"`` or ``"blur"``.
    """

    name: str
    masking: str = "pixel"
    score: str = "prob"
    step_sides: int = 8
    blur_size: int = 5
    blur_sigma: float = 5.0
    insertion_substrate: str = "blur"
    deletion_substrate: str = "zeros"

    def __post_init__(self) -> None:
        for field, allowed in (("masking", MASKINGS), ("score", SCORES),
                               ("insertion_substrate", SUBSTRATES), ("deletion_substrate", SUBSTRATES)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"protocol {field} must be one of {allowed}, got {getattr(self, field)!r}")
        if not (isinstance(self.step_sides, int) and self.step_sides > 0):
            raise ValueError(f"protocol step_sides must be a positive integer, got {self.step_sides!r}")
        if not (isinstance(self.blur_size, int) and self.blur_size > 0 and self.blur_size % 2 == 1):
            raise ValueError(f"protocol blur_size must be a positive odd integer, got {self.blur_size!r}")
        if not self.blur_sigma > 0:
            raise ValueError(f"protocol blur_sigma must be positive, got {self.blur_sigma!r}")

    def replace(self, **changes) -> "Protocol":
        """A copy with some conventions changed (validated like the original)."""
        return dataclasses.replace(self, **changes)

    def pixels_per_step(self, width: int) -> int:
        """Pixels changed between two points of an Insertion/Deletion curve."""
        return self.step_sides * width

    def n_points(self, height: int, width: int) -> int:
        """Points of an Insertion/Deletion curve: the start plus one per step (29 for the paper at 224 px)."""
        return math.ceil(height * width / self.pixels_per_step(width)) + 1


PROTOCOLS: dict[str, Protocol] = {
    "paper": Protocol("paper"),
    "rise": Protocol("rise", step_sides=1, blur_size=11),
}


def get_protocol(protocol: str | Protocol) -> Protocol:
    """A :class:`Protocol` from its preset name, or the protocol itself."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown metrics protocol {protocol!r}; presets: {', '.join(PROTOCOLS)} "
                         "(or pass a ca_core.metrics.Protocol)")
    return PROTOCOLS[protocol]
