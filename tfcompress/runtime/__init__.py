"""LiteRT runtime: load and run `.tflite` models, and time them."""

from tfcompress.runtime.benchmark import BenchmarkResult, benchmark
from tfcompress.runtime.bpe_tokenizer import BytePairTokenizer
from tfcompress.runtime.chat_template import render_chat
from tfcompress.runtime.delegation import DelegationReport, xnnpack_delegation
from tfcompress.runtime.generator import GenerationResult, Generator
from tfcompress.runtime.interpreter import TFLiteModel, load
from tfcompress.runtime.sampling import Sampler
from tfcompress.runtime.text_stream import TextStream

__all__ = [
    "BenchmarkResult",
    "BytePairTokenizer",
    "DelegationReport",
    "GenerationResult",
    "Generator",
    "Sampler",
    "TFLiteModel",
    "TextStream",
    "benchmark",
    "load",
    "render_chat",
    "xnnpack_delegation",
]
