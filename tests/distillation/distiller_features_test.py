"""Feature (hidden-state) losses: nested keras-hub paths, subclassed models, projections,
attention relations and custom callables."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from distillation.distiller_lm_test import SEQ, gpt2
from distillation.reference import numpy_relation
from tfcompress.core import find_layer, walk_layers
from tfcompress.distillation import Distiller, capture_outputs, relation_loss

import testing


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
    with pytest.raises(
        ValueError,
        match=r"feature_losses\[0\]: the student .* has no layer at path 'transformer_layer_7'",
    ):
        distiller.compile(feature_losses=[("transformer_layer_1", "transformer_layer_7")])
    with pytest.raises(ValueError, match=r"'feedforward_output_dense' ends 2 layer paths"):
        distiller.compile(feature_losses=[("feedforward_output_dense", "transformer_layer_0")])
    with pytest.raises(
        ValueError, match=r"feature_losses\[0\]: layer 'stray' is not inside the teacher"
    ):
        distiller.compile(
            feature_losses=[(keras.layers.Dense(2, name="stray"), "transformer_layer_0")]
        )
    with pytest.raises(ValueError, match=r"feature_losses\[0\] loss.*must be one of"):
        distiller.compile(feature_losses=[("transformer_layer_0", "transformer_layer_0", "l1")])
    with pytest.raises(
        ValueError, match=r"'attention_relation' needs a `MultiHeadAttention`.*holds 0"
    ):
        distiller.compile(
            feature_losses=[("token_embedding", "transformer_layer_0", "attention_relation")]
        )
    with pytest.raises(ValueError, match=r"feature_losses\[0\] weight must be a number >= 0"):
        distiller.compile(
            feature_losses=[("transformer_layer_0", "transformer_layer_0", "mse", -1)]
        )
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


def _bert(num_layers, hidden_dim, seed):
    import keras_hub

    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=testing.VOCAB,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        max_sequence_length=testing.SEQ,
        dropout=0.0,
    )


def _attention(model, block):
    (layer,) = [
        ref.layer
        for ref in walk_layers(find_layer(model, block).layer)
        if isinstance(ref.layer, keras.layers.MultiHeadAttention)
    ]
    return layer


def test_attention_relation_on_keras_hub_bert_matches_numpy_and_trains():
    teacher, student = _bert(2, 8, seed=0), _bert(1, 4, seed=1)
    x = testing.token_inputs(batch=8)
    x["padding_mask"][0, 5:] = 0
    x["padding_mask"][1, 2:] = 0
    distiller = Distiller(student, teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(0.01),
        feature_losses=[("transformer_layer_1", "transformer_layer_0", "attention_relation", 0.5)],
        distill_outputs=False,
    )
    result = distiller.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    names = ("_query_dense", "_key_dense", "_value_dense")
    t_layers = [getattr(_attention(teacher, "transformer_layer_1"), n) for n in names]
    s_layers = [getattr(_attention(student, "transformer_layer_0"), n) for n in names]
    with capture_outputs(t_layers) as t_out:
        teacher(x, training=False)
    with capture_outputs(s_layers) as s_out:
        student(x, training=False)
    expected = [
        numpy_relation(
            keras.ops.convert_to_numpy(t_out[t]),
            keras.ops.convert_to_numpy(s_out[s]),
            x["padding_mask"],
        )
        for t, s in zip(t_layers, s_layers)
    ]
    for i, value in enumerate(expected):
        assert result[f"feature_loss_{i}"] == pytest.approx(value, abs=1e-6)
    assert result["loss"] == pytest.approx(0.5 * sum(expected), abs=1e-5)
    history = distiller.fit(x, epochs=8, batch_size=8, verbose=0).history
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    assert not distiller._projections.layers_by_key  # widths 8 and 4 need none


def test_custom_callable_feature_loss_gets_raw_activations_and_the_mask(teacher):
    student = gpt2(num_layers=1, hidden_dim=8, seed=5)
    seen = []

    def pooled_l2(t, s, mask):
        seen.append(mask)
        weights = keras.ops.cast(mask, "float32")[..., None]
        pool = lambda h: keras.ops.sum(h * weights, 1) / keras.ops.sum(weights, 1)  # noqa: E731
        return keras.ops.mean(
            keras.ops.square(keras.ops.norm(pool(t), axis=-1) - keras.ops.norm(pool(s), axis=-1))
        )

    distiller = Distiller(student, teacher)
    distiller.compile(
        feature_losses=[
            ("transformer_layer_1", "transformer_layer_0", pooled_l2, 2.0),
            (
                "transformer_layer_1",
                "transformer_layer_0",
                functools.partial(relation_loss, num_heads=2),
            ),
        ],
        run_eagerly=True,  # to look at the mask the callable was given
    )
    batch = _batch()
    result = distiller.evaluate(batch, batch_size=4, verbose=0, return_dict=True)
    t = _activation(teacher, f"{teacher.backbone.name}/transformer_layer_1", batch)
    s = _activation(student, f"{student.backbone.name}/transformer_layer_0", batch)
    w = batch["padding_mask"][..., None]
    pool_t, pool_s = (t * w).sum(1) / w.sum(1), (s * w).sum(1) / w.sum(1)
    expected = ((np.linalg.norm(pool_t, axis=-1) - np.linalg.norm(pool_s, axis=-1)) ** 2).mean()
    assert result["feature_loss_0"] == pytest.approx(expected, rel=1e-5)
    assert result["feature_loss_1"] == pytest.approx(
        numpy_relation(t, s, batch["padding_mask"], num_heads=2), abs=1e-6
    )
    assert not distiller._projections.layers_by_key  # widths 16 and 8 reach the callables
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(seen[-1]), batch["padding_mask"])
