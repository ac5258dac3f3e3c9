"""Finds the few output channels of a matmul whose range dwarfs the rest.

Transformers trained in float put a handful of hidden dimensions at values
a hundred times larger than the others (in the pretrained MiniLM the FFN
output of the first block spans 272 in dimension 99 against a median of 1.5
over the other 383). One int8 scale for the whole tensor then leaves the
ordinary channels two or three levels, and the sentence embedding of a
quantized MiniLM falls to cosine 0.90. `QuantizeWrapper(output_scale=...)`
divides such output channels down before the int8 output and multiplies them
back in float; `QuantizeWrapper(input_outlier_channels=...)` computes such
input channels in a matmul of their own with its own int8 scales; this
module picks them from representative data.
"""

import numpy as np
from keras import ops, tree

from tfcompress.core.batches import drop_labels, iterate_batches
from tfcompress.core.checks import check_int, check_number
from tfcompress.core.intercept_calls import intercept_calls
from tfcompress.core.layer_tree import walk_layers
from tfcompress.core.wrapper import build_shape_of
from tfcompress.quantization.flat_matmul import (
    flat_matmul_spec,
    fused_activation,
    linear,
    splittable,
)
from tfcompress.quantization.layer_override import LayerOverride
from tfcompress.quantization.quantize_scheme import FLOAT_COMPUTE


def _batches(model, data, batch_size):
    """Model inputs of at most `batch_size` rows from any form
    `to_tflite(representative_data=...)` accepts (see `tfcompress.core.batches`).

    The form is checked here, before the caller hooks any layer.
    """
    try:
        num_inputs = len(tree.flatten(model.input))
    except (AttributeError, ValueError):  # a subclassed model has no symbolic inputs
        num_inputs = None
    batches = iterate_batches(data, "representative_data")

    def chunks():
        for batch in batches:
            batch = drop_labels(batch, num_inputs)
            rows = len(tree.flatten(batch)[0])
            for start in range(0, rows, batch_size):
                yield tree.map_structure(lambda value: value[start : start + batch_size], batch)

    return chunks()


def select_channels(span, ratio, max_channels):
    """Indices whose span exceeds `ratio` x the median span, largest first."""
    span = np.asarray(span, dtype="float64")
    threshold = ratio * max(float(np.median(span)), 1e-12)
    order = np.argsort(-span, kind="stable")
    chosen = [int(c) for c in order[:max_channels] if span[c] > threshold]
    return sorted(chosen)


def _output_factors(span, channels):
    """Per output channel: how many times an outlier channel's range exceeds
    the largest ordinary one (1 for the ordinary channels)."""
    span = np.asarray(span, dtype="float64")
    ordinary = np.delete(span, channels)
    reference = max(float(ordinary.max()) if ordinary.size else 1.0, 1e-12)
    factors = np.ones_like(span)
    factors[channels] = np.maximum(span[channels] / reference, 1.0)
    return factors.astype("float32")


def _smoothing_factors(input_span, kernels, alpha):
    """SmoothQuant's per-input-channel factors, median 1.

    `max|x_j|^alpha / max|W_j|^(1 - alpha)`, `W` being all the `kernels`
    reading the input: dividing the input by them and multiplying the kernel
    rows moves part of each channel's range from the activation (one int8
    scale per tensor) to the weights.
    """
    rows = np.max(
        [
            np.abs(np.asarray(k, "float64").reshape((input_span.size, -1))).max(axis=1)
            for k in kernels
        ],
        axis=0,
    )
    factors = np.maximum(input_span, 1e-5) ** alpha / np.maximum(rows, 1e-5) ** (1.0 - alpha)
    return (factors / np.median(factors)).astype("float32")


