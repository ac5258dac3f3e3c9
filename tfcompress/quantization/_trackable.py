"""Workaround until `tfcompress.core.replace` does it: make edited lists saveable.

`replace_layer` swaps layers inside tracked lists (`_operations`, `_layers`)
by item assignment. TensorFlow's `ListWrapper` then refuses to be saved
("A list element was replaced ... tracking is exclusively for append-only
data structures"), which breaks `tf.saved_model.save`, `model.export` and
`TFLiteConverter.from_keras_model` (it silently falls back to a path that
needs tf_keras). The refusal protects restore-on-create of checkpoints of
lists whose order changed; our lists are complete and final when saved.
"""

from tfcompress.core.layer_tree import walk_layers


def _acknowledge(value):
    if hasattr(value, "_non_append_mutation_value") and hasattr(value, "_storage"):
        value._non_append_mutation_value = False
        value._external_modification_value = False
        value._last_wrapped_list_snapshot = list(value._storage)


def acknowledge_list_edits(model):
    """Marks every tracked list in `model` as unmodified; returns `model`."""
    for layer in [model] + [ref.layer for ref in walk_layers(model)]:
        for value in vars(layer).values():
            _acknowledge(value)
            if isinstance(value, dict):
                for item in value.values():
                    _acknowledge(item)
    return model
