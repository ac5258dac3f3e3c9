"""Each private Keras access tfcompress makes, checked on the installed Keras.

A failure here means the installed Keras moved something tfcompress relies
on: the message names it; fix tfcompress/core/_keras_internals.py.
"""

import pickle
import zipfile

import keras
import numpy as np
import pytest

from tfcompress.core import _keras_internals as internals

import testing


def _explain(what):
    return (
        f"Keras {keras.__version__} changed {what}; tfcompress/core/_keras_internals.py "
        "must follow it."
    )


def test_functional_nodes_and_keys():
    model = testing.functional_dense()
    dense = model.get_layer("dense_1")
    nodes = internals.inbound_nodes(dense)
    assert isinstance(nodes, list) and len(nodes) == 1, _explain("Layer._inbound_nodes")
    assert nodes[0].operation is dense, _explain("Node.operation")
    assert isinstance(internals.outbound_nodes(dense), list), _explain("Layer._outbound_nodes")
    assert internals.call_count(dense) == 1 and internals.call_count(keras.layers.Dense(2)) == 0
    keys = internals.node_keys(model)
    assert internals.node_key(dense, 0) in keys, _explain("the Functional._nodes key format")
    assert internals.parse_node_key(internals.node_key(dense, 3)) == (id(dense), 3)
    for key in keys:
        internals.parse_node_key(key)
    with pytest.raises(internals.KerasInternalsError, match="stores functional node keys as 'x'"):
        internals.parse_node_key("x")


def test_functional_operations():
    model = testing.functional_dense()
    assert internals.has_graph(model) and not internals.has_graph(testing.subclassed())
    operations = internals.graph_operations(model)
    assert model.get_layer("logits") in operations, _explain("Functional._operations")
    by_depth = internals.operations_by_depth(model)
    assert any(model.get_layer("logits") in ops for ops in by_depth.values()), _explain(
        "Functional._operations_by_depth"
    )
    sequential = testing.sequential_cnn()
    graph = internals.sequential_graph(sequential)
    assert internals.has_graph(graph), _explain("Sequential._functional")
    assert internals.outputs_struct(model) is not None, _explain("Functional._outputs_struct")
    assert internals.outputs_struct(testing.subclassed()) is None


def test_keras_history_and_symbolic_arguments():
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(2)
    outputs = dense(inputs)
    history = internals.keras_history(outputs)
    assert history.operation is dense and history.node_index == 0, _explain(
        "KerasTensor._keras_history"
    )
    other = keras.layers.Dense(2)
    internals.set_keras_history(outputs, other, 5)
    assert internals.keras_history(outputs).operation is other
    assert internals.keras_history(outputs).node_index == 5
    node = internals.inbound_nodes(dense)[0]
    arguments = internals.symbolic_arguments(*node.arguments.args, **node.arguments.kwargs)
    assert arguments.args[0] is inputs, _explain(
        "keras.src.ops.symbolic_arguments.SymbolicArguments"
    )


def test_private_attribute_errors_name_the_version():
    with pytest.raises(
        internals.KerasInternalsError, match=r"Keras 3\.\d+.* has no `object\._inbound_nodes`"
    ):
        internals.inbound_nodes(object())


def test_tracked_layers_and_unlocked_tracker():
    block = testing.Block(4)
    block.build((None, 4))
    assert block.inner in internals.tracked_layers(block), _explain("Layer._layers")
    with pytest.raises(ValueError, match="cannot add new elements of state"):
        block.extra = keras.layers.Dense(2)
    with internals.unlocked(block):
        block.extra = keras.layers.Dense(2)
    assert block.extra in internals.tracked_layers(block), _explain("Layer._tracker.unlock/lock")
    with pytest.raises(ValueError, match="cannot add new elements of state"):
        block.more = keras.layers.Dense(2)


def test_set_list_items_keeps_list_attributes_saveable(tmp_path):
    model = testing.net()
    x, _ = testing.net_data(2)
    blocks = model.blocks
    internals.set_list_items(blocks, [blocks[1], blocks[0]])
    assert model.blocks[0] is blocks[0] and len(model.blocks) == 2
    path = str(tmp_path / "net.weights.h5")
    model.save_weights(path)
    assert np.all(np.isfinite(np.asarray(model(x))))


def test_stateless_scope():
    assert internals.current_stateless_scope() is None
    dense = keras.layers.Dense(2)
    dense.build((None, 2))
    with keras.StatelessScope(state_mapping=[(dense.kernel, keras.ops.zeros((2, 2)))]) as scope:
        assert internals.current_stateless_scope() is scope, _explain(
            "keras.src.backend.get_stateless_scope"
        )


