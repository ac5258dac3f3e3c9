import keras
import numpy as np
import pytest
import tensorflow as tf

import tfcompress.export
import tfcompress.quantization as tq
from quantization.digits import (
    compile_classifier,
    run_int8,
    tflite_interpreter,
    to_int8_tflite,
)
from tfcompress.cli.digits import build_digits_cnn, load_digits
from tfcompress.core import walk_layers

import testing


def _tensor_types(model_bytes):
    interpreter = tflite_interpreter(model_bytes)
    return {np.dtype(d["dtype"]).name for d in interpreter.get_tensor_details()}


def test_digits_cnn_qat_to_full_int8_tflite():
    """Float -> 3 QAT epochs -> int8 TFLite, no representative dataset."""
    keras.utils.set_random_seed(0)
    x_train, y_train, x_test, y_test = load_digits(test_fraction=0.3)
    model = compile_classifier(build_digits_cnn(pooled=True), 3e-3)
    model.fit(x_train, y_train, epochs=20, batch_size=32, verbose=0)
    float_acc = model.evaluate(x_test, y_test, verbose=0)[1]

    qat = compile_classifier(tq.quantize_model(model), 1e-4)
    qat.fit(x_train, y_train, epochs=3, batch_size=32, verbose=0)
    keras_logits = qat.predict(x_test, verbose=0)

    model_bytes = to_int8_tflite(qat)
    assert _tensor_types(model_bytes) == {"int8", "int32"}
    interpreter = tflite_interpreter(model_bytes)
    int32 = [d for d in interpreter.get_tensor_details() if d["dtype"] == np.int32]
    assert all(len(d["shape"]) == 1 for d in int32)  # biases (and a reduction axis)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    tflite_logits = run_int8(model_bytes, x_test)
    tflite_acc = np.mean(tflite_logits.argmax(1) == y_test)
    agreement = np.mean(tflite_logits.argmax(1) == keras_logits.argmax(1))
    assert tflite_acc >= float_acc - 0.005, (tflite_acc, float_acc)
    assert agreement >= 0.995


def test_resume_training_after_keras_save(tmp_path):
    x_train, y_train, _, _ = load_digits(test_fraction=0.3)
    qat = compile_classifier(tq.quantize_model(build_digits_cnn(pooled=True)), 1e-3)
    qat.fit(x_train[:128], y_train[:128], epochs=1, batch_size=32, verbose=0)
    restored = testing.run_model_saving_test(qat, x_train[:8], tmp_path)
    assert int(restored.optimizer.iterations) == 4
    ranges = {v.path: v.numpy() for v in restored.non_trainable_weights if "initialized" in v.path}
    assert ranges and all(value == 1.0 for value in ranges.values())
    restored.fit(x_train[:128], y_train[:128], epochs=1, batch_size=32, verbose=0)
    assert int(restored.optimizer.iterations) == 8


