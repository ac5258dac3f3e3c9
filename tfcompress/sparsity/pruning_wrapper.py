"""The layer wrapper that holds pruning masks and applies them."""

import keras
from keras import ops

from tfcompress.core.checks import check_pair
from tfcompress.core.wrapper import CompressionWrapper
from tfcompress.sparsity import masks as masks_lib, pruning_schedule as schedule_lib
from tfcompress.sparsity.prune_registry import SUPPORTED, prunable_weights, reduction_axis


def _check_block(block_size, block_pooling_type):
    block_size = check_pair(
        block_size,
        "block_size",
        1,
        expected="a pair of positive ints, e.g. (1, 1) for unstructured or (1, 4) for blocks",
    )
    if block_pooling_type not in ("AVG", "MAX"):
        raise ValueError(
            "`block_pooling_type` must be 'AVG' or 'MAX'. Received: "
            f"block_pooling_type={block_pooling_type!r}"
        )
    return block_size


def _check_m_by_n(sparsity_m_by_n, block_size):
    if sparsity_m_by_n is None:
        return None
    expected = "(m, n) with 0 < m < n: m zeros in every n consecutive weights, e.g. (2, 4)"
    m, n = check_pair(sparsity_m_by_n, "sparsity_m_by_n", 1, expected=expected)
    if not m < n:
        raise ValueError(
            f"`sparsity_m_by_n` must be {expected}. Received: sparsity_m_by_n={sparsity_m_by_n!r}."
        )
    if tuple(block_size) != (1, 1):
        raise ValueError(
            "`sparsity_m_by_n` and `block_size` cannot be combined. Received: "
            f"sparsity_m_by_n={sparsity_m_by_n!r}, block_size={block_size!r}; "
            "leave block_size at (1, 1)."
        )
    return m, n


def check_arguments(pruning_schedule, block_size, block_pooling_type, sparsity_m_by_n):
    """Validates the pruning arguments shared by the wrapper and its API.

    Returns:
        `(schedule, block_size, sparsity_m_by_n)`, normalized (a default or
        deserialized schedule, tuples).

    Raises:
        TypeError: when `pruning_schedule` is not a `PruningSchedule`.
        ValueError: for a bad `block_size`, `block_pooling_type` or
            `sparsity_m_by_n`.
    """
    if pruning_schedule is None:
        pruning_schedule = schedule_lib.ConstantSparsity(0.5, begin_step=0)
    if isinstance(pruning_schedule, dict):
        pruning_schedule = keras.saving.deserialize_keras_object(pruning_schedule)
    if not isinstance(pruning_schedule, schedule_lib.PruningSchedule):
        raise TypeError(
            "`pruning_schedule` must be a tfcompress.sparsity.PruningSchedule "
            "such as ConstantSparsity(0.5, 0) or PolynomialDecay(...). "
            f"Received: pruning_schedule={pruning_schedule!r}"
        )
    block_size = _check_block(block_size, block_pooling_type)
    return pruning_schedule, block_size, _check_m_by_n(sparsity_m_by_n, block_size)


class _MaskConstraint:
    """`constraint(w) * mask`: the weight's own constraint, then the mask.

    Run by the optimizer whenever it updates the weight, so it also catches
    training without `UpdatePruningStep` in models that do not pass
    `training` down to their layers.
    """

    def __init__(self, wrapper, mask, constraint=None):
        self.wrapper = wrapper
        self.mask = mask
        self.constraint = constraint

    def __call__(self, weight):
        self.wrapper.check_step_callback()
        if self.constraint is not None:
            weight = self.constraint(weight)
        return weight * ops.cast(self.mask, weight.dtype)


