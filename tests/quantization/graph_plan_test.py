import keras

from quantization.digits import digits_cnn
from tfcompress.quantization.graph_plan import Plan, plan_graph


def _names(model, ids):
    return sorted(layer.name for layer in model.layers if id(layer) in ids)


def test_conv_bn_relu_folds_and_quantizes_after_the_relu():
    model = digits_cnn()
    plan = plan_graph(model, lambda layer: not isinstance(layer, keras.layers.InputLayer), Plan(), top_level=True)
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
    single = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()])
    plan = plan_graph(single, lambda layer: isinstance(layer, keras.layers.Conv2D), Plan(), top_level=True)
    assert plan.fold == {}


def test_relu_layer_after_dense_moves_the_output_quantizer():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.ReLU(), keras.layers.Dense(2)])
    plan = plan_graph(model, lambda layer: True, Plan(), top_level=True)
    assert _names(model, plan.no_output) == [model.layers[0].name]
