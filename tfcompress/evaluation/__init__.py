"""Numbers that decide whether a compression is worth it: size, speed, quality."""

from tfcompress.evaluation.accuracy import accuracy
from tfcompress.evaluation.agreement import agreement
from tfcompress.evaluation.candidate import Candidate
from tfcompress.evaluation.compare import Comparison, compare
from tfcompress.evaluation.cosine import CosineSimilarity, cosine_similarity, mean_pooled_cosine
from tfcompress.evaluation.f1 import f1
from tfcompress.evaluation.interleaved_latency import interleaved_latency
from tfcompress.evaluation.latency import Latency, latency
from tfcompress.evaluation.layer_errors import LayerErrors, layer_errors
from tfcompress.evaluation.memory import MemoryUsage, peak_memory
from tfcompress.evaluation.perplexity import perplexity
from tfcompress.evaluation.size import model_size

__all__ = [
    "Candidate",
    "Comparison",
    "CosineSimilarity",
    "Latency",
    "LayerErrors",
    "MemoryUsage",
    "accuracy",
    "agreement",
    "compare",
    "cosine_similarity",
    "f1",
    "interleaved_latency",
    "latency",
    "layer_errors",
    "mean_pooled_cosine",
    "model_size",
    "peak_memory",
    "perplexity",
]
