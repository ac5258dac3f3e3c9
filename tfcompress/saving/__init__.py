"""Saving and loading compressed models."""

from tfcompress.saving.load import load_model
from tfcompress.core.recipe import attach_recipe

__all__ = ["attach_recipe", "load_model"]
