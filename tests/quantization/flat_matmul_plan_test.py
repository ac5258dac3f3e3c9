import keras
import numpy as np

import tfcompress.quantization as tq


def _wrapper(layer, shape, **kwargs):
    layer.build(shape)
    wrapper = tq.QuantizeWrapper(layer, tq.DefaultQuantizeConfig(["kernel"]), **kwargs)
    wrapper.build(shape)
    return wrapper


def test_flat_plan_names_its_parts():
    wrapper = _wrapper(
        keras.layers.EinsumDense("abc,cd->abd", (None, 6), bias_axes="d"),
        (None, 5, 3),
        outlier_channels=[4, 1],
        input_outlier_channels=[2],
    )
    plan = wrapper.plan
    assert plan.spec.in_size == 3 and plan.spec.out_size == 6
    assert plan.output_split.channels == (1, 4) and plan.input_split.channels == (2,)
    assert tuple(plan.output_split.kernel.variables["min_var"].shape) == ()
    assert plan.kernel is wrapper.kernel_weight()


def test_gelu_floor_keeps_the_pre_activation_range_above_minus_four():
    wrapper = _wrapper(keras.layers.Dense(6, activation="gelu"), (None, 5, 3))
    assert wrapper.plan.activation_floor == -4.0
    x = np.random.default_rng(0).normal(size=(4, 5, 3)).astype("float32") * 50
    wrapper(x, training=True)
    assert float(wrapper.plan.pre_activation.variables["min_var"].numpy()) >= -4.0
