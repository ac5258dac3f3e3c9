import keras
import numpy as np
import pytest

from tfcompress.low_rank import LowRankEinsumDense
from tfcompress.low_rank._factors import Spectrum
from tfcompress.low_rank._kernel_spec import KernelSpec

# (equation, output_shape, bias_axes, input shape): MultiHeadAttention's query
# and output projections, and a Dense-like equation with an ellipsis.
CASES = [
    ("abc,cde->abde", (None, 4, 8), "de", (2, 5, 16), ("abc,cz->abz", "abz,zde->abde")),
    ("abcd,cde->abe", (None, 16), "e", (2, 5, 4, 8), ("abcd,cdz->abz", "abz,ze->abe")),
    ("...b,bc->...c", (12,), "c", (3, 7, 16), ("...b,bz->...z", "...z,zc->...c")),
]


@pytest.mark.parametrize("equation,output_shape,bias_axes,input_shape,factors", CASES)
def test_full_rank_reproduces_outputs(equation, output_shape, bias_axes, input_shape, factors):
    layer = keras.layers.EinsumDense(
        equation, output_shape=output_shape, bias_axes=bias_axes, bias_initializer="random_normal"
    )
    x = np.random.default_rng(0).normal(size=input_shape).astype("float32")
    expected = layer(x)
    spec = KernelSpec(layer)
    first, second = Spectrum(spec.matrix(layer.kernel.numpy())).factors(min(spec.shape))
    low = LowRankEinsumDense.from_layer(layer, *spec.factor_kernels(first, second))
    assert (low.first.equation, low.second.equation) == factors
    np.testing.assert_allclose(low(x), expected, atol=1e-5)
    again = LowRankEinsumDense.from_config(low.get_config())
    assert again.get_config() == low.get_config()


def test_input_rows_match_the_matrix():
    layer = keras.layers.EinsumDense("abcd,cde->abe", output_shape=(None, 16))
    x = np.random.default_rng(0).normal(size=(2, 5, 4, 8)).astype("float32")
    layer(x)
    spec = KernelSpec(layer)
    rows = np.asarray(spec.input_rows(x))
    np.testing.assert_allclose(
        rows @ spec.matrix(layer.kernel.numpy()), np.reshape(layer(x), (-1, 16)), atol=1e-5
    )


def test_batched_kernel_is_refused():
    with pytest.raises(ValueError, match=r"`equation` cannot be factorized: .*batched"):
        LowRankEinsumDense("abc,bcd->abd", output_shape=(5, 4), rank=2)
