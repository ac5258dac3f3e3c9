"""Distiller.cache_teacher: full and top-k teacher outputs computed once."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from distillation.distiller_lm_test import gpt2
from distillation.reference import log_softmax
from tests._tiny_causal_lm import tiny_gpt2
from tfcompress.distillation import Distiller, kd_loss, make_student


@pytest.fixture(scope="module")
def teacher():
    return gpt2(num_layers=2, hidden_dim=16, seed=0)


def _dataset(batches=3, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 29, (batches * batch, 8)).astype("int32")
    mask = np.ones_like(ids)
    mask[::3, 6:] = 0
    x = {"token_ids": ids, "padding_mask": mask}
    return tf.data.Dataset.from_tensor_slices(x).batch(batch)


def _evaluate_and_fit_without_the_teacher(distiller, teacher, cached):
    """Evaluates, then fits 3 epochs, on `cached`; fails if the teacher is called."""
    calls = []
    original = teacher.call
    object.__setattr__(teacher, "call", lambda *a, **k: calls.append(1) or original(*a, **k))
    try:
        from_cache = distiller.evaluate(cached, verbose=0, return_dict=True)
        history = distiller.fit(cached, epochs=3, verbose=0).history
    finally:
        object.__delattr__(teacher, "call")
    assert calls == []
    return from_cache, history


def test_full_cache_gives_the_live_loss_without_running_the_teacher(teacher):
    distiller = Distiller(gpt2(num_layers=1, hidden_dim=8, seed=1), teacher)
    distiller.compile(optimizer=keras.optimizers.Adam(0.01), temperature=2.0)
    live = distiller.evaluate(_dataset(), verbose=0, return_dict=True)
    cached = distiller.cache_teacher(_dataset())
    assert len(cached) == 3
    from_cache, history = _evaluate_and_fit_without_the_teacher(distiller, teacher, cached)
    assert from_cache["loss"] == pytest.approx(live["loss"], abs=1e-6)
    assert history["loss"][-1] < history["loss"][0]
    np.testing.assert_allclose(
        distiller.predict(cached, verbose=0)[:4],
        keras.ops.convert_to_numpy(distiller.student(next(iter(_dataset())))),
        atol=1e-5,
    )


def test_top_k_is_the_kl_to_the_renormalized_teacher(teacher):
    distiller = Distiller(gpt2(num_layers=1, hidden_dim=8, seed=2), teacher)
    distiller.compile(temperature=2.0)
    cached = distiller.cache_teacher(_dataset(batches=1), top_k=5)
    x = cached[0][0]
    values, indices = x["tfcompress_teacher_logits"], x["tfcompress_teacher_indices"]
    assert values.shape == (4, 8, 5) and indices.shape == (4, 8, 5)
    inputs = x["tfcompress_inputs"]
    t_full = keras.ops.convert_to_numpy(teacher(inputs, training=False))
    np.testing.assert_allclose(np.sort(t_full, -1)[..., ::-1][..., :5], values, atol=1e-5)
    s = keras.ops.convert_to_numpy(distiller.student(inputs))
    p = log_softmax(values / 2.0)
    q = np.take_along_axis(log_softmax(s / 2.0), indices, -1)
    kl = (np.exp(p) * (p - q)).sum(-1)
    mask = inputs["padding_mask"]
    expected = (kl * mask).sum() / mask.sum() * 4.0
    result = distiller.evaluate(cached, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(expected, abs=1e-5)
    # With every class kept, top-k equals the full KL.
    everything = distiller.cache_teacher(_dataset(batches=1), top_k=29)
    full = kd_loss(t_full, s, 2.0, mask)
    assert distiller.evaluate(everything, verbose=0, return_dict=True)["loss"] == pytest.approx(
        float(full), abs=1e-5
    )


def test_a_keras_hub_teacher_with_its_preprocessor_caches_token_ids():
    teacher = tiny_gpt2(seed=0, sequence_length=8)
    assert teacher.preprocessor is not None
    student = make_student(teacher, num_layers=1)
    distiller = Distiller(student, teacher)
    distiller.compile(temperature=2.0)
    ids = np.random.default_rng(1).integers(1, 40, (4, 8)).astype("int32")
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    cached = distiller.cache_teacher(tf.data.Dataset.from_tensor_slices(x).batch(4))
    np.testing.assert_allclose(
        cached[0][0]["tfcompress_teacher_logits"],
        keras.ops.convert_to_numpy(teacher(x, training=False)),
        atol=1e-6,
    )
    live = distiller.evaluate(tf.data.Dataset.from_tensor_slices(x).batch(4), verbose=0)
    assert distiller.evaluate(cached, verbose=0) == pytest.approx(live, abs=1e-6)


_PAIRS = [
    ("transformer_layer_1", "transformer_layer_0", "mse", 0.5),
    ("transformer_layer_0", "transformer_layer_0", "cosine", 0.25),
]


def _feature_distiller(teacher, seed=4, dropout=0.1):
    distiller = Distiller(gpt2(num_layers=1, hidden_dim=8, seed=seed, dropout=dropout), teacher)
    distiller.compile(optimizer=keras.optimizers.Adam(0.01), temperature=2.0, feature_losses=_PAIRS)
    return distiller


def test_hidden_states_are_cached_and_give_the_live_loss(teacher):
    distiller = _feature_distiller(teacher)
    live = distiller.evaluate(_dataset(), verbose=0, return_dict=True)
    cached = distiller.cache_teacher(_dataset())
    features = cached[0][0]["tfcompress_teacher_features"]
    assert sorted(features) == sorted(p.teacher_path for p in distiller._pairs)
    assert all(f.shape == (4, 8, 16) for f in features.values())
    from_cache, history = _evaluate_and_fit_without_the_teacher(distiller, teacher, cached)
    for key in ("loss", "distillation_loss", "feature_loss_0", "feature_loss_1"):
        assert from_cache[key] == pytest.approx(live[key], abs=1e-6)
    assert history["loss"][-1] < history["loss"][0]


def test_hidden_states_only_for_a_teacher_with_several_outputs(teacher):
    def backbone(model):
        inputs = {
            n: keras.Input((8,), dtype="int32", name=n) for n in ("token_ids", "padding_mask")
        }
        return keras.Model(inputs, model.backbone(inputs))

    distiller = Distiller(backbone(gpt2(num_layers=1, hidden_dim=8, seed=5)), backbone(teacher))
    distiller.compile(feature_losses=_PAIRS[:1], distill_outputs=False)
    live = distiller.evaluate(_dataset(), verbose=0, return_dict=True)
    cached = distiller.cache_teacher(_dataset())
    assert "tfcompress_teacher_logits" not in cached[0][0]
    assert distiller.evaluate(cached, verbose=0, return_dict=True)["loss"] == pytest.approx(
        live["loss"], abs=1e-6
    )


def test_training_on_cached_hidden_states_resumes_from_a_checkpoint(teacher, tmp_path):
    # Without dropout: the two runs compared would draw different masks.
    first = _feature_distiller(teacher, seed=6, dropout=0.0)
    cached = first.cache_teacher(_dataset())
    first.evaluate(cached, verbose=0)  # builds the projection
    first.save(tmp_path / "initial.keras")
    straight = keras.saving.load_model(tmp_path / "initial.keras")
    straight.fit(cached, epochs=2, shuffle=False, verbose=0)

    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "epoch.keras"))
    first.fit(cached, epochs=1, shuffle=False, verbose=0, callbacks=[checkpoint])
    resumed = keras.saving.load_model(tmp_path / "epoch.keras")
    assert int(resumed.optimizer.iterations.numpy()) == 3
    resumed.fit(resumed.cache_teacher(_dataset()), epochs=1, shuffle=False, verbose=0)
    for a, b in zip(straight.trainable_weights, resumed.trainable_weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_cache_errors(teacher):
    distiller = Distiller(gpt2(num_layers=1, hidden_dim=8, seed=3), teacher)
    distiller.compile(feature_losses=[("transformer_layer_1", "transformer_layer_0")])
    with pytest.raises(ValueError, match="`top_k` must be None .* or an int >= 1"):
        distiller.cache_teacher(_dataset(), top_k=0)
    with pytest.raises(ValueError, match="exceeds the teacher's 29 classes"):
        distiller.cache_teacher(_dataset(), top_k=30)
    distiller.compile()
    cached = distiller.cache_teacher(_dataset(batches=1))
    distiller.compile(feature_losses=[("transformer_layer_1", "transformer_layer_0")])
    with pytest.raises(
        ValueError, match="`feature_losses` need its hidden states at .*transformer_layer_1"
    ):
        distiller.evaluate(cached, verbose=0)
    distiller.compile(distill_outputs=False, feature_losses=_PAIRS[:1])
    hidden_only = distiller.cache_teacher(_dataset(batches=1))
    distiller.compile(feature_losses=_PAIRS[:1])
    with pytest.raises(ValueError, match="hold no teacher outputs .*distill_outputs=False"):
        distiller.evaluate(hidden_only, verbose=0)
    distiller.compile(reverse_kl=True)
    with pytest.raises(ValueError, match="Reverse KL needs the teacher's full distribution"):
        distiller.evaluate(distiller.cache_teacher(_dataset(batches=1), top_k=3), verbose=0)
