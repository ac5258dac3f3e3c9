"""Saving and loading compressed models."""

from tfcompress.core.recipe import attach_recipe
from tfcompress.saving.load import load_model

__all__ = ["attach_recipe", "load_model"]
