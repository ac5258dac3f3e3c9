"""to_tflite_generator refuses bad input before doing any work."""

import keras
import keras_hub
import pytest

from tests import _tiny_causal_lm
from tfcompress.export import to_tflite_generator


@pytest.fixture(scope="module")
def gpt2():
    return _tiny_causal_lm.tiny_gpt2()


def test_not_a_causal_lm():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(TypeError, match="must be a keras-hub `CausalLM`.*Received: Sequential"):
        to_tflite_generator(model, cache_length=16, prefill_lengths=(4,))


def test_causal_lm_without_a_cache(gpt2):
    class NoCache(keras_hub.models.CausalLM):
        """A user's CausalLM that never wrote `call_with_cache`."""

    model = NoCache.__new__(NoCache)
    with pytest.raises(ValueError, match="has no `call_with_cache`: it has no key/value cache"):
        to_tflite_generator(model, cache_length=16, prefill_lengths=(4,))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(prefill_lengths=(16,)),
            r"in \[1, cache_length - 1\] = \[1, 15\].*prefill_lengths=\(16,\)",
        ),
        (dict(prefill_lengths=(0,)), r"in \[1, cache_length - 1\]"),
        (dict(prefill_lengths=8), "must be a non-empty tuple"),
        (dict(prefill_lengths=()), "must be a non-empty tuple"),
        (dict(prefill_lengths=(4, 4)), "duplicates"),
        (dict(cache_length=1), r"cache_length` must be an int >= 2.*cache_length=1"),
        (dict(cache_length=4096), r"at most the model's max_sequence_length \(128\).*4096"),
        (dict(target="int4"), "`target` must be one of"),
        (dict(path="model.bin"), "must end with .tflite"),
    ],
)
def test_bad_arguments(gpt2, kwargs, match):
    arguments = dict(cache_length=16, prefill_lengths=(4,))
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        to_tflite_generator(gpt2, **arguments)


def test_bad_sampling(gpt2):
    with pytest.raises(ValueError, match="`sampling` must be a dict with keys among"):
        to_tflite_generator(gpt2, cache_length=16, prefill_lengths=(4,), sampling={"temp": 1})
