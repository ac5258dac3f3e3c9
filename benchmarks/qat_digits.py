"""Digits data and TFLite helpers shared by the QAT benchmarks.

The CNN is `tfcompress.cli.digits.build_digits_cnn(keras_module, pooled=True)`,
which builds the same model from `keras` or `tf_keras`, so the TFMOT twin is
the same network.
"""

import contextlib
import io

import numpy as np

# Both frameworks train on the same 70/30 split of `tfcompress.cli.digits.load_digits`.
TEST_FRACTION = 0.3


class StepTimer:
    """`StepTimer.make(Callback)`: a batch timer for Keras 3 or tf_keras.

    Records the wall time of every training batch after the first epoch
    (which includes tracing); report the median, robust to other processes
    sharing the CPU.
    """

    @staticmethod
    def make(callback_base):
        import time

        class _Timer(callback_base):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_train_batch_begin(self, batch, logs=None):
                self._start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                if self._epoch > 0:
                    self.times.append(time.perf_counter() - self._start)

            def on_epoch_begin(self, epoch, logs=None):
                self._epoch = epoch

        return _Timer()


def fit_and_evaluate(tf, keras_module, qat, data, epochs, batch_size):
    """Trains a compiled QAT model, converts it to int8 TFLite and measures it.

    The same steps for Keras 3 (tfcompress) and tf_keras (TFMOT, in its own
    process), so the two sides differ only in the library.

    Args:
        tf: the `tensorflow` module (imported by the caller after it chose its Keras).
        keras_module: `keras` or `tf_keras`.
        qat: the compiled quantization-aware model.
        data: `(x_train, y_train, x_test, y_test)`.
        epochs: QAT epochs.
        batch_size: training batch size.

    Returns:
        `evaluate_tflite`'s dict plus "keras_accuracy" (the QAT model's own)
        and "step_ms" (median training step after the first epoch).
    """
    x_train, y_train, x_test, y_test = data
    timer = StepTimer.make(keras_module.callbacks.Callback)
    qat.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[timer])
    keras_logits = qat.predict(x_test, verbose=0)
    result = evaluate_tflite(to_int8_tflite(tf, qat), keras_logits, x_test, y_test)
    result["keras_accuracy"] = float(np.mean(keras_logits.argmax(1) == y_test))
    result["step_ms"] = 1000 * float(np.median(timer.times))
    return result


def evaluate_tflite(model_bytes, keras_logits, x_test, y_test):
    """`{"accuracy", "agreement", "size_bytes"}` of an int8 TFLite model."""
    logits = run_tflite(model_bytes, x_test)
    return {
        "accuracy": float(np.mean(logits.argmax(1) == y_test)),
        "agreement": float(np.mean(logits.argmax(1) == keras_logits.argmax(1))),
        "size_bytes": len(model_bytes),
        "tensor_types": tensor_types(model_bytes),
    }


def to_int8_tflite(tf, keras_model):
    """Full-integer TFLite bytes (int8 input and output), no dataset needed."""
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):  # Keras export prints its signature
        return converter.convert()


def run_tflite(model_bytes, x):
    """Dequantized outputs of an int8 TFLite model on float inputs `x`."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    results = []
    for row in x:
        q = np.clip(np.round(row / in_scale + in_zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], q[None])
        interpreter.invoke()
        raw = interpreter.get_tensor(out["index"])[0].astype("float32")
        results.append((raw - out_zero) * out_scale)
    return np.stack(results)


def tensor_types(model_bytes):
    """`{dtype name: count}` over every tensor of the TFLite model."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    counts = {}
    for detail in interpreter.get_tensor_details():
        name = np.dtype(detail["dtype"]).name
        counts[name] = counts.get(name, 0) + 1
    return counts
