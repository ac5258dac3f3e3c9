"""Conv filters (and Dense units) with everything that reads them, found by tracing.

One forward pass with every leaf layer hooked (`intercept_calls`) shows which
layer reads which tensor, in Sequential, functional and subclassed models
alike. A producer's output channels form a channel space; BatchNorm,
depthwise convs, activations and pooling carry it on; a residual `Add` ties
the spaces of its inputs into one; the next conv or Dense (through
`Flatten`, with strided rows) reads it. A space is left alone when anything
else touches it: a model output, a layer or raw op the tracer does not know,
a layer called twice.
"""

import keras
import numpy as np

from tfcompress.core.batches import drop_labels
from tfcompress.core.copy_model import _generated_input
from tfcompress.core.intercept_calls import intercept_calls
from tfcompress.core.layer_tree import child_layers, walk_layers
from tfcompress.core.replace import replace_layer
from tfcompress.sparsity.structured_groups import Group, Member, contiguous, sliced_copy, take_units

_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_PASS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.Identity,
)


def _is_producer(layer):
    if isinstance(layer, _CONVS):
        return layer.groups == 1 and layer.data_format == "channels_last"
    return type(layer) is keras.layers.Dense


def _channelwise(layer, rank):
    if isinstance(layer, keras.layers.BatchNormalization):
        return layer.axis in (-1, rank - 1)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return layer.depth_multiplier == 1 and layer.data_format == "channels_last"
    return False


class _Space:
    def __init__(self, size):
        self.size = size
        self.members = []  # (layer, attribute, axis, units, role)
        self.blocked = False
        self.parent = None

    def root(self):
        space = self
        while space.parent is not None:
            space = space.parent
        return space


def _union(spaces):
    roots = list({id(s.root()): s.root() for s in spaces}.values())
    main = roots[0]
    for other in roots[1:]:
        if other.size != main.size:
            main.blocked = True
        main.members += other.members
        main.blocked = main.blocked or other.blocked
        other.parent = main
    return main


def _trace(model, inputs, leaves):
    events = []

    def record(layer, layer_inputs, outputs):
        events.append((layer, keras.tree.flatten(layer_inputs), keras.tree.flatten(outputs)))

    with intercept_calls(leaves, record):
        outputs = model(inputs, training=False)
    return events, keras.tree.flatten(outputs)


def _add(space, layer, attribute, axis, units, role):
    space.members.append((layer, attribute, axis, units, role))


class _Tracer:
    """Follows channel spaces through the recorded layer calls, in call order."""

    def __init__(self, events):
        self.calls = {}
        for layer, _, _ in events:
            self.calls[id(layer)] = self.calls.get(id(layer), 0) + 1
        self.space_of, self.flat_of, self.consumed, self.shapes, self.spaces = {}, {}, set(), {}, []

    def give(self, tensor, space):
        self.space_of[id(tensor)] = space
        # Layers that return their input (Dropout at inference) hand on the
        # same object: it counts as read only if a later layer reads it.
        self.consumed.discard(id(tensor))

    def step(self, layer, layer_inputs, layer_outputs):
        """Carries, ties, starts or blocks the spaces one layer call reads."""
        self.shapes.setdefault(id(layer), tuple(layer_inputs[0].shape))
        incoming = [self.space_of.get(id(t)) for t in layer_inputs]
        flats = [self.flat_of.get(id(t)) for t in layer_inputs]
        self.consumed.update(id(t) for t in layer_inputs)
        output = layer_outputs[0] if len(layer_outputs) == 1 else None
        twice = self.calls[id(layer)] > 1
        known = [s for s in incoming if s is not None]
        _block_shared(layer, known, flats, twice)
        if isinstance(layer, keras.layers.Add) and output is not None:
            if len(known) == len(incoming):
                self.give(output, _union(known))
            else:
                for space in known:
                    space.root().blocked = True
        elif (
            known
            and (isinstance(layer, _PASS) or _channelwise(layer, len(layer_inputs[0].shape)))
            and output is not None
        ):
            self._carry(layer, known[0].root(), output)
        elif known and isinstance(layer, keras.layers.Flatten) and output is not None:
            space = known[0].root()
            spatial = int(np.prod(layer_inputs[0].shape[1:-1]))
            units = np.arange(spatial)[None, :] * space.size + np.arange(space.size)[:, None]
            self.flat_of[id(output)] = (space, units)
        elif _is_producer(layer) and not twice:
            self._produce(layer, known, flats, output)
        else:
            for space in known:
                space.root().blocked = True

    def _carry(self, layer, space, output):
        """A channel-wise layer: its per-channel weights join `space`, which its output carries."""
        if isinstance(layer, keras.layers.BatchNormalization):
            for name in ("gamma", "beta", "moving_mean", "moving_variance"):
                if getattr(layer, name, None) is not None:
                    _add(space, layer, name, 0, contiguous(space.size), "channel")
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            _add(space, layer, "kernel", 2, contiguous(space.size), "channel")
            if layer.use_bias:
                _add(space, layer, "bias", 0, contiguous(space.size), "channel")
        self.give(output, space)

    def _produce(self, layer, known, flats, output):
        """A conv or Dense: reads the space it is given, and its output starts a new one."""
        if known:
            root = known[0].root()
            _add(root, layer, "kernel", len(layer.kernel.shape) - 2, contiguous(root.size), "in")
        elif flats[0]:
            space, units = flats[0]
            _add(space.root(), layer, "kernel", 0, units, "in")
        if output is not None:
            size = layer.kernel.shape[-1]
            space = _Space(size)
            _add(space, layer, "kernel", len(layer.kernel.shape) - 1, contiguous(size), "out")
            if layer.use_bias:
                _add(space, layer, "bias", 0, contiguous(size), "out")
            self.spaces.append(space)
            self.give(output, space)

    def prunable(self, outputs):
        """The root spaces that no unread tensor or model output blocks."""
        flat_spaces = {k: v[0] for k, v in self.flat_of.items()}
        for tensor_id, space in list(self.space_of.items()) + list(flat_spaces.items()):
            if tensor_id not in self.consumed:
                space.root().blocked = True
        for tensor in outputs:
            for table in (self.space_of, flat_spaces):
                if id(tensor) in table:
                    table[id(tensor)].root().blocked = True
        roots = {id(s.root()): s.root() for s in self.spaces}
        return [s for s in roots.values() if not s.blocked]


