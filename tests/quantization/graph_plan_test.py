import keras

from tfcompress.cli.digits import build_digits_cnn
from tfcompress.quantization.graph_plan import Plan, plan_graph


def _names(model, ids):
    return sorted(layer.name for layer in model.layers if id(layer) in ids)


def test_conv_bn_relu_folds_and_quantizes_after_the_relu():
    model = build_digits_cnn(pooled=True)
    plan = plan_graph(
        model, lambda layer: not isinstance(layer, keras.layers.InputLayer), Plan(), top_level=True
    )
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert [plan.fold[id(c)] for c in convs] == bns
    assert plan.folded_bn == {id(b) for b in bns}
    assert plan.no_output == {id(c) for c in convs}
    assert plan.quantize_input == {id(convs[0])}


def test_no_fold_when_the_conv_output_branches_or_is_unselected():
    inputs = keras.Input((8, 8, 1))
    conv = keras.layers.Conv2D(4, 3)
    x = conv(inputs)
    bn = keras.layers.BatchNormalization()
    model = keras.Model(inputs, [bn(x), x])
    assert plan_graph(model, lambda layer: True, Plan(), top_level=True).fold == {}
    single = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()]
    )
    plan = plan_graph(
        single, lambda layer: isinstance(layer, keras.layers.Conv2D), Plan(), top_level=True
    )
    assert plan.fold == {}


def test_relu_layer_after_dense_moves_the_output_quantizer():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4), keras.layers.ReLU(), keras.layers.Dense(2)]
    )
    plan = plan_graph(model, lambda layer: True, Plan(), top_level=True)
    assert _names(model, plan.no_output) == [model.layers[0].name]


def test_outputs_read_only_by_layer_normalization_stay_float():
    inputs = keras.Input((4, 8))
    summed = keras.layers.Add(name="sum")([keras.layers.Dense(8, name="proj")(inputs), inputs])
    norm = keras.layers.LayerNormalization(name="norm")(summed)
    shared = keras.layers.Dense(8, name="shared")(norm)  # read by a norm and by the output
    model = keras.Model(inputs, [keras.layers.LayerNormalization(name="norm2")(shared), shared])
    plan = plan_graph(model, lambda layer: True, Plan(), top_level=True)
    assert _names(model, plan.no_output) == ["sum"]


def test_keras_hub_embeddings_sum_and_gathers_are_read_in_float_in_the_int8_export():
    import collections

    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    import tfcompress.quantization as tq
    from tfcompress.export import to_tflite

    import testing

    qat = tq.quantize_model(testing.bert_backbone(num_layers=1))
    inputs = testing.token_inputs()
    qat(inputs, training=True)
    assert qat.get_layer("quant_embeddings_add").quantize_config.get_output_quantizers(None) == []
    # The embeddings it adds are read in float: one int8 scale per dimension.
    assert qat.get_layer("quant_token_embedding").embedding_channel_scales
    assert qat.get_layer("quant_segment_embedding").embedding_channel_scales
    result = to_tflite(qat, target="int8", sample=inputs)
    assert result.checks["outputs_match"]["passed"]
    interpreter = Interpreter(model_content=result.tflite_bytes)
    dtypes = {d["index"]: np.dtype(d["dtype"]).name for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    adds = collections.Counter(dtypes[op["outputs"][0]] for op in ops if op["op_name"] == "ADD")
    assert adds["int8"] == 0 and adds["float32"] >= 2, (
        adds
    )  # embeddings sum (and residuals) in float
    gathers = [dtypes[op["inputs"][0]] for op in ops if op["op_name"] == "GATHER"]
    assert gathers == ["int8", "int8"]  # the tables stay int8


def test_embedding_tables_get_channel_scales_only_where_read_in_float():
    ids = keras.Input((4,), dtype="int32")
    summed = keras.layers.Add(name="sum")(
        [
            keras.layers.Embedding(10, 8, name="summed")(ids),
            keras.layers.Embedding(10, 8, name="other")(ids),
        ]
    )
    normed = keras.layers.LayerNormalization(name="norm")(summed)
    projected = keras.layers.Dense(8, name="proj")(
        keras.layers.Embedding(10, 8, name="projected")(ids)
    )
    activated = keras.layers.ReLU()(
        keras.layers.Add(name="relu_sum")(
            [keras.layers.Embedding(10, 8, name="relu")(ids), projected]
        )
    )
    model = keras.Model(ids, [normed, activated])
    plan = plan_graph(model, lambda layer: True, Plan(), top_level=True)
    # The int8 Dense and the Add with a fused ReLU read int8 gathers.
    assert _names(model, plan.float_gather) == ["other", "summed"]
