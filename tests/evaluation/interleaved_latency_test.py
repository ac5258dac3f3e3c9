import time

import keras
import numpy as np
import pytest

from tfcompress import evaluation, runtime

from .fakes import FakeLiteRT

X = np.ones((1, 4), dtype="float32")


class Recorder(FakeLiteRT):
    """A fake LiteRT model that logs its name to a shared list on every call."""

    def __init__(self, name, log, delay_s=0.0):
        super().__init__(lambda x: x)
        self.name, self.log, self.delay_s = name, log, delay_s

    def run(self, inputs):
        self.log.append(self.name)
        if self.delay_s:
            time.sleep(self.delay_s)
        return super().run(inputs)


def test_rounds_interleave_with_a_rotating_first_model():
    log = []
    models = {name: Recorder(name, log) for name in ("a", "b", "c")}
    results = evaluation.interleaved_latency(models, X, rounds=3, runs=2, warmup=1)
    # Each turn is 1 warmup + 2 timed calls; round r starts with model r % 3.
    turns = ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert log == [name for name in turns for _ in range(3)]
    assert list(results) == ["a", "b", "c"]
    for result in results.values():
        assert result.runs == 6
        assert result.backend == "fake"
        assert result.num_threads is None
        assert 0 < result.p50_ms <= result.p90_ms


def test_every_model_gets_the_same_number_of_timed_calls():
    log = []
    models = {"fast": Recorder("fast", log), "slow": Recorder("slow", log, 0.002)}
    results = evaluation.interleaved_latency(models, X, rounds=4, runs=3, warmup=0)
    assert log.count("fast") == log.count("slow") == 12
    assert results["fast"].runs == results["slow"].runs == 12
    assert results["slow"].p50_ms >= 2.0 > results["fast"].p50_ms


def test_keras_models_and_callables_take_part():
    keras_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    results = evaluation.interleaved_latency(
        {"keras": keras_model, "callable": lambda x: x * 2}, X, rounds=2, runs=3
    )
    assert results["keras"].backend == "keras-tensorflow"
    assert results["callable"].backend == "callable"
    assert results["keras"].runs == results["callable"].runs == 6


def test_int8_model_is_timed_on_inputs_quantized_once(int8_tflite):
    model = runtime.load(int8_tflite, num_threads=1)
    detail = model.input_details[0]
    scale, zero_point = detail["quantization"]
    x = np.random.default_rng(1).normal(size=(1, 6)).astype("float32")
    expected = np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8)
    fed = []
    original_run = model.run

    def recording_run(inputs, signature=None, raw=False):
        fed.append((inputs, raw))
        return original_run(inputs, signature=signature, raw=raw)

    model.run = recording_run
    result = evaluation.interleaved_latency({"int8": model}, x, rounds=2, runs=3)["int8"]
    assert result.runs == 6 and result.num_threads == 1
    assert result.backend == "ai_edge_litert"
    assert len(fed) == 2 * (1 + 3)
    # The same already-quantized dict every call, fed untouched (raw).
    assert all(inputs is fed[0][0] and raw for inputs, raw in fed)
    (array,) = fed[0][0].values()
    assert array.dtype == np.int8
    np.testing.assert_array_equal(array, expected)


def test_paths_and_bytes_are_loaded_with_num_threads(int8_tflite, tmp_path):
    path = tmp_path / "int8.tflite"
    path.write_bytes(int8_tflite)
    results = evaluation.interleaved_latency(
        {"file": str(path), "bytes": int8_tflite},
        np.ones((1, 6), "float32"),
        rounds=1,
        runs=2,
        num_threads=1,
    )
    assert [r.num_threads for r in results.values()] == [1, 1]
    assert [r.runs for r in results.values()] == [2, 2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rounds": 0}, r"`rounds` must be an int >= 1. Received: rounds=0"),
        ({"runs": 0}, r"`runs` must be an int >= 1. Received: runs=0"),
        ({"runs": 2.5}, r"`runs` must be an int >= 1. Received: runs=2.5"),
        ({"warmup": -1}, r"`warmup` must be an int >= 0. Received: warmup=-1"),
    ],
)
def test_bad_counts_raise_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluation.interleaved_latency({"a": FakeLiteRT(lambda x: x)}, X, **kwargs)


def test_bad_models_raise():
    with pytest.raises(ValueError, match=r"`models` must hold at least one model"):
        evaluation.interleaved_latency({}, X)
    with pytest.raises(TypeError, match=r"`models` must be a dict.*Received: models of type list"):
        evaluation.interleaved_latency([FakeLiteRT(lambda x: x)], X)
    with pytest.raises(TypeError, match=r"key of `models` must be a non-empty string.*Received: 3"):
        evaluation.interleaved_latency({3: FakeLiteRT(lambda x: x)}, X)
    with pytest.raises(TypeError, match=r"`models\['bad'\]` must be a `keras.Model`"):
        evaluation.interleaved_latency({"bad": 42}, X)
