"""LiteRT runtime: load and run `.tflite` models, and time them."""

from tfcompress.runtime.benchmark import BenchmarkResult
from tfcompress.runtime.benchmark import benchmark
from tfcompress.runtime.bpe_tokenizer import BytePairTokenizer
from tfcompress.runtime.delegation import DelegationReport
from tfcompress.runtime.delegation import xnnpack_delegation
from tfcompress.runtime.interpreter import TFLiteModel
from tfcompress.runtime.interpreter import load

__all__ = [
    "BenchmarkResult",
    "BytePairTokenizer",
    "DelegationReport",
    "TFLiteModel",
    "benchmark",
    "load",
    "xnnpack_delegation",
]
