"""Distillation in the same fit as pruning, QAT and tf.distribute."""

import keras
import numpy as np
import pytest

from distillation.distiller_test import _digits, _mlp
from tfcompress import quantization, sparsity
from tfcompress.distillation import Distiller

import testing


@pytest.fixture(scope="module")
def data():
    x, y = _digits()
    return x[:512], y[:512]


@pytest.fixture(scope="module")
def teacher(data):
    model = _mlp(64, "teacher")
    model.compile(
        keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(*data, epochs=5, verbose=0)
    return model


def _fit(student, teacher, data, **fit_kwargs):
    distiller = Distiller(student, teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(0.01),
        metrics=["accuracy"],
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        feature_losses=[("hidden", "hidden")],
    )
    history = distiller.fit(*data, epochs=10, batch_size=32, verbose=0, **fit_kwargs).history
    return distiller, history


def test_pruned_student_distils_and_reaches_its_sparsity(data, teacher):
    schedule = sparsity.ConstantSparsity(0.75, begin_step=0, frequency=4)
    student = sparsity.prune_low_magnitude(_mlp(32, "student", seed=1), pruning_schedule=schedule)
    distiller, history = _fit(student, teacher, data, callbacks=[sparsity.UpdatePruningStep()])
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    assert history["accuracy"][-1] > 0.75
    assert "prune_low_magnitude_hidden" in distiller._pairs[0].student_path
    stripped = sparsity.strip_pruning(distiller.student)
    kernel = stripped.get_layer("hidden").kernel.numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.75, abs=0.01)


def test_quantization_aware_student_distils(data, teacher):
    student = quantization.quantize_model(_mlp(32, "student", seed=2))
    distiller, history = _fit(student, teacher, data)
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    assert history["accuracy"][-1] > 0.75
    assert any(isinstance(ref, quantization.QuantizeWrapper) for ref in distiller.student.layers)
    assert distiller._pairs[0].student_path == "quant_hidden"


_MIRRORED = """
import json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from tfcompress.distillation import Distiller

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 6)).astype("float32")
y = rng.integers(0, 3, 64)

def model(width, seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(width, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(hidden))

def train(strategy):
    with strategy.scope():
        distiller = Distiller(model(4, 1), model(16, 0))
        distiller.compile(
            optimizer=keras.optimizers.SGD(0.1),
            student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            feature_losses=[("hidden", "hidden")],
        )
    keras.utils.set_random_seed(2)
    history = distiller.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0).history
    return history, [w.numpy().tolist() for w in distiller.trainable_weights]

one, one_weights = train(tf.distribute.get_strategy())
two_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
two, two_weights = train(two_strategy)
print(json.dumps({"replicas": two_strategy.num_replicas_in_sync, "one": one, "two": two,
                  "max_diff": max(float(np.max(np.abs(np.array(a) - np.array(b))))
                                  for a, b in zip(one_weights, two_weights))}))
"""


def test_mirrored_strategy_matches_single_device_training():
    import json

    result = json.loads(testing.run_python(_MIRRORED).strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["max_diff"] < 1e-5
    for name in ("loss", "student_loss", "distillation_loss", "feature_loss"):
        np.testing.assert_allclose(result["one"][name], result["two"][name], rtol=1e-5)
