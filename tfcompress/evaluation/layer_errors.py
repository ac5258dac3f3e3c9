"""Per-layer output error between two Keras models with matching layer names."""

import dataclasses

import keras
import numpy as np

from tfcompress.core import _keras_internals as internals, checks
from tfcompress.evaluation import _runner, _table

_STATS = ("max_abs", "mean_abs", "relative_l2", "cosine")


@dataclasses.dataclass
class LayerErrors:
    """Output errors of the layers two models share, in `model_a`'s layer order.

    Attributes:
        errors: `{layer_name: {"max_abs", "mean_abs", "relative_l2", "cosine"}}`.
            `relative_l2` is `||b - a|| / ||a||`; `cosine` is over the whole
            flattened output of the layer.
        skipped: `{layer_name: reason}` for layers that could not be compared,
            including layers of `model_b` that no layer of `model_a` maps to.
    """

    errors: dict
    skipped: dict

    def as_dict(self):
        """Returns `{"errors": ..., "skipped": ...}` with plain Python values."""
        return {"errors": dict(self.errors), "skipped": dict(self.skipped)}

    def table(self):
        """An aligned plain-text table, one row per compared layer."""
        rows = [
            [name] + [_table.format_number(stats[key]) for key in _STATS]
            for name, stats in self.errors.items()
        ]
        text = _table.format_table(["layer"] + list(_STATS), rows)
        if self.skipped:
            text += "\nskipped:\n" + "\n".join(
                f"  {name}: {reason}" for name, reason in self.skipped.items()
            )
        return text


def _graph_input(model, arg_name):
    checks.ensure_keras3_model(model, arg_name)
    checks.ensure_built(model, arg_name)
    try:
        return model.input
    except (AttributeError, ValueError) as e:
        raise ValueError(
            f"`{arg_name}` ({type(model).__name__} {model.name!r}) has no layer "
            "graph, so its layers' outputs cannot be read. layer_errors needs "
            "functional or Sequential models (built with `keras.Input`); for a "
            "subclassed model compare final outputs with "
            "`tfcompress.evaluation.cosine_similarity`."
        ) from e


def _index_by_name(model):
    """Layers of `model` by name; a wrapper is also found by its inner layer's name."""
    index = {}
    for layer in model.layers:
        index.setdefault(layer.name, layer)
        inner = getattr(layer, "layer", None)
        if isinstance(inner, keras.layers.Layer):
            index.setdefault(inner.name, layer)
    return index


def _call_count(layer):
    # Keras has no public API for this; a layer called twice has two outputs
    # and `layer.output` would silently return the first.
    return internals.call_count(layer) or 1


def _match(model_a, model_b, name_map):
    index_b = _index_by_name(model_b)
    pairs, skipped, used_b = [], {}, set()
    for layer_a in model_a.layers:
        if isinstance(layer_a, keras.layers.InputLayer):
            continue
        name_b = layer_a.name
        if callable(name_map):
            name_b = name_map(layer_a.name)
        elif name_map is not None:
            name_b = name_map.get(layer_a.name, layer_a.name)
        layer_b = index_b.get(name_b)
        if layer_b is None:
            skipped[layer_a.name] = f"model_b has no layer named {name_b!r}"
            continue
        used_b.add(id(layer_b))
        out_a = keras.tree.flatten(layer_a.output)
        out_b = keras.tree.flatten(layer_b.output)
        shapes_a = [tuple(t.shape) for t in out_a]
        shapes_b = [tuple(t.shape) for t in out_b]
        if max(_call_count(layer_a), _call_count(layer_b)) > 1:
            skipped[layer_a.name] = "called more than once, so its output is ambiguous"
        elif shapes_a != shapes_b:
            skipped[layer_a.name] = f"output shapes differ: {shapes_a} vs {shapes_b}"
        else:
            pairs.append((layer_a.name, out_a, out_b))
    for layer_b in model_b.layers:
        if id(layer_b) not in used_b and not isinstance(layer_b, keras.layers.InputLayer):
            skipped.setdefault(layer_b.name, "only in model_b")
    return pairs, skipped


