"""Loading and running `.tflite` flatbuffers with the LiteRT interpreter."""

import os
import pathlib
import warnings

import numpy as np

from tfcompress.runtime._litert_internals import ops_details
from tfcompress.runtime.tensors import dequantize, prepare_inputs

BACKENDS = ("ai_edge_litert", "tflite_runtime", "tensorflow")


def _interpreter_class(backend):
    """`(name, Interpreter class)` for `backend`, or the first importable one."""
    names = BACKENDS if backend is None else (backend,)
    errors = []
    for name in names:
        try:
            if name == "ai_edge_litert":
                from ai_edge_litert.interpreter import Interpreter
            elif name == "tflite_runtime":
                from tflite_runtime.interpreter import Interpreter
            else:
                import tensorflow as tf

                Interpreter = tf.lite.Interpreter
            return name, Interpreter
        # tflite_runtime built for numpy 1 fails at import with numpy 2 in
        # ways that are not always ImportError.
        except Exception as e:
            errors.append(f"{name}: {e}")
    raise ImportError(
        "No TFLite interpreter could be imported (" + "; ".join(errors) + "). "
        "Install one: `pip install ai-edge-litert`."
    )


def _read_model(model):
    """Returns `(flatbuffer bytes, path or None)` for a path or bytes."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), None
    if isinstance(model, (str, os.PathLike)):
        path = pathlib.Path(model)
        if not path.is_file():
            raise ValueError(
                f"`model` must be a .tflite file, bytes or a pathlib.Path. "
                f"Received: model={str(model)!r}, which is not an existing file."
            )
        return path.read_bytes(), str(path)
    raise TypeError(
        "`model` must be a path to a .tflite file (str or pathlib.Path) or the "
        f"flatbuffer bytes. Received: model of type {type(model).__name__}."
    )


def _checked_content(model):
    """`(flatbuffer bytes, path or None, "The file ..." / "The given bytes")`."""
    content, path = _read_model(model)
    where = f"The file {path!r}" if path else "The given bytes"
    _check_flatbuffer(content, where)
    return content, path, where


def _check_flatbuffer(content, where):
    # The interpreter verifies the flatbuffer too, but checking the file
    # identifier first gives a clear message for the common mistakes (an .h5,
    # a SavedModel file, an empty or HTML download) before native code runs.
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ValueError(
            f"{where} is not a valid TFLite flatbuffer: expected the file "
            f"identifier 'TFL3' at bytes 4..8, found {bytes(content[4:8])!r} "
            f"({len(content)} bytes in total). Export the model with "
            "`tfcompress.export.to_tflite`."
        )


def load(model, num_threads=None, backend=None):
    """Loads a `.tflite` model into a LiteRT interpreter.

    Args:
        model: path (`str` or `pathlib.Path`) to a `.tflite` file, or the
            flatbuffer `bytes`.
        num_threads: CPU threads for the interpreter; `None` lets it choose.
        backend: interpreter to use: `"ai_edge_litert"`, `"tflite_runtime"` or
            `"tensorflow"` (`tf.lite.Interpreter`). `None` takes the first
            importable in that order. Models with Flex ops need an interpreter
            linked with the Flex delegate; the pip builds of TF 2.21 and
            ai-edge-litert 2.3 have none.

    Returns:
        A `TFLiteModel`.

    Raises:
        ValueError: the file is missing, or is not a valid TFLite flatbuffer
            (wrong identifier, truncated, or rejected by the interpreter).
        TypeError: `model` is neither a path nor bytes.
        ImportError: no interpreter can be imported.

    Example:

    ```python
    model = tfcompress.runtime.load("model.tflite", num_threads=2)
    probabilities = model.run(images)
    ```
    """
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ValueError(
            f"`num_threads` must be a positive int or None. Received: num_threads={num_threads!r}"
        )
    if backend is not None and backend not in BACKENDS:
        raise ValueError(
            f"`backend` must be one of {BACKENDS} or None. Received: backend={backend!r}"
        )
    content, path, where = _checked_content(model)
    name, interpreter = _create(content, where, backend, num_threads=num_threads)
    return TFLiteModel(interpreter, content, name, path, num_threads)


def _create(content, where, backend, **options):
    """`(backend name, interpreter)` for `content`, created with `options`."""
    name, interpreter_class = _interpreter_class(backend)
    try:
        with warnings.catch_warnings():
            # tf.lite.Interpreter warns that it is deprecated on every creation;
            # it is only picked when asked for or when nothing else is installed.
            warnings.simplefilter("ignore", UserWarning)
            interpreter = interpreter_class(model_content=content, **options)
        return name, interpreter
    except (ValueError, RuntimeError) as e:
        raise ValueError(
            f"{where} is not a valid TFLite flatbuffer: the {name} interpreter rejected it ({e})."
        ) from e


class TFLiteModel:
    """A loaded `.tflite` model; create it with `tfcompress.runtime.load`.

    Float inputs to quantized (int8/uint8/int16) inputs are quantized with the
    input's scale and zero point, and quantized outputs are dequantized to
    float32, unless `run(..., raw=True)`. Inputs whose shape differs from the
    interpreter's current one (another batch size or sequence length) are
    resized before running.

    Attributes:
        backend: `"ai_edge_litert"`, `"tflite_runtime"` or `"tensorflow"`.
        model_content: the flatbuffer bytes.
        path: the file it was loaded from, or None.
        num_threads: the thread count it was created with.
    """

    def __init__(self, interpreter, model_content, backend, path=None, num_threads=None):
        self._interpreter = interpreter
        self.model_content = model_content
        self.backend = backend
        self.path = path
        self.num_threads = num_threads
        # Read before the first allocation: afterwards the default delegate
        # appends its own "DELEGATE" nodes to the node list.
        self._ops = [
            op["op_name"] for op in ops_details(interpreter) if op["op_name"] != "DELEGATE"
        ]
        self._signatures = interpreter.get_signature_list()
        self._runners = {}
        self._allocated = False

    @property
    def interpreter(self):
        """The LiteRT `Interpreter` itself, for tensor-level access by index."""
        return self._interpreter

    @property
    def signatures(self):
        """`{signature key: {"inputs": [names], "outputs": [names]}}`."""
        return {key: dict(value) for key, value in self._signatures.items()}

    @property
    def input_details(self):
        """Input tensor details (name, index, shape, dtype, quantization...).

        The names are tensor names (e.g. "serving_default_x:0"); `run` accepts
        them as well as the signature input names of `signatures`.
        """
        return self._interpreter.get_input_details()

    @property
    def output_details(self):
        """Output tensor details (name, index, shape, dtype, quantization...)."""
        return self._interpreter.get_output_details()

    def ops(self):
        """Returns the op names in execution order, e.g. `["CONV_2D", ...]`."""
        return list(self._ops)

    def tensor_dtypes(self):
        """Returns `{tensor name: numpy dtype name}` for every named tensor."""
        return {
            detail["name"]: np.dtype(detail["dtype"]).name
            for detail in self._interpreter.get_tensor_details()
        }

    def _runner(self, signature):
        if signature not in self._runners:
            self._runners[signature] = self._interpreter.get_signature_runner(signature)
        return self._runners[signature]

    def _pick_signature(self, signature):
        if signature is None:
            if len(self._signatures) > 1:
                raise ValueError(
                    "This model has several signatures; pass `signature=` one of "
                    f"{sorted(self._signatures)}."
                )
            return next(iter(self._signatures), None)
        if signature not in self._signatures:
            raise ValueError(
                f"`signature` must be one of {sorted(self._signatures)}. "
                f"Received: signature={signature!r}"
            )
        return signature

    def native_inputs(self, inputs, signature=None):
        """`inputs` converted once to the dtypes the model stores its inputs in.

        Float data for a quantized (int8/uint8/int16) input is quantized with
        that input's scale and zero point, as `run` does on every call;
        `run(result, signature=signature, raw=True)` then gives the same
        outputs (before dequantization) without converting anything, e.g.
        while timed.

        Returns:
            `{input name: numpy array}`, keyed as `run` accepts.
        """
        return self._feed(self._pick_signature(signature), inputs, raw=False)

    def _feed(self, key, inputs, raw):
        """`{input name: array}` for signature `key` (None: no signatures)."""
        if key is None:
            return prepare_inputs(inputs, {d["name"]: d for d in self.input_details}, raw)
        in_details = self._runner(key).get_input_details()
        if isinstance(inputs, dict):
            tensor_names = {detail["name"]: name for name, detail in in_details.items()}
            inputs = {tensor_names.get(k, k): v for k, v in inputs.items()}
        return prepare_inputs(inputs, in_details, raw)

    def run(self, inputs, signature=None, raw=False):
        """Runs the model on one batch.

        Args:
            inputs: one array (single-input models), a list of arrays in the
                order of the signature's inputs (`signatures[key]["inputs"]`;
                `input_details` for models without signatures), or a dict keyed
                by signature input name or tensor name.
            signature: signature key; needed only when there are several.
            raw: if True, feed and return tensors exactly as stored
                (no quantization of inputs, no dequantization of outputs).

        Returns:
            A numpy array for single-output models, else a dict keyed by the
            signature output names (tensor names without signatures).

        Raises:
            ValueError: unknown signature, missing or extra inputs.
            TypeError: float data for an integer (non-quantized) input.
            RuntimeError: the interpreter cannot prepare or run the model (e.g.
                Flex ops without the Flex delegate).
        """
        key = self._pick_signature(signature)
        feed = self._feed(key, inputs, raw)
        if key is None:
            if not self._allocated:
                self._interpreter.allocate_tensors()
                self._allocated = True
            details = self.input_details
            for detail in details:
                value = feed[detail["name"]]
                if tuple(value.shape) != tuple(detail["shape"]):
                    self._interpreter.resize_tensor_input(detail["index"], value.shape)
                    self._interpreter.allocate_tensors()
            for detail in details:
                self._interpreter.set_tensor(detail["index"], feed[detail["name"]])
            self._interpreter.invoke()
            outputs = {
                d["name"]: dequantize(self._interpreter.get_tensor(d["index"]), d, raw)
                for d in self.output_details
            }
        else:
            runner = self._runner(key)
            result = runner(**feed)
            out_details = runner.get_output_details()
            outputs = {
                name: dequantize(value, out_details[name], raw) for name, value in result.items()
            }
        if len(outputs) == 1:
            return next(iter(outputs.values()))
        return outputs