def test_unpickler_round_trips_a_model():
    model = testing.subclassed()
    unpickle = internals.unpickler(type(model))
    assert callable(unpickle), _explain("Model._unpickle_model")
    copy = pickle.loads(pickle.dumps(model))
    testing.assert_outputs_close(
        model(np.ones((1, 6), "float32")), copy(np.ones((1, 6), "float32"))
    )


class _WithAsset(keras.layers.Layer):
    """Saves a file as a Keras asset, as e.g. a tokenizer's vocabulary is."""

    def save_assets(self, dir_path):
        with open(f"{dir_path}/note.txt", "w") as file:
            file.write("hello")

    def load_assets(self, dir_path):
        with open(f"{dir_path}/note.txt") as file:
            self.note = file.read()


def test_asset_file_naming(tmp_path):
    model = keras.Sequential([keras.Input((2,)), _WithAsset(name="with_asset")])
    path = str(tmp_path / "m.keras")
    model.save(path)
    names = zipfile.ZipFile(path).namelist()
    assets = [n for n in names if internals.is_asset_file(n, "note.txt")]
    assert assets, _explain(f"where .keras files keep assets (entries: {names})")
    assert not internals.is_asset_file("config.json", "note.txt")
    restored = keras.saving.load_model(path, custom_objects={"_WithAsset": _WithAsset})
    assert restored.layers[0].note == "hello"


def test_bookkeeping_attributes_exist_on_models():
    model = testing.functional_dense()
    model.compile("adam", "mse")
    found = {name for name in internals.BOOKKEEPING_ATTRIBUTES if hasattr(model, name)}
    expected = {
        "_layers",
        "_inbound_nodes",
        "_outbound_nodes",
        "_operations",
        "_operations_by_depth",
        "_inputs_struct",
        "_outputs_struct",
        "optimizer",
    }
    assert expected <= found, _explain(f"model attributes: missing {expected - found}")


@pytest.fixture(scope="module")
def causal_lms():
    from tests._tiny_causal_lm import tiny_gpt2, tiny_llama3

    return {"gpt2": tiny_gpt2(sequence_length=16), "llama": tiny_llama3(sequence_length=16)}


def _hub_attentions(causal_lms):
    return {
        kind: internals.block_sublayers(lm.backbone.transformer_layers[0]).attention
        for kind, lm in causal_lms.items()
    }


def test_attention_projections_of_keras_and_keras_hub_attention(causal_lms):
    mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, name="mha")
    x = np.ones((1, 4, 6), "float32")
    mha(x, x)
    attentions = {"keras": mha, **_hub_attentions(causal_lms)}
    for kind, attention in attentions.items():
        projections = internals.attention_projections(attention)
        assert all(isinstance(p, keras.layers.EinsumDense) for p in projections), _explain(
            f"the projections of {kind} attention ({type(attention).__name__})"
        )
        kernels = {id(v) for p in projections for v in p.trainable_weights}
        assert kernels <= {id(v) for v in attention.trainable_weights}
        assert len({id(p) for p in projections}) == 4
    mha_projections = internals.attention_projections(mha)
    assert mha_projections.query is mha.query_dense and mha_projections.output is mha.output_dense
    llama = attentions["llama"]
    query, key = internals.attention_projections(llama)[:2]
    assert query.kernel.shape[1] == llama.num_query_heads, _explain("LlamaAttention._query_dense")
    assert key.kernel.shape[1] == llama.num_key_value_heads, _explain("LlamaAttention._key_dense")


def test_attention_projections_errors():
    with pytest.raises(ValueError, match="must be built.*unbuilt MultiHeadAttention 'fresh'"):
        internals.attention_projections(
            keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, name="fresh")
        )
    dense = keras.layers.Dense(2)
    dense.build((None, 2))
    with pytest.raises(
        internals.KerasInternalsError,
        match=r"Keras 3\.\d+.* has no `Dense\._query_dense` \(an attention projection\)",
    ):
        internals.attention_projections(dense)


def _bert_block():
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16
    )
    return backbone.transformer_layers[0]


def test_block_sublayers_of_keras_hub_blocks(causal_lms):
    blocks = {kind: lm.backbone.transformer_layers[0] for kind, lm in causal_lms.items()}
    blocks["bert"] = _bert_block()
    for kind, block in blocks.items():
        sublayers = internals.block_sublayers(block)
        what = f"the sublayers of a {kind} block ({type(block).__name__})"
        assert isinstance(sublayers.attention, keras.layers.Layer), _explain(what)
        assert sublayers.attention in block._layers, _explain(what)
        for name in ("up", "down") + (("gate",) if kind == "llama" else ()):
            assert isinstance(getattr(sublayers, name), keras.layers.Dense), _explain(what)
        assert sublayers.attention_norm is not sublayers.ffn_norm
        for norm in (sublayers.attention_norm, sublayers.ffn_norm):
            assert hasattr(norm, "gamma") or hasattr(norm, "scale"), _explain(what)
        assert sublayers.down.units == sublayers.up.kernel.shape[0], _explain(what)
        if kind != "llama":
            assert sublayers.gate is None
    llama = internals.block_sublayers(blocks["llama"])
    assert llama.up.units == llama.gate.units == llama.down.kernel.shape[0]
    with pytest.raises(
        internals.KerasInternalsError,
        match=r"keras-hub 0\.\d+.* has no `Dense\._self_attention_layer`",
    ):
        internals.block_sublayers(keras.layers.Dense(2))


