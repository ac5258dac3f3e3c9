"""Every class registered under "tfcompress>" survives a config round trip,
and every layer a `.keras` save and load of a small model that uses it.

The registry is read after importing every subpackage, so a new registered
class is picked up here and fails until it has a row in `CASES`.
"""

import dataclasses
import importlib
from collections.abc import Callable

import keras
import numpy as np
import pytest

from tfcompress import distillation, low_rank, quantization, sparsity
from tfcompress.core import walk_layers
from tfcompress.models import llama3

import testing

SUBPACKAGES = (
    "core",
    "sparsity",
    "quantization",
    "distillation",
    "low_rank",
    "export",
    "runtime",
    "models",
    "saving",
    "evaluation",
)
for _name in SUBPACKAGES:
    importlib.import_module(f"tfcompress.{_name}")


def _registered():
    names = keras.saving.get_custom_objects()
    return sorted(name for name in names if name.startswith("tfcompress>"))


@dataclasses.dataclass(frozen=True)
class Case:
    """`model()`, for layers, gives `(model, inputs)` where `model` uses the
    class; `make()` gives an instance for the config round trip, by default
    every layer of that class in `model()`."""

    make: Callable | None = None
    model: Callable | None = None


def _dense_inputs():
    return np.random.default_rng(0).normal(size=(4, 16)).astype("float32")


def _cnn_inputs():
    return np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")


def _instances(model, cls):
    layers = [model] + [ref.layer for ref in walk_layers(model)]
    # Exact class first: a FoldBatchNormQuantizeWrapper is also a QuantizeWrapper.
    # Only CompressedModel, a mixin, is never the exact class.
    found = [layer for layer in layers if type(layer) is cls]
    found = found or [layer for layer in layers if isinstance(layer, cls)]
    assert found, f"the model built for {cls.__name__} does not use it"
    return found


def _pruned():
    model = sparsity.prune_low_magnitude(
        testing.functional_dense(),
        sparsity.PolynomialDecay(0.2, 0.6, begin_step=0, end_step=10),
        sparsity_m_by_n=(2, 4),
    )
    return model, _dense_inputs()


def _quantized_cnn():
    model = quantization.quantize_model(testing.sequential_cnn())
    inputs = _cnn_inputs()
    model(inputs, training=True)  # sets the activation ranges
    return model, inputs


def _quantized_sequence():
    # Rank-3 inputs run Dense as a flat matmul; the overrides select the
    # split and scaled modes, so their state is in the configs and the file.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 16))
    hidden = keras.layers.Dense(32, activation="relu", name="up")(inputs)
    hidden = keras.layers.Dense(8, name="down")(hidden)
    outputs = keras.layers.Dense(4, name="head")(hidden)
    per_layer = {
        "up": {"output_scale": np.linspace(1.0, 3.0, 32)},
        "down": {"outlier_channels": [1, 5], "weight_bits": 4},
        "head": quantization.LayerOverride(
            input_scale=np.linspace(0.5, 2.0, 8), quantize_input=True
        ),
    }
    model = quantization.quantize_model(keras.Model(inputs, outputs), per_layer=per_layer)
    data = np.random.default_rng(0).normal(size=(2, 5, 16)).astype("float32")
    model(data, training=True)
    return model, data


def _annotated():
    return quantization.quantize_annotate_model(testing.functional_dense()), _dense_inputs()


def _low_rank_dense():
    inputs = keras.Input((16,))
    outputs = low_rank.LowRankDense(8, rank=3, activation="relu", name="low")(inputs)
    return keras.Model(inputs, outputs), _dense_inputs()


def _low_rank_einsum():
    inputs = keras.Input((5, 16))
    layer = low_rank.LowRankEinsumDense("abc,cde->abde", (None, 2, 4), rank=3, bias_axes="de")
    outputs = layer(inputs)
    data = np.random.default_rng(0).normal(size=(2, 5, 16)).astype("float32")
    return keras.Model(inputs, outputs), data


def _compressed_bert():
    model = sparsity.prune_low_magnitude(
        testing.bert_backbone(), sparsity.ConstantSparsity(0.5, begin_step=0)
    )
    return model, testing.token_inputs()


def _distiller():
    keras.utils.set_random_seed(0)
    teacher, student = (
        keras.Sequential([keras.Input((16,)), keras.layers.Dense(4, name="head")], name=name)
        for name in ("teacher", "student")
    )
    distiller = distillation.Distiller(student, teacher)
    inputs = _dense_inputs()
    distiller(inputs)
    return distiller, inputs


def _llama():
    backbone = llama3.Llama3Backbone(
        vocabulary_size=testing.VOCAB,
        num_layers=1,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=8,
        intermediate_dim=16,
        tie_word_embeddings=True,
        dtype="float32",
    )
    return backbone, testing.token_inputs(segments=False)


def _head_pruned_gpt2():
    backbone = testing.gpt2_backbone(1)
    sparsity.prune_structured(backbone, heads=0.5, criterion="magnitude", inplace=True)
    return backbone, testing.token_inputs(segments=False)


def _head_pruned_llama():
    backbone, inputs = _llama()
    backbone = llama3.Llama3Backbone(**dict(backbone.get_config(), num_key_value_heads=2))
    sparsity.prune_structured(backbone, heads=0.5, criterion="magnitude", inplace=True)
    return backbone, inputs


