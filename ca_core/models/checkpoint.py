"""Save and load models as ``.safetensors`` files with metadata, written atomically.

A CA-Stream checkpoint holds only the stream (class token and CA blocks: a few MB for
ResNet-50) plus what is needed to check that it fits a backbone; a GAP checkpoint holds the
backbone's plain timm state dict (the from-scratch backbones of the embedded experiment), so it
can also be given to ``build_model(..., pretrained=path)``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors.torch
import timm
import torch
from torch import nn

from .ca_stream import CAStream
from ..provenance import state_digest
from ..utils import atomic_write
from .factory import POOLINGS, backbone_of, build_model

FORMAT = "ca_core/1"


def architecture_of(model: nn.Module) -> str:
    """The timm architecture name of a GAP model or of a CA model's backbone."""
    backbone = backbone_of(model)
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture", type(backbone).__name__))


def describe(model: nn.Module) -> dict[str, Any]:
    """Metadata that identifies what a checkpoint fits; a stream's includes the digest of the frozen
    backbone it was trained on (``backbone_digest``), so it is never composed onto another one."""
    meta: dict[str, Any] = {
        "format": FORMAT,
        "architecture": architecture_of(model),
        "torch": torch.__version__,
        "timm": timm.__version__,
    }
    if isinstance(model, CAStream):
        meta.update(pooling="ca", taps=list(model.taps), widths=list(model.widths), heads=model.heads,
                    num_features=model.backbone.num_features, num_classes=model.backbone.num_classes,
                    backbone_digest=state_digest(model.backbone.state_dict()))
    else:
        meta.update(pooling="gap", num_classes=getattr(backbone_of(model), "num_classes", None))
    return meta


def save_model(model: nn.Module, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write the stream (CA) or the backbone (GAP) to ``path`` atomically, with metadata."""
    state = model.stream_state_dict() if isinstance(model, CAStream) else backbone_of(model).state_dict()
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    meta = {"ca_core": json.dumps({**describe(model), **(extra or {})})}
    atomic_write(path, lambda tmp: safetensors.torch.save_file(state, tmp, metadata=meta))


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a checkpoint written by :func:`save_model`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("ca_core", "{}"))
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a ca_core checkpoint (metadata format {meta.get('format')!r})")
    return state, meta


def load_model(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a checkpoint into ``model`` after checking that it fits; return its metadata."""
    state, meta = read_checkpoint(path)
    if meta.get("pooling") not in POOLINGS:
        raise ValueError(f"checkpoint {path} records no pooling ('gap' or 'ca') in its metadata: it was not "
                         "written by ca_core.save_model; train the stage again")
    mine = describe(model)
    keys = ("pooling", "architecture", "taps", "widths", "heads", "num_classes") if meta["pooling"] == "ca" \
        else ("pooling", "architecture", "num_classes")
    wrong = {k: (meta.get(k), mine.get(k)) for k in keys if meta.get(k) != mine.get(k)}
    if meta["pooling"] == "ca" and mine["pooling"] == "ca" and meta.get("backbone_digest") not in (
            None, mine["backbone_digest"]):  # streams saved before the digest was recorded cannot be checked
        wrong["backbone_digest"] = (meta["backbone_digest"][:12] + "…", mine["backbone_digest"][:12] + "…")
    if wrong:
        details = "; ".join(f"{k}: checkpoint {a!r} vs model {b!r}" for k, (a, b) in wrong.items())
        hint = ("; the stream was trained on other backbone weights: train it again on these"
                if "backbone_digest" in wrong else "")
        raise ValueError(f"checkpoint {path} ({meta.get('architecture')}) does not fit this model: {details}{hint}")
    target = model.stream if isinstance(model, CAStream) else backbone_of(model)
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path} does not fit this model: {err}") from err
    return meta


def compose(backbone: str, pooling: str, num_classes: int, pretrained: bool | str | Path = False,
            gap_checkpoint: str | Path | None = None, ca_checkpoint: str | Path | None = None) -> nn.Module:
    """A GAP or CA model assembled from its parts: the backbone (timm, ``pretrained`` weights or the
    GAP stage's ``gap_checkpoint``), then for ``pooling="ca"`` the stream (``ca_checkpoint``, or
    freshly initialised for training).

    The order of construction is fixed (backbone, then stream), so with the same seed the same
    initial weights come out whatever the caller.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    # a GAP checkpoint holds the whole model (a linear probe's too): the pretrained file is not read then
    gap = build_model(backbone, pooling="gap", num_classes=num_classes,
                      pretrained=pretrained if gap_checkpoint is None else False)
    if gap_checkpoint is not None:
        load_model(gap, gap_checkpoint)
    if pooling == "gap":
        return gap
    if gap_checkpoint is None and not pretrained:
        raise ValueError("a CA-Stream needs a trained backbone: give the GAP stage's model.safetensors "
                         "(gap_checkpoint) or pretrained weights")
    model = build_model(gap, pooling="ca")
    if ca_checkpoint is not None:
        load_model(model, ca_checkpoint)
    return model
