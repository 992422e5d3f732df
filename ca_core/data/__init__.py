"""Data: the generated shapes data set with ground-truth masks, loaders for real image data, and
the settings of each kind (:class:`ShapesConfig`, :class:`FolderData`, :class:`Mit67Data`, :class:`PhotosConfig`)."""
from .folders import (FolderData, ImageFiles, Mit67Data, image_folder, imagenet_splits, imagenet_val, list_dataset,
                      mit67, mit67_splits, read_list)
from .photos import SAMPLE_PHOTOS, PhotosConfig, PhotosDataset
from .shapes import MEAN, SHAPE_NAMES, STD, ShapesConfig, ShapesDataset, denormalize, normalize, shapes_dataset
from .transforms import data_config_of, eval_transform, paper_train_transform

__all__ = [
    "MEAN", "SHAPE_NAMES", "STD", "FolderData", "ImageFiles", "Mit67Data", "ShapesConfig", "ShapesDataset",
    "data_config_of", "denormalize",
    "SAMPLE_PHOTOS", "PhotosConfig", "PhotosDataset",
    "eval_transform", "image_folder", "imagenet_splits", "imagenet_val", "list_dataset", "mit67", "mit67_splits",
    "normalize", "paper_train_transform",
    "read_list", "shapes_dataset",
]
