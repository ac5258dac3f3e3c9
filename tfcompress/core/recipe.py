"""Record, in the model's own config, the wrappers and replaced layers that its
class cannot rebuild.

keras-hub blocks rebuild their sublayers from hyperparameters, and subclassed
models build theirs in `__init__`, so a wrapper put inside a
`TransformerEncoder` is in no config. Such a model gets, in place, a class of
its own: a subclass of its class, with the same name, mixing in
`CompressedModel`. Its `get_config` adds the recorded class and the list of
wrappers (path of each wrapped layer and the wrapper's config) to the
original config, and the replaced layers (path, new layer's config; see
`replacements.py`), and `CompressedModel.from_config` rebuilds the original
model, puts the replacements in place, then re-applies the wrappers. Keras
calls it while it deserializes, before any weight is read, so
`keras.saving.load_model`, `ModelCheckpoint` files and `copy_model` all get the
wrappers back (docs/DESIGN.md says why no other hook exists). It first imports
the tfcompress modules the config names, so their classes are found.
"""

import copy

import keras

from tfcompress.core import _keras_internals as internals
from tfcompress.core.layer_tree import walk_layers
from tfcompress.core.registered_classes import import_registered_classes
from tfcompress.core.replacements import apply_replacements, locate, replacement_recipe
from tfcompress.core.swap import swap_layer
from tfcompress.core.wrapper import CompressionWrapper, build_shape_of

_SAVED_MODEL = "tfcompress_model"
_SAVED_WRAPPERS = "tfcompress_wrappers"
_SAVED_REPLACEMENTS = "tfcompress_replacements"
_REGISTERED_NAME = "CompressedModel"


def _wrappers(model):
    """`(name path, child-index path, wrapper)` of each outermost wrapper."""
    refs = walk_layers(model, descend=lambda layer: not isinstance(layer, CompressionWrapper))
    return [
        (
            (ref.path.rpartition("/")[0] + "/" + ref.layer.layer.name).lstrip("/"),
            list(ref.indices),
            ref.layer,
        )
        for ref in refs
        if isinstance(ref.layer, CompressionWrapper)
    ]


def wrapper_recipe(model):
    """The wrappers of `model`, as a JSON-compatible list.

    Args:
        model: a model transformed by `transform_layers`.

    Returns:
        A list of `{"path", "indices", "layer_class", "wrapper"}` dicts: the
        wrapped layer's name path and child-index path, its class name, and
        the wrapper's serialized config without the wrapped layer.
    """
    entries = []
    for path, indices, wrapper in _wrappers(model):
        config = keras.saving.serialize_keras_object(wrapper)
        config["config"].pop("layer", None)
        entries.append(
            {
                "path": path,
                "indices": indices,
                "layer_class": type(wrapper.layer).__name__,
                "wrapper": config,
            }
        )
    return entries


def plain_class(layer):
    """The class `layer` had before a recipe was attached."""
    return getattr(type(layer), "_tfcompress_base", type(layer))


def _config_driven(layer):
    """Sequential and plain functional models keep their layers in config."""
    cls = plain_class(layer)
    return cls is keras.Sequential or (
        cls.__name__ == "Functional" and cls.__module__.startswith("keras.")
    )


def needs_recipe(model, replaced_refs):
    """Whether some replaced layer is invisible to the model's own config.

    A layer's config survives a rebuild only when every layer above it, from
    `model` down to its parent, rebuilds its children from its own config.
    """

    def visible(ref):
        ancestors = [model] + [
            locate(model, ref.indices[:depth])[1] for depth in range(1, ref.depth)
        ]
        return all(_config_driven(layer) for layer in ancestors)

    return not all(visible(ref) for ref in replaced_refs)


def records_anything(model):
    """Whether `model` holds a wrapper or a recorded replacement."""
    return bool(wrapper_recipe(model) or replacement_recipe(model))


def has_recipe(model):
    """Whether `attach_recipe` was applied to `model`."""
    return isinstance(model, CompressedModel)


_EXISTING = "TfcompressExistingLayer"


def _rewrap(layer, wrapper_config):
    """A wrapper deserialized from `wrapper_config`, wrapping `layer` itself.

    The wrapper goes through its own `from_config`, as in a Sequential load,
    with its "layer" entry resolved to the existing `layer` (which may be
    shared, e.g. a tied embedding) instead of a new one.
    """

    class Existing:
        @classmethod
        def from_config(cls, config):
            return layer

    config = dict(wrapper_config)
    config["config"] = dict(config["config"])
    config["config"]["layer"] = {
        "module": None,
        "class_name": _EXISTING,
        "config": {},
        "registered_name": _EXISTING,
    }
    with keras.saving.custom_object_scope({_EXISTING: Existing}):
        wrapper = keras.saving.deserialize_keras_object(config)
    if not wrapper.built:
        wrapper.build(build_shape_of(layer))
    return wrapper


