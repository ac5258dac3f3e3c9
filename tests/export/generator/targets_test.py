"""to_tflite_generator targets: sizes, one copy of the tied embedding, accuracy."""

import numpy as np
import pytest

from tests import _tiny_causal_lm
from tfcompress.export import ExportVerificationError, flatbuffer, to_tflite_generator
from tfcompress.export.generator.generator_checks import decode_steps
from tfcompress.export.generator.keras_reference import keras_step_logits

TARGETS = ("float32", "float16", "dynamic_int8", "int8_weights", "mixed_int8")


@pytest.fixture(scope="module")
def llama():
    return _tiny_causal_lm.tiny_llama3(seed=1)


@pytest.fixture(scope="module")
def exports(llama):
    return {
        target: to_tflite_generator(llama, target=target, cache_length=32, prefill_lengths=(8,))
        for target in TARGETS
    }


def _embedding_tables(content, vocabulary_size, hidden):
    """Distinct buffers holding a [V, hidden] constant, and their bytes."""
    model = flatbuffer.read_model(content)
    buffers = {
        t.buffer: flatbuffer.tensor_bytes(t)
        for sg in model.subgraphs
        for t in sg.tensors
        if flatbuffer.has_data(model, t) and list(t.shape) == [vocabulary_size, hidden]
    }
    return buffers, model


@pytest.mark.parametrize("target", TARGETS)
def test_tied_embedding_is_stored_once(exports, llama, target):
    backbone = llama.backbone
    buffers, model = _embedding_tables(
        exports[target].content, backbone.vocabulary_size, backbone.hidden_dim
    )
    assert len(buffers) == 1, buffers
    bytes_per_value = {
        "float32": 4,
        "float16": 2,
        "dynamic_int8": 1,
        "int8_weights": 1,
        "mixed_int8": 1,
    }[target]
    assert list(buffers.values()) == [
        backbone.vocabulary_size * backbone.hidden_dim * bytes_per_value
    ]
    # Read by the lookup (GATHER) in every signature and by the LM head, through
    # a DEQUANTIZE for float16 weights.
    readers = []
    for sg in model.subgraphs:
        direct = [
            op
            for op in sg.operators
            if any(i >= 0 and sg.tensors[i].buffer in buffers for i in op.inputs)
        ]
        for op in direct:
            if flatbuffer.op_name(model, op) == "DEQUANTIZE":
                readers += [
                    flatbuffer.op_name(model, c) for c in sg.operators if op.outputs[0] in c.inputs
                ]
            else:
                readers.append(flatbuffer.op_name(model, op))
    assert readers.count("GATHER") == 2
    assert readers.count("FULLY_CONNECTED") == 1


def test_quantized_files_are_smaller(exports):
    size = {target: exports[target].size_bytes for target in TARGETS}
    assert size["float16"] < 0.6 * size["float32"]
    assert size["dynamic_int8"] < 0.4 * size["float32"]
    assert size["int8_weights"] < 0.4 * size["float32"]
    assert size["mixed_int8"] < 0.4 * size["float32"]


@pytest.mark.parametrize("target", TARGETS[1:])
def test_quantized_logits_stay_close_to_keras(exports, llama, target):
    ids = [5, 80, 100, 7, 260, 40, 9, 11]
    reference = keras_step_logits(llama, ids, 32)
    logits = decode_steps(exports[target].content, exports[target].metadata, ids)
    relative = np.abs(logits - reference).max() / np.abs(reference).max()
    assert (
        relative
        < {
            "float16": 5e-3,
            "dynamic_int8": 0.1,
            "int8_weights": 0.05,
            "mixed_int8": 0.1,
        }[target]
    )
    assert np.mean(logits.argmax(-1) == reference.argmax(-1)) >= 0.75


def test_int8_weights_keeps_activations_float(exports):
    model = flatbuffer.read_model(exports["int8_weights"].content)
    decode = model.subgraphs[0]
    for op in decode.operators:
        if flatbuffer.op_name(model, op) == "FULLY_CONNECTED":
            assert flatbuffer.type_name(decode.tensors[op.inputs[1]]) == "FLOAT32"
    hybrid = flatbuffer.read_model(exports["dynamic_int8"].content)
    assert any(
        flatbuffer.type_name(hybrid.subgraphs[0].tensors[op.inputs[1]]) == "INT8"
        for op in hybrid.subgraphs[0].operators
        if flatbuffer.op_name(hybrid, op) == "FULLY_CONNECTED"
    )


def test_int8_weights_is_closer_to_keras_than_dynamic_int8(exports, llama):
    ids = list(range(10, 40))
    reference = keras_step_logits(llama, ids, 32)
    error = {
        target: np.abs(
            decode_steps(exports[target].content, exports[target].metadata, ids) - reference
        ).mean()
        for target in ("dynamic_int8", "int8_weights")
    }
    assert error["int8_weights"] < error["dynamic_int8"]


def test_verification_fails_loudly_when_logits_drift(llama):
    with pytest.raises(ExportVerificationError, match="logits_match"):
        to_tflite_generator(
            llama, target="dynamic_int8", cache_length=16, prefill_lengths=(4,), tolerance=1e-7
        )


def _gathered_tables(content):
    """{shape: (type, values)} of the constant tables GATHER reads in `decode`."""
    model = flatbuffer.read_model(content)
    decode = model.subgraphs[0]
    tables = {}
    for op in decode.operators:
        if flatbuffer.op_name(model, op) != "GATHER":
            continue
        readers = [c for c in decode.operators if op.outputs[0] in c.inputs]
        assert all(flatbuffer.op_name(model, c) != "DEQUANTIZE" for c in readers)
        table = decode.tensors[op.inputs[0]]
        kind = flatbuffer.type_name(table)
        dtype = np.float32 if kind == "FLOAT32" else np.int8
        tables.setdefault(tuple(int(d) for d in table.shape), []).append(
            (kind, flatbuffer.constant_values(model, table, dtype))
        )
    return tables


@pytest.mark.parametrize("target", ("dynamic_int8", "int8_weights"))
def test_int8_targets_gather_the_float_rotary_tables(llama, target):
    # 128 positions x head dim 16 is over the converter's 1024-value threshold
    # for quantizing a constant: without the rewrite cos/sin become int8.
    def export(t):
        return to_tflite_generator(
            llama, target=t, cache_length=128, prefill_lengths=(8,), verify=False
        ).content

    tables = _gathered_tables(export(target))
    rotary = tables[(128, 16)]
    reference = _gathered_tables(export("float32"))[(128, 16)]
    assert [kind for kind, _ in rotary] == ["FLOAT32", "FLOAT32"]
    for (_, values), (_, expected) in zip(rotary, reference):
        np.testing.assert_array_equal(values, expected)
    scales = tables[(llama.backbone.vocabulary_size, 1)]
    assert [kind for kind, _ in scales] == ["FLOAT32"]
