"""Distiller on keras-hub causal language models: token masks, reverse KL, vocabularies."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from distillation.reference import numpy_ce, numpy_kd
from tfcompress.distillation import Distiller

SEQ = 8


def tiny_tokenizer():
    letters = list("abcdefghijklmnopqrstuvwxyz") + ["Ġ", "ab"]
    vocabulary = {"<|endoftext|>": 0, **{token: i + 1 for i, token in enumerate(letters)}}
    return keras_hub.tokenizers.GPT2Tokenizer(vocabulary=vocabulary, merges=["a b"])


def gpt2(vocabulary_size=29, num_layers=2, hidden_dim=16, seed=0, dropout=0.1):
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        max_sequence_length=SEQ,
        dropout=dropout,
    )
    # Random GPT-2 weights give near-uniform logits; a unit-scale embedding
    # (the head is tied to it) gives distributions that differ measurably.
    embeddings = backbone.token_embedding.embeddings
    embeddings.assign(np.random.default_rng(seed).normal(size=embeddings.shape))
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def logits(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.fixture(scope="module")
def teacher():
    return gpt2(num_layers=2, hidden_dim=16, seed=0)


def _padded_batch(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 29, (2, SEQ)).astype("int32")
    mask = np.array([[1] * 5 + [0] * 3, [1] * SEQ], "int32")
    return {"token_ids": ids, "padding_mask": mask}


def test_padded_batch_gives_the_loss_of_its_real_tokens(teacher):
    distiller = Distiller(gpt2(num_layers=1, hidden_dim=8, seed=1), teacher)
    distiller.compile(temperature=2.0)
    batch = _padded_batch()
    padded = distiller.evaluate(batch, batch_size=2, verbose=0, return_dict=True)["loss"]
    row_a = {k: v[:1, :5] for k, v in batch.items()}
    row_b = {k: v[1:] for k, v in batch.items()}
    loss_a = distiller.evaluate(row_a, batch_size=1, verbose=0, return_dict=True)["loss"]
    loss_b = distiller.evaluate(row_b, batch_size=1, verbose=0, return_dict=True)["loss"]
    assert padded == pytest.approx((5 * loss_a + 8 * loss_b) / 13, abs=1e-6)
    unmasked = numpy_kd(logits(teacher, batch), logits(distiller.student, batch), 2.0)
    assert abs(padded - unmasked) > 1e-3  # the padding would have changed it


# Slow tier: 17 s on a 2-core CI machine, which the default suite's 15 min budget cannot spare.
@pytest.mark.slow
def test_preprocessor_batches_match_numpy_and_train(teacher):
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(tiny_tokenizer(), sequence_length=SEQ)
    texts = ["abc", "ab cd efgh", "hello world", "zz top", "a", "keras hub"] * 4
    # Tokenizing costs seconds per pass: cache, as a user would for epochs.
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(6).map(preprocessor).cache()
    student = gpt2(num_layers=1, hidden_dim=8, seed=2)
    distiller = Distiller(student, teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(0.01),
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        alpha=0.5,
        temperature=1.5,
    )
    x, y, sample_weight = next(iter(dataset))
    result = distiller.evaluate(dataset.take(1), verbose=0, return_dict=True)
    mask = sample_weight.numpy().astype("float64")
    t, s = logits(teacher, x), logits(student, x)
    soft, hard = numpy_kd(t, s, 1.5, mask), numpy_ce(s, y.numpy(), mask)
    assert result["distillation_loss"] == pytest.approx(soft, abs=1e-6)
    assert result["student_loss"] == pytest.approx(hard, abs=1e-6)
    assert result["loss"] == pytest.approx(0.5 * hard + 0.5 * soft, abs=1e-6)
    history = distiller.fit(dataset, epochs=3, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]


def test_reverse_kl(teacher):
    student = gpt2(num_layers=1, hidden_dim=8, seed=3)
    distiller = Distiller(student, teacher)
    distiller.compile(temperature=1.0, reverse_kl=True)
    batch = _padded_batch(1)
    result = distiller.evaluate(batch, batch_size=2, verbose=0, return_dict=True)
    mask = batch["padding_mask"]
    t, s = logits(teacher, batch), logits(student, batch)
    assert result["loss"] == pytest.approx(numpy_kd(t, s, 1.0, mask, reverse=True), abs=1e-6)
    assert result["loss"] != pytest.approx(numpy_kd(t, s, 1.0, mask), abs=1e-4)


def test_vocabulary_mismatch_is_a_clear_error(teacher):
    distiller = Distiller(gpt2(vocabulary_size=31, num_layers=1, hidden_dim=8), teacher)
    with pytest.raises(ValueError, match="teacher has 29, student has 31.*vocabulary_size=29"):
        distiller.compile()


def _labelled_batch(seed=4):
    batch = _padded_batch(seed)
    labels = np.roll(batch["token_ids"], -1, axis=1)
    return batch, labels


def test_without_the_output_term_the_hard_loss_is_not_scaled_by_alpha(teacher):
    student = gpt2(num_layers=1, hidden_dim=16, seed=6)
    distiller = Distiller(student, teacher)
    distiller.compile(
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        alpha=0.1,
        feature_losses=[("transformer_layer_1", "transformer_layer_0", "mse", 2.0)],
        distill_outputs=False,
    )
    x, y = _labelled_batch()
    result = distiller.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
    hard = numpy_ce(logits(student, x), y, x["padding_mask"])
    assert result["student_loss"] == pytest.approx(hard, abs=1e-6)
    # As with no hard loss and the KL alone: the one output term has weight 1.
    assert result["loss"] == pytest.approx(hard + 2.0 * result["feature_loss"], abs=1e-5)


def _mixed_precision_result(policy, teacher_weights, student_weights, x, y):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        teacher, student = gpt2(num_layers=2, hidden_dim=16), gpt2(num_layers=1, hidden_dim=8)
        teacher.set_weights(teacher_weights)
        student.set_weights(student_weights)
        distiller = Distiller(student, teacher)
        distiller.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            alpha=0.3,
            temperature=2.0,
            feature_losses=[
                ("transformer_layer_1", "transformer_layer_0", "cosine"),
                ("transformer_layer_1", "transformer_layer_0", "attention_relation"),
            ],
        )
        result = distiller.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
        loss = distiller.compute_loss(x, y, distiller(x), training=False)
        history = distiller.fit(x, y, epochs=2, batch_size=2, verbose=0).history
        compute_dtype = student.backbone.transformer_layers[0].compute_dtype
        return result, loss, history, compute_dtype
    finally:
        keras.mixed_precision.set_global_policy(previous)


# Slow tier: 33 s for both policies on a 2-core CI machine.
@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_losses_are_float32_and_match_the_float32_run(teacher, policy):
    x, y = _labelled_batch(5)
    weights = teacher.get_weights(), gpt2(num_layers=1, hidden_dim=8, seed=7).get_weights()
    reference, ref_loss, _, ref_dtype = _mixed_precision_result("float32", *weights, x, y)
    mixed, loss, history, dtype = _mixed_precision_result(policy, *weights, x, y)
    assert (ref_dtype, dtype) == ("float32", policy.removeprefix("mixed_"))
    assert keras.mixed_precision.global_policy().name == "float32"
    assert ref_loss.dtype == loss.dtype == "float32"
    assert set(mixed) == set(reference) and len(mixed) == 7
    for name, value in reference.items():
        assert np.isfinite(mixed[name]), name
        assert mixed[name] == pytest.approx(value, rel=1e-2, abs=1e-6), name
    assert all(np.isfinite(history["loss"]))
