"""The private LiteRT interpreter API tfcompress uses, checked on the installed release."""

import pytest

from tfcompress import runtime
from tfcompress.runtime import _litert_internals as internals


def test_ops_details_lists_ops_in_order(dense_tflite):
    interpreter = runtime.load(dense_tflite).interpreter
    ops = internals.ops_details(interpreter)
    assert [op["op_name"] for op in ops] == ["FULLY_CONNECTED", "FULLY_CONNECTED"], (
        "LiteRT changed `Interpreter._get_ops_details()`; update "
        "tfcompress/runtime/_litert_internals.py."
    )
    assert {"index", "inputs", "outputs"} <= set(ops[0])


def test_missing_method_is_named():
    with pytest.raises(
        internals.LiteRTInternalsError, match=r"builtins\.object has no `_get_ops_details\(\)`"
    ):
        internals.ops_details(object())