@keras.saving.register_keras_serializable(package="tfcompress")
class PruneLowMagnitude(CompressionWrapper):
    """Prunes a layer's kernel to the lowest-magnitude weights.

    Created by `tfcompress.sparsity.prune_low_magnitude`, like TFMOT's wrapper
    of the same name. The `UpdatePruningStep` callback recomputes the masks
    before each training batch at which the schedule prunes. The layer always
    computes with `kernel * mask`, so pruned weights contribute nothing and
    receive no gradient, and the stored kernel is kept at zero where masked.

    Args:
        layer: the layer to prune (see `prune_registry.prunable_weights`).
        pruning_schedule: a `PruningSchedule`; default
            `ConstantSparsity(0.5, begin_step=0, frequency=100)`.
        block_size: `(rows, cols)` of the blocks pruned together; (1, 1) is
            unstructured.
        block_pooling_type: 'AVG' or 'MAX', how a block's magnitude is scored.
        sparsity_m_by_n: optional `(m, n)`: m zeros in every n consecutive
            weights along the kernel's input axis (2:4 for sparse tensor cores).
        prune_embeddings: allow pruning Embedding tables.
        **kwargs: base layer arguments.

    Example:

    ```python
    wrapper = tfcompress.sparsity.PruneLowMagnitude(
        keras.layers.Dense(8), tfcompress.sparsity.ConstantSparsity(0.5, 0))
    ```
    """

    def __init__(
        self,
        layer,
        pruning_schedule=None,
        block_size=(1, 1),
        block_pooling_type="AVG",
        sparsity_m_by_n=None,
        prune_embeddings=False,
        **kwargs,
    ):
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        pruning_schedule, block_size, self.sparsity_m_by_n = check_arguments(
            pruning_schedule, block_size, block_pooling_type, sparsity_m_by_n
        )
        super().__init__(layer, **kwargs)
        self.pruning_schedule = pruning_schedule
        self.block_size = block_size
        self.block_pooling_type = block_pooling_type
        self.prune_embeddings = prune_embeddings
        self.step_callback_attached = False

    def build_wrapper(self):
        weights = prunable_weights(self.layer, self.prune_embeddings)
        if not weights:
            raise ValueError(
                f"Layer {self.layer.name!r} ({type(self.layer).__name__}) has no "
                f"weights tfcompress can prune. {SUPPORTED}"
            )
        if self.sparsity_m_by_n:
            n = self.sparsity_m_by_n[1]
            for weight in weights:
                axis = reduction_axis(self.layer, weight)
                if weight.shape[axis] % n:
                    raise ValueError(
                        f"`sparsity_m_by_n={self.sparsity_m_by_n}` groups {n} "
                        f"weights along the input axis {axis} of {weight.path} "
                        f"(shape {tuple(weight.shape)}), whose length is not "
                        f"divisible by {n}. Prune layer {self.layer.name!r} "
                        "without `sparsity_m_by_n`, or pick an n that divides "
                        f"{weight.shape[axis]}."
                    )
        self._prunable = weights
        self.masks = [
            self.add_weight(
                name=f"{weight.name}_mask",
                shape=weight.shape,
                initializer="ones",
                dtype=weight.dtype,
                trainable=False,
                aggregation="only_first_replica",
            )
            for weight in weights
        ]
        # The optimizer applies `variable.constraint` after every update: the
        # stored weights stay at zero where masked, so momentum or weight
        # decay cannot revive them between mask updates.
        self._constraints = [weight.constraint for weight in weights]
        for weight, mask, constraint in zip(weights, self.masks, self._constraints):
            weight.constraint = _MaskConstraint(self, mask, constraint)
        self.pruning_step = self.add_weight(
            name="pruning_step",
            shape=(),
            initializer=keras.initializers.Constant(-1),
            dtype="int64",
            trainable=False,
            aggregation="only_first_replica",
        )

    @property
    def pruning_vars(self):
        """`(weight, mask)` pairs, as in TFMOT."""
        return list(zip(self._prunable, self.masks))

    def _new_mask(self, weight, sparsity):
        if self.sparsity_m_by_n:
            m, n = self.sparsity_m_by_n
            axis = reduction_axis(self.layer, weight)
            return masks_lib.m_by_n_mask(weight, m, n, axis)
        return masks_lib.magnitude_mask(weight, sparsity, self.block_size, self.block_pooling_type)

    def update_masks(self, sparsity=None):
        """Recomputes every mask now (at `sparsity`, or the schedule's).

        Args:
            sparsity: the fraction to prune; default: the schedule's sparsity
                at `pruning_step`.
        """
        if sparsity is None:
            sparsity = self.pruning_schedule.sparsity_at(ops.maximum(self.pruning_step, 0))
        for weight, mask in self.pruning_vars:
            mask.assign(ops.cast(self._new_mask(weight, sparsity), mask.dtype))
            weight.assign(weight * mask)

    def set_step(self, step):
        """Updates the masks if the schedule prunes at `step`.

        Called eagerly, before each training batch, by `UpdatePruningStep`:
        outside the traced train step, so it works whether or not the model
        passes `training` down to this layer. `pruning_step` is written only
        when the masks change (an eager assign per batch is too costly; see
        docs/DESIGN.md); the callback also records it at epoch and training end.

        Args:
            step: the training step, a Python int.

        Returns:
            True when the masks were updated.
        """
        if not self.pruning_schedule.prunes_at(step):
            return False
        self.pruning_step.assign(step)
        self.update_masks(self.pruning_schedule.sparsity_at(step))
        return True

    def check_step_callback(self):
        """Raises unless `UpdatePruningStep` drives this layer's training."""
        if not self.step_callback_attached:
            raise RuntimeError(
                f"Layer {self.name!r} is being trained without the "
                "`tfcompress.sparsity.UpdatePruningStep()` callback, so the "
                "masks would never update. Add it: "
                "`model.fit(..., callbacks=[tfcompress.sparsity."
                "UpdatePruningStep()])` (in a custom loop call its "
                "`set_model`, `on_train_begin` and `on_train_batch_begin`)."
            )

    def call(self, inputs, *args, training=None, mask=None, **kwargs):
        if training:
            self.check_step_callback()
        return super().call(inputs, *args, training=training, mask=mask, **kwargs)

    def substitutions(self, training):
        return [(weight, weight * mask) for weight, mask in self.pruning_vars]

    def strip(self):
        """The wrapped layer with masks baked into its weights.

        Also gives the weights back their own constraints.
        """
        for (weight, mask), constraint in zip(self.pruning_vars, self._constraints):
            weight.assign(weight * mask)
            weight.constraint = constraint
        return self.layer

    def stripped_layer(self):
        """`strip()`, by the name `strip_pruning` has always used."""
        return self.strip()

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pruning_schedule": keras.saving.serialize_keras_object(self.pruning_schedule),
                "block_size": list(self.block_size),
                "block_pooling_type": self.block_pooling_type,
                "sparsity_m_by_n": (list(self.sparsity_m_by_n) if self.sparsity_m_by_n else None),
                "prune_embeddings": self.prune_embeddings,
            }
        )
        return config
