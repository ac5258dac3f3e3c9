"""tfcompress: Keras 3 model compression for phones and microcontrollers.

Subpackages: `sparsity` (pruning), `quantization` (QAT), `distillation`
(teacher-student training), `low_rank` (factorized
kernels), `export` (TFLite and C arrays), `runtime`
(LiteRT), `models` (llama.cpp GGUF files as keras-hub models), `evaluation`
(size, latency, accuracy), `saving` (`.keras` round trips of compressed
models), `data` (offline English text: pydoc topics, docstrings), `core` (the
machinery that finds and replaces layers inside any model).

Importing tfcompress changes no global state: no environment variable, no
Keras configuration.
"""

import importlib

__version__ = "0.1.0"

__all__ = [
    "core",
    "data",
    "distillation",
    "evaluation",
    "export",
    "low_rank",
    "models",
    "quantization",
    "runtime",
    "saving",
    "sparsity",
]

# The subpackages whose registered classes (wrappers, quantizers, schedules,
# losses, layers) saved models name: `tfcompress.saving` imports them so any
# file loads. `models` (the GGUF reader and its keras-hub model classes) is
# left out; `tfcompress.saving.load_model` imports it, like any tfcompress
# module a file names, when the file needs it.
SAVED_CLASS_SUBPACKAGES = ("distillation", "low_rank", "quantization", "sparsity")


def __getattr__(name):
    # Subpackages load on first use, so `tfcompress --help` and tools that
    # need one technique do not pay for TensorFlow's import up front.
    if name in __all__:
        module = importlib.import_module(f"tfcompress.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tfcompress' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