def find_outlier_channels(
    model, representative_data, ratio=8.0, max_channels=8, batch_size=32, smoothing=0.5
):
    """Channels of each Dense/EinsumDense that need their own int8 scale.

    Runs `model` in float on `representative_data` and records the range of
    every channel of the inputs and outputs of each Dense/EinsumDense that
    `QuantizeWrapper` can run as a flat matmul (input of rank > 2). A
    channel whose range is more than `ratio` times the median range is an
    outlier:
    - outlier output channels get `"output_scale"`: factors that divide
      them down to the range of the largest ordinary channel before the
      int8 output and multiply them back in float after it (one MUL in
      TFLite; `"outlier_channels"`, a split into a second matmul, is the
      per_layer alternative);
    - outlier input channels get `"input_outlier_channels"` when the input
      comes straight from another Dense/EinsumDense whose activation TFLite
      does not fuse (the GELU of a transformer FFN) and nothing else reads
      it; that producer gets `"quantize_output": False` (its matmul stays
      int8, the activation runs in float, the consumer quantizes the
      ordinary and the outlier channels separately). Without outliers the
      activation still runs in float and the consumer gets
      `"quantize_input": True`: XNNPack runs float GELU, not int8 GELU.

    With `smoothing`, a LayerNormalization read only by such matmuls (and by
    ops that are not layers, such as a transformer's residual add) is left
    float (`"quantize_output": False`), and the matmuls reading it get
    `"input_scale"`: SmoothQuant factors, one set shared by all of them (so
    TFLite computes one MUL and QUANTIZE for a query/key/value trio), that
    move part of the range of the large channels into their kernel rows
    (see `QuantizeWrapper`). The residual stream then stays float, as
    LayerNorm computes in float anyway.

    Args:
        model: a built Keras 3 float model (not modified).
        representative_data: model inputs, in any form
            `tfcompress.export.to_tflite(representative_data=...)` takes: an
            array, a dict or list of arrays (batch first), a list of dict
            batches, a `tf.data.Dataset` (of `(x, y)` pairs too), a generator
            or a callable returning an iterator of batches.
        ratio: how many times the median channel range makes an outlier.
        max_channels: at most this many outliers per tensor (the largest).
        batch_size: batch size used for arrays.
        smoothing: SmoothQuant's migration strength alpha in (0, 1), or
            None for no smoothing.

    Returns:
        `{layer path: LayerOverride(output_scale=factors, ...)}`, ready to
        merge into `quantize_model(per_layer=...)`; each `LayerOverride`
        reads like the dict of its set fields (`found[path]["output_scale"]`).

    Raises:
        ValueError: for `ratio <= 1`, `max_channels < 1`, `smoothing`
            outside (0, 1) or no data.

    Example:
        >>> find_outlier_channels(backbone, {"token_ids": ids, ...})
        {'transformer_layer_0/feedforward_output_dense': {'output_scale': array([1., ...]),
         'input_outlier_channels': [856]}, ...}
    """
    _check_arguments(ratio, max_channels, smoothing)
    batches = _batches(model, representative_data, batch_size)
    recording = _Recording(model)
    seen = 0
    with intercept_calls(recording.leaves.values(), recording.record):
        for batch in batches:
            recording.produced_by.clear()
            model(batch, training=False)
            seen += 1
    if not seen:
        raise ValueError("`representative_data` produced no batches.")
    found = {}
    for path, layer in recording.matmuls.items():
        channels = (
            recording.outliers(path, "output", ratio, max_channels) if splittable(layer) else []
        )
        if channels:
            found.setdefault(path, {})["output_scale"] = _output_factors(
                recording.span(path, "output"), channels
            )
    for producer, consumers in recording.readers.items():
        if isinstance(recording.leaves[producer], FLOAT_COMPUTE):
            _smooth(found, recording, producer, consumers, smoothing)
        else:
            _split_inputs(found, recording, producer, consumers, ratio, max_channels)
    return {path: LayerOverride.from_dict(entry) for path, entry in found.items()}


def _check_arguments(ratio, max_channels, smoothing):
    check_number(ratio, "ratio", 1, open_low=True, expected="greater than 1")
    check_int(max_channels, "max_channels", 1, expected="a positive integer")
    check_number(
        smoothing,
        "smoothing",
        0,
        1,
        open_low=True,
        open_high=True,
        allow_none=True,
        expected="a number strictly between 0 and 1 (0.5 is SmoothQuant's default), "
        "or None to leave LayerNorm outputs quantized",
    )


