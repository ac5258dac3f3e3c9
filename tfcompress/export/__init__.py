"""TFLite export: conversion with verification, C arrays for TFLite Micro, LLM generators.

Names load on first use, so `read_generator_metadata` (which a chat runtime
needs) imports no TensorFlow.
"""

import importlib

_SOURCES = {
    "CArrayResult": "tfcompress.export.c_array",
    "ExportResult": "tfcompress.export.tflite",
    "ExportVerificationError": "tfcompress.export.verify",
    "GENERATOR_TARGETS": "tfcompress.export.generator.to_tflite_generator",
    "GeneratorExport": "tfcompress.export.generator.generator_export",
    "TARGETS": "tfcompress.export.converter",
    "TFLMCheck": "tfcompress.export.tflm",
    "TFLMError": "tfcompress.export.tflm_error",
    "additive_attention_masks": "tfcompress.export.attention_masks",
    "check_in_tflm": "tfcompress.export.tflm",
    "estimate_arena_bytes": "tfcompress.export.arena",
    "read_generator_metadata": "tfcompress.export.generator.metadata",
    "remove_identity_multiplies": "tfcompress.export.identity_multiplies",
    "to_c_array": "tfcompress.export.c_array",
    "to_tflite": "tfcompress.export.tflite",
    "to_tflite_generator": "tfcompress.export.generator.to_tflite_generator",
}

__all__ = sorted(_SOURCES)


def __getattr__(name):
    if name in _SOURCES:
        value = getattr(importlib.import_module(_SOURCES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfcompress.export' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
