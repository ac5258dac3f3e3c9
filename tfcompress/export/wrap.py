"""A functional `keras.Model` over named `keras.Input`s around any Keras 3 model.

`TFLiteConverter.from_keras_model` traces functional models from their
`inputs`; for a keras-hub backbone that keeps its weights as captured variables
(unlike `from_concrete_functions`, which produced a weightless file, see
docs/KERAS_NOTES.md), and it gives the TFLite signature readable input and
output names.
"""

import dataclasses
import re

import keras
import numpy as np

from tfcompress.core.checks import ensure_built
from tfcompress.export.representative import InputSpec, merge_chunks, split_rows


def _safe_name(name, taken):
    name = re.sub(r"[^A-Za-z0-9_]", "_", str(name)) or "input"
    if not name[0].isalpha():
        name = "input_" + name
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    taken.add(candidate)
    return candidate


def _model_inputs(model):
    """The model's input structure of KerasTensors, or None for subclassed models."""
    try:
        return model.input
    except (AttributeError, ValueError):
        return None


@dataclasses.dataclass(frozen=True)
class _SampleSpec:
    shape: tuple
    dtype: str


def _structure_from_sample(model, sample):
    """Input structure (one, list or dict of `_SampleSpec`) of a subclassed model."""
    if sample is None:
        shape = (model.get_build_config() or {}).get("input_shape")
        if shape is None or not all(d is None or isinstance(d, int) for d in shape):
            raise ValueError(
                f"`model` ({type(model).__name__}) has no `inputs` (it is subclassed) "
                "and its input shape is unknown. Pass `sample=` with one batch of "
                "inputs (an array, a list or a dict) so the export knows their "
                "shapes and dtypes."
            )
        return _SampleSpec((None,) + tuple(shape[1:]), "float32")

    def spec(value):
        value = np.asarray(value)
        dtype = "float32" if value.dtype.kind == "f" else value.dtype.name
        return _SampleSpec((None,) + value.shape[1:], dtype)

    if isinstance(sample, dict):
        return {key: spec(value) for key, value in sample.items()}
    if isinstance(sample, (list, tuple)):
        return [spec(value) for value in sample]
    return spec(sample)


def model_input_structure(model, sample=None):
    """What `model` is called with: its KerasTensors (one, a list or a dict),
    or for a subclassed model the `_SampleSpec`s of `sample` / its build shape."""
    structure = _model_inputs(model)
    return _structure_from_sample(model, sample) if structure is None else structure


def functional_wrapper(model, sample=None, batch_size=None, sequence_length=None):
    """Wraps `model` in a functional `keras.Model` with named inputs.

    Args:
        model: a built Keras 3 model: Sequential, functional, keras-hub
            backbone (dict inputs) or subclassed.
        sample: one batch of inputs; only needed for subclassed models without
            a recorded input shape. Floats become float32 inputs.
        batch_size: a fixed batch dimension for every input, or None.
        sequence_length: the size of every input's second dimension where
            the model leaves it unknown (token ids of a keras-hub backbone).

    Returns:
        `(wrapper, specs)`: the functional model, whose inputs are a flat list
        (a single input when there is one), and its `InputSpec`s in that order.
        Input names are the model's dict keys or input names, made valid.

    Raises:
        ValueError: the model is not built, or its input shapes are unknown.
    """
    ensure_built(model, "model")
    structure = model_input_structure(model, sample)

    taken = set()
    specs = []

    def make_input(leaf, key=None):
        shape, dtype = tuple(leaf.shape)[1:], leaf.dtype
        if sequence_length is not None and shape and shape[0] is None:
            shape = (sequence_length,) + shape[1:]
        name = _safe_name(key or getattr(leaf, "name", "input"), taken)
        specs.append(InputSpec(name, (None,) + shape, np.dtype(dtype).name))
        return keras.Input(shape=shape, batch_size=batch_size, dtype=dtype, name=name)

    if isinstance(structure, dict):
        inputs = {key: make_input(value, key) for key, value in structure.items()}
        flat = list(inputs.values())
    elif isinstance(structure, (list, tuple)):
        inputs = [make_input(value) for value in structure]
        flat = inputs
    else:
        inputs = make_input(structure)
        flat = [inputs]
    outputs = model(inputs, training=False)
    if isinstance(outputs, tuple):
        outputs = list(outputs)
    wrapper = keras.Model(
        inputs=flat if len(flat) > 1 else flat[0],
        outputs=outputs,
        # A TF name scope must start with a letter, digit or dot.
        name=re.sub(r"[^A-Za-z0-9_.]", "_", f"export_{model.name}"),
    )
    return wrapper, specs


def output_names(outputs):
    """Names the TFLite signature gives Keras outputs: dict keys, else `output_<i>`."""
    if isinstance(outputs, dict):
        return list(outputs)
    if isinstance(outputs, (list, tuple)):
        return [f"output_{i}" for i in range(len(outputs))]
    return ["output_0"]


def reference_outputs(wrapper, specs, batch, batch_size=None):
    """Runs the wrapper on `{name: array}` and returns `{output name: array}`.

    With `batch_size`, in chunks of that many rows (a fixed batch dimension).
    """
    if batch_size is not None:
        return merge_chunks(
            [reference_outputs(wrapper, specs, chunk) for chunk in split_rows(batch, batch_size)]
        )
    values = [batch[spec.name] for spec in specs]
    outputs = wrapper(values if len(values) > 1 else values[0], training=False)
    names = output_names(outputs)
    if isinstance(outputs, dict):
        flat = list(outputs.values())
    elif isinstance(outputs, (list, tuple)):
        flat = list(outputs)
    else:
        flat = [outputs]
    return {name: keras.ops.convert_to_numpy(value) for name, value in zip(names, flat)}
