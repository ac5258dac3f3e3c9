"""dequantize_weights_once: int8 kernels read as float, stored as int8 or float16."""

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from tfcompress.export import flatbuffer
from tfcompress.export.generator.weight_rewrites import dequantize_weights_once


def _hybrid(kernel):
    function = tf.function(
        lambda x: tf.matmul(x, tf.constant(kernel)),
        input_signature=[tf.TensorSpec([1, kernel.shape[0]], tf.float32)],
    ).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def _run(content, x):
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _rewritten(content, **kwargs):
    model = flatbuffer.read_model(content)
    dequantize_weights_once(model, **kwargs)
    return flatbuffer.pack(model)


def _weight_types(content):
    model = flatbuffer.read_model(content)
    graph = model.subgraphs[0]
    producer = {out: op for op in graph.operators for out in op.outputs}
    types = []
    for op in graph.operators:
        if flatbuffer.op_name(model, op) == "FULLY_CONNECTED":
            source = producer.get(op.inputs[1])
            tensor = graph.tensors[op.inputs[1] if source is None else source.inputs[0]]
            types.append(flatbuffer.type_name(tensor))
    return types


def test_side_kernels_stored_as_float16_are_smaller_and_closer_than_int8():
    rng = np.random.default_rng(0)
    # A mixed_int8 side path: few input channels, many outputs.
    kernel = rng.normal(size=(4, 512)).astype(np.float32)
    hybrid = _hybrid(kernel)
    x = rng.normal(size=(1, 4)).astype(np.float32)
    as_int8 = _rewritten(hybrid, only=[kernel])
    as_float16 = _rewritten(hybrid, only=[kernel], float16=True)
    assert _weight_types(as_int8) == ["INT8"] and _weight_types(as_float16) == ["FLOAT16"]
    exact = x @ kernel
    error = {
        name: np.abs(_run(content, x) - exact).max()
        for name, content in (("int8", as_int8), ("float16", as_float16))
    }
    assert error["float16"] < 0.2 * error["int8"], error
    assert len(as_float16) < len(as_int8)


def test_only_leaves_other_kernels_hybrid():
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(4, 512)).astype(np.float32)
    hybrid = _hybrid(kernel)
    other = rng.normal(size=(4, 512)).astype(np.float32)
    assert _weight_types(_rewritten(hybrid, only=[other], float16=True)) == ["INT8"]
