"""Post-training int8 for transformers, through the quantization-aware model.

The stock converter calibrates one int8 scale per activation tensor, which a
pretrained transformer's outlier hidden dimensions (a few channels a hundred
times larger than the rest) make useless: the all-MiniLM-L6-v2 sentence
embedding falls to cosine 0.30. `tfcompress.quantization.quantize_model(
representative_data=...)` already knows these models: outlier channels get
their own scales, LayerNorm outputs stay float and their readers SmoothQuant
factors, GELU runs in float. Here its fake-quant ranges are calibrated on the
same data, without training, and the converter then takes them as it takes a
trained model's.
"""

import logging

import keras
import numpy as np

from tfcompress.core.layer_tree import walk_layers
from tfcompress.core.transform import copy_model
from tfcompress.export.representative import split_rows, stack
from tfcompress.export.wrap import model_input_structure
from tfcompress.quantization import QuantizeWrapper, quantize_model

_LOG = logging.getLogger("tfcompress")

# Calibration batch: the range of every activation is the mean over batches of
# each batch's min and max, as a moving average over training batches would be.
CALIBRATION_BATCH = 32


def is_transformer(model):
    """Whether `model` has attention or LayerNormalization layers.

    Those are the models whose activations carry outlier channels. A CNN keeps
    the stock converter's calibration, which serves it well (and folds its
    BatchNormalization, which a training-mode calibration pass would update).
    """
    kinds = (keras.layers.MultiHeadAttention, keras.layers.LayerNormalization)
    return any(isinstance(ref.layer, kinds) for ref in walk_layers(model))


def as_model_inputs(structure, batch, specs):
    """`{input name: array}` rearranged into the model's input `structure`
    (see `model_input_structure`)."""
    values = [batch[spec.name] for spec in specs]
    if isinstance(structure, dict):
        return dict(zip(structure, values))
    if isinstance(structure, (list, tuple)) or len(values) > 1:
        return values
    return values[0]


def _range_variables(model):
    """`[(min, max, initialized)]` of every activation quantizer of `model`
    (the quantizers that track a range over batches; see `MovingAverageQuantizer`)."""
    found = []
    for ref in walk_layers(model):
        if not isinstance(ref.layer, QuantizeWrapper):
            continue
        own = {variable.name: variable for variable in ref.layer.non_trainable_variables}
        for name, variable in own.items():
            if name.endswith("_initialized"):
                prefix = name[: -len("initialized")]
                found.append((own[prefix + "min"], own[prefix + "max"], variable))
    return found


def calibrate_ranges(model, batches):
    """Sets the activation ranges of a quantization-aware `model` from data.

    Runs `model` in inference mode with only its quantize wrappers in
    training mode (so dropout stays off), one batch at a time, and sets each
    activation range to the mean of the batches' ranges. Other non-trainable
    state a training-mode wrapper touches (folded BatchNormalization
    statistics) is restored afterwards.

    Args:
        model: a quantization-aware model (`quantize_model`).
        batches: model inputs, one batch per item.

    Raises:
        ValueError: `batches` is empty.
    """
    ranges = _range_variables(model)
    range_ids = {id(v) for triple in ranges for v in triple}
    saved = [(v, v.numpy()) for v in model.non_trainable_variables if id(v) not in range_ids]
    wrappers = [ref.layer for ref in walk_layers(model) if isinstance(ref.layer, QuantizeWrapper)]
    for wrapper in wrappers:
        wrapper.call = _in_training(wrapper.call)
    totals = [[0.0, 0.0] for _ in ranges]
    seen = 0
    try:
        for batch in batches:
            for _, _, initialized in ranges:
                initialized.assign(0.0)
            model(batch, training=False)
            for total, (low, high, _) in zip(totals, ranges):
                total[0] = total[0] + low.numpy()
                total[1] = total[1] + high.numpy()
            seen += 1
    finally:
        for wrapper in wrappers:
            del wrapper.call
        for variable, value in saved:
            variable.assign(value)
    if not seen:
        raise ValueError("`representative_data` produced no batches.")
    for (low, high, initialized), (total_low, total_high) in zip(ranges, totals):
        low.assign(np.asarray(total_low / seen, "float32"))
        high.assign(np.asarray(total_high / seen, "float32"))
        initialized.assign(1.0)


def _in_training(call):
    def calibrating(*args, **kwargs):
        kwargs["training"] = True
        return call(*args, **kwargs)

    return calibrating


def quantize_for_int8(model, samples, specs, sample=None):
    """The calibrated quantization-aware copy of a float `model`.

    Args:
        model: a built float Keras 3 model (not modified).
        samples: calibration samples, `[{input name: array with batch 1}]`.
        specs: the model's `InputSpec`s (see `functional_wrapper`).
        sample: the `sample` given to `to_tflite`, for a subclassed model's
            input structure.

    Returns:
        `quantize_model(model, representative_data=samples)` with its
        activation ranges calibrated on `samples`, or None (with a warning)
        when `model` cannot be copied (a subclassed model whose class is not
        registered): the converter then calibrates it, and verification
        judges the result as for any other model.
    """
    try:
        copy = copy_model(model)
    except TypeError as error:
        _LOG.warning(
            "int8 of %r: calibrating with the converter's per-tensor ranges, not "
            "through quantize_model (outlier channels, smoothing), which needs a copy "
            "of the model: %s",
            model.name,
            error,
        )
        return None
    structure = model_input_structure(model, sample)
    batches = [
        as_model_inputs(structure, chunk, specs)
        for chunk in split_rows(stack(samples), CALIBRATION_BATCH)
    ]
    quantized = quantize_model(copy, representative_data=lambda: iter(batches), inplace=True)
    calibrate_ranges(quantized, batches)
    return quantized
