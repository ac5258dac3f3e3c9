import json

import keras
import numpy as np
import pytest
from keras import ops

from tfcompress.sparsity.masks import m_by_n_mask, magnitude_mask
from tfcompress.sparsity.report import SparsityReport, sparsity_report

import testing


def _random(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 1.5, size=shape) * rng.choice([-1.0, 1.0], size=shape)).astype(
        "float32"
    )


def _mask(weight, mask):
    weight.assign(ops.convert_to_numpy(weight) * ops.convert_to_numpy(mask))


def _rows_by_path(report):
    return {row["path"]: row for row in report.rows}


@pytest.fixture
def small_model():
    inputs = keras.Input((16,))
    x = keras.layers.Dense(16, name="first")(inputs)
    x = keras.layers.Dense(8, name="second")(x)
    x = keras.layers.LayerNormalization(name="norm")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="third")(x))
    first, second, third = (model.get_layer(n) for n in ("first", "second", "third"))
    first.kernel.assign(_random((16, 16), 1))
    _mask(first.kernel, m_by_n_mask(first.kernel, 2, 4, axis=0))
    second.kernel.assign(_random((16, 8), 2))
    _mask(second.kernel, magnitude_mask(second.kernel, 0.5, block_size=(4, 2)))
    kernel = _random((8, 4), 3)
    kernel[[0, 3, 5], [1, 2, 0]] = 0.0
    third.kernel.assign(kernel)
    return model


def test_rows_and_totals_on_small_model(small_model):
    report = sparsity_report(small_model)
    rows = _rows_by_path(report)
    assert list(rows) == ["first/kernel", "second/kernel", "third/kernel"]
    expected = {
        "first/kernel": ((16, 16), 256, 128, "2:4"),
        "second/kernel": ((16, 8), 128, 64, "block 4x2"),
        "third/kernel": ((8, 4), 32, 3, "unstructured"),
    }
    for path, (shape, size, zeros, structure) in expected.items():
        row = rows[path]
        assert row["shape"] == shape
        assert row["size"] == size
        assert row["zeros"] == zeros
        assert row["sparsity"] == pytest.approx(zeros / size)
        assert row["structure"] == structure
        assert row["kernel"] is True
    assert report.total_size == 416
    assert report.total_zeros == 195
    assert report.overall_sparsity == pytest.approx(195 / 416)


def test_all_weights_listed_without_only_kernels(small_model):
    report = sparsity_report(small_model, only_kernels=False)
    rows = _rows_by_path(report)
    assert list(rows) == [w.path for w in small_model.weights]
    assert rows["first/bias"]["structure"] == "zero"
    assert rows["first/bias"]["kernel"] is False
    assert rows["norm/gamma"]["structure"] == "dense"
    # The total stays over prunable kernels.
    assert report.overall_sparsity == pytest.approx(195 / 416)


def test_table_is_aligned_with_total_line(small_model):
    report = sparsity_report(small_model)
    lines = str(report).splitlines()
    assert lines[0].split() == ["path", "shape", "size", "zeros", "sparsity", "structure"]
    assert lines[1] == lines[-2] == "-" * len(lines[1])
    body = lines[2:-2]
    assert [line.split()[0] for line in body] == [r["path"] for r in report.rows]
    assert "block 4x2" in body[1] and "50.00%" in body[1]
    # Right-aligned numbers: every "%" in the same column.
    assert len({line.index("%") for line in body + [lines[-1]]}) == 1
    assert lines[-1].split() == ["total", "(3", "kernels)", "416", "195", f"{100 * 195 / 416:.2f}%"]
    assert report.table() == str(report)
    assert "3 kernels" in repr(report)


def test_as_dict_is_json_ready(small_model):
    data = json.loads(json.dumps(sparsity_report(small_model).as_dict()))
    assert data["total_zeros"] == 195
    assert data["overall_sparsity"] == pytest.approx(195 / 416)
    assert data["rows"][0]["shape"] == [16, 16]
    assert data["rows"][0]["structure"] == "2:4"