def _block_shared(layer, known, flats, twice):
    """Blocks the spaces a layer called twice reads, and flattened spaces read
    by anything but a single-input Dense."""
    if twice:
        for space in known + [f[0] for f in flats if f]:
            space.root().blocked = True
    if any(flats) and not (type(layer) is keras.layers.Dense and len(flats) == 1):
        for f in flats:
            if f:
                f[0].root().blocked = True


def _spaces(model, inputs):
    leaves = [ref.layer for ref in walk_layers(model) if not child_layers(ref.layer)]
    events, outputs = _trace(model, inputs, leaves)
    tracer = _Tracer(events)
    for event in events:
        tracer.step(*event)
    return tracer.prunable(outputs), tracer.shapes


def _first_producer_path(space, paths):
    for layer, _, _, _, role in space.members:
        if role == "out":
            return paths[id(layer)]


class _Plan:
    """The kept units of every space; rebuilds each touched layer once."""

    def __init__(self, model, spaces, shapes, refs):
        self.model = model
        self.spaces = spaces
        self.shapes = shapes
        self.refs = refs
        self.keep = {}
        self.done = False

    def commit(self):
        if self.done:
            return
        self.done = True
        edits = {}
        for space in self.spaces:
            if id(space) not in self.keep:
                continue
            for layer, attribute, axis, units, role in space.members:
                edits.setdefault(id(layer), (layer, []))[1].append(
                    (attribute, axis, units, role, self.keep[id(space)])
                )
        for layer, changes in edits.values():
            self._rebuild(layer, changes)

    def _rebuild(self, layer, changes):
        values = {id(v): v.numpy() for v in layer.weights}
        config, shape = {}, list(self.shapes[id(layer)])
        for attribute, axis, units, role, keep in changes:
            key = id(getattr(layer, attribute))
            values[key] = take_units(values[key], axis, units, keep)
            if role == "out":
                config["units" if isinstance(layer, keras.layers.Dense) else "filters"] = len(keep)
            else:
                shape[-1] = units[keep].size
        ref = self.refs[id(layer)]
        new = sliced_copy(
            layer,
            config,
            tuple(shape),
            [values[id(v)] for v in layer.weights],
            ref.path.rpartition("/")[0],
        )
        replace_layer(self.model, ref, new)


def filter_groups(model, sample):
    """One `Group` per prunable channel space of `model` (residual-tied spaces are one).

    Args:
        model: a built Keras model.
        sample: a batch of inputs (or `(x, y)`), or None to generate one from
            the model's input shapes.

    Returns:
        A list of `Group`s of kind "filters"; their `rebuild` records the
        kept units and `commit` rebuilds every layer they touch.
    """
    inputs = (
        _generated_input(model)
        if sample is None
        else drop_labels(sample, len(model.inputs) if getattr(model, "inputs", None) else None)
    )
    if inputs is None:
        return []
    refs = {id(ref.layer): ref for ref in walk_layers(model)}
    spaces, shapes = _spaces(model, inputs)
    plan = _Plan(model, spaces, shapes, refs)
    paths = {key: ref.path for key, ref in refs.items()}
    groups = []
    for space in spaces:
        members = [
            Member(getattr(layer, attribute), axis, units)
            for layer, attribute, axis, units, _ in space.members
        ]

        def rebuild(keep, _space=space):
            plan.keep[id(_space)] = keep

        group = Group("filters", _first_producer_path(space, paths), space.size, members, rebuild)
        group.commit = plan.commit
        groups.append(group)
    return groups
