import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress.sparsity import (
    ConstantSparsity,
    PruningSummaries,
    UpdatePruningStep,
    prune_low_magnitude,
)
from tfcompress.sparsity.pruning_callbacks import pruning_wrappers

import testing


def _read_scalars(log_dir):
    """{tag: [(step, value)]} from every event file under `log_dir`."""
    scalars = {}
    for path in glob.glob(os.path.join(log_dir, "**", "events.out.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                number = (
                    float(tf.make_ndarray(value.tensor))
                    if value.HasField("tensor")
                    else value.simple_value
                )
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars


def _pruned_mlp(sparsity=0.5):
    model = prune_low_magnitude(
        testing.functional_dense(), ConstantSparsity(sparsity, 0, frequency=1)
    )
    model.compile("adam", "mse", jit_compile=False)
    return model


def test_pruning_summaries_write_per_weight_sparsity(tmp_path):
    model = _pruned_mlp()
    x = np.random.default_rng(0).normal(size=(8, 16)).astype("float32")
    log_dir = str(tmp_path / "logs")
    model.fit(
        x,
        np.zeros((8, 4)),
        batch_size=4,
        epochs=2,
        verbose=0,
        callbacks=[UpdatePruningStep(), PruningSummaries(log_dir)],
    )
    scalars = _read_scalars(log_dir)
    for name in ("dense_1", "dense_2", "logits"):
        sparsity = scalars[f"pruning/{name}/kernel/sparsity"]
        assert [step for step, _ in sparsity] == [0, 1]
        assert sparsity[-1][1] == pytest.approx(0.5)
        assert scalars[f"pruning/{name}/target_sparsity"][-1][1] == pytest.approx(0.5)
    assert "epoch_loss" in scalars  # the usual TensorBoard logs too


def test_pruning_summaries_every_n_batches(tmp_path):
    model = _pruned_mlp(0.25)
    log_dir = str(tmp_path / "logs")
    model.fit(
        np.ones((16, 16)),
        np.zeros((16, 4)),
        batch_size=4,
        verbose=0,
        callbacks=[UpdatePruningStep(), PruningSummaries(log_dir, update_freq=2)],
    )
    steps = [s for s, _ in _read_scalars(log_dir)["pruning/logits/kernel/sparsity"]]
    assert steps == [2, 4]


def test_pruning_summaries_rejects_bad_log_dir():
    with pytest.raises(ValueError, match="log_dir=None"):
        PruningSummaries(None)


def test_update_pruning_step_needs_pruned_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="no pruned layers.*prune_low_magnitude"):
        model.fit(np.ones((2, 2)), np.ones((2, 1)), verbose=0, callbacks=[UpdatePruningStep()])


def test_update_pruning_step_counts_batches():
    model = _pruned_mlp()
    callback = UpdatePruningStep()
    model.fit(
        np.ones((12, 16)),
        np.zeros((12, 4)),
        batch_size=4,
        epochs=2,
        verbose=0,
        callbacks=[callback],
    )
    assert callback.step == 6
    assert {int(w.pruning_step.numpy()) for w in pruning_wrappers(model)} == {5}
    # A second fit continues the schedule from the saved step.
    model.fit(np.ones((4, 16)), np.zeros((4, 4)), verbose=0, callbacks=[callback])
    assert {int(w.pruning_step.numpy()) for w in pruning_wrappers(model)} == {6}


_MIRRORED = r"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from tfcompress.sparsity import PolynomialDecay, UpdatePruningStep, prune_low_magnitude
from tfcompress.sparsity.pruning_callbacks import pruning_wrappers
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
with strategy.scope():
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4)(hidden))
    pruned = prune_low_magnitude(
        model, PolynomialDecay(0.0, 0.8, 0, 5, frequency=2))
    pruned.compile("adam", "mse")
x = np.random.default_rng(0).normal(size=(48, 16)).astype("float32")
pruned.fit(x, x[:, :4], batch_size=8, shuffle=False, verbose=0,
           callbacks=[UpdatePruningStep()])
for wrapper in pruning_wrappers(pruned):
    for weight, mask in wrapper.pruning_vars:
        print(weight.path, float(np.mean(weight.numpy() == 0)),
              float(np.mean(mask.numpy() == 0)))
"""


def test_mirrored_strategy_reaches_target_sparsity():
    lines = testing.run_python(_MIRRORED).strip().splitlines()
    results = [line.split() for line in lines if "/kernel" in line]
    assert len(results) == 2
    for path, weight_zeros, mask_zeros in results:
        assert float(weight_zeros) == pytest.approx(0.8, abs=1 / 64), path
        assert float(mask_zeros) == float(weight_zeros)


def test_warns_when_the_schedule_ends_after_the_last_step():
    from tfcompress.sparsity import PolynomialDecay

    # 16 samples / batch 4 x 2 epochs = steps 0..7; end_step=8 is never run.
    model = prune_low_magnitude(
        testing.functional_dense(), PolynomialDecay(0.0, 0.5, 0, 8, frequency=1)
    )
    model.compile("adam", "mse")
    with pytest.warns(UserWarning, match=r"end_step=8, after the last step of this fit \(7"):
        model.fit(
            np.ones((16, 16)),
            np.zeros((16, 4)),
            batch_size=4,
            epochs=2,
            verbose=0,
            callbacks=[UpdatePruningStep()],
        )


def test_step_resumes_from_the_optimizer_after_a_partial_fit():
    model = _pruned_mlp()
    callback = UpdatePruningStep()
    model.fit(
        np.ones((16, 16)),
        np.zeros((16, 4)),
        batch_size=4,
        epochs=1,
        verbose=0,
        callbacks=[callback],
    )
    assert callback.step == 4
    assert all(int(w.pruning_step.numpy()) == 3 for w in pruning_wrappers(model))
    second = UpdatePruningStep()
    model.fit(
        np.ones((16, 16)), np.zeros((16, 4)), batch_size=4, epochs=1, verbose=0, callbacks=[second]
    )
    assert second.step == 8


def test_pruning_summaries_target_follows_every_step_between_mask_updates(tmp_path):
    from tfcompress.sparsity import PolynomialDecay

    # Masks update every 100 steps, but the logged target is the schedule's at
    # the step just trained (steps 0..3 of a 0 -> 0.8 ramp over 8 steps).
    schedule = PolynomialDecay(0.0, 0.8, 0, 8, frequency=100)
    model = prune_low_magnitude(testing.functional_dense(), schedule)
    model.compile("adam", "mse")
    log_dir = str(tmp_path / "logs")
    model.fit(
        np.ones((8, 16)),
        np.zeros((8, 4)),
        batch_size=2,
        verbose=0,
        callbacks=[UpdatePruningStep(), PruningSummaries(log_dir, update_freq=4)],
    )
    ((step, target),) = _read_scalars(log_dir)["pruning/logits/target_sparsity"]
    assert step == 4
    assert target == pytest.approx(float(schedule.sparsity_at(3)))
