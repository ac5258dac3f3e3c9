"""Two ways to run a generator file's signatures with its K/V caches on LiteRT.

`CompiledModelEngine` keeps the caches in one set of LiteRT `TensorBuffer`s
bound as both the inputs and the outputs of every step, so no cache byte
crosses into Python and each DYNAMIC_UPDATE_SLICE writes its new slot in
place (LiteRT copies the whole operand first only when the output is a
different buffer: on SmolLM2 that copy was 23.6 MB, about 2 ms, per token).
`InterpreterEngine` uses the
`Interpreter`'s signature runners, which copy every cache in and out of
numpy at every call: 2x the cache bytes per token. It works with every
interpreter `tfcompress.runtime.load` supports.
"""

import contextlib
import os
import tempfile

import numpy as np

from tfcompress.runtime.interpreter import _interpreter_class


def cache_names(num_layers):
    return [f"kv_cache_{kind}_{i}" for i in range(num_layers) for kind in "kv"]


@contextlib.contextmanager
def quiet_native_logs(enabled=True):
    """Sends file descriptor 2 to a temp file (LiteRT's C++ INFO lines); replays it on error."""
    if not enabled:
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            os.write(2, sink.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class CompiledModelEngine:
    """Runs signatures with `ai_edge_litert.compiled_model.CompiledModel` on in-place cache buffers.

    Binding a cache's input and output to one buffer is sound for generator
    files: each output cache is the DYNAMIC_UPDATE_SLICE of its input cache,
    the only op that reads that input.
    """

    name = "compiled_model"

    def __init__(self, path, signatures, num_layers, num_threads=None, quiet=True):
        # Importing the module creates LiteRT's environment, which logs.
        with quiet_native_logs(quiet):
            from ai_edge_litert.compiled_model import CompiledModel
            from ai_edge_litert.hardware_accelerator import HardwareAccelerator
            from ai_edge_litert.options import CpuOptions, Options

            options = Options(
                hardware_accelerators=HardwareAccelerator.CPU,
                cpu_options=CpuOptions(num_threads=num_threads or 0),
            )
            self._model = CompiledModel.from_file(str(path), options=options)
            self._names = cache_names(num_layers)
            self._caches = {
                n: self._model.create_output_buffer_by_name("decode", n) for n in self._names
            }
            self._io = {
                key: (
                    self._model.create_input_buffer_by_name(key, "tokens"),
                    self._model.create_input_buffer_by_name(key, "input_pos"),
                )
                for key in signatures
            }
            self._logits = self._model.create_output_buffer_by_name("decode", "logits")
        details = self._model.get_output_tensor_details("decode")
        # Per cache: a pruned model's layers may keep different head counts.
        self._cache_shapes = {n: tuple(details[n]["shape"]) for n in self._names}
        self._logits_size = int(np.prod(details["logits"]["shape"]))
        # Buffer lists in each signature's tensor order, built once:
        # run_by_index then converts nothing per step.
        self._calls = {}
        listing = self._model.get_signature_list()
        for key in signatures:
            token_buffer, position_buffer = self._io[key]
            by_name = {"tokens": token_buffer, "input_pos": position_buffer, **self._caches}
            outputs = dict(self._caches, logits=self._logits)
            self._calls[key] = (
                self._model.get_signature_index(key),
                [by_name[name] for name in listing[key]["inputs"]],
                [outputs[name] for name in listing[key]["outputs"]],
            )
        self.reset()

    def reset(self):
        for name, buffer in self._caches.items():
            buffer.write(np.zeros(self._cache_shapes[name], np.float32))

    def run(self, signature, tokens, positions):
        """Runs `signature`; returns the logits `[V]` for "decode", else None."""
        token_buffer, position_buffer = self._io[signature]
        token_buffer.write(tokens)
        position_buffer.write(positions)
        self._model.run_by_index(*self._calls[signature])
        if signature == "decode":
            return self._logits.read(self._logits_size, np.float32)
        return None


class InterpreterEngine:
    """Runs signatures with the `Interpreter`'s signature runners; caches live in numpy."""

    name = "interpreter"

    def __init__(self, path, signatures, num_layers, num_threads=None, quiet=True, backend=None):
        self.backend, interpreter_class = _interpreter_class(backend)
        with quiet_native_logs(quiet):
            self._interpreter = interpreter_class(model_path=str(path), num_threads=num_threads)
            self._runners = {key: self._interpreter.get_signature_runner(key) for key in signatures}
        self._names = cache_names(num_layers)
        details = self._runners["decode"].get_input_details()
        # Per cache: a pruned model's layers may keep different head counts.
        self._cache_shapes = {n: tuple(int(d) for d in details[n]["shape"]) for n in self._names}
        self.reset()

    def reset(self):
        self._caches = {n: np.zeros(self._cache_shapes[n], np.float32) for n in self._names}

    def run(self, signature, tokens, positions):
        outputs = self._runners[signature](tokens=tokens, input_pos=positions, **self._caches)
        self._caches = {n: outputs[n] for n in self._names}
        if signature == "decode":
            return outputs["logits"].reshape(-1)
        return None


ENGINES = {"compiled_model": CompiledModelEngine, "interpreter": InterpreterEngine}


def create_engine(engine, path, signatures, num_layers, num_threads, quiet):
    """The engine named `engine`; "auto" takes CompiledModel when ai-edge-litert has it."""
    if engine == "auto":
        try:
            return CompiledModelEngine(path, signatures, num_layers, num_threads, quiet)
        except ImportError:
            return InterpreterEngine(path, signatures, num_layers, num_threads, quiet)
    return ENGINES[engine](path, signatures, num_layers, num_threads, quiet)
