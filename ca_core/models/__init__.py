"""Models: the GAP baseline and the CA-Stream on timm backbones."""
from .ca_stream import CAStream
from .checkpoint import atomic_write, load_model, read_checkpoint, save_model
from .factory import backbone_of, build_model, count_trainable, default_device, is_ca_model
from .gap import GAPModel
from .families import FAMILIES, Family, family_of, get_submodule
from .layers import ClassTokenStream, CrossAttention
from . import mini  # noqa: F401  (registers resnet_mini and convnext_mini in timm)

__all__ = [
    "CAStream", "ClassTokenStream", "CrossAttention", "FAMILIES", "Family", "GAPModel", "atomic_write",
    "backbone_of", "build_model", "count_trainable", "default_device", "family_of",
    "get_submodule", "is_ca_model", "load_model", "read_checkpoint", "save_model",
]
