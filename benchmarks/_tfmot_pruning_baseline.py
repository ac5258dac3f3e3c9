"""TFMOT side of `pruning_vs_tfmot.py`: prunes the tf_keras digits CNN.

Run by `pruning_vs_tfmot.py` in a subprocess, because importing
`tensorflow_model_optimization` switches `tf.keras` to tf_keras for the whole
process. It loads the float weights the parent trained in Keras 3, prunes with
TFMOT's `PolynomialDecay`, and writes its measurements as JSON.
"""

import json
import math
import os

# tf.keras must resolve to tf_keras before TensorFlow is first imported; TFMOT
# would set this itself on import, but only after `tensorflow` is loaded here.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import common
from absl import app, flags

from tfcompress.cli.digits import load_digits

_SEED = flags.DEFINE_integer("seed", 0, "Seed of the data split and order.")
_WEIGHTS = flags.DEFINE_string(
    "weights", None, "`.npz` of the float model's weights, in layer order."
)
_EPOCHS = flags.DEFINE_integer("epochs", 4, "Pruning epochs.")
_RECOVERY_EPOCHS = flags.DEFINE_integer("recovery_epochs", 0, "Epochs trained after end_step.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Training batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
_FINAL_SPARSITY = flags.DEFINE_float(
    "final_sparsity", 0.8, "Target sparsity of the PolynomialDecay schedule."
)
_FREQUENCY = flags.DEFINE_integer(
    "frequency", 100, "Steps between mask updates (TFMOT's default is 100)."
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Directory for the TFLite file and stripped weights."
)
_JSON = flags.DEFINE_string("json", None, "Where to write the JSON result.")

flags.mark_flags_as_required(["weights", "output_dir", "json"])


def main(argv):
    del argv
    import tensorflow_model_optimization as tfmot
    import tf_keras

    tf_keras.utils.set_random_seed(_SEED.value)
    x_train, y_train, x_test, y_test = load_digits(
        _SEED.value, test_fraction=0.25, shuffle_train=True
    )
    steps_per_epoch = math.ceil(len(x_train) / _BATCH_SIZE.value)
    end_step = steps_per_epoch * _EPOCHS.value

    stripped, timer = common.prune_and_fit(
        tf_keras,
        tfmot.sparsity.keras,
        _WEIGHTS.value,
        (x_train, y_train),
        end_step=end_step,
        final_sparsity=_FINAL_SPARSITY.value,
        frequency=_FREQUENCY.value,
        learning_rate=_LEARNING_RATE.value,
        batch_size=_BATCH_SIZE.value,
        epochs=_EPOCHS.value + _RECOVERY_EPOCHS.value,
    )

    os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
    tflite_path = os.path.join(_OUTPUT_DIR.value, f"tfmot_seed{_SEED.value}.tflite")
    tflite_bytes = common.tflite_float32(stripped, tflite_path)
    weights_path = os.path.join(_OUTPUT_DIR.value, f"tfmot_seed{_SEED.value}_stripped.npz")
    common.save_weights_npz(stripped, weights_path)
    overall, per_layer = common.kernel_sparsity(stripped)
    result = {
        "sparsity": overall,
        "per_layer_sparsity": per_layer,
        "accuracy": common.accuracy(stripped, x_test, y_test),
        "tflite_path": tflite_path,
        "stripped_weights": weights_path,
        "tflite_bytes": tflite_bytes,
        "gzip_bytes": common.gzip_size(tflite_path),
        "step_time_s": timer.median(),
        "step_time_p10_s": timer.percentile(10),
        "timed_steps": len(timer.times),
        "end_step": end_step,
    }
    with open(_JSON.value, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    app.run(main)
