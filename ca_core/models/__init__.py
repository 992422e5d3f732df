"""Models: the GAP baseline and the CA-Stream on timm backbones."""
from .ca_stream import CAStream
from .checkpoint import compose, load_model, read_checkpoint, save_model
from .factory import (POOLINGS, backbone_of, build_model, count_trainable, data_config_of, is_ca_model,
                      normalisation)
from .gap import GAPModel
from .families import FAMILIES, Family, family_of, get_submodule
from .layers import ClassTokenStream, CrossAttention
from . import mini  # noqa: F401  (registers resnet_mini and convnext_mini in timm)

__all__ = [
    "CAStream", "ClassTokenStream", "CrossAttention", "FAMILIES", "Family", "GAPModel", "POOLINGS",
    "backbone_of", "build_model", "compose", "count_trainable", "data_config_of", "family_of",
    "get_submodule", "is_ca_model", "load_model", "normalisation", "read_checkpoint", "save_model",
]
