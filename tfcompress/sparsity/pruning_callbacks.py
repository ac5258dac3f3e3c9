"""Callbacks that drive pruning during `model.fit`."""

import os

import keras
import numpy as np

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

    Required when fitting a model from `prune_low_magnitude`. The step resumes
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
        saved = max(int(w.pruning_step.numpy()) for w in self._wrappers)
        if saved >= 0:
            self.step = saved + 1
        else:
            optimizer = getattr(self.model, "optimizer", None)
            iterations = getattr(optimizer, "iterations", None)
            self.step = int(iterations.numpy()) if iterations is not None else 0
        for wrapper in self._wrappers:
            wrapper.step_callback_attached = True

    def on_train_batch_begin(self, batch, logs=None):
        for wrapper in self._wrappers:
            wrapper.pruning_step.assign(self.step)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1

    def on_epoch_end(self, epoch, logs=None):
        # The masks already hold; re-apply them so checkpoints store zeros.
        for wrapper in self._wrappers:
            for weight, mask in wrapper.pruning_vars:
                weight.assign(weight * mask)


class PruningSummaries(keras.callbacks.TensorBoard):
    """TensorBoard logs of each pruned weight's sparsity and the target.

    Writes, at every epoch end (or every `update_freq` batches when it is an
    int), a scalar per pruned weight (`pruning/<weight path>/sparsity`) and the
    schedule's target (`pruning/<layer>/target_sparsity`), beside the usual
    TensorBoard logs.

    Args:
        log_dir: directory for the event files.
        update_freq: 'epoch' or an int number of batches.
        **kwargs: other `keras.callbacks.TensorBoard` arguments.
    """

    def __init__(self, log_dir, update_freq="epoch", **kwargs):
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ValueError(
                "`log_dir` must be a directory path for TensorBoard logs. "
                f"Received: log_dir={log_dir!r}"
            )
        super().__init__(log_dir=str(log_dir), update_freq=update_freq, **kwargs)
        self._summary_every = update_freq
        self._batches = 0

    def _write_pruning(self, step):
        import tensorflow as tf  # summaries are TensorBoard, i.e. TensorFlow

        writer = self._train_writer
        with writer.as_default():
            for wrapper in pruning_wrappers(self.model):
                target = wrapper.pruning_schedule.sparsity_at(
                    max(int(wrapper.pruning_step.numpy()), 0)
                )
                tf.summary.scalar(
                    f"pruning/{wrapper.layer.name}/target_sparsity",
                    float(keras.ops.convert_to_numpy(target)),
                    step=step,
                )
                for weight, mask in wrapper.pruning_vars:
                    value = np.asarray(mask.numpy())
                    tf.summary.scalar(
                        f"pruning/{weight.path}/sparsity",
                        float(1.0 - value.mean()),
                        step=step,
                    )
            writer.flush()

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        self._batches += 1
        if isinstance(self._summary_every, int) and self._batches % self._summary_every == 0:
            self._write_pruning(self._batches)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self._summary_every == "epoch":
            self._write_pruning(epoch)