def test_conv_kernel_2_by_4_along_input_channels():
    model = keras.Sequential([keras.Input((6, 6, 8)), keras.layers.Conv2D(4, 3, name="conv")])
    kernel = model.get_layer("conv").kernel
    kernel.assign(_random((3, 3, 8, 4), 4))
    _mask(kernel, m_by_n_mask(kernel, 2, 4, axis=2))
    (row,) = sparsity_report(model).rows
    assert row["structure"] == "2:4"
    assert row["zeros"] == 3 * 3 * 8 * 4 // 2


def test_block_detection_on_larger_tiles():
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(24, name="dense")])
    kernel = model.get_layer("dense").kernel
    kernel.assign(_random((32, 24), 5))
    _mask(kernel, magnitude_mask(kernel, 0.5, block_size=(8, 4)))
    assert sparsity_report(model).rows[0]["structure"] == "block 8x4"


class _MaskedDense(keras.layers.Layer):
    """Stands in for a pruning wrapper: exposes `pruning_vars`."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(units, name="dense")

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.mask = self.add_weight(
            shape=self.dense.kernel.shape,
            initializer="ones",
            trainable=False,
            name="mask",
        )

    @property
    def pruning_vars(self):
        return [(self.dense.kernel, self.mask)]

    def call(self, inputs):
        return self.dense(inputs)


def test_pruning_vars_report_the_masked_kernel_and_skip_masks():
    inputs = keras.Input((8,))
    model = keras.Model(inputs, _MaskedDense(4, name="wrapped")(inputs))
    wrapped = model.get_layer("wrapped")
    wrapped.dense.kernel.assign(_random((8, 4), 6))
    mask = np.ones((8, 4), "float32")
    mask[:2] = 0.0
    wrapped.mask.assign(mask)
    report = sparsity_report(model)
    assert [row["path"] for row in report.rows] == ["wrapped/dense/kernel"]
    assert report.rows[0]["zeros"] == 8
    assert np.count_nonzero(ops.convert_to_numpy(wrapped.dense.kernel)) == 32
    paths = [row["path"] for row in sparsity_report(model, False).rows]
    assert "wrapped/mask" not in paths


def test_keras_hub_bert_backbone_every_weight_reported():
    backbone = testing.bert_backbone()
    weights = {w.path: w for w in backbone.weights}
    query = weights["transformer_layer_0/self_attention_layer/query/kernel"]
    _mask(query, m_by_n_mask(query, 2, 4, axis=0))
    output = weights["transformer_layer_0/self_attention_layer/attention_output/kernel"]
    _mask(output, magnitude_mask(output, 0.25))

    everything = sparsity_report(backbone, only_kernels=False)
    assert [row["path"] for row in everything.rows] == list(weights)

    report = sparsity_report(backbone)
    rows = _rows_by_path(report)
    kernels = [
        path
        for path, w in weights.items()
        if len(w.shape) >= 2 and w.name not in ("bias", "gamma", "beta")
    ]
    assert list(rows) == kernels
    assert "token_embedding/embeddings" in rows
    assert not any(path.endswith("bias") for path in rows)
    assert rows[query.path]["shape"] == (8, 2, 4)
    assert rows[query.path]["structure"] == "2:4"
    assert rows[query.path]["zeros"] == 32
    assert rows[output.path]["zeros"] == 16
    assert rows[output.path]["structure"] == "unstructured"
    assert rows["pooled_dense/kernel"]["structure"] == "dense"
    size = sum(int(np.prod(weights[p].shape)) for p in kernels)
    assert report.total_size == size
    assert report.overall_sparsity == pytest.approx(48 / size)


def test_empty_report():
    report = SparsityReport([])
    assert report.overall_sparsity == 0.0
    assert "total (0 kernels)" in report.table()


def test_errors():
    with pytest.raises(ValueError, match="is not built"):
        sparsity_report(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(TypeError, match="must be a Keras 3"):
        sparsity_report(np.zeros((2, 2)))
