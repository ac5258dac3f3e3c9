import numpy as np
from keras import ops

from tfcompress.quantization.ranges import fit_range, moving_average, reduce_range


def test_reduce_range_per_tensor_and_per_axis():
    x = np.array([[1.0, -2.0], [3.0, 0.5]], "float32")
    lo, hi = reduce_range(x)
    assert (float(lo), float(hi)) == (-2.0, 3.0)
    lo, hi = reduce_range(x, per_axis=True, axis=-1)
    np.testing.assert_allclose(ops.convert_to_numpy(lo), [1.0, -2.0])
    np.testing.assert_allclose(ops.convert_to_numpy(hi), [3.0, 0.5])
    lo, _ = reduce_range(x, per_axis=True, axis=0)
    np.testing.assert_allclose(ops.convert_to_numpy(lo), [-2.0, 0.5])


def test_fit_range_contains_zero_and_symmetrizes():
    lo, hi = fit_range(np.float32(1.0), np.float32(3.0), symmetric=False)
    assert (float(lo), float(hi)) == (0.0, 3.0)
    lo, hi = fit_range(np.float32(-4.0), np.float32(1.0), symmetric=True)
    assert (float(lo), float(hi)) == (-4.0, 4.0)


def test_moving_average_starts_at_first_value():
    assert float(moving_average(np.float32(6.0), np.float32(2.0), 0.9, np.float32(0.0))) == 2.0
    np.testing.assert_allclose(
        float(moving_average(np.float32(6.0), np.float32(2.0), 0.9, np.float32(1.0))),
        5.6,
        rtol=1e-6,
    )
