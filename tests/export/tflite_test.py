import re

import keras
import numpy as np
import pytest

from tfcompress import export, runtime
from tfcompress.export import flatbuffer
from tfcompress.export.verify import TOLERANCES


def _tensor_types(content):
    """`(set of weight types, set of activation types)` of the main subgraph."""
    model = flatbuffer.read_model(content)
    weights, activations = set(), set()
    for tensor in model.subgraphs[0].tensors:
        kind = weights if flatbuffer.has_data(model, tensor) else activations
        kind.add(flatbuffer.type_name(tensor))
    return weights, activations


# What each target must do to the stored types (weights, activations).
_EXPECTED_TYPES = {
    "float32": ({"FLOAT32"}, {"FLOAT32"}),
    "float16": ({"FLOAT16"}, {"FLOAT32"}),
    "dynamic_int8": ({"INT8"}, {"FLOAT32"}),
    "int8": ({"INT8"}, {"INT8"}),
    "int16x8": ({"INT8"}, {"INT16"}),
}


@pytest.mark.parametrize("target", export.TARGETS)
@pytest.mark.parametrize("model_name", ["dense_model", "conv_model"])
def test_every_target_converts_and_verifies(request, calibration_data, model_name, target):
    model = request.getfixturevalue(model_name)
    kwargs = {}
    if target in ("int8", "int16x8"):
        kwargs["representative_data"] = calibration_data(model)
    result = export.to_tflite(model, target=target, **kwargs)

    assert result.target == target
    assert result.size_bytes == len(result.tflite_bytes)
    assert all(check["passed"] for check in result.checks.values()), result.checks
    metric, bound = TOLERANCES[target]
    assert result.checks["outputs_match"]["metric"] == metric
    assert result.checks["outputs_match"]["value"] <= bound
    # Untrained models have close logits: a quantized one may flip 1 in 8.
    assert result.argmax_agreement >= (1.0 if target in ("float32", "float16") else 0.75)
    weights, activations = _tensor_types(result.tflite_bytes)
    expected_weights, expected_activations = _EXPECTED_TYPES[target]
    assert expected_weights <= weights
    assert expected_activations <= activations
    if target == "float32":
        assert result.max_relative_error < 1e-5
        assert not weights & {"FLOAT16", "INT8"}
    if target in ("int8", "int16x8"):
        # Float I/O by default: quantize on the way in, dequantize on the way out.
        assert result.ops[0] == "QUANTIZE" and result.ops[-1] == "DEQUANTIZE"
        assert result.checks["builtin_ops"]["float_ops"] == []


def test_smaller_targets_give_smaller_files(dense_model, calibration_data):
    sizes = {
        target: export.to_tflite(
            dense_model,
            target=target,
            representative_data=calibration_data(dense_model) if target == "int8" else None,
            verify=False,
        ).size_bytes
        for target in ("float32", "float16", "int8")
    }
    assert sizes["float32"] > 4 * dense_model.count_params()
    # ~2.5 KB of the files is structure, not weights.
    assert sizes["int8"] < sizes["float16"] < 0.7 * sizes["float32"]


