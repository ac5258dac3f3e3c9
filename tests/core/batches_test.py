import numpy as np
import pytest
import tensorflow as tf

from tfcompress.core.batches import drop_labels, iterate_batches, padding_mask

IDS = np.arange(12, dtype="int32").reshape(4, 3)
DICT = {"token_ids": IDS, "padding_mask": np.ones_like(IDS)}


def _rows(batches):
    return sum(len(np.asarray(drop_labels(b)["token_ids"])) for b in batches)


@pytest.mark.parametrize(
    "data",
    [
        DICT,
        [DICT, DICT],
        (DICT, DICT),
        tf.data.Dataset.from_tensor_slices(DICT).batch(3),
        tf.data.Dataset.from_tensor_slices((DICT, np.zeros(4))).batch(2),
        (dict(DICT) for _ in range(2)),
        lambda: iter([DICT, DICT]),
    ],
    ids=[
        "dict",
        "list of dicts",
        "tuple of dicts",
        "dataset",
        "dataset of pairs",
        "generator",
        "callable",
    ],
)
def test_every_form_yields_dict_batches(data):
    batches = list(iterate_batches(data))
    assert all(isinstance(drop_labels(b), dict) for b in batches)
    assert _rows(batches) in (4, 8)


def test_arrays_and_lists_of_arrays_are_one_batch():
    (batch,) = iterate_batches(IDS)
    assert batch is IDS
    (batch,) = iterate_batches(tf.constant(IDS))
    np.testing.assert_array_equal(batch, IDS)
    (batch,) = iterate_batches([IDS, IDS])
    assert len(batch) == 2


def test_drop_labels_keeps_two_inputs_and_drops_pairs():
    assert drop_labels([IDS, IDS], num_inputs=2)[0] is IDS and len(drop_labels([IDS, IDS], 2)) == 2
    assert drop_labels((IDS, np.zeros(4)), num_inputs=1) is IDS
    assert drop_labels(((IDS, IDS), np.zeros(4)), num_inputs=2)[1] is IDS
    assert drop_labels((IDS, np.zeros(4))) is IDS  # a dataset's pair, model inputs unknown
    assert drop_labels(DICT, num_inputs=2) is DICT


@pytest.mark.parametrize(
    "data, received",
    [(3, "int"), ("ids.npy", "str"), (lambda: 3, "a callable returning int")],
)
def test_other_forms_are_refused_before_reading(data, received):
    with pytest.raises(
        TypeError, match=rf"`calibration` must be a numpy array.*Received: {received}"
    ):
        iterate_batches(data, "calibration")


def test_padding_mask_is_the_inputs_mask_with_or_without_labels():
    mask = DICT["padding_mask"]
    assert padding_mask(DICT) is mask
    assert padding_mask((DICT, np.zeros(4))) is mask
    assert padding_mask([DICT, np.zeros(4)]) is mask
    assert padding_mask({"token_ids": IDS}) is None
    assert padding_mask(IDS) is None
    assert padding_mask((IDS, np.zeros(4))) is None