@pytest.mark.parametrize("weight_bits", [4, 8])
def test_low_bit_weights_convert_to_int8_storage(weight_bits):
    qat = tq.quantize_model(build_digits_cnn(pooled=True), weight_bits=weight_bits)
    qat(np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32"), training=True)
    interpreter = tflite_interpreter(to_int8_tflite(qat))
    kernels = [
        interpreter.get_tensor(d["index"])
        for d in interpreter.get_tensor_details()
        if d["dtype"] == np.int8 and len(d["shape"]) == 4 and d["shape"][0] in (16, 32)
    ]
    assert len(kernels) == 2
    for kernel in kernels:
        assert np.abs(kernel).max() <= 2 ** (weight_bits - 1) - 1


def test_int16x8_converts_with_16_bit_activations():
    qat = tq.quantize_model(build_digits_cnn(pooled=True), activation_bits=16)
    qat(np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32"), training=True)
    converter = tf.lite.TFLiteConverter.from_keras_model(qat)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    ]
    converter.inference_input_type = tf.int16
    converter.inference_output_type = tf.int16
    interpreter = tflite_interpreter(converter.convert())
    assert interpreter.get_input_details()[0]["dtype"] == np.int16
    assert interpreter.get_output_details()[0]["dtype"] == np.int16


_MIRRORED = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import json, keras, numpy as np
import tfcompress.quantization as tq
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(0)
x = rng.uniform(size=(128, 6)).astype("float32"); y = (x.sum(1) > 3).astype("int32")
with strategy.scope():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    qat = tq.quantize_model(model)
    qat.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = qat.fit(x, y, batch_size=32, epochs=5, verbose=0)
maxes = [float(v.numpy()) for v in qat.layers[0].non_trainable_weights if v.path.endswith("output_0_max")]
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": history.history["loss"], "max": maxes}))
"""


def test_mirrored_strategy_on_two_logical_cpus():
    import json

    result = json.loads(testing.run_python(_MIRRORED).strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["loss"][-1] < result["loss"][0]
    assert result["max"][0] > 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"weight_bits": 9},
            ValueError,
            r"`weight_bits` must be an integer from 2 to 8.*Received: weight_bits=9",
        ),
        (
            {"activation_bits": 4},
            ValueError,
            r"`activation_bits` must be 8 .*Received: activation_bits=4",
        ),
        ({"per_layer": {"dense": {"activation_bits": 32}}}, ValueError, r"in per_layer\['dense'\]"),
    ],
)
def test_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        tq.quantize_model(testing.functional_dense(), **kwargs)


def test_non_keras3_model_errors():
    with pytest.raises(
        TypeError, match=r"`to_quantize` must be a `keras.Model`.*Received: to_quantize='model'"
    ):
        tq.quantize_model("model")
    layer = keras.layers.Dense(2)
    with pytest.raises(TypeError, match=r"`to_quantize` must be a `keras.Model`"):
        tq.quantize_model(layer)
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"`to_quantize` .* is not built"):
        tq.quantize_model(unbuilt)


def test_quantized_model_exports_as_saved_model(tmp_path):
    """Swapped layers live in edited tracked lists; they must stay saveable."""
    qat = tq.quantize_model(testing.functional_dense())
    archive = keras.export.ExportArchive()
    archive.track(qat)
    archive.add_endpoint(
        "serve",
        lambda x: qat(x, training=False),
        input_signature=[tf.TensorSpec((None, 16), tf.float32)],
    )
    archive.write_out(str(tmp_path / "saved"))
    restored = tf.saved_model.load(str(tmp_path / "saved"))
    x = testing.inputs_for(qat)
    testing.assert_outputs_close(restored.serve(x), qat(x, training=False))


@pytest.mark.parametrize("inplace", [False, True], ids=["copy", "inplace"])
def test_unregistered_subclassed_model_quantizes_saves_and_exports(inplace, tmp_path):
    model = testing.net()
    x, y = testing.net_data()
    qat = tq.quantize_model(model, inplace=inplace)
    assert (qat is model) == inplace and isinstance(qat, testing.Net)
    wrapped = [r.layer for r in walk_layers(qat) if isinstance(r.layer, tq.QuantizeWrapper)]
    assert len(wrapped) == 5
    # The user's layers, and no bookkeeping layer beside them.
    assert [type(layer) for layer in qat.layers] == [testing.NetBlock] * 2 + [tq.QuantizeWrapper]
    if not inplace:
        assert not [r for r in walk_layers(model) if isinstance(r.layer, tq.QuantizeWrapper)]
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, y, batch_size=8, epochs=1, verbose=0)

    path = str(tmp_path / "qat.weights.h5")
    qat.save_weights(path)
    fresh = tq.quantize_model(testing.net(seed=1), inplace=True)
    fresh.load_weights(path)
    testing.assert_outputs_close(fresh(x), qat(x))
    exported = tfcompress.export.to_tflite(qat, "int8", sample=x[:8])
    assert exported.checks["outputs_match"]["passed"]
    assert "int8" in _tensor_types(exported.tflite_bytes)


def _pruned_dense_digits(x_train, y_train):
    """The README pipeline's first half: train, prune to 50%, strip."""
    import tfcompress.sparsity as ts

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)]
    )
    compile_classifier(model, 1e-3).fit(x_train, y_train, epochs=5, batch_size=32, verbose=0)
    pruned = ts.prune_low_magnitude(model, ts.ConstantSparsity(0.5, begin_step=0))
    compile_classifier(pruned, 1e-3).fit(
        x_train, y_train, epochs=1, batch_size=32, verbose=0, callbacks=[ts.UpdatePruningStep()]
    )
    return ts.strip_pruning(pruned)


def _int8_kernels(path):
    """`{shape: int8 values}` of the constant int8 matrices of a TFLite file."""
    interpreter = tflite_interpreter(open(path, "rb").read())
    return {
        tuple(d["shape"]): interpreter.get_tensor(d["index"])
        for d in interpreter.get_tensor_details()
        if d["dtype"] == np.int8 and len(d["shape"]) == 2 and d["shape"][0] > 1
    }


