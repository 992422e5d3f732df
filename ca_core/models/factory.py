"""``build_model``: a timm backbone with GAP (the baseline) or with the CA-Stream."""
from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import timm
import timm.data
import torch
from torch import nn

from .ca_stream import CAStream
from .gap import GAPModel
from .families import FAMILIES, family_of
from ..utils import announce

POOLINGS = ("gap", "ca")


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local ``.pth``/``.safetensors`` state dict into the timm model ``model`` with strict key
    checking.

    Weights for another number of classes (ImageNet's 1,000 on a 10-class model) load every tensor
    but the classifier's, which stays freshly initialised, as timm does for its own weights: the
    GAP stage then trains it (``train.gap_trains: classifier``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    try:
        state = timm.models.load_state_dict(str(path), weights_only=True)
    except Exception as err:  # corrupt or foreign file: name it
        raise ValueError(f"cannot read weights from {path}: {err}") from err
    own = model.state_dict()
    head = {f"{name}.{k}" for name, m in model.named_modules() if m is model.get_classifier()
            for k in m.state_dict()}
    other_classes = any(k in state and state[k].shape != own[k].shape for k in head)
    if other_classes:
        state = {k: v for k, v in state.items() if k not in head}
        announce(f"{path.name}: weights for another number of classes; loaded all but the classifier "
                 f"({', '.join(sorted(head))}), which starts untrained")
    try:
        missing, unexpected = model.load_state_dict(state, strict=not other_classes)
        if set(missing) - head or unexpected:
            raise RuntimeError(f"missing keys {sorted(set(missing) - head)}, unexpected keys {sorted(unexpected)}")
    except RuntimeError as err:
        raise ValueError(f"weights in {path} do not fit {type(model).__name__}: {err}") from err


def create_backbone(
    backbone: str, num_classes: int = 1000, pretrained: bool | str | Path = False, **kwargs
) -> nn.Module:
    """A timm model; ``pretrained`` is ``True`` (timm's published weights) or a local file."""
    from_hub = pretrained is True
    try:
        with _hub_offline_unless_reachable(from_hub):
            model = timm.create_model(backbone, pretrained=from_hub, num_classes=num_classes, **kwargs)
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise ValueError(f"unknown timm model {backbone!r} (see timm.list_models())") from err
        raise
    except OSError as err:  # huggingface_hub's "not found on the Hub nor in the cache" errors are OSErrors
        raise RuntimeError(
            f"timm's pretrained weights of {backbone!r} are neither reachable nor in the local Hugging Face "
            f"cache ({type(err).__name__}). Either fill the cache on a machine with network "
            f"(python -c \"import timm; timm.create_model('{backbone}', pretrained=True)\"), copy "
            "~/.cache/huggingface here and set HF_HUB_OFFLINE=1; or give a local weights file "
            f"(in a profile: pretrained: {{{backbone}: path/to/weights.safetensors}}; on the command line: "
            "--pretrained FILE)") from err
    if pretrained and not from_hub:
        load_backbone_weights(model, pretrained)
    return model


@contextmanager
def _hub_offline_unless_reachable(needed: bool, host: str = "huggingface.co", timeout: float = 3.0) -> Iterator[None]:
    """Use only the local Hugging Face cache while the Hub cannot be reached, so that a machine
    without network gets its error in seconds instead of after a minute of retries."""
    import huggingface_hub.constants as hub

    offline = needed and not hub.HF_HUB_OFFLINE and not _reachable(host, timeout)
    before = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = before or offline
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = before


def _reachable(host: str, timeout: float) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def build_model(
    backbone: str | nn.Module,
    pooling: str = "ca",
    num_classes: int = 1000,
    pretrained: bool | str | Path = False,
    heads: int = 1,
    taps: Sequence[str] | None = None,
    channels_last: bool = True,
    **timm_kwargs,
) -> nn.Module:
    """Build the GAP baseline or the CA-Stream model on a timm backbone.

    Args:
        backbone: a timm model name (``"resnet50"``, ``"convnext_base"``, ...), a timm model, or a
            GAP/CA model whose backbone is reused (a CA wrapper then freezes it).
        pooling: ``"gap"`` keeps the backbone's own pooling (:class:`GAPModel`); ``"ca"`` replaces
            it with the stream (:class:`CAStream`).
        num_classes: classifier width (ignored when ``backbone`` is already a model).
        pretrained: ``False``, ``True`` (timm's published weights) or a local weights file.
        heads: attention heads of every CA block (the paper uses 1).
        taps: module names the stream attends to; default: the paper's placement for ResNet and
            ConvNeXt, timm's ``feature_info`` stages for any other timm CNN (:func:`family_of`).
        channels_last: store a new backbone's convolution weights channels-last, the layout in which
            CPU (oneDNN) and GPU (cuDNN) convolutions run fastest; results equal the default
            layout's to float rounding. A given model keeps its layout.
        **timm_kwargs: passed to ``timm.create_model`` (custom widths, depths, stem, ...).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if isinstance(backbone, (GAPModel, CAStream)):
        backbone = backbone.backbone
    model = backbone if isinstance(backbone, nn.Module) else create_backbone(
        backbone, num_classes, pretrained, **timm_kwargs
    )
    if channels_last and not isinstance(backbone, nn.Module):
        model = model.to(memory_format=torch.channels_last)
    if pooling == "gap":
        return GAPModel(model)
    if taps is None:
        family = family_of(model)
        if family is None:
            raise ValueError(
                f"no default CA-Stream tap points for {type(model).__name__}: not one of the paper's families "
                f"({', '.join(FAMILIES)}) nor a timm CNN whose forward_features returns a module's (B, C, H, W) "
                "map; pass taps=[module names], e.g. taps=['stages.0', 'stages.1', 'stages.2', 'stages.3'] "
                "(see model.named_modules())"
            )
        taps = family.taps
    return CAStream(model, taps, heads=heads)


def is_ca_model(model: nn.Module) -> bool:
    """True for a CA-Stream model (raw attention available), False for a GAP baseline."""
    return isinstance(model, CAStream)


def backbone_of(model: nn.Module) -> nn.Module:
    """The timm backbone of a GAP or CA model (a bare timm model is returned as is)."""
    return model.backbone if isinstance(model, (CAStream, GAPModel)) else model


def count_trainable(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def data_config_of(model: nn.Module) -> dict[str, Any]:
    """timm's data config (input size, interpolation, crop, mean, std) of a GAP or CA model's backbone."""
    return timm.data.resolve_data_config(model=backbone_of(model))


def normalisation(model: nn.Module, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                  channels: int | None = None, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The images' mean and std (each (C,), float32): as given, else the backbone's timm data config.

    The one place where de-normalisation constants come from (Score-CAM and the metrics mask in
    pixel space). ``channels``: the images' channel count, checked against both.
    """
    if mean is None or std is None:
        config = data_config_of(model)
        mean = config["mean"] if mean is None else mean
        std = config["std"] if std is None else std
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device).flatten()
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device).flatten()
    if channels is not None and (mean_t.numel() != channels or std_t.numel() != channels):
        raise ValueError(f"mean {list(mean)} and std {list(std)} need one value per image channel ({channels})")
    if not (std_t > 0).all():
        raise ValueError(f"std must be positive, got {list(std)}")
    return mean_t, std_t
