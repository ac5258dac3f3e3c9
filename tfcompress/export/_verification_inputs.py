"""The inputs `to_tflite` verifies on: the user's sample, calibration samples or synthetic ones."""

import keras
import numpy as np

from tfcompress.core.layer_tree import layers_of
from tfcompress.export import representative, wrap

# Verification batch taken from the calibration data when no sample is given.
_SAMPLE_BATCH = 8


def note_synthetic(check, description):
    """Says in `outputs_match` that it ran on made-up inputs, and on failure
    how to run it on real ones."""
    check["detail"] += f" on synthetic inputs ({description})"
    if check["passed"] is False:
        check["detail"] += (
            ", not real data: pass sample= with one batch of real inputs (an array, a "
            "list or a dict keyed by input name) to verify on those"
        )


def _id_bounds(model):
    """Upper bounds to try for synthetic token ids: the vocabulary size a
    keras-hub backbone declares, else its largest embedding table; then the
    smallest table, in case one input feeds several tables."""
    layers = layers_of(model)
    tables = sorted(
        {int(layer.input_dim) for layer in layers if isinstance(layer, keras.layers.Embedding)}
    )
    declared = next(
        (
            layer.vocabulary_size
            for layer in layers
            if isinstance(getattr(layer, "vocabulary_size", None), int)
        ),
        None,
    )
    first = declared or (tables[-1] if tables else 100)
    return list(dict.fromkeys([first, tables[0] if tables else 2]))


def verification_batch(model, wrapper, specs, sample, samples, batch_size=None):
    """`(inputs, Keras outputs, synthetic)` for `outputs_match`; `sample` is
    normalized. `synthetic` describes made-up inputs, None for the user's data."""

    def reference(batch):
        return wrap.reference_outputs(wrapper, specs, batch, batch_size)

    if sample is not None:
        return sample, reference(sample), None
    if samples is not None:
        # Grouped samples (batch_size > 1) are already batches.
        batch = representative.stack(samples[: max(1, _SAMPLE_BATCH // (batch_size or 1))])
        return batch, reference(batch), None
    if not any(np.dtype(spec.dtype).kind in "iub" for spec in specs):
        batch = representative.synthetic_batch(specs, batch_size=batch_size or 2)
        return batch, reference(batch), "random floats in [0, 1)"
    *first, last = _id_bounds(model)
    for bound in first + [last]:
        batch = representative.synthetic_batch(
            specs, batch_size=batch_size or 2, vocabulary_size=bound
        )
        try:
            outputs = reference(batch)
        except Exception:
            # A bound above some embedding table: TF raises for out-of-range gathers.
            if bound == last:
                raise
            continue
        return (
            batch,
            outputs,
            (
                f"random token ids below {bound}, padding masks that are a prefix of ones, "
                "segment ids 0"
            ),
        )
