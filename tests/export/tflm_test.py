"""TFLite Micro itself (PyPI `tflite-micro`): measured arena, TFLM vs LiteRT, op errors."""

import subprocess
import sys
import warnings

import keras
import pytest
import tensorflow as tf

from tfcompress import export
from tfcompress.cli import digits
from tfcompress.export import tflm

micro = pytest.importorskip(
    "tflite_micro.python.tflite_micro.runtime",
    reason="needs tflite-micro: pip install -e '.[micro]' (CI installs it)",
)
layers = keras.layers


def _dense():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10),
        ],
        name="dense",
    )


def _depthwise():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(8, 3, padding="same", activation="relu"),
            layers.DepthwiseConv2D(3, padding="same", activation="relu"),
            layers.Conv2D(16, 1, activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(10),
        ],
        name="depthwise",
    )


def _conv1d():
    # Each digit as a sequence of 8 rows of 8 pixels.
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Reshape((8, 8)),
            layers.Conv1D(16, 3, activation="relu"),
            layers.Conv1D(16, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(10),
        ],
        name="conv1d",
    )


# In a child process: TFLM's interpreter can crash, not raise, in too small an arena.
_LOAD_AND_RUN = """
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
interpreter = runtime.Interpreter.from_bytes(open(sys.argv[1], "rb").read(), arena_size=int(sys.argv[2]))
interpreter.set_input(np.zeros((1, 8, 8, 1), np.int8), 0)
interpreter.invoke()
"""


def _loads_and_runs(path, arena_size):
    run = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_RUN, str(path), str(arena_size)],
        capture_output=True,
        check=False,
    )
    return run.returncode == 0


BUILDERS = {
    "demo_cnn": digits.build_digits_cnn,
    "dense": _dense,
    "depthwise": _depthwise,
    "conv1d": _conv1d,
}


@pytest.fixture(scope="module")
def data():
    return digits.load_digits(0)


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def exported(request, data):
    """`(name, int8 flatbuffer, Keras logits on the test digits)`, trained 3 epochs."""
    x_train, y_train, x_test, _ = data
    keras.utils.set_random_seed(0)
    model = BUILDERS[request.param]()
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, batch_size=32, epochs=3, verbose=0)
    result = export.to_tflite(
        model, "int8", int8_io=True, representative_data=x_train[:200], sample=x_test[:32]
    )
    return request.param, result.tflite_bytes, model.predict(x_test, verbose=0)


def test_arena_is_measured_and_the_estimate_bounds_it(exported, data, tmp_path):
    name, content, logits = exported
    result = export.to_c_array(content, name="model", sample=data[2], reference=logits)
    check = result.tflm
    assert check is not None, name
    total = check.arena_total
    assert total == check.arena_head + check.arena_tail
    # TFLM's recorded total is not always enough: on small models the
    # temporary memory of loading sets the smallest arena it loads in.
    needed = max(total, check.arena_minimum)
    assert needed <= result.arena_bytes <= 1.25 * needed, (name, result.arena_bytes, needed)
    assert result.arena_bytes == check.arena_bytes
    # Without tflite-micro the estimate is what is reported: never below TFLM.
    assert needed <= result.arena_bytes_estimate <= 1.25 * needed, (
        name,
        result.arena_bytes_estimate,
        needed,
    )
    assert f"constexpr unsigned int model_arena_size = {result.arena_bytes};" in result.header
    assert "measured in TFLite Micro" in result.header
    # TFLM runs in the reported arena and in its smallest one, not in less.
    model = tmp_path / "model.tflite"
    model.write_bytes(content)
    for size in (result.arena_bytes, check.arena_minimum):
        assert _loads_and_runs(model, size), (name, size)
    assert not _loads_and_runs(model, check.arena_minimum - 16), name