def test_qat_of_a_pruned_model_keeps_every_zero_by_default(tmp_path, caplog):
    """Prune, strip, QAT with the defaults, fit, int8 export: no pruned weight comes back."""
    from tfcompress import export

    x_train, y_train, x_test, y_test = load_digits(test_fraction=0.3)
    x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    stripped = _pruned_dense_digits(x_train, y_train)
    pruned = {layer.name: layer.kernel.numpy() == 0 for layer in stripped.layers}
    assert all(zeros.mean() == 0.5 for zeros in pruned.values())

    with caplog.at_level("INFO", logger="tfcompress"):
        qat = tq.quantize_model(stripped)
    compile_classifier(qat, 1e-3).fit(x_train, y_train, epochs=2, batch_size=32, verbose=0)
    for wrapper in qat.layers:
        zeros = pruned[wrapper.layer.name]
        assert np.count_nonzero(wrapper.layer.kernel.numpy()[zeros]) == 0
        [(_, quantized)] = wrapper.substitutions(training=False)
        assert np.count_nonzero(quantized.numpy()[zeros]) == 0
    assert np.mean(qat.predict(x_test, verbose=0).argmax(1) == y_test) > 0.9
    [record] = [r for r in caplog.records if "preserve_sparsity" in r.getMessage()]
    assert "Keeping the zeros of 2 already sparse (pruned) layers" in record.getMessage()
    assert str([layer.name for layer in stripped.layers]) in record.getMessage()

    result = export.to_tflite(
        qat, "int8", int8_io=True, path=str(tmp_path / "int8.tflite"), sample=x_test[:32]
    )
    kernels = _int8_kernels(result.path)
    for zeros in pruned.values():
        int8 = kernels[zeros.T.shape]  # FULLY_CONNECTED stores [out, in]
        assert np.count_nonzero(int8[zeros.T]) == 0, "pruned weights are non-zero in the int8 file"


def test_preserve_sparsity_false_lets_pruned_weights_train(caplog):
    x_train, y_train, _, _ = load_digits(test_fraction=0.3)
    x_train = x_train.reshape(len(x_train), -1)
    stripped = _pruned_dense_digits(x_train, y_train)
    zeros = stripped.layers[0].kernel.numpy() == 0
    with caplog.at_level("INFO", logger="tfcompress"):
        qat = tq.quantize_model(stripped, preserve_sparsity=False)
    assert not [r for r in caplog.records if "preserve_sparsity" in r.getMessage()]
    compile_classifier(qat, 1e-3).fit(x_train, y_train, epochs=2, batch_size=32, verbose=0)
    assert np.count_nonzero(qat.layers[0].layer.kernel.numpy()[zeros]) > 0.5 * zeros.sum()


def test_dense_models_get_no_sparsity_mask(caplog):
    with caplog.at_level("INFO", logger="tfcompress"):
        qat = tq.quantize_model(testing.functional_dense())
    assert not any(w.preserve_sparsity for w in qat.layers if isinstance(w, tq.QuantizeWrapper))
    assert not [r for r in caplog.records if "preserve_sparsity" in r.getMessage()]


def test_zero_initialised_kernels_are_not_taken_for_pruned_ones():
    """A branch meant to start at zero (all-zero kernel) still trains under QAT."""
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(16, name="dense")(inputs)
    branch = keras.layers.Dense(16, kernel_initializer="zeros", name="zero_init")(hidden)
    outputs = keras.layers.Dense(4, name="head")(keras.layers.Add()([hidden, branch]))
    qat = tq.quantize_model(keras.Model(inputs, outputs))
    wrappers = {w.layer.name: w for w in qat.layers if isinstance(w, tq.QuantizeWrapper)}
    assert not wrappers["zero_init"].preserve_sparsity
    x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
    y = np.random.default_rng(1).integers(0, 4, size=64)
    compile_classifier(qat, 1e-2).fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.count_nonzero(wrappers["zero_init"].layer.kernel.numpy()) > 0


def test_preserve_sparsity_must_be_none_or_a_bool():
    with pytest.raises(
        TypeError, match=r"`preserve_sparsity` must be None .*Received: preserve_sparsity='auto'"
    ):
        tq.quantize_model(testing.functional_dense(), preserve_sparsity="auto")