def test_rotary_cos_sin_matches_the_layer(causal_lms):
    attention = _hub_attentions(causal_lms)["llama"]
    rotary = attention.rotary_embedding_layer
    x = np.random.default_rng(0).normal(size=(1, 5, 16)).astype("float32")
    cos, sin = internals.rotary_cos_sin(rotary, keras.ops.zeros((1, 5, 16)), 0)
    cos, sin = np.asarray(cos).reshape(5, 16), np.asarray(sin).reshape(5, 16)
    half = np.concatenate([-x[..., 8:], x[..., :8]], axis=-1)
    expected = np.asarray(rotary(x[:, :, None, :]))[:, :, 0, :]
    np.testing.assert_allclose(
        x[0] * cos + half[0] * sin,
        expected[0],
        atol=1e-5,
        err_msg=_explain("RotaryEmbedding._compute_cos_sin_embedding"),
    )


def test_build_cache_feeds_call_with_cache(causal_lms):
    tokens = np.array([[5, 7, 9, 0, 0, 0]], "int32")
    for kind, lm in causal_lms.items():
        cache = internals.build_cache(lm, keras.ops.convert_to_tensor(tokens))
        assert tuple(cache.shape[:4]) == (1, lm.backbone.num_layers, 2, 6), _explain(
            f"CausalLM._build_cache of {kind}"
        )
        step, _, _ = lm.call_with_cache(tokens[:, 2:3], cache, 2)
        full = lm({"token_ids": tokens[:, :3], "padding_mask": np.ones((1, 3), "int32")})
        np.testing.assert_allclose(
            np.asarray(step)[0, 0],
            np.asarray(full)[0, 2],
            atol=1e-4,
            err_msg=_explain(f"the cache CausalLM._build_cache seeds for {kind}"),
        )


def test_kernel_variable():
    dense, einsum = keras.layers.Dense(3), keras.layers.EinsumDense("ab,bc->ac", (3,))
    for layer in (dense, einsum):
        layer.build((None, 4))
        assert internals.kernel_variable(layer) is layer.kernel, _explain(
            f"{type(layer).__name__}._kernel"
        )
    dense.enable_lora(2)
    assert internals.kernel_variable(dense) is dense._kernel
    assert isinstance(internals.kernel_variable(dense), keras.Variable), _explain(
        "Dense._kernel with LoRA"
    )
    assert internals.kernel_variable(keras.layers.ReLU()) is None


def test_attention_gate():
    gated = keras.layers.MultiHeadAttention(2, 4, use_gate=True)
    gated(np.zeros((1, 3, 8), "float32"), np.zeros((1, 3, 8), "float32"))
    assert isinstance(internals.attention_gate(gated), keras.layers.EinsumDense), _explain(
        "MultiHeadAttention._gate_dense"
    )
    plain = keras.layers.MultiHeadAttention(2, 4)
    plain(np.zeros((1, 3, 8), "float32"), np.zeros((1, 3, 8), "float32"))
    assert internals.attention_gate(plain) is None


def test_llama_attention_classes():
    import keras_hub

    attention, rotary = internals.llama_attention_classes()
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=16,
        num_layers=1,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=16,
        intermediate_dim=8,
    )
    layer = internals.block_sublayers(backbone.transformer_layers[0]).attention
    assert type(layer) is attention, _explain("where keras-hub defines LlamaAttention")
    assert type(layer.rotary_embedding_layer) is rotary, _explain("LlamaRotaryEmbedding")


def test_cross_attention_sublayers_of_a_keras_hub_decoder():
    import keras_hub

    decoder = keras_hub.layers.TransformerDecoder(intermediate_dim=8, num_heads=2)
    x = np.zeros((1, 3, 8), "float32")
    decoder(x, x)
    attention, norm = internals.cross_attention_sublayers(decoder)
    assert attention.name == "cross_attention", _explain("TransformerDecoder cross-attention")
    assert norm.name == "cross_attention_layer_norm", _explain("its layer norm")
    alone = keras_hub.layers.TransformerDecoder(intermediate_dim=8, num_heads=2)
    alone(x)
    assert internals.cross_attention_sublayers(alone) is None
    assert internals.cross_attention_sublayers(keras.layers.Dense(2)) is None
