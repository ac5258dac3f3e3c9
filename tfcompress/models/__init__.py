"""Pretrained language models from other formats: llama.cpp GGUF files as keras-hub models."""

from tfcompress.models.from_gguf import from_gguf
from tfcompress.models.smollm2 import smollm2_path

__all__ = [
    "from_gguf",
    "smollm2_path",
]
