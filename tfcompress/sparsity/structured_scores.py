"""Importance of each unit of a structured group, by criterion.

The arithmetic (`unit_scores`) is plain array math over the group's weight
slices; `gradient_statistics` runs the representative data through the
model once to give Taylor and OBD their gradients.
"""

import zlib

import keras
import numpy as np

from tfcompress.core.batches import drop_labels, padding_mask

CRITERIA = ("magnitude", "taylor", "obd", "fisher", "random")
NEEDS_GRADIENTS = ("taylor", "obd", "fisher")


def _per_unit(array, member):
    """`array`'s values summed per unit: shape `(num_units,)`."""
    moved = np.moveaxis(np.asarray(array, dtype="float64"), member.axis, 0)
    return moved[member.units].reshape(member.units.shape[0], -1).sum(axis=1)


def unit_scores(group, criterion, statistics=None, seed=0):
    """One score per unit of `group`; higher means keep.

    Args:
        group: a `Group`.
        criterion: "magnitude" (L2 norm of the unit's weights), "taylor"
            (`|sum w * g|` over the unit, per batch, averaged), "obd" (`sum 0.5 * w**2 * E[g**2]`),
            "fisher" (`(sum w * g)**2` per batch, averaged, with `g` from a
            random projection of the outputs) or "random".
        statistics: for taylor and obd, what `gradient_statistics` returns.
        seed: the random criterion's seed.

    Returns:
        A float64 array of shape `(group.size,)`.
    """
    if criterion == "random":
        # Seeded per group: one stream for all would drop the same unit indices
        # in every layer, and a global budget would then split evenly.
        return np.random.default_rng([seed, zlib.crc32(group.path.encode())]).random(group.size)
    if criterion in ("taylor", "fisher"):
        return statistics[(criterion, id(group))]
    total = np.zeros(group.size)
    for member in group.members:
        w = member.variable.numpy()
        if criterion == "magnitude":
            total += _per_unit(np.square(w), member)
            continue
        total += _per_unit(0.5 * np.square(w) * statistics[id(member.variable)][1], member)
    return np.sqrt(total) if criterion == "magnitude" else total


def _float_outputs(outputs):
    return [
        o
        for o in keras.tree.flatten(outputs)
        if keras.backend.is_float_dtype(keras.backend.standardize_dtype(o.dtype))
    ]


def _padding_weights(batch, output):
    """`padding_mask` broadcast over `output` when it indexes the output's leading axes."""
    mask = padding_mask(batch)
    if mask is None or tuple(output.shape[: len(mask.shape)]) != tuple(mask.shape):
        return 1.0
    mask = keras.ops.cast(mask, output.dtype)
    return keras.ops.reshape(mask, tuple(mask.shape) + (1,) * (len(output.shape) - len(mask.shape)))


def _loss(model, batch, rng=None):
    """The compiled loss for labelled batches of a compiled model; else a label-free one.

    Without labels, `0.5 * mean(y**2)` over the float outputs makes
    `w * dL/dw` the first-order change of the output's energy when the unit
    is removed: how much the unit contributes to what the model computes.
    With `rng` (the fisher criterion) the loss is `sum(r * y)` for a fresh
    standard normal `r` over the real (unpadded) positions: then the square
    of a unit's `sum w * dL/dw` is, in expectation over `r`, the squared norm
    of the change of every output when the unit is removed, which the energy
    misses after a normalization layer (its output energy barely moves).
    """
    x = drop_labels(batch, len(model.inputs) if getattr(model, "inputs", None) else None)
    outputs = model(x, training=False)
    labelled = x is not batch and getattr(model, "compiled", False) and model.loss is not None
    if labelled:
        return model.compute_loss(x=x, y=batch[1], y_pred=outputs, training=False)
    floats = _float_outputs(outputs)
    if rng is not None:
        return sum(
            keras.ops.sum(
                o
                * keras.ops.convert_to_tensor(rng.standard_normal(o.shape), o.dtype)
                * _padding_weights(x, o)
            )
            for o in floats
        )
    return sum(0.5 * keras.ops.mean(keras.ops.square(o)) for o in floats)


def _gradients(model, batch, variables, rng=None):
    """d loss / d variable for each of `variables`, on one batch.

    The one place TensorFlow is imported outside export: Keras 3 has no
    backend-agnostic gradient (`keras.ops` has no `grad`; its own trainers
    differentiate with `tf.GradientTape`, `jax.grad` or torch autograd,
    one per backend), and tfcompress supports the TensorFlow backend.
    """
    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError(
            f"criterion='taylor' and 'obd' compute gradients with the TensorFlow "
            f"backend; this process runs {keras.backend.backend()!r}. Use "
            "criterion='magnitude' or set KERAS_BACKEND=tensorflow."
        )
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = _loss(model, batch, rng)
    return tape.gradient(loss, [v.value for v in variables])


def gradient_statistics(model, groups, batches, progress=None, criterion="taylor", seed=0):
    """Mean gradient and mean squared gradient of every group member's variable.

    Args:
        model: the model the groups belong to.
        groups: `Group`s whose members need statistics.
        batches: a list of batches (labelled `(x, y)` batches of a compiled
            model use its loss).
        progress: optional `progress(batches_done)` callback.
        criterion: "fisher" takes the gradients of a random projection of
            the outputs (label-free batches); others those of the output
            energy or the compiled loss.
        seed: the random projection's seed.

    Returns:
        `{id(variable): (mean_g, mean_g2)}` as numpy arrays, and
        `{("taylor", id(group)): scores}`: per unit, `|sum w * g|` over the
        unit's weights for each batch, averaged over batches. Taken per batch
        because on a trained model the gradients of different batches mostly
        cancel: the mean gradient's `|sum w * g|` is noise (it chose worse
        filters than random on the digits CNN). With criterion "fisher",
        `{("fisher", id(group)): scores}` holds `(sum w * g)**2` per batch,
        averaged.

    Raises:
        ValueError: when `representative_data` yields no batch.
    """
    variables = list({id(m.variable): m.variable for g in groups for m in g.members}.values())
    sums = [np.zeros(v.shape) for v in variables]
    squares = [np.zeros(v.shape) for v in variables]
    taylor = {id(g): np.zeros(g.size) for g in groups}
    rng = np.random.default_rng(seed) if criterion == "fisher" else None
    index = {id(v): i for i, v in enumerate(variables)}
    count = 0
    for batch in batches:
        gradients = [
            np.zeros(v.shape) if g is None else np.asarray(g)
            for v, g in zip(variables, _gradients(model, batch, variables, rng))
        ]
        for i, g in enumerate(gradients):
            sums[i] += g
            squares[i] += np.square(g)
        for group in groups:
            first_order = sum(
                _per_unit(m.variable.numpy() * gradients[index[id(m.variable)]], m)
                for m in group.members
            )
            taylor[id(group)] += np.square(first_order) if rng is not None else np.abs(first_order)
        count += 1
        if progress is not None:
            progress(count)
    if count == 0:
        raise ValueError("`batches` is empty; pass at least one batch of model inputs.")
    statistics = {id(v): (s / count, q / count) for v, s, q in zip(variables, sums, squares)}
    name = "fisher" if rng is not None else "taylor"
    statistics.update({(name, key): value / count for key, value in taylor.items()})
    return statistics
