"""tfcompress: Keras 3 model compression for phones and microcontrollers.

Subpackages: `sparsity` (pruning), `quantization` (QAT), `export` (TFLite and
C arrays), `runtime` (LiteRT), `evaluation` (size, latency, accuracy),
`saving` (`.keras` round trips of compressed models), `core` (the machinery
that finds and replaces layers inside any model).

Importing tfcompress changes no global state: no environment variable, no
Keras configuration.
"""

from tfcompress import core
from tfcompress import evaluation
from tfcompress import export
from tfcompress import quantization
from tfcompress import runtime
from tfcompress import saving
from tfcompress import sparsity

__version__ = "0.1.0"

__all__ = [
    "core",
    "evaluation",
    "export",
    "quantization",
    "runtime",
    "saving",
    "sparsity",
]
