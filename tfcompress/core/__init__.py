"""Machinery shared by every technique: checks, layer walking and replacement."""

from tfcompress.core.copy_model import copy_model
from tfcompress.core.intercept_calls import intercept_calls
from tfcompress.core.layer_tree import LayerRef, find_layer, walk_layers
from tfcompress.core.recipe import attach_recipe
from tfcompress.core.registered_classes import import_registered_classes
from tfcompress.core.replace import replace_layer
from tfcompress.core.strip_wrappers import strip_wrappers
from tfcompress.core.substitute import substitute_variables
from tfcompress.core.transform import transform_layers
from tfcompress.core.wrapper import CompressionWrapper, build_shape_of

__all__ = [
    "CompressionWrapper",
    "LayerRef",
    "attach_recipe",
    "build_shape_of",
    "copy_model",
    "find_layer",
    "import_registered_classes",
    "intercept_calls",
    "replace_layer",
    "strip_wrappers",
    "substitute_variables",
    "transform_layers",
    "walk_layers",
]