def test_int8_needs_calibration_data(dense_model):
    expected = (
        "target='int8' needs calibration data: pass representative_data=... (an "
        "array, tf.data.Dataset or generator of input batches), or quantize the "
        "model with tfcompress.quantization.quantize_model first"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        export.to_tflite(dense_model, target="int8")
    with pytest.raises(ValueError, match="target='int16x8' needs calibration data"):
        export.to_tflite(dense_model, target="int16x8")


def test_int8_io_round_trips_through_the_runtime(dense_model, calibration_data):
    data = calibration_data(dense_model, n=128)
    result = export.to_tflite(dense_model, target="int8", representative_data=data, int8_io=True)
    model = runtime.load(result.tflite_bytes)
    assert model.input_details[0]["dtype"] == np.int8
    assert model.output_details[0]["dtype"] == np.int8
    assert set(model.tensor_dtypes().values()) <= {"int8", "int32"}

    x = data[:32]
    predictions = model.run(x)
    expected = dense_model.predict(x, verbose=0)
    assert predictions.dtype == np.float32
    assert np.mean(predictions.argmax(-1) == expected.argmax(-1)) >= 0.9
    cosine = np.sum(predictions * expected) / np.linalg.norm(predictions) / np.linalg.norm(expected)
    assert cosine > 0.99
    quantized = model.run(x, raw=False)
    np.testing.assert_array_equal(quantized, predictions)


class UserResidualNet(keras.Model):
    """As users write them: generated layer names, not registered, an op
    (`keras.ops.relu`, or `keras.layers.ReLU` with `layer_relu`) between
    layers, and optionally an op on the input."""

    def __init__(self, layer_relu=False, scale_input=False, **kwargs):
        super().__init__(**kwargs)
        self.layer_relu, self.scale_input = layer_relu, scale_input
        self.stem = keras.layers.Conv2D(4, 3, padding="same", activation="relu")
        self.conv = keras.layers.Conv2D(4, 3, padding="same")
        self.add = keras.layers.Add()
        self.relu = keras.layers.ReLU() if layer_relu else keras.ops.relu
        self.flatten = keras.layers.Flatten()
        self.head = keras.layers.Dense(3)

    def get_config(self):
        return {
            **super().get_config(),
            "layer_relu": self.layer_relu,
            "scale_input": self.scale_input,
        }

    def call(self, inputs):
        hidden = self.stem(inputs / 16.0 if self.scale_input else inputs)
        hidden = self.relu(self.add([hidden, self.conv(hidden)]))
        return self.head(self.flatten(hidden))


def _qat(model, x):
    from tfcompress import quantization

    model(x[:1])
    qat = quantization.quantize_model(model)
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qat.fit(x, np.arange(len(x)) % 3, epochs=1, verbose=0)
    return qat


def _io_dtypes(content):
    loaded = runtime.load(content)
    return loaded.input_details[0]["dtype"], loaded.output_details[0]["dtype"]


def test_subclassed_qat_models_export_int8_io_and_say_what_stayed_float(caplog):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((64, 6, 6, 1), dtype=np.float32)
    # The first layer reads the model input: its input is quantized, as in a
    # functional model, so no calibration data is needed for int8 I/O.
    with caplog.at_level("WARNING", logger="tfcompress"):
        result = export.to_tflite(_qat(UserResidualNet(layer_relu=True), x), "int8", int8_io=True)
    assert _io_dtypes(result.tflite_bytes) == (np.int8, np.int8)
    assert result.checks["builtin_ops"]["float_ops"] == []
    assert not caplog.records
    # `keras.ops.relu` between layers gets no fake-quant, so the Dense after
    # it has no input range: it stays float, with float weights, and says so.
    qat = _qat(UserResidualNet(), x)
    with caplog.at_level("WARNING", logger="tfcompress"):
        result = export.to_tflite(qat, "int8", int8_io=True)
    assert _io_dtypes(result.tflite_bytes) == (np.int8, np.int8)
    assert "FULLY_CONNECTED" in result.checks["builtin_ops"]["float_ops"]
    assert re.search(r"\['FULLY_CONNECTED'\] ops stayed float32.*representative_data", caplog.text)
    calibrated = export.to_tflite(qat, "int8", int8_io=True, representative_data=x)
    assert calibrated.checks["builtin_ops"]["float_ops"] == []
    assert calibrated.size_bytes < result.size_bytes  # its int8 weights


def test_int8_io_that_stays_float_is_an_error_and_calibration_fixes_it():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((64, 6, 6, 1), dtype=np.float32)
    # An op on the input: no layer reads the model input itself, nothing
    # quantizes it, and the converter would quietly keep it float32.
    qat = _qat(UserResidualNet(layer_relu=True, scale_input=True), x)
    with pytest.raises(
        ValueError, match=r"int8_io=True.*inputs \[.*\] stayed float32.*representative_data"
    ):
        export.to_tflite(qat, "int8", int8_io=True)
    result = export.to_tflite(qat, "int8", int8_io=True, representative_data=x)
    assert _io_dtypes(result.tflite_bytes) == (np.int8, np.int8)
    assert result.checks["builtin_ops"]["float_ops"] == []
    assert result.checks["outputs_match"]["passed"]


def test_int8_reports_ops_left_in_float(calibration_data):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(8),
            keras.layers.Lambda(keras.ops.sin),
            keras.layers.Dense(2),
        ]
    )
    data = np.random.default_rng(0).random((32, 8), dtype=np.float32)
    result = export.to_tflite(model, "int8", representative_data=data)
    # SIN has no int8 kernel: the converter keeps it in float between
    # DEQUANTIZE and QUANTIZE even with TFLITE_BUILTINS_INT8.
    assert result.checks["builtin_ops"]["float_ops"] == ["SIN"]
    assert result.checks["outputs_match"]["passed"]


def test_writes_the_file(tmp_path, dense_model):
    path = tmp_path / "out" / "dense.tflite"
    result = export.to_tflite(dense_model, path=path)
    assert result.path == str(path)
    assert path.read_bytes() == result.tflite_bytes


