"""Feature (hidden-state) losses: nested keras-hub paths, subclassed models, projections."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import testing
from distillation.distiller_lm_test import SEQ
from distillation.distiller_lm_test import gpt2
from tfcompress.core import find_layer
from tfcompress.distillation import Distiller
from tfcompress.distillation import capture_outputs


@pytest.fixture(scope="module")
def teacher():
    return gpt2(num_layers=2, hidden_dim=16, seed=0)


def _batch(seed=0, batch=4):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, SEQ), "int32")
    mask[0, 5:] = 0
    mask[1, 3:] = 0
    return {"token_ids": rng.integers(1, 29, (batch, SEQ)).astype("int32"), "padding_mask": mask}


def _activation(model, path, x):
    layer = find_layer(model, path).layer
    with capture_outputs([layer]) as captured:
        model(x, training=False)
    return keras.ops.convert_to_numpy(captured[layer]).astype("float64")


def test_nested_paths_with_a_projection_and_masked_cosine_match_numpy(teacher):
    student = gpt2(num_layers=1, hidden_dim=8, seed=1)
    distiller = Distiller(student, teacher)
    distiller.compile(
        feature_losses=[
            (f"{teacher.backbone.name}/transformer_layer_1", "transformer_layer_0", "cosine", 0.5)
        ],
    )
    batch = _batch()
    result = distiller.evaluate(batch, batch_size=4, verbose=0, return_dict=True)
    (projection,) = distiller._projections.layers_by_key.values()
    kernel, bias = (w.numpy().astype("float64") for w in projection.weights)
    assert kernel.shape == (8, 16)
    t = _activation(teacher, f"{teacher.backbone.name}/transformer_layer_1", batch)
    s = _activation(student, f"{student.backbone.name}/transformer_layer_0", batch) @ kernel + bias
    cos = (t * s).sum(-1) / (np.linalg.norm(t, axis=-1) * np.linalg.norm(s, axis=-1))
    mask = batch["padding_mask"]
    expected = ((1 - cos) * mask).sum() / mask.sum()
    assert result["feature_loss"] == pytest.approx(expected, abs=1e-6)
    assert result["loss"] == pytest.approx(result["distillation_loss"] + 0.5 * expected, abs=1e-5)


def test_hidden_state_losses_train_and_the_student_saves_alone(teacher, tmp_path):
    student = gpt2(num_layers=2, hidden_dim=8, seed=2)
    distiller = Distiller(student, teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(0.01),
        feature_losses=[
            ("transformer_layer_0", "transformer_layer_0"),
            ("transformer_layer_1", "transformer_layer_1", "mse", 2.0),
        ],
    )
    data = {k: np.repeat(v, 8, axis=0) for k, v in _batch().items()}
    history = distiller.fit(data, epochs=5, batch_size=8, verbose=0).history
    for name in ("feature_loss_0", "feature_loss_1", "distillation_loss"):
        assert history[name][-1] < history[name][0], name
    assert len(distiller._projections.layers_by_key) == 2
    saved = testing.run_model_saving_test(student, data, tmp_path, name="student")
    assert not any("projection" in w.path for w in saved.weights)
    assert len(saved.weights) == len(student.weights)


def test_subclassed_models_by_layer_object():
    teacher = testing.Subclassed(units=16, name="teacher")
    teacher(np.zeros((1, 6), "float32"))
    student = testing.subclassed()
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    before = [w.numpy().copy() for w in teacher.weights]
    distiller = Distiller(student, teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(0.02),
        feature_losses=[(teacher.block, student.block, "mse"), ("norm", "norm", "cosine")],
    )
    history = distiller.fit(x, epochs=6, batch_size=16, verbose=0).history
    assert history["feature_loss_0"][-1] < 0.7 * history["feature_loss_0"][0]
    assert history["loss"][-1] < history["loss"][0]
    for old, new in zip(before, teacher.weights):
        np.testing.assert_array_equal(old, new.numpy())


def test_the_student_runs_once_per_step(teacher):
    student = gpt2(num_layers=1, hidden_dim=8, seed=3)
    eager_calls = []
    original = student.call

    def counting(*args, **kwargs):
        if tf.executing_eagerly():
            eager_calls.append(1)
        return original(*args, **kwargs)

    object.__setattr__(student, "call", counting)
    distiller = Distiller(student, teacher)
    distiller.compile(
        feature_losses=[("transformer_layer_1", "transformer_layer_0")],
        run_eagerly=True,
    )
    distiller.fit(_batch(batch=6), epochs=1, batch_size=2, verbose=0)
    assert len(eager_calls) == 3


def test_layer_errors(teacher):
    distiller = Distiller(gpt2(num_layers=1, hidden_dim=8), teacher)
    with pytest.raises(ValueError, match=r"feature_losses\[0\]: the student .* has no layer at path 'transformer_layer_7'"):
        distiller.compile(feature_losses=[("transformer_layer_1", "transformer_layer_7")])
    with pytest.raises(ValueError, match=r"'feedforward_output_dense' ends 2 layer paths"):
        distiller.compile(feature_losses=[("feedforward_output_dense", "transformer_layer_0")])
    with pytest.raises(ValueError, match=r"feature_losses\[0\]: layer 'stray' is not inside the teacher"):
        distiller.compile(feature_losses=[(keras.layers.Dense(2, name="stray"), "transformer_layer_0")])
    with pytest.raises(ValueError, match=r"feature_losses\[0\] loss.*must be one of"):
        distiller.compile(feature_losses=[("transformer_layer_0", "transformer_layer_0", "l1")])
    with pytest.raises(ValueError, match=r"feature_losses\[0\] weight must be a number >= 0"):
        distiller.compile(feature_losses=[("transformer_layer_0", "transformer_layer_0", "mse", -1)])
    with pytest.raises(TypeError, match="`feature_losses` must be a list"):
        distiller.compile(feature_losses="gpt2_backbone")
    # The tied embedding runs forward and reversed: its activation is ambiguous.
    distiller.compile(feature_losses=[("token_embedding", "token_embedding")])
    with pytest.raises(ValueError, match="'token_embedding' ran 2 times in one forward pass"):
        distiller.evaluate(_batch(), verbose=0)


def test_backbone_with_dict_outputs_distils_hidden_states_only():
    teacher, student = testing.bert_backbone(num_layers=2), testing.bert_backbone(num_layers=1)
    distiller = Distiller(student, teacher)
    with pytest.raises(ValueError, match="returns 2 outputs.*distill_outputs=False"):
        distiller.compile()
    distiller.compile(
        feature_losses=[("transformer_layer_1", "transformer_layer_0")], distill_outputs=False
    )
    x = testing.token_inputs(batch=4)
    result = distiller.evaluate(x, batch_size=4, verbose=0, return_dict=True)
    t = _activation(teacher, "transformer_layer_1", x)
    s = _activation(student, "transformer_layer_0", x)
    assert result["loss"] == pytest.approx(((t - s) ** 2).mean(), abs=1e-6)


def test_recompiling_with_other_pairs_freezes_the_old_projection(teacher):
    distiller = Distiller(gpt2(num_layers=1, hidden_dim=8, seed=4), teacher)
    distiller.compile(feature_losses=[("transformer_layer_1", "transformer_layer_0")])
    distiller.evaluate(_batch(), verbose=0)
    distiller.compile(feature_losses=[("transformer_layer_0", "transformer_layer_0")])
    distiller.fit(_batch(), epochs=1, verbose=0)
    old, new = distiller._projections.layers_by_key.values()
    assert not old.trainable and new.trainable
    assert not any(w is v for w in old.weights for v in distiller.trainable_weights)
