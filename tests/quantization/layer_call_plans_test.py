import keras
import numpy as np
import pytest

import tfcompress.quantization as tq
from tfcompress.quantization.flat_matmul_plan import FlatMatmul
from tfcompress.quantization.layer_call_plans import (
    ChannelScaledEmbedding,
    FoldBatchNorm,
    LayerCall,
)


def _wrapper(layer, shape, config=None, wrapper_class=tq.QuantizeWrapper, **kwargs):
    layer.build(shape)
    wrapper = wrapper_class(layer, config or tq.DefaultQuantizeConfig(["kernel"]), **kwargs)
    wrapper.build(shape)
    return wrapper


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: _wrapper(keras.layers.Dense(4), (None, 8)), LayerCall),
        (lambda: _wrapper(keras.layers.Dense(4), (None, 3, 8)), FlatMatmul),
        (
            lambda: _wrapper(keras.layers.Dense(4), (None, 3, 8), tq.DefaultQuantizeConfig([])),
            LayerCall,
        ),
        (
            lambda: _wrapper(
                keras.layers.Embedding(10, 4),
                (None, 3),
                tq.DefaultQuantizeConfig(["embeddings"], quantize_output=False),
                embedding_channel_scales=True,
            ),
            ChannelScaledEmbedding,
        ),
        (
            lambda: _wrapper(
                keras.layers.Dense(4), (None, 3, 8), wrapper_class=tq.FoldBatchNormQuantizeWrapper
            ),
            FoldBatchNorm,
        ),
    ],
)
def test_build_chooses_the_plan(make, expected):
    assert type(make().plan) is expected


def test_an_unbuildable_per_axis_output_shape_is_an_error_not_none():
    class NoShape(keras.layers.Layer):
        def call(self, x):
            return x

        def compute_output_shape(self, input_shape):
            raise ValueError("no shape for you")

    config = tq.DefaultQuantizeConfig([])
    per_tensor = _wrapper(NoShape(), (None, 4), config)  # per-tensor output: no shape needed
    assert per_tensor.quantized_outputs[0].variables["min_var"].shape == ()
    per_axis = tq.LastValueQuantizer(8, per_axis=True, symmetric=False, narrow_range=False)

    class PerAxisOutput(tq.DefaultQuantizeConfig):
        def get_output_quantizers(self, layer):
            return [per_axis]

    with pytest.raises(ValueError, match="no shape for you"):
        _wrapper(NoShape(), (None, 4), PerAxisOutput([]))
    assert np.isfinite(np.asarray(per_tensor(np.ones((2, 4), "float32")))).all()