def _accumulate(totals, a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    diff = b - a
    totals["max_abs"] = max(totals.get("max_abs", 0.0), float(np.max(np.abs(diff), initial=0)))
    for key, value in (
        ("sum_abs", np.abs(diff).sum()),
        ("count", diff.size),
        ("sq_diff", diff @ diff),
        ("sq_a", a @ a),
        ("sq_b", b @ b),
        ("dot", a @ b),
    ):
        totals[key] = totals.get(key, 0.0) + float(value)


def _finish(totals):
    norm_a, norm_b = np.sqrt(totals["sq_a"]), np.sqrt(totals["sq_b"])
    diff = np.sqrt(totals["sq_diff"])
    if norm_a > 0:
        relative = float(diff / norm_a)
    else:
        relative = 0.0 if diff == 0 else float("inf")
    if norm_a > 0 and norm_b > 0:
        cosine = float(np.clip(totals["dot"] / (norm_a * norm_b), -1.0, 1.0))
    else:
        cosine = 1.0 if norm_a == norm_b else 0.0
    return {
        "max_abs": totals["max_abs"],
        "mean_abs": totals["sum_abs"] / max(totals["count"], 1),
        "relative_l2": relative,
        "cosine": cosine,
    }


def layer_errors(model_a, model_b, x, name_map=None, batch_size=32):
    """Compares the output of every layer the two models share, by layer name.

    Each model is cut into a functional sub-model returning the outputs of the
    matched layers, both run on `x`, and the outputs are compared. A layer of
    `model_b` that wraps another (a `keras.layers.Wrapper` with `.layer`, as
    compression wrappers are) is matched by its inner layer's name too. Layers
    nested inside a block (e.g. the attention inside a keras-hub
    `TransformerEncoder`) are not in the graph and are compared as part of
    their block.

    Args:
        model_a: the reference functional or Sequential `keras.Model`.
        model_b: the model to compare, e.g. the compressed copy.
        x: inputs both models accept, samples on the first axis.
        name_map: optional dict or callable mapping a layer name of `model_a`
            to the name of its counterpart in `model_b` (same name by default).
        batch_size: samples per forward pass.

    Returns:
        A `LayerErrors` with `errors`, `skipped`, `table()` and `as_dict()`.

    Raises:
        ValueError: when a model is subclassed (no layer graph) or unbuilt, or
            no layer maps between the two.
        TypeError: when a model is not a Keras 3 `keras.Model`.

    Example:

    ```python
    report = tfcompress.evaluation.layer_errors(model, pruned, x[:64])
    print(report.table())
    ```
    """
    input_a = _graph_input(model_a, "model_a")
    input_b = _graph_input(model_b, "model_b")
    if name_map is not None and not (callable(name_map) or isinstance(name_map, dict)):
        raise TypeError(
            "`name_map` must be a dict or a callable from a layer name of model_a "
            f"to one of model_b. Received: name_map={name_map!r}."
        )
    _runner.check_int(batch_size, "batch_size", 1)
    pairs, skipped = _match(model_a, model_b, name_map)
    if not pairs:
        raise ValueError(
            "No layer of `model_a` maps to a comparable layer of `model_b`: "
            f"{skipped}. Pass `name_map` to map differing names."
        )
    sub_a = keras.Model(input_a, [t for _, outs, _ in pairs for t in outs])
    sub_b = keras.Model(input_b, [t for _, _, outs in pairs for t in outs])
    totals = [{} for _ in pairs]
    n = _runner.num_samples(x)
    for start in range(0, n, batch_size):
        batch = _runner.take(x, start, start + batch_size)
        flat_a = iter(keras.tree.flatten(sub_a.predict_on_batch(batch)))
        flat_b = iter(keras.tree.flatten(sub_b.predict_on_batch(batch)))
        for total, (_, outs, _) in zip(totals, pairs):
            for _ in outs:
                _accumulate(total, next(flat_a), next(flat_b))
    errors = {name: _finish(total) for total, (name, _, _) in zip(totals, pairs)}
    return LayerErrors(errors=errors, skipped=skipped)
