"""select_outlier_channels and calibration_ids."""

import numpy as np
import pytest

from tests import _tiny_causal_lm
from tfcompress.export.generator.outlier_channels import calibration_ids, select_outlier_channels


def test_planted_channels_are_selected_and_gaussian_inputs_are_left_alone():
    rng = np.random.default_rng(0)
    planted = rng.normal(size=(64, 32)).astype(np.float32)
    planted[:, [5, 20]] *= 40
    gaussian = rng.normal(size=(64, 32)).astype(np.float32)
    selected = select_outlier_channels({"a": planted, "b": gaussian})
    assert selected == {"a": [5, 20]}


def test_at_most_max_channels_the_largest_first():
    x = np.ones((4, 16), np.float32)
    x[:, :6] = np.arange(100, 700, 100)
    assert select_outlier_channels({"a": x}, max_channels=2) == {"a": [4, 5]}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ratio": 1.0}, "`ratio` must be > 1. Received: ratio=1.0"),
        ({"max_channels": 0}, "`max_channels` must be >= 1. Received: max_channels=0"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        select_outlier_channels({"a": np.ones((2, 2))}, **kwargs)


def test_calibration_ids_are_the_tokenizers_ids_of_english_text_bos_first():
    tokenizer = _tiny_causal_lm.tiny_llama3().preprocessor.tokenizer
    ids = calibration_ids(tokenizer, bos_id=1, length=48)
    assert len(ids) == 48 and ids[0] == 1
    text = tokenizer.detokenize(np.asarray(ids[1:]))
    assert str(text).startswith('The "assert" statement')
