"""LiteRT runtime: load and run `.tflite` models, and time them."""

from tfcompress.runtime.benchmark import BenchmarkResult
from tfcompress.runtime.benchmark import benchmark
from tfcompress.runtime.interpreter import TFLiteModel
from tfcompress.runtime.interpreter import load

__all__ = ["BenchmarkResult", "TFLiteModel", "benchmark", "load"]