def test_pruned_models_are_exported_stripped_with_their_zeros(monkeypatch, dense_model):
    from tfcompress import sparsity

    pruned = sparsity.prune_low_magnitude(
        dense_model,
        pruning_schedule=sparsity.ConstantSparsity(0.75, begin_step=0, frequency=1),
    )
    rng = np.random.default_rng(0)
    pruned.compile("sgd", "mse")
    pruned.fit(
        rng.random((8, 32), dtype=np.float32),
        rng.random((8, 10), dtype=np.float32),
        epochs=1,
        verbose=0,
        callbacks=[sparsity.UpdatePruningStep()],
    )
    calls = []
    from tfcompress.export import tflite as tflite_module

    strip = tflite_module.strip_wrappers
    # The export strips every technique through core.strip_wrappers.
    monkeypatch.setattr(
        tflite_module, "strip_wrappers", lambda model: calls.append(model) or strip(model)
    )

    result = export.to_tflite(pruned)
    assert calls == [pruned]
    assert result.ops == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    model = flatbuffer.read_model(result.tflite_bytes)
    kernels = [
        np.frombuffer(model.buffers[t.buffer].data.tobytes(), np.float32)
        for t in model.subgraphs[0].tensors
        if flatbuffer.has_data(model, t) and len(t.shape) == 2
    ]
    assert len(kernels) == 2
    assert all(np.mean(kernel == 0) == pytest.approx(0.75, abs=0.01) for kernel in kernels)
    export.to_tflite(dense_model, verify=False)
    assert len(calls) == 1, "models without pruning wrappers are not stripped"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"target": "int4"},
            ValueError,
            "`target` must be one of 'float32', 'float16', 'dynamic_int8', "
            "'int8', 'int16x8'. Received: target='int4'",
        ),
        (
            {"target": "float16", "int8_io": True},
            ValueError,
            "`int8_io=True` needs a full-integer target",
        ),
        (
            {"target": "float16", "representative_data": np.zeros((2, 32))},
            ValueError,
            "only used by the 'int8' and 'int16x8'",
        ),
        ({"tolerance": -1.0}, ValueError, "`tolerance` must be a positive number"),
        ({"verify": "yes"}, TypeError, "`verify` must be a bool"),
        ({"path": 3}, TypeError, "`path` must be a str"),
        ({"batch_size": 0}, ValueError, "`batch_size` must be None (any size) or a positive int"),
        ({"batch_size": True}, ValueError, "Received: batch_size=True"),
        ({"batch_size": 1.0}, ValueError, "Received: batch_size=1.0"),
        (
            {"batch_size": 2, "sample": np.zeros((3, 32), "float32")},
            ValueError,
            "`sample` has 3 rows, which batch_size=2 does not divide",
        ),
        (
            {
                "target": "int8",
                "batch_size": 4,
                "representative_data": np.zeros((3, 32), "float32"),
            },
            ValueError,
            "`representative_data` has 3 samples, fewer than one batch of batch_size=4",
        ),
    ],
)
def test_argument_errors(dense_model, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        export.to_tflite(dense_model, **kwargs)


def test_non_keras_models_are_rejected():
    with pytest.raises(TypeError, match="must be a `keras.Model`"):
        export.to_tflite("model.h5")


def _partitions(content):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    return sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())


def test_fixed_batch_makes_a_keras_hub_encoder_static_and_whole_for_xnnpack(
    bert_backbone, bert_inputs
):
    # A backbone's sequence length is unknown: fix it with sized inputs.
    inputs = {name: keras.Input((16,), dtype="int32", name=name) for name in bert_backbone.input}
    model = keras.Model(inputs, bert_backbone(inputs))
    sample = bert_inputs(n=4)
    any_batch = export.to_tflite(model, target="dynamic_int8", sample=sample)

    fixed = export.to_tflite(model, target="dynamic_int8", sample=sample, batch_size=1)

    interpreter = runtime.load(fixed.tflite_bytes)
    for detail in interpreter.input_details:
        assert list(detail["shape_signature"]) == [1, 16]
    # Verified in chunks of one row against Keras.
    assert fixed.checks["outputs_match"]["passed"]
    assert fixed.cosine_similarity > 0.99
    assert _partitions(fixed.tflite_bytes) < _partitions(any_batch.tflite_bytes)
    model = runtime.load(fixed.tflite_bytes)
    one = {k: v[:1] for k, v in sample.items()}
    np.testing.assert_allclose(
        model.run(one)["sequence_output"],
        runtime.load(any_batch.tflite_bytes).run(one)["sequence_output"],
        atol=1e-5,
    )


