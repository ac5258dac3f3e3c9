import contextlib
import io

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from tfcompress import export
from tfcompress.export import flatbuffer
from tfcompress.export.attention_masks import additive_attention_masks
from tfcompress.runtime import load

import testing


def _stock(model):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def _bert(dropout):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=100,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=16,
        dropout=dropout,
    )
    names = ("token_ids", "segment_ids", "padding_mask")
    inputs = [keras.Input((16,), dtype="int32", name=name) for name in names]
    outputs = backbone(dict(zip(names, inputs)))["sequence_output"]
    return keras.Model(inputs, outputs)


def _feeds(bert_inputs):
    batch = bert_inputs(n=6)
    batch["padding_mask"][0] = 0  # every key masked: a uniform softmax row
    batch["token_ids"][0] = 0
    return [{k: v[i : i + 1] for k, v in batch.items()} for i in range(6)]


def _ops(content):
    return flatbuffer.op_names(flatbuffer.read_model(content))


def _delegate_partitions(content):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    return sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())


@pytest.mark.parametrize(
    "dropout, selects_per_block",
    # Without dropout MultiHeadAttention calls ops.dot_product_attention (one
    # select); with dropout, the Softmax layer (a second select zeroes masked
    # probabilities).
    [(0.0, 1), (0.1, 2)],
)
def test_bert_masks_become_add_and_mul_with_identical_outputs(
    bert_inputs, dropout, selects_per_block
):
    stock = _stock(_bert(dropout))
    assert _ops(stock).count("SELECT_V2") >= 2 * selects_per_block

    content, count = additive_attention_masks(stock)

    assert count == 2 * selects_per_block
    ops = _ops(content)
    assert "LOGICAL_AND" not in ops and "FILL" not in ops
    # What is left: the embeddings' id clamping (int32) and one select per mask
    # kind computing the bias / keep tensors once, before the first block.
    select_outputs = [
        flatbuffer.type_name(graph.tensors[op.outputs[0]])
        for model in [flatbuffer.read_model(content)]
        for graph in model.subgraphs
        for op in graph.operators
        if flatbuffer.op_name(model, op) == "SELECT_V2"
    ]
    assert select_outputs.count("FLOAT32") == selects_per_block
    assert ops.count("ADD") == _ops(stock).count("ADD") + 2
    assert _delegate_partitions(content) < _delegate_partitions(stock)
    before, after = load(stock), load(content)
    for feed in _feeds(bert_inputs):
        expected, actual = before.run(feed), after.run(feed)
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


def test_rewrites_false_keeps_the_converters_graph(bert_inputs):
    model = _bert(0.1)
    sample = bert_inputs(n=4)

    result = export.to_tflite(model, target="float32", sample=sample, rewrites=False)
    rewritten = export.to_tflite(model, target="float32", sample=sample)

    assert result.rewrites == {} and rewritten.rewrites["attention_masks"] == 4
    assert result.ops != rewritten.ops
    assert result.checks["outputs_match"]["passed"]
    with pytest.raises(TypeError, match="`rewrites` must be a bool"):
        export.to_tflite(model, target="float32", sample=sample, rewrites="no")


@pytest.mark.parametrize("target", ["float32", "float16", "dynamic_int8"])
def test_to_tflite_rewrites_masks_and_matches_keras(bert_inputs, target):
    # float16 stores the mask constants in float16 behind a DEQUANTIZE.
    model = _bert(0.1)
    sample = bert_inputs(n=4)

    result = export.to_tflite(model, target=target, sample=sample)

    assert result.rewrites["attention_masks"] == 4
    assert "LOGICAL_AND" not in result.ops
    assert result.ops.count("SELECT_V2") == 2 + 2  # the ids' clamps + bias / keep
    assert result.checks["outputs_match"]["passed"]
    # No op is left without readers (float16 keeps the mask constants behind
    # a DEQUANTIZE that the rewrite must remove with the select).
    model = flatbuffer.read_model(result.tflite_bytes)
    graph = model.subgraphs[0]
    read = {int(t) for op in graph.operators for t in op.inputs} | {int(t) for t in graph.outputs}
    dead = [
        flatbuffer.op_name(model, op)
        for op in graph.operators
        if not set(map(int, op.outputs)) & read
    ]
    assert dead == []


def test_model_without_masks_comes_back_unchanged(dense_model):
    stock = _stock(dense_model)
    content, count = additive_attention_masks(stock)

    assert count == 0
    assert content == stock


def test_select_not_read_by_softmax_is_kept():
    """A masked fill that is an output (not a softmax input) keeps its value."""
    scores = keras.Input((4, 8), name="scores")
    keep = keras.Input((4, 8), dtype="bool", name="keep")
    masked = keras.ops.where(keep, scores, -1e9)
    probabilities = keras.ops.softmax(keras.ops.where(keep, scores, -2e9), axis=-1)
    content, count = additive_attention_masks(
        _stock(keras.Model([scores, keep], [masked, probabilities]))
    )

    assert count == 1
    runner = load(content)
    x = np.random.default_rng(0).normal(size=(1, 4, 8)).astype(np.float32)
    m = np.random.default_rng(1).random((1, 4, 8)) > 0.5
    outputs = sorted(runner.run({"scores": x, "keep": m}).values(), key=np.min)
    np.testing.assert_array_equal(outputs[0], np.where(m, x, np.float32(-1e9)))
    expected = np.exp(np.where(m, x, -np.inf) - np.where(m, x, -np.inf).max(-1, keepdims=True))
    np.testing.assert_allclose(outputs[1], expected / expected.sum(-1, keepdims=True), atol=1e-6)


def test_files_with_weights_after_the_flatbuffer_are_left_alone(bert_inputs):
    """Files over 2 GB keep weights at offsets `pack` would drop."""
    model = flatbuffer.read_model(_stock(_bert(0.0)))
    buffer = next(b for b in model.buffers if b.data is not None and len(b.data) > 64)
    buffer.offset, buffer.size, buffer.data = 1 << 20, len(buffer.data), None
    content = flatbuffer.pack(model)

    assert additive_attention_masks(content) == (content, 0)
    assert export.remove_identity_multiplies(content) == (content, 0)


def test_corrupt_flatbuffer_is_refused():
    with pytest.raises(ValueError, match="not a valid TFLite flatbuffer"):
        additive_attention_masks(b"not a model at all")


def test_causal_lm_exported_static_computes_its_mask_once():
    """GPT-2 blocks each merge a causal and a padding mask; with static shapes
    the converter folds the causal part, and the bias is made once for all."""
    keras.utils.set_random_seed(0)
    backbone = testing.gpt2_backbone(num_layers=3)
    sample = testing.token_inputs(batch=2, segments=False)
    sample["padding_mask"][1, 5:] = 0

    result = export.to_tflite(
        backbone, "float32", sample=sample, batch_size=1, sequence_length=testing.SEQ
    )

    assert result.rewrites["attention_masks"] == 3
    model = flatbuffer.read_model(result.tflite_bytes)
    graph = model.subgraphs[0]
    float_selects = [
        op
        for op in graph.operators
        if flatbuffer.op_name(model, op) == "SELECT_V2"
        and flatbuffer.type_name(graph.tensors[op.outputs[0]]) == "FLOAT32"
    ]
    assert len(float_selects) == 1
    assert result.checks["outputs_match"]["passed"]
    assert result.max_relative_error < 1e-4
