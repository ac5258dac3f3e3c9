"""Callbacks that drive pruning during `model.fit`."""

import os
import warnings

import keras
import numpy as np

from tfcompress.core.checks import check_int
from tfcompress.core.layer_tree import walk_layers
from tfcompress.sparsity.pruning_wrapper import PruneLowMagnitude


def pruning_wrappers(model):
    """Every `PruneLowMagnitude` wrapper inside `model`, nested ones included."""
    return [
        ref.layer
        for ref in walk_layers(model, descend=lambda l: not isinstance(l, PruneLowMagnitude))
        if isinstance(ref.layer, PruneLowMagnitude)
    ]


class UpdatePruningStep(keras.callbacks.Callback):
    """Advances the pruning step of every wrapper before each training batch.

    Required when fitting a model from `prune_low_magnitude`: it updates the
    masks when the schedule says so. The step resumes
    from the wrappers' saved `pruning_step`, so a model saved mid-pruning and
    reloaded continues the schedule where it stopped; a fresh model starts at
    the optimizer's iteration count, like TFMOT.

    Example:

    ```python
    model.fit(x, y, callbacks=[tfcompress.sparsity.UpdatePruningStep()])
    ```
    """

    def __init__(self):
        super().__init__()
        self.step = 0
        self._wrappers = []

    def on_train_begin(self, logs=None):
        self._wrappers = pruning_wrappers(self.model)
        if not self._wrappers:
            raise ValueError(
                "UpdatePruningStep was given a model with no pruned layers. "
                "Prune it first with tfcompress.sparsity.prune_low_magnitude."
            )
        # Resume: the optimizer counts every step taken (and is saved with the
        # model); the wrappers' own step covers a re-compiled optimizer.
        saved = max(int(w.pruning_step.numpy()) for w in self._wrappers)
        optimizer = getattr(self.model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None)
        done = int(iterations.numpy()) if iterations is not None else 0
        self.step = max(done, saved + 1)
        for wrapper in self._wrappers:
            wrapper.step_callback_attached = True
        self._warn_if_schedule_outlasts_training()

    def _warn_if_schedule_outlasts_training(self):
        params = self.params or {}
        epochs, steps = params.get("epochs"), params.get("steps")
        if self.step != 0 or not epochs or not steps:
            return
        last_step = epochs * steps - 1
        for wrapper in self._wrappers:
            end = wrapper.pruning_schedule.end_step
            if end > last_step:
                warnings.warn(
                    f"The pruning schedule of {wrapper.name!r} ends at "
                    f"end_step={end}, after the last step of this fit "
                    f"({last_step}: steps count from 0), so its final sparsity "
                    f"will not be reached. Set end_step <= {last_step}, ideally "
                    "an epoch before the end so the model recovers from the "
                    "last mask update.",
                    stacklevel=2,
                )
                return

    def on_train_batch_begin(self, batch, logs=None):
        for wrapper in self._wrappers:
            wrapper.set_step(self.step)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1

    def _record_step(self):
        for wrapper in self._wrappers:
            wrapper.pruning_step.assign(self.step - 1)

    def on_epoch_end(self, epoch, logs=None):
        self._record_step()

    def on_train_end(self, logs=None):
        self._record_step()


def _write_scalar(tag, value, step):
    import tensorflow as tf  # event files are TensorFlow's format

    metadata = tf.compat.v1.SummaryMetadata(
        plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")
    )
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=metadata)


class PruningSummaries(keras.callbacks.Callback):
    """TensorBoard event files of each pruned weight's sparsity and target.

    Writes to `<log_dir>/train`, at every epoch end (or every `update_freq`
    batches when it is an int), a scalar per pruned weight
    (`pruning/<weight path>/sparsity`), the schedule's target per layer
    (`pruning/<layer>/target_sparsity`), and with 'epoch' the training logs
    (`epoch_loss`...). Needs TensorFlow but not the `tensorboard` package.

    Args:
        log_dir: directory for the event files.
        update_freq: 'epoch' or a positive int number of batches.

    Raises:
        ValueError: for an empty `log_dir` or a bad `update_freq`.

    Example:

    ```python
    model.fit(x, y, callbacks=[
        tfcompress.sparsity.UpdatePruningStep(),
        tfcompress.sparsity.PruningSummaries("logs/pruning"),
    ])
    ```
    """

    def __init__(self, log_dir, update_freq="epoch"):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ValueError(
                "`log_dir` must be a directory path for TensorBoard logs. "
                f"Received: log_dir={log_dir!r}"
            )
        if not (isinstance(update_freq, str) and update_freq == "epoch"):
            update_freq = check_int(
                update_freq, "update_freq", 1, expected="'epoch' or a positive number of batches"
            )
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self._batches = 0
        self._writer = None

    def on_train_begin(self, logs=None):
        import tensorflow as tf  # event files are TensorFlow's format

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "train"))

    def _write(self, step, logs=None):
        with self._writer.as_default():
            for name, value in (logs or {}).items():
                _write_scalar(f"epoch_{name}", float(value), step)
            # `pruning_step` is written only when masks change; the optimizer
            # counts every step taken.
            iterations = getattr(getattr(self.model, "optimizer", None), "iterations", None)
            last_step = int(iterations.numpy()) - 1 if iterations is not None else 0
            for wrapper in pruning_wrappers(self.model):
                target = wrapper.pruning_schedule.sparsity_at(
                    max(int(wrapper.pruning_step.numpy()), last_step, 0)
                )
                _write_scalar(
                    f"pruning/{wrapper.layer.name}/target_sparsity",
                    float(keras.ops.convert_to_numpy(target)),
                    step,
                )
                for weight, mask in wrapper.pruning_vars:
                    kept = float(np.mean(keras.ops.convert_to_numpy(mask)))
                    _write_scalar(f"pruning/{weight.path}/sparsity", 1.0 - kept, step)
        self._writer.flush()

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self.update_freq != "epoch" and self._batches % self.update_freq == 0:
            self._write(self._batches)

    def on_epoch_end(self, epoch, logs=None):
        if self.update_freq == "epoch":
            self._write(epoch, logs)

    def on_train_end(self, logs=None):
        self._writer.flush()