def test_sequence_length_and_batch_make_a_backbone_fully_static(bert_backbone, bert_inputs):
    sample = bert_inputs(n=2)
    dynamic = export.to_tflite(bert_backbone, target="float32", sample=sample)

    static = export.to_tflite(
        bert_backbone, target="float32", sample=sample, batch_size=1, sequence_length=16
    )

    model = runtime.load(static.tflite_bytes)
    assert [list(d["shape_signature"]) for d in model.input_details] == [[1, 16]] * 3
    assert static.checks["outputs_match"]["passed"]
    assert _partitions(static.tflite_bytes) < _partitions(dynamic.tflite_bytes)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sequence_length": 0}, "`sequence_length` must be None (any size) or a positive int"),
        ({"sequence_length": 12}, "`sample` input 'token_ids' must have shape (None, 12)"),
    ],
)
def test_sequence_length_errors(bert_backbone, bert_inputs, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        export.to_tflite(bert_backbone, sample=bert_inputs(n=2), **kwargs)


def test_sequence_length_needs_an_unknown_second_dimension(dense_model):
    with pytest.raises(
        ValueError, match=re.escape("`sequence_length=8` fixes the second dimension")
    ):
        export.to_tflite(dense_model, sequence_length=8)


def test_fixed_batch_verifies_outputs_without_a_batch_axis():
    x = keras.Input((4,), name="x")
    dense = keras.layers.Dense(3)(x)
    model = keras.Model(x, [dense, keras.ops.sum(dense)])
    sample = np.random.default_rng(0).normal(size=(4, 4)).astype("float32")

    result = export.to_tflite(model, sample=sample, batch_size=np.int64(2))

    assert result.checks["outputs_match"]["passed"]
    assert [d["shape_signature"][0] for d in runtime.load(result.tflite_bytes).input_details] == [2]


def test_fixed_batch_groups_calibration_samples(dense_model, calibration_data):
    result = export.to_tflite(
        dense_model,
        target="int8",
        representative_data=calibration_data(dense_model, n=10),
        batch_size=2,
    )

    model = runtime.load(result.tflite_bytes)
    assert [list(d["shape_signature"]) for d in model.input_details] == [[2, 32]]
    assert result.checks["outputs_match"]["passed"]


def _bert(vocabulary_size, seed=0):
    import keras_hub

    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=16,
    )


def test_without_sample_token_models_are_checked_on_inputs_like_real_ones(monkeypatch):
    import importlib

    tflite = importlib.import_module("tfcompress.export.tflite")
    seen = {}
    run_checks = tflite.run_checks

    def spy(content, target, param_count, sample, *args, **kwargs):
        seen.update(sample)
        return run_checks(content, target, param_count, sample, *args, **kwargs)

    monkeypatch.setattr(tflite, "run_checks", spy)
    result = export.to_tflite(_bert(1000), "dynamic_int8")

    check = result.checks["outputs_match"]
    assert check["passed"]
    assert (
        "on synthetic inputs (random token ids below 1000, padding masks that are a prefix of ones"
        in check["detail"]
    )
    ids, mask = seen["token_ids"], seen["padding_mask"]
    # The vocabulary the backbone declares (not [0, 100), nor [0, 2) when a
    # segment embedding refused larger ids), one segment, real padding.
    assert 0 <= ids.min() and 100 <= ids.max() < 1000
    assert not seen["segment_ids"].any()
    np.testing.assert_array_equal(mask, np.arange(mask.shape[1])[None] < mask.sum(1)[:, None])
    assert mask[0].all()


def test_a_real_mismatch_on_synthetic_inputs_fails_and_says_how_to_pass_real_data(monkeypatch):
    from tfcompress.export import converter

    wrong = export.to_tflite(_bert(1000, seed=1), "dynamic_int8", verify=False).tflite_bytes
    monkeypatch.setattr(converter, "convert", lambda *args, **kwargs: wrong)
    with pytest.raises(
        export.ExportVerificationError,
        match=r"outputs_match: cosine_distance .* > tolerance 0.01 \(padded positions left out\) on synthetic "
        r"inputs \(random token ids "
        r"below 1000.*\), not real data: pass sample= with one batch of real inputs",
    ):
        export.to_tflite(_bert(1000), "dynamic_int8")


def test_real_samples_carry_no_synthetic_note(bert_backbone, bert_inputs):
    result = export.to_tflite(bert_backbone, "dynamic_int8", sample=bert_inputs(n=2))
    assert "synthetic" not in result.checks["outputs_match"]["detail"]