def test_tflm_matches_litert_within_one_lsb(exported, data):
    name, content, logits = exported
    x_test, y_test = data[2], data[3]
    check = export.check_in_tflm(content, sample=x_test, reference=logits)
    assert check.rows == len(x_test) and not check.random_inputs
    assert check.max_lsb_difference <= 1, name
    # A 1-LSB difference flips the argmax of near ties: 4 of 360 digits on
    # the depthwise model trained at Adam's default rate.
    assert check.argmax_agreement >= 0.97, name
    assert check.reference_argmax_agreement >= 0.95, name
    line = export.to_c_array(content, sample=x_test[:8]).report_lines()[2]
    assert line.startswith("TFLM check: 8 inputs run in TFLite Micro, outputs vs LiteRT max ")


def test_without_tflite_micro_the_estimate_is_reported(monkeypatch, exported):
    _, content, _ = exported
    monkeypatch.setattr(tflm, "available", lambda: False)
    result = export.to_c_array(content, name="model")
    assert result.tflm is None
    assert result.arena_bytes == result.arena_bytes_estimate
    lines = result.report_lines()
    assert lines[1].startswith(f"tensor arena {result.arena_bytes:,} bytes, estimated")
    assert "pip install tfcompress[micro]" in lines[1]
    assert "not measured" in result.header
    with pytest.raises(ImportError, match=r"pip install tfcompress\[micro\]"):
        export.to_c_array(content, tflm=True)
    with pytest.raises(ImportError, match=r"pip install tfcompress\[micro\]"):
        export.check_in_tflm(content)


def _stock_int8(model, data):
    """Full-integer conversion with float fallback, as the TF converter does by default."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([row[None]] for row in data[:64])
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return converter.convert()


def test_float_op_left_in_an_int8_model_is_a_clear_error(data):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    hidden = layers.Dense(32)(inputs)
    # keras.ops.sign has no int8 TFLite kernel: the converter keeps it in float.
    hidden = layers.Lambda(lambda t: keras.ops.sign(t) * t)(hidden)
    model = keras.Model(inputs, layers.Dense(10)(hidden))
    content = _stock_int8(model, data[0].reshape(-1, 64))
    with pytest.raises(
        export.TFLMError,
        match=r"no kernel for op SIGN \(op #2; inputs \['FLOAT32'\].*float op left in an "
        r"integer model.*to_tflite\(model, 'int8', int8_io=True",
    ) as error:
        export.to_c_array(content, name="model")
    assert error.value.op == "SIGN"


def test_dynamic_range_model_names_the_hybrid_op():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32,))
    model = keras.Model(inputs, layers.Dense(10)(layers.Dense(64, activation="relu")(inputs)))
    content = export.to_tflite(model, "dynamic_int8").tflite_bytes
    with pytest.raises(
        export.TFLMError,
        match=r"cannot prepare op FULLY_CONNECTED \(op #0; inputs \['FLOAT32', 'INT8'\].*"
        r"float op left in an integer model.*Input type: FLOAT32 with filter type: INT8",
    ):
        export.check_in_tflm(content)


def test_gelu_is_named_with_a_replacement(data):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    hidden = layers.Dense(16, activation="gelu")(inputs)
    model = keras.Model(inputs, layers.Dense(4)(hidden))
    content = export.to_tflite(
        model, "int8", int8_io=True, representative_data=data[0].reshape(-1, 64)[:64]
    ).tflite_bytes
    with pytest.raises(
        export.TFLMError, match=r"no kernel for op GELU \(op #1; inputs \['INT8'\].*hard-swish"
    ):
        export.to_c_array(content)


def test_two_outputs_are_compared_output_by_output(data):
    x_train, _, x_test, _ = data
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    hidden = layers.Dense(32, activation="relu")(layers.Flatten()(inputs))
    model = keras.Model(
        inputs, [layers.Dense(10, name="digit")(hidden), layers.Dense(3, name="aux")(hidden)]
    )
    content = export.to_tflite(
        model, "int8", int8_io=True, representative_data=x_train[:64]
    ).tflite_bytes
    check = export.check_in_tflm(content, sample=x_test[:40])
    assert check.rows == 40
    assert check.max_lsb_difference <= 1
    assert check.argmax_agreement >= 0.95
    with pytest.raises(
        ValueError,
        match=r"`sample` must hold rows of shape \(8, 8, 1\).*Received: shape \(40, 64\)",
    ):
        export.check_in_tflm(content, sample=x_test[:40].reshape(40, 64))