class _Recording:
    """Per-channel ranges of the flat matmuls' inputs and outputs, and which
    leaf layers read the output of which, from the calls of a float pass."""

    def __init__(self, model):
        refs = list(walk_layers(model))
        parents = {id(ref.parent) for ref in refs}
        # Containers are not hooked: their sublayers are.
        self.leaves = {ref.path: ref.layer for ref in refs if id(ref.layer) not in parents}
        self._paths = {id(layer): path for path, layer in self.leaves.items()}
        self._specs = {}
        self.matmuls = {}
        for path, layer in self.leaves.items():
            spec = flat_matmul_spec(layer, build_shape_of(layer))
            if spec is not None:
                self._specs[path] = spec
                self.matmuls[path] = layer
        self.spans = {}  # (path, "input"|"output") -> (min, max) per channel
        # id(output tensor) -> (path, tensor), for this batch. Holding the
        # tensor keeps its id from being reused by a later tensor of the pass.
        self.produced_by = {}
        self.readers = {}  # producer path -> paths of the leaf layers reading it

    def record(self, layer, inputs, outputs):
        if outputs is inputs:  # Dropout at inference: still the producer's tensor
            return
        path = self._paths[id(layer)]
        for value in tree.flatten(inputs):  # an Add reads a list
            producer, tensor = self.produced_by.get(id(value), (None, None))
            if tensor is value:
                self.readers.setdefault(producer, set()).add(path)
        spec = self._specs.get(path)
        if spec is not None or isinstance(layer, FLOAT_COMPUTE):
            self.produced_by[id(outputs)] = (path, outputs)
        if spec is not None:
            self._extend((path, "input"), inputs, len(spec.in_shape))
            self._extend((path, "output"), outputs, len(spec.out_shape))

    def _extend(self, key, tensor, rank):
        flat = ops.convert_to_numpy(tensor).reshape((-1, int(np.prod(tensor.shape[-rank:]))))
        low, high = flat.min(axis=0), flat.max(axis=0)
        if key in self.spans:
            low, high = np.minimum(low, self.spans[key][0]), np.maximum(high, self.spans[key][1])
        self.spans[key] = (low, high)

    def span(self, path, kind):
        low, high = self.spans[(path, kind)]
        return np.maximum(high, 0) - np.minimum(low, 0)

    def outliers(self, path, kind, ratio, max_channels):
        return select_channels(self.span(path, kind), ratio, max_channels)


def _smooth(found, recording, producer, consumers, smoothing):
    """A LayerNormalization read only by flat matmuls stays float; they get
    SmoothQuant `input_scale` factors."""
    if smoothing is None or not all(path in recording.matmuls for path in consumers):
        return
    found.setdefault(producer, {})["quantize_output"] = False
    # One set of factors for all readers of the tensor (the query, key and
    # value of an attention block): TFLite then computes one MUL and one
    # QUANTIZE for them instead of one each.
    low, high = recording.spans[(next(iter(consumers)), "input")]
    amax = np.maximum(np.abs(low), np.abs(high))
    kernels = [recording.matmuls[consumer].kernel for consumer in consumers]
    factors = _smoothing_factors(amax, kernels, smoothing)
    for consumer in consumers:
        found.setdefault(consumer, {})["input_scale"] = factors


def _split_inputs(found, recording, producer, consumers, ratio, max_channels):
    """A linear matmul that alone reads a matmul with an unfused activation
    (GELU) quantizes that input itself, split when it has outliers."""
    matmuls = recording.matmuls
    (consumer,) = consumers if len(consumers) == 1 else (None,)
    if (
        consumer not in matmuls
        or producer not in matmuls
        or not linear(matmuls[consumer])
        or fused_activation(matmuls[producer])
    ):
        return
    channels = recording.outliers(consumer, "input", ratio, max_channels)
    if channels:
        found.setdefault(consumer, {})["input_outlier_channels"] = channels
    else:  # GELU in float all the same: XNNPack does not run int8 GELU
        found.setdefault(consumer, {})["quantize_input"] = True
    found.setdefault(producer, {})["quantize_output"] = False
