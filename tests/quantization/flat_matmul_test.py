"""Dense/EinsumDense on 3-D inputs convert to int8 matmuls (with biases):
FULLY_CONNECTED with per-tensor weights, 1x1 CONV_2D with per-channel ones."""

import collections
import contextlib
import io

import keras
import numpy as np
import pytest

import tfcompress.quantization as tq
from tfcompress.quantization.default_quantize_config import DefaultQuantizeConfig
from tfcompress.quantization.flat_matmul_plan import FlatMatmul
from tfcompress.quantization.layer_call_plans import LayerCall

_LAYERS = [
    (
        lambda: keras.layers.EinsumDense("abc,cde->abde", (None, 4, 8), bias_axes="de"),
        (None, 5, 16),
    ),
    (lambda: keras.layers.EinsumDense("abcd,cde->abe", (None, 16), bias_axes="e"), (None, 5, 4, 8)),
    (lambda: keras.layers.Dense(12), (None, 5, 16)),
]


def _randomize(layer, seed=0):
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))


@pytest.mark.parametrize("make, shape", _LAYERS)
def test_flat_path_computes_what_the_layer_computes(make, shape):
    layer = make()
    layer.build(shape)
    _randomize(layer)
    wrapper = tq.QuantizeWrapper(layer, DefaultQuantizeConfig(["kernel"]))
    wrapper.build(shape)
    assert isinstance(wrapper.plan, FlatMatmul)
    x = np.random.default_rng(1).normal(size=(3,) + shape[1:]).astype("float32")
    wrapper(x, training=True)
    flat = np.asarray(wrapper(x))
    wrapper.plan = LayerCall(wrapper)  # the wrapped layer's own call, same quantizers
    np.testing.assert_allclose(flat, np.asarray(wrapper(x)), atol=1e-5)


@pytest.mark.parametrize("make, shape", _LAYERS)
def test_per_channel_flat_path_quantizes_each_output_channel(make, shape):
    import math

    layer = make()
    layer.build(shape)
    _randomize(layer)
    config = DefaultQuantizeConfig(["kernel"], weight_per_axis=True, quantize_output=False)
    wrapper = tq.QuantizeWrapper(layer, config)
    wrapper.build(shape)
    assert wrapper.plan.per_channel
    _, in_shape, out_shape = wrapper.plan.spec
    kernel = layer.kernel.numpy().reshape(math.prod(in_shape), math.prod(out_shape))
    scale = np.abs(kernel).max(axis=0) / 127.0  # narrow symmetric int8, one scale per column
    quantized = np.round(kernel / scale) * scale
    x = np.random.default_rng(1).normal(size=(3,) + shape[1:]).astype("float32")
    bias = np.broadcast_to(layer.bias.numpy(), out_shape).reshape(-1)
    expected = (x.reshape(-1, kernel.shape[0]) @ quantized + bias).reshape(
        (3,) + shape[1 : -len(in_shape)] + out_shape
    )
    np.testing.assert_allclose(np.asarray(wrapper(x)), expected, rtol=1e-4, atol=1e-4)
    # Training runs a matmul instead of the 1x1 convolution: same numbers.
    np.testing.assert_allclose(
        np.asarray(wrapper(x, training=True)), expected, rtol=1e-4, atol=1e-4
    )
    per_tensor = tq.QuantizeWrapper(layer, DefaultQuantizeConfig(["kernel"], quantize_output=False))
    per_tensor.build(shape)
    float_out = np.asarray(layer(x))
    # Per-channel is closer to float than one scale for the whole kernel.
    assert (
        np.abs(np.asarray(wrapper(x)) - float_out).mean()
        < np.abs(np.asarray(per_tensor(x)) - float_out).mean()
    )


def test_gelu_dense_quantizes_its_matmul_output():
    layer = keras.layers.Dense(12, activation="gelu")
    layer.build((None, 5, 16))
    wrapper = tq.QuantizeWrapper(layer, DefaultQuantizeConfig(["kernel"]))
    wrapper.build((None, 5, 16))
    assert wrapper.plan.pre_activation is not None
    relu = keras.layers.Dense(12, activation="relu")
    relu.build((None, 5, 16))
    wrapper = tq.QuantizeWrapper(relu, DefaultQuantizeConfig(["kernel"]))
    wrapper.build((None, 5, 16))
    assert wrapper.plan.pre_activation is None  # TFLite fuses ReLU into the FC


def test_tiny_bert_with_biases_converts_every_matmul_to_int8():
    """Non-zero biases (as in pretrained checkpoints) used to leave the
    query/key/value and FFN matmuls float: the bias ADD after the RESHAPE the
    converter inserts was not fused, so the FC output had no range."""
    import keras_hub
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    keras.utils.set_random_seed(0)
    seq = 8
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=seq,
    )
    for variable in backbone.weights:
        if variable.path.endswith("bias"):
            variable.assign(np.full(variable.shape, 0.1, "float32"))
    qat = tq.quantize_model(backbone)
    names = ("token_ids", "segment_ids", "padding_mask")
    inputs = [keras.Input((seq,), dtype="int32", name=n) for n in names]
    model = keras.Model(inputs, qat(dict(zip(names, inputs)))["sequence_output"])
    data = [
        np.random.randint(1, 50, (4, seq)).astype("int32"),
        np.zeros((4, seq), "int32"),
        np.ones((4, seq), "int32"),
    ]
    model(data, training=True)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with contextlib.redirect_stdout(io.StringIO()):
        interpreter = Interpreter(model_content=converter.convert())
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    kinds = collections.Counter(
        (op["op_name"], np.dtype(details[op["inputs"][0]]["dtype"]).name)
        for op in interpreter._get_ops_details()
        if op["op_name"] in ("FULLY_CONNECTED", "CONV_2D", "GELU", "BATCH_MATMUL")
    )
    # The attention matmuls stay float: an int8 probabilities x values
    # BATCH_MATMUL is not run by XNNPack (see `isolate_input`).
    assert kinds == {("CONV_2D", "int8"): 6, ("GELU", "int8"): 1, ("BATCH_MATMUL", "float32"): 2}, (
        kinds
    )
    # Per-output-channel int8 weights: the matmuls run as 1x1 CONV_2D, which
    # takes them (FULLY_CONNECTED does not from the converter).
    for op in interpreter._get_ops_details():
        if op["op_name"] == "CONV_2D":
            weights = details[op["inputs"][1]]
            assert len(weights["quantization_parameters"]["scales"]) == weights["shape"][0] > 1
