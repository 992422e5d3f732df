"""ca_core: the CA-Stream model, CAM saliency methods and the paper's interpretability metrics."""
from .models import build_model, load_model, save_model

__version__ = "0.1.0"
__all__ = ["build_model", "load_model", "save_model", "__version__"]