def _tokenizer():
    return llama3.Llama3Tokenizer(
        vocabulary={"<s>": 0, "</s>": 1, "a": 2, "b": 3, "ab": 4, "Ġ": 5},
        merges=["a b"],
        bos_token="<s>",
        eos_token="</s>",
        misc_special_tokens=("<s>", "</s>"),
    )


def _quantize_config():
    return quantization.DefaultQuantizeConfig(
        weight_attrs=("kernel",), weight_bits=4, weight_per_axis=True
    )


CASES = {
    "tfcompress>AllValuesQuantizer": Case(
        lambda: quantization.AllValuesQuantizer(num_bits=6, per_axis=True)
    ),
    "tfcompress>CompressedModel": Case(model=_compressed_bert),
    "tfcompress>ConstantSparsity": Case(
        lambda: sparsity.ConstantSparsity(0.25, begin_step=3, end_step=50, frequency=7)
    ),
    "tfcompress>DefaultQuantizeConfig": Case(_quantize_config),
    "tfcompress>Distiller": Case(model=_distiller),
    "tfcompress>FoldBatchNormQuantizeWrapper": Case(model=_quantized_cnn),
    "tfcompress>LastValueQuantizer": Case(
        lambda: quantization.LastValueQuantizer(
            num_bits=4, per_axis=True, symmetric=True, narrow_range=True
        )
    ),
    "tfcompress>LayerOverride": Case(
        lambda: quantization.LayerOverride(
            weight_bits=4, skip=False, outlier_channels=[7, 2], output_scale=[1.0, 2.5, 1.0]
        )
    ),
    "tfcompress>Llama3Backbone": Case(model=_llama),
    "tfcompress>Llama3Tokenizer": Case(_tokenizer, lambda: (_tokenizer(), ["ab a b", "ba</s>"])),
    "tfcompress>LowRankDense": Case(model=_low_rank_dense),
    "tfcompress>LowRankEinsumDense": Case(model=_low_rank_einsum),
    "tfcompress>MovingAverageQuantizer": Case(
        lambda: quantization.MovingAverageQuantizer(num_bits=7, symmetric=True, ema_decay=0.9)
    ),
    "tfcompress>PolynomialDecay": Case(
        lambda: sparsity.PolynomialDecay(0.1, 0.8, begin_step=2, end_step=40, power=2, frequency=5)
    ),
    "tfcompress>PruneLowMagnitude": Case(model=_pruned),
    "tfcompress>PrunedCachedMultiHeadAttention": Case(model=_head_pruned_gpt2),
    "tfcompress>PrunedLlamaAttention": Case(model=_head_pruned_llama),
    "tfcompress>QuantizeAnnotate": Case(model=_annotated),
    "tfcompress>QuantizeScheme": Case(
        lambda: quantization.QuantizeScheme(weight_bits=4, per_layer={"head": {"skip": True}})
    ),
    "tfcompress>QuantizeWrapper": Case(model=_quantized_sequence),
    "tfcompress>relation_loss": Case(lambda: distillation.relation_loss),
}

REGISTERED = _registered()


def _case(name):
    if name not in CASES:
        pytest.fail(
            f"{name} is registered with Keras but has no row in CASES in "
            f"tests/serialization_test.py. Add `{name!r}: Case(make, model)`: "
            "`make()` returns an instance for the config round trip and, for a "
            "layer, `model()` returns a small model using it and a batch it accepts."
        )
    return CASES[name]


def test_every_case_is_registered():
    stale = sorted(set(CASES) - set(REGISTERED))
    # Also fails when the registry read finds nothing, which would leave
    # the parametrized tests below with no parameters.
    assert not stale, f"CASES has rows for names not registered: {stale}; remove them."


@pytest.mark.parametrize("name", REGISTERED)
def test_config_round_trip(name):
    registered = keras.saving.get_registered_object(name)
    case = _case(name)
    objects = [case.make()] if case.make else _instances(case.model()[0], registered)
    for obj in objects:
        if isinstance(registered, type):
            assert isinstance(obj, registered), (name, type(obj))
        else:
            assert obj is registered
        saved = keras.saving.serialize_keras_object(obj)
        # Keras saves a registered function as {"class_name": "function", "config": name}.
        assert name in (saved["registered_name"], saved["config"]), saved
        restored = keras.saving.deserialize_keras_object(saved)
        assert type(restored) is type(obj)
        assert keras.saving.serialize_keras_object(restored) == saved


def _is_layer(name):
    registered = keras.saving.get_registered_object(name)
    return isinstance(registered, type) and issubclass(registered, keras.layers.Layer)


# CompressedModel is a mixin, not a Layer: its row's `model` puts it here.
SAVED = [name for name in REGISTERED if _is_layer(name) or getattr(CASES.get(name), "model", None)]


@pytest.mark.parametrize("name", SAVED)
def test_keras_file_round_trip(name, tmp_path):
    case = _case(name)
    registered = keras.saving.get_registered_object(name)
    if case.model is None:
        pytest.fail(
            f"{name} is a layer: give its row in CASES a `model` so its `.keras` save is tested."
        )
    model, inputs = case.model()
    _instances(model, registered)
    expected = model(inputs)
    path = tmp_path / "model.keras"
    # The module-level function, not `model.save`: a tokenizer is a layer.
    keras.saving.save_model(model, path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    _instances(restored, registered)
    testing.assert_same_weights(model, restored)
    testing.assert_outputs_close(expected, restored(inputs))
