import keras
import numpy as np
import pytest

import tfcompress.quantization as tq


class KernelOnly(tq.QuantizeConfig):
    """A TFMOT-style user config: 2-bit kernel, no output quantization."""

    def get_weights_and_quantizers(self, layer):
        return [
            (
                layer.kernel,
                tq.LastValueQuantizer(
                    num_bits=2, per_axis=False, symmetric=True, narrow_range=True
                ),
            )
        ]

    def get_activations_and_quantizers(self, layer):
        return []

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


def test_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        tq.QuantizeConfig()


def test_user_config_drives_the_wrapper():
    layer = keras.layers.Dense(4, use_bias=False)
    layer.build((None, 3))
    wrapper = tq.QuantizeWrapper(layer, KernelOnly())
    wrapper.build((None, 3))
    x = np.eye(3, dtype="float32")
    kernel = wrapper(x, training=True).numpy()  # identity input reads the kernel back
    assert len(np.unique(kernel)) <= 3  # 2 bits, narrow range: {-m, 0, m}
    np.testing.assert_allclose(np.abs(kernel).max(), np.abs(layer.kernel.numpy()).max(), rtol=1e-5)
