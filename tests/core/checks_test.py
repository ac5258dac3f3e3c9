import numpy as np
import pytest

from tfcompress.core.checks import (
    ArgumentTypeError,
    check_fraction,
    check_int,
    check_number,
    check_pair,
    is_int,
)
from tfcompress.sparsity import masks, prune_low_magnitude

import testing


def test_is_int_takes_numpy_ints_not_bools():
    assert is_int(3) and is_int(np.int64(3)) and is_int(np.uint8(0))
    assert not is_int(True) and not is_int(3.0) and not is_int("3")


def test_check_int_returns_python_ints_and_messages():
    assert check_int(np.int32(4), "runs", 1) == 4 and type(check_int(np.int32(4), "runs")) is int
    assert check_int(None, "top_k", allow_none=True) is None
    with pytest.raises(
        ArgumentTypeError,
        match=r"`begin_step` must be an integer\. Received: begin_step=1\.5 of type float\.",
    ):
        check_int(1.5, "begin_step", 0)
    with pytest.raises(TypeError, match="begin_step=True of type bool"):
        check_int(True, "begin_step", 0)
    with pytest.raises(
        ValueError, match=r"`frequency` must be >= 1\. Received: frequency=0\. Pass 1\.$"
    ):
        check_int(0, "frequency", 1, hint="Pass 1.")
    with pytest.raises(ValueError, match=r"`n` must be in \[1, 4\]\. Received: n=5\."):
        check_int(5, "n", 1, 4)
    with pytest.raises(ValueError, match=r"`runs` must be an int >= 1\. Received: runs=2\.5\."):
        check_int(2.5, "runs", 1, expected="an int >= 1")
    with pytest.raises(ValueError, match=r"^layer 3 must be <= 2\. Received: n=3\.$"):
        check_int(3, "n", maximum=2, label="layer 3")


def test_argument_type_error_is_both_kinds():
    assert issubclass(ArgumentTypeError, TypeError) and issubclass(ArgumentTypeError, ValueError)


def test_check_number_and_fraction():
    assert check_number(np.float32(0.5), "t", 0, open_low=True) == 0.5
    with pytest.raises(
        ArgumentTypeError,
        match=r"`power` must be a positive number\. Received: power='3' of type str\.",
    ):
        check_number("3", "power", 0, open_low=True)
    with pytest.raises(ValueError, match=r"`power` must be > 0\. Received: power=0\."):
        check_number(0, "power", 0, open_low=True)
    with pytest.raises(ValueError, match=r"`t` must be > 0\. Received: t=inf\."):
        check_number(float("inf"), "t", 0, open_low=True)
    with pytest.raises(
        ValueError, match=r"`sparsity` must be in \[0, 1\)\. Received: sparsity=1\.0\."
    ):
        check_fraction(1.0, "sparsity")
    assert check_fraction(1, "alpha", include_one=True) == 1.0
    with pytest.raises(TypeError, match=r"must be a float in \[0, 1\)\. Received: sparsity=True"):
        check_fraction(True, "sparsity")


def test_check_pair():
    assert check_pair((np.int64(2), 4), "block_size", 1) == (2, 4)
    assert check_pair([1, 1], "block_size", 1) == (1, 1)
    for bad in [(0, 2), (2,), (1.5, 2), "4x4", (True, 2), 4]:
        with pytest.raises(
            ValueError,
            match=r"`block_size` must be a pair of integers >= 1\. Received: block_size=",
        ):
            check_pair(bad, "block_size", 1)


def test_both_block_size_checks_agree_on_numpy_ints():
    block = (np.int64(1), np.int64(2))
    mask = masks.magnitude_mask(np.arange(16, dtype="float32").reshape(4, 4), 0.5, block_size=block)
    assert float(np.mean(np.asarray(mask))) == 0.5
    pruned = prune_low_magnitude(testing.functional_dense(), block_size=block)
    wrapper = pruned.get_layer("prune_low_magnitude_dense_1")
    saved = wrapper.get_config()["block_size"]
    assert list(saved) == [1, 2] and all(type(b) is int for b in saved)
    for bad in [(True, 2), (0, 2), (1.0, 2)]:
        with pytest.raises(ValueError, match="block_size"):
            masks.magnitude_mask(np.ones((4, 4), "float32"), 0.5, block_size=bad)
        with pytest.raises(ValueError, match="block_size"):
            prune_low_magnitude(testing.functional_dense(), block_size=bad)
