"""The private LiteRT interpreter API tfcompress relies on, in one place.

`Interpreter` lists its tensors publicly but its ops only through
`_get_ops_details()`. The runtime imports no TensorFlow, so this lives here
rather than in `tfcompress/export/_tflite_internals.py`;
`tests/runtime/_litert_internals_test.py` fails with a clear message when a
release moves it. Seen on ai-edge-litert 2.3 and TensorFlow 2.21.
"""


class LiteRTInternalsError(RuntimeError):
    """A private LiteRT API tfcompress relies on is gone or changed."""


def ops_details(interpreter):
    """The interpreter's ops: dicts with "index", "op_name", "inputs", "outputs"."""
    method = getattr(interpreter, "_get_ops_details", None)
    if method is None:
        raise LiteRTInternalsError(
            f"{type(interpreter).__module__}.{type(interpreter).__name__} has no "
            "`_get_ops_details()`, which tfcompress relies on to list a model's ops. "
            "Install a LiteRT release tfcompress supports (ai-edge-litert 2.3), or "
            "update tfcompress/runtime/_litert_internals.py."
        )
    return method()
