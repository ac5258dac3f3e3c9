"""Small stand-ins for a loaded LiteRT model, so tests need no interpreter."""

import numpy as np


class FakeLiteRT:
    """Anything with `.run`, like `tfcompress.runtime.TFLiteModel`.

    Args:
        fn: maps a batch to outputs.
        fixed_batch: if set, the input's `shape_signature` fixes the batch axis
            and `run` rejects other batch sizes, as an interpreter would.
        wrap: "list" or "dict" returns the output inside a one-element container.
    """

    backend = "fake"

    def __init__(self, fn, fixed_batch=None, wrap=None, feature_shape=(4,)):
        self.fn = fn
        self.fixed_batch = fixed_batch
        self.wrap = wrap
        self.batch_sizes = []
        signature = [fixed_batch or -1, *feature_shape]
        self.input_details = [
            {
                "name": "x",
                "shape": np.array([fixed_batch or 1, *feature_shape]),
                "shape_signature": np.array(signature),
            }
        ]
        self.output_details = []

    def run(self, inputs):
        inputs = np.asarray(inputs)
        self.batch_sizes.append(len(inputs))
        if self.fixed_batch and len(inputs) != self.fixed_batch:
            raise ValueError(f"batch must be {self.fixed_batch}, got {len(inputs)}")
        out = np.asarray(self.fn(inputs))
        if self.wrap == "list":
            return [out]
        if self.wrap == "dict":
            return {"logits": out}
        return out


class InterpreterModel:
    """A minimal `.run` adapter over a real LiteRT interpreter (one input, one output)."""

    backend = "litert-test-adapter"

    def __init__(self, flatbuffer):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=flatbuffer)
        self.input_details = self.interpreter.get_input_details()
        self.output_details = self.interpreter.get_output_details()

    def run(self, inputs):
        inputs = np.asarray(inputs, dtype=np.float32)
        index = self.input_details[0]["index"]
        self.interpreter.resize_tensor_input(index, inputs.shape)
        self.interpreter.allocate_tensors()
        self.interpreter.set_tensor(index, inputs)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_details[0]["index"])
