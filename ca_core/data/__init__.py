"""Data: the generated shapes data set with ground-truth masks, and loaders for real image data."""
from .shapes import CLASSES, MEAN, STD, ShapesConfig, ShapesDataset, denormalize, normalize, shapes_dataset

__all__ = ["CLASSES", "MEAN", "STD", "ShapesConfig", "ShapesDataset", "denormalize", "normalize", "shapes_dataset"]
