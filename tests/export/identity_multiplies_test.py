import contextlib
import io

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfcompress.quantization as tq
from tfcompress.core.constants import ISOLATE_FACTOR
from tfcompress.export import flatbuffer
from tfcompress.export.identity_multiplies import remove_identity_multiplies
from tfcompress.runtime import load

import testing

_NEAR_ONE = ISOLATE_FACTOR


def _convert(model, optimize=False):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def _mul_factors(content):
    """The constant scalar factor of every MUL (None when it has none)."""
    model = flatbuffer.read_model(content)
    factors = []
    for graph in model.subgraphs:
        for op in graph.operators:
            if flatbuffer.op_name(model, op) != "MUL":
                continue
            constant = None
            for i in op.inputs:
                tensor = graph.tensors[int(i)]
                if flatbuffer.has_data(model, tensor) and tensor.type == 0:
                    data = np.frombuffer(
                        bytes(bytearray(model.buffers[tensor.buffer].data)), np.float32
                    )
                    if data.size == 1:
                        constant = float(data[0])
            factors.append(constant)
    return factors


def test_qat_bert_isolation_multiplies_are_dropped_with_equal_outputs():
    keras.utils.set_random_seed(0)
    qat = tq.quantize_model(testing.bert_backbone(num_layers=2))
    names = ("token_ids", "segment_ids", "padding_mask")
    inputs = [keras.Input((testing.SEQ,), dtype="int32", name=n) for n in names]
    model = keras.Model(inputs, qat(dict(zip(names, inputs)))["sequence_output"])
    batches = [testing.token_inputs(batch=8, seed=s) for s in range(3)]
    for batch in batches:
        model([batch[n] for n in names], training=True)
    stock = _convert(model, optimize=True)
    isolating = [f for f in _mul_factors(stock) if f is not None and abs(f - 1) < 1e-6]
    assert isolating, "the QAT model should carry isolation MULs"

    content, removed = remove_identity_multiplies(stock)

    assert removed == len(isolating)
    assert not [f for f in _mul_factors(content) if f is not None and abs(f - 1) < 1e-6]
    assert len(_mul_factors(content)) == len(_mul_factors(stock)) - removed
    before, after = load(stock), load(content)
    for batch in batches:
        feed = {n: batch[n][:1] for n in names}
        np.testing.assert_allclose(after.run(feed), before.run(feed), atol=1e-6)


def test_only_float_multiplies_by_about_one_that_are_not_outputs_go():
    x = keras.Input((16,), name="x")
    # tanh between the MULs so the converter cannot fold them together.
    isolated = keras.ops.multiply(keras.ops.tanh(x), _NEAR_ONE)  # removed
    halved = keras.ops.multiply(keras.ops.tanh(isolated), 0.5)  # kept: not one
    output = keras.ops.multiply(keras.ops.tanh(halved), _NEAR_ONE)  # kept: an output
    model = keras.Model(x, output)
    stock = _convert(model)
    assert sorted(_mul_factors(stock)) == [0.5, pytest.approx(_NEAR_ONE), pytest.approx(_NEAR_ONE)]

    content, removed = remove_identity_multiplies(stock)

    assert removed == 1
    assert sorted(_mul_factors(content)) == [0.5, pytest.approx(_NEAR_ONE)]
    data = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    np.testing.assert_allclose(load(content).run(data), model.predict(data, verbose=0), rtol=1e-5)


def test_a_multiply_near_one_that_is_not_the_isolate_factor_stays():
    x = keras.Input((16,), name="x")
    nearly = keras.ops.multiply(keras.ops.tanh(x), 1.0 + 2.0**-20)  # a user's factor: kept
    model = keras.Model(x, keras.ops.tanh(nearly))
    stock = _convert(model)
    assert _mul_factors(stock) == [pytest.approx(1.0 + 2.0**-20)]

    assert remove_identity_multiplies(stock) == (stock, 0)


def test_model_without_them_comes_back_unchanged(dense_model):
    stock = _convert(dense_model)
    assert remove_identity_multiplies(stock) == (stock, 0)


def test_corrupt_flatbuffer_is_refused(tmp_path):
    path = tmp_path / "broken.tflite"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a valid TFLite flatbuffer"):
        remove_identity_multiplies(str(path))
