import numpy as np
import pytest
import tensorflow as tf

from tfcompress.export import representative
from tfcompress.export.representative import InputSpec

IMAGE = [InputSpec("image", (None, 4, 4, 3), "float32")]
TEXT = [
    InputSpec("ids", (None, None), "int32"),
    InputSpec("mask", (None, None), "int32"),
]


def test_normalize_batch_accepts_array_list_dict_and_pairs():
    x = np.ones((2, 4, 4, 3), np.float64)
    for batch in (x, [x], (x, np.zeros(2)), {"image": x}, tf.constant(x)):
        out = representative.normalize_batch(batch, IMAGE, "sample")
        assert list(out) == ["image"]
        assert out["image"].dtype == np.float32 and out["image"].shape == (2, 4, 4, 3)
    single = representative.normalize_batch(x[0], IMAGE, "sample")
    assert single["image"].shape == (1, 4, 4, 3)

    ids = np.arange(6).reshape(2, 3)
    out = representative.normalize_batch({"mask": ids > 0, "ids": ids}, TEXT, "sample")
    assert list(out) == ["ids", "mask"]
    assert out["ids"].dtype == np.int32 and out["mask"].tolist() == [
        [0, 1, 1],
        [1, 1, 1],
    ]
    pair = representative.normalize_batch(((ids, ids), np.zeros(2)), TEXT, "sample")
    np.testing.assert_array_equal(pair["mask"], ids)


@pytest.mark.parametrize(
    "batch, specs, message",
    [
        ({"ids": np.zeros((1, 3))}, TEXT, r"`data` is missing inputs \['mask'\]"),
        (
            [np.zeros((1, 3))] * 3,
            TEXT,
            "`data` has 3 arrays but the model has 2 inputs",
        ),
        (np.zeros((1, 3)), TEXT, "pass `data` as a dict"),
        (np.zeros((4, 3)), IMAGE, "must have rank 4"),
        (
            {"ids": np.full((1, 3), 0.5), "mask": np.ones((1, 3))},
            TEXT,
            "non-integer floats",
        ),
    ],
)
def test_normalize_batch_errors(batch, specs, message):
    with pytest.raises(ValueError, match=message):
        representative.normalize_batch(batch, specs, "data")


def test_calibration_samples_from_every_source():
    x = np.random.default_rng(0).random((10, 4, 4, 3), dtype=np.float32)
    sources = {
        "array": x,
        "dataset": tf.data.Dataset.from_tensor_slices(x).batch(4),
        "supervised dataset": tf.data.Dataset.from_tensor_slices((x, np.zeros(10))).batch(3),
        "generator": (x[i : i + 5] for i in (0, 5)),
        "callable": lambda: iter([x[:5], x[5:]]),
        "list of dicts": [{"image": x[:5]}, {"image": x[5:]}],
    }
    for name, source in sources.items():
        samples = representative.calibration_samples(source, IMAGE)
        assert len(samples) == 10, name
        assert all(s["image"].shape == (1, 4, 4, 3) for s in samples), name
        np.testing.assert_array_equal(representative.stack(samples)["image"], x)
    assert len(representative.calibration_samples(x, IMAGE, limit=3)) == 3


def test_calibration_samples_errors():
    with pytest.raises(TypeError, match="`representative_data` must be a numpy array"):
        representative.calibration_samples(3, IMAGE)
    with pytest.raises(ValueError, match="produced no samples"):
        representative.calibration_samples(iter([]), IMAGE)
    with pytest.raises(ValueError, match="disagree on the batch size"):
        representative.calibration_samples(
            {"ids": np.zeros((2, 3)), "mask": np.zeros((3, 3))}, TEXT
        )


def test_synthetic_batch_looks_like_real_inputs():
    specs = IMAGE + [
        InputSpec("token_ids", (None, None), "int32"),
        InputSpec("segment_ids", (None, None), "int32"),
        InputSpec("padding_mask", (None, None), "int32"),
    ]
    batch = representative.synthetic_batch(specs, batch_size=6, vocabulary_size=1000)
    assert batch["image"].shape == (6, 4, 4, 3) and batch["image"].dtype == np.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() < 1.0
    ids, mask = batch["token_ids"], batch["padding_mask"]
    assert ids.shape == (6, 8) and ids.dtype == np.int32
    assert 0 <= ids.min() and 100 <= ids.max() < 1000  # the whole vocabulary, not [0, 100)
    assert not batch["segment_ids"].any()
    lengths = mask.sum(1)
    np.testing.assert_array_equal(mask, np.arange(8)[None] < lengths[:, None])  # a prefix of ones
    assert lengths[0] == 8 and lengths.min() >= 1 and len(set(lengths)) > 1
