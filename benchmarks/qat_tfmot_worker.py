"""TFMOT side of `qat_vs_tfmot.py`; runs in its own process.

Importing TFMOT switches `tf.keras` to tf_keras for the whole process, so it
never shares a process with tfcompress. Loads the float weights trained by
the parent (same network, same order of weights), runs TFMOT's default
8-bit QAT with the same data and schedule, converts to int8 TFLite and
writes the metrics as JSON.
"""

import json

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("weights", None, "npz of float weights written by the parent.", required=True)
flags.DEFINE_string("output", None, "JSON file to write.", required=True)
flags.DEFINE_integer("seed", 0, "Random seed (data split and training).")
flags.DEFINE_integer("qat_epochs", 3, "QAT epochs.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-4, "Adam learning rate for QAT.")


def main(argv):
    del argv
    import numpy as np
    import qat_digits
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from tfcompress.cli.digits import build_digits_cnn, load_digits

    tf_keras.utils.set_random_seed(FLAGS.seed)
    data = load_digits(FLAGS.seed, test_fraction=qat_digits.TEST_FRACTION)
    model = build_digits_cnn(tf_keras, pooled=True)
    stored = np.load(FLAGS.weights)
    model.set_weights([stored[f"w{i}"] for i in range(len(stored.files))])
    qat = tfmot.quantization.keras.quantize_model(model)
    qat.compile(
        tf_keras.optimizers.Adam(FLAGS.learning_rate),
        tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    result = qat_digits.fit_and_evaluate(
        tf, tf_keras, qat, data, FLAGS.qat_epochs, FLAGS.batch_size
    )
    with open(FLAGS.output, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    app.run(main)