def apply_recipe(model, entries):
    """Wraps the layers of a freshly built `model` as `entries` record.

    Layers whose config already restored their wrapper (inside a Sequential
    or functional parent) are left as they are.

    Args:
        model: a model rebuilt from its config, of the recorded model's class.
        entries: the list from `wrapper_recipe`, as a saved config holds it.

    Returns:
        `model`, with the wrappers in place and a recipe attached.

    Raises:
        KeyError: when a recorded layer is not in `model`.
    """
    for entry in entries:
        found = locate(model, entry["indices"])
        if found and isinstance(found[1], CompressionWrapper):
            continue
        if found is None or type(found[1]).__name__ != entry["layer_class"]:
            raise KeyError(
                f"The recipe wraps the {entry['layer_class']} at "
                f"{entry['path']!r}, which model {model.name!r} does not have: "
                "the model's config no longer builds the same layers."
            )
        parent, layer = found
        swap_layer(parent, layer, _rewrap(layer, entry["wrapper"]))
    return attach_recipe(model)


def _serialize_as(model, cls):
    """`keras.saving.serialize_keras_object(model)` as if `model` were a `cls`."""
    own = model.__class__
    model.__class__ = cls
    try:
        # A copy: inside a saving scope Keras keeps the returned dict and
        # marks it later as shared with the outer config of the same model.
        return copy.deepcopy(keras.saving.serialize_keras_object(model))
    finally:
        model.__class__ = own


@keras.saving.register_keras_serializable(package="tfcompress", name=_REGISTERED_NAME)
class CompressedModel:
    """Mixed into the class of a model whose wrappers no config records.

    Not used directly: `attach_recipe` gives a model the class
    `type(model.__name__, (CompressedModel, type(model)), ...)`, which keeps
    the original name, methods and `isinstance` checks.
    """

    def get_config(self):
        saved = _serialize_as(self, plain_class(self))
        config = dict(saved.pop("config"))
        # Keras records the compile state once, on the outer config.
        saved.pop("compile_config", None)
        saved.pop("shared_object_id", None)
        config[_SAVED_MODEL] = saved
        config[_SAVED_WRAPPERS] = wrapper_recipe(self)
        config[_SAVED_REPLACEMENTS] = replacement_recipe(self)
        return config

    def __reduce__(self):
        # Keras pickles a model as `(cls._unpickle_model, (file,))`; the
        # generated class cannot be pickled by name, its base can, and the
        # loader rebuilds the generated class from the saved config anyway.
        _, args = super().__reduce__()
        return internals.unpickler(plain_class(self)), args

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        saved = dict(config.pop(_SAVED_MODEL))
        entries = config.pop(_SAVED_WRAPPERS)
        # Files saved before replacements were recorded have none.
        replacements = config.pop(_SAVED_REPLACEMENTS, [])
        saved["config"] = config
        # Only the modules the configs name (the model's, the wrappers', the
        # replaced layers'): loading a pruned model imports no quantization
        # or distillation code.
        import_registered_classes([saved, entries, replacements], subpackages=False)
        try:
            model = keras.saving.deserialize_keras_object(saved, custom_objects=custom_objects)
        except TypeError as error:
            if "Could not locate" not in str(error):
                raise
            # A ValueError: Keras buries a TypeError from `from_config` under the whole config.
            name = saved.get("class_name")
            raise ValueError(
                f"This file holds a compressed `{name}` (module {saved.get('module')!r}), and "
                f"Keras cannot find one of its classes in this process: "
                f"{str(error).split('. ')[0]}. Decorate the classes with "
                "`@keras.saving.register_keras_serializable()` and import them before loading, "
                f"or pass them, e.g. `custom_objects={{'{name}': {name}}}`, to `load_model`."
            ) from error
        with keras.saving.custom_object_scope(custom_objects or {}):
            apply_replacements(model, replacements)
        return apply_recipe(model, entries)


_CLASSES = {}


def _compressed_class(base):
    cls = _CLASSES.get(base)
    if cls is None:
        cls = type(
            base.__name__,
            (CompressedModel, base),
            {
                # Saved as the module to import: a process without tfcompress
                # then fails on "Could not locate class" naming this module,
                # instead of rebuilding the plain class without its wrappers.
                "__module__": __name__,
                "__qualname__": base.__qualname__,
                "__doc__": base.__doc__,
                "_tfcompress_base": base,
            },
        )
        # Every such class saves under the one name whose `from_config`
        # rebuilds any of them; the name keeps pointing at the mixin.
        register = keras.saving.register_keras_serializable(
            package="tfcompress", name=_REGISTERED_NAME
        )
        register(cls)
        register(CompressedModel)
        _CLASSES[base] = cls
    return cls


def attach_recipe(model):
    """Makes `model` record its wrappers in its config (once); returns it.

    Args:
        model: a model with `CompressionWrapper`s inside layers whose config
            does not hold them.

    Returns:
        `model` itself, whose class is now a subclass of its class (same
        name) that saves and reloads the wrappers.

    Example:

    ```python
    tfcompress.saving.attach_recipe(backbone)
    backbone.save("b.keras")
    keras.saving.load_model("b.keras")  # wrappers included
    ```
    """
    if not has_recipe(model):
        model.__class__ = _compressed_class(type(model))
    return model


def detach_recipe(model):
    """Gives `model` back its original class (once it records nothing)."""
    if has_recipe(model):
        model.__class__ = plain_class(model)
    return model
