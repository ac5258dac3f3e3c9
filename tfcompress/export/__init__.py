"""TFLite export: conversion with verification, C arrays for TFLite Micro."""

from tfcompress.export.arena import estimate_arena_bytes
from tfcompress.export.attention_masks import additive_attention_masks
from tfcompress.export.c_array import CArrayResult
from tfcompress.export.c_array import to_c_array
from tfcompress.export.converter import TARGETS
from tfcompress.export.identity_multiplies import remove_identity_multiplies
from tfcompress.export.tflite import ExportResult
from tfcompress.export.tflite import to_tflite
from tfcompress.export.tflm import TFLMCheck
from tfcompress.export.tflm_error import TFLMError
from tfcompress.export.tflm import check_in_tflm
from tfcompress.export.verify import ExportVerificationError

__all__ = [
    "CArrayResult",
    "ExportResult",
    "ExportVerificationError",
    "TARGETS",
    "TFLMCheck",
    "TFLMError",
    "additive_attention_masks",
    "check_in_tflm",
    "estimate_arena_bytes",
    "remove_identity_multiplies",
    "to_c_array",
    "to_tflite",
]
