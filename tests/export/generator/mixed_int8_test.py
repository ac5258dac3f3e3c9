"""The mixed_int8 target: hybrid int8 kernels, outlier input channels through float matmuls."""

import numpy as np
import pytest

from tests import _tiny_causal_lm
from tfcompress.core._keras_internals import block_sublayers
from tfcompress.export import flatbuffer, to_tflite_generator
from tfcompress.export.generator.generator_checks import decode_steps
from tfcompress.export.generator.keras_reference import keras_step_logits

OUTLIERS = [3, 17]
CACHE = 64


def _llama_with_outlier_channels():
    """A tiny Llama whose norm gains blow up two hidden channels, as Llama's own do."""
    causal_lm = _tiny_causal_lm.tiny_llama3(seed=1)
    for block in causal_lm.backbone.transformer_layers:
        sublayers = block_sublayers(block)
        for norm in (sublayers.attention_norm, sublayers.ffn_norm):
            scale = norm.scale.numpy()
            scale[OUTLIERS] *= 20
            norm.scale.assign(scale)
    return causal_lm


@pytest.fixture(scope="module")
def llama():
    return _llama_with_outlier_channels()


@pytest.fixture(scope="module")
def exports(llama):
    return {
        target: to_tflite_generator(
            llama, target=target, cache_length=CACHE, prefill_lengths=(8,), verify=False
        )
        for target in ("dynamic_int8", "mixed_int8")
    }


def _fully_connected(content):
    """[(input producer op name, weight type, selected indices or None)] of decode's FCs."""
    model = flatbuffer.read_model(content)
    decode = model.subgraphs[0]
    producer = {out: op for op in decode.operators for out in op.outputs}
    found = []
    for op in decode.operators:
        if flatbuffer.op_name(model, op) != "FULLY_CONNECTED":
            continue
        weight = decode.tensors[op.inputs[1]]
        weight_op = producer.get(op.inputs[1])
        scale = 1.0
        if weight_op is not None and flatbuffer.op_name(model, weight_op) == "DEQUANTIZE":
            weight = decode.tensors[weight_op.inputs[0]]
            kind = "DEQUANTIZED_" + flatbuffer.type_name(weight)
        else:
            kind = flatbuffer.type_name(weight)
        if weight.quantization is not None and weight.quantization.scale is not None:
            scale = np.asarray(weight.quantization.scale).reshape(-1, 1)
        source = producer.get(op.inputs[0])
        source_name = None if source is None else flatbuffer.op_name(model, source)
        dtype = {"INT8": np.int8, "FLOAT16": np.float16}.get(
            flatbuffer.type_name(weight), np.float32
        )
        values = flatbuffer.constant_values(model, weight, dtype).reshape(weight.shape) * scale
        indices = None
        # A selection [k, in] has one nonzero per row: 1, or the norm gain
        # the converter folds into it.
        nonzero = values != 0
        if values.shape[0] < values.shape[1] and (nonzero.sum(axis=1) == 1).all():
            indices = sorted(np.nonzero(nonzero)[1].tolist())
        found.append((source_name, kind, indices))
    return found


def test_every_projection_stays_hybrid_int8_and_outliers_go_through_float(exports):
    ops = _fully_connected(exports["mixed_int8"].content)
    hybrid = [op for op in ops if op[1] == "INT8"]
    split = [op for op in ops if op[1] != "INT8"]
    # q/k/v and gate/up fused: 4 projections per block and the LM head, as in dynamic_int8.
    assert len(hybrid) == 2 * 4 + 1 == len(_fully_connected(exports["dynamic_int8"].content))
    assert split, ops
    # The side paths are float, stored as float16 when the converter had quantized them.
    assert all(op[1] in ("FLOAT32", "DEQUANTIZED_FLOAT16") for op in split)
    # The fused q/k/v and gate/up inputs of both blocks pick the planted
    # channels with a float one-hot matmul (no GATHER, which XNNPack leaves out).
    assert sum(op[2] == OUTLIERS for op in split) >= 2 * 2
    # and their hybrid kernels read activations with those channels subtracted
    # away (a 0/1 multiply would have been folded into the weights instead).
    assert sum(op[0] == "SUB" for op in hybrid) >= 2 * 2


def test_the_outlier_split_adds_no_op_outside_xnnpack(exports):
    from tfcompress.runtime.delegation import xnnpack_delegation

    mixed = xnnpack_delegation(exports["mixed_int8"].content)
    dynamic = xnnpack_delegation(exports["dynamic_int8"].content)
    assert mixed.not_delegated == dynamic.not_delegated, mixed.summary()
    assert mixed.partitions == dynamic.partitions
    assert mixed.delegated > dynamic.delegated


def test_logits_are_much_closer_to_keras_than_dynamic_int8(exports, llama):
    ids = list(range(10, 40))
    reference = keras_step_logits(llama, ids, CACHE)
    scale = np.abs(reference).max()
    error = {}
    for target, export in exports.items():
        logits = decode_steps(export.content, export.metadata, ids)
        error[target] = np.abs(logits - reference).mean() / scale
    # Measured: mean |diff| / max |logit| dynamic_int8 0.036 (int8_weights 0.034), mixed_int8 0.013.
    assert error["mixed_int8"] < 0.5 * error["dynamic_int8"], error
    assert error["mixed_int8"] < 0.02, error


def test_costs_little_size_over_dynamic_int8(exports):
    assert exports["mixed_int8"].size_bytes < 1.2 * exports["dynamic_int8"].size_bytes
    assert exports["mixed_int8"].metadata["target"] == "mixed_int8"


def test_without_outliers_nothing_is_split():
    plain = _tiny_causal_lm.tiny_llama3(seed=1)
    content = to_tflite_generator(
        plain, target="mixed_int8", cache_length=32, prefill_lengths=(8,)
    ).content
    assert {op[1] for op in _fully_connected(content)} == {"INT8"}
