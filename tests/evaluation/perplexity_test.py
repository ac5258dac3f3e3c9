import keras
import numpy as np
import pytest

from tfcompress import evaluation

VOCAB = 11


def _lm(initializer="zeros", seed=0):
    """Token ids [batch, seq] -> logits [batch, seq, VOCAB] through an Embedding."""
    if initializer != "zeros":
        initializer = keras.initializers.RandomNormal(stddev=2.0, seed=seed)
    return keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(VOCAB, VOCAB, embeddings_initializer=initializer),
        ]
    )


def _tokens(shape=(5, 9), seed=0):
    return np.random.default_rng(seed).integers(0, VOCAB, shape).astype("int32")


def _reference_perplexity(logits, tokens, mask):
    """A plain loop over every scored position."""
    nll, count = 0.0, 0
    for b in range(tokens.shape[0]):
        for t in range(1, tokens.shape[1]):
            if mask[b, t]:
                row = logits[b, t - 1].astype(np.float64)
                log_z = np.log(np.sum(np.exp(row - row.max()))) + row.max()
                nll += log_z - row[tokens[b, t]]
                count += 1
    return np.exp(nll / count)


def test_uniform_logits_give_vocab_size():
    assert evaluation.perplexity(_lm(), _tokens()) == pytest.approx(VOCAB, rel=1e-9)


def test_matches_hand_computed_with_padding_mask():
    model = _lm("random")
    tokens = _tokens()
    mask = np.ones_like(tokens)
    mask[0, 6:] = 0
    mask[3, 2:] = 0
    logits = np.asarray(model.predict_on_batch(tokens))
    expected = _reference_perplexity(logits, tokens, mask)
    result = evaluation.perplexity(model, tokens, padding_mask=mask, batch_size=2)
    assert result == pytest.approx(expected, rel=1e-6)
    unmasked = _reference_perplexity(logits, tokens, np.ones_like(tokens))
    assert not np.isclose(expected, unmasked)


def test_padding_values_do_not_matter_under_the_mask():
    model = _lm("random")
    tokens = _tokens()
    mask = np.ones_like(tokens)
    mask[:, 6:] = 0
    other = tokens.copy()
    other[:, 6:] = 0
    assert evaluation.perplexity(model, tokens, mask) == pytest.approx(
        evaluation.perplexity(model, other, mask), rel=1e-9
    )


def test_batch_size_does_not_change_the_result():
    model = _lm("random")
    tokens = _tokens((7, 6))
    assert evaluation.perplexity(model, tokens, batch_size=1) == pytest.approx(
        evaluation.perplexity(model, tokens, batch_size=7), rel=1e-9
    )


def test_callable_model():
    def uniform(t):
        return np.zeros((*t.shape, VOCAB), dtype=np.float32)

    assert evaluation.perplexity(uniform, _tokens()) == pytest.approx(VOCAB)


def test_errors():
    with pytest.raises(ValueError, match=r"\[batch, seq\] with seq >= 2"):
        evaluation.perplexity(_lm(), np.arange(5))
    with pytest.raises(ValueError, match="integer token ids"):
        evaluation.perplexity(_lm(), _tokens().astype("float32"))
    with pytest.raises(ValueError, match="`padding_mask` must have the shape"):
        evaluation.perplexity(_lm(), _tokens(), padding_mask=np.ones((5, 8)))
    with pytest.raises(ValueError, match="no target token"):
        evaluation.perplexity(_lm(), _tokens(), padding_mask=np.zeros((5, 9)))
    with pytest.raises(ValueError, match=r"must be in \[0, 11\)"):
        evaluation.perplexity(lambda t: np.zeros((*t.shape, VOCAB)), _tokens() + VOCAB)
    with pytest.raises(ValueError, match=r"logits \[batch, seq, vocab\]"):
        evaluation.perplexity(lambda t: np.zeros(t.shape), _tokens())
    with pytest.raises(ValueError, match="`batch_size` must be an int >= 1"):
        evaluation.perplexity(_lm(), _tokens(), batch_size=0)


def test_perplexity_through_an_exported_generator_file_matches_keras(tmp_path):
    from tests import _tiny_causal_lm
    from tfcompress.export import to_tflite_generator
    from tfcompress.runtime import Generator

    causal_lm = _tiny_causal_lm.tiny_llama3(seed=1)
    path = str(tmp_path / "tiny.tflite")
    to_tflite_generator(
        causal_lm, target="float32", cache_length=48, prefill_lengths=(8,), path=path
    )
    tokens = np.random.default_rng(0).integers(3, causal_lm.backbone.vocabulary_size, size=(3, 40))
    mask = np.ones_like(tokens)
    mask[2, 30:] = 0
    keras_ppl = evaluation.perplexity(
        lambda t: causal_lm({"token_ids": t, "padding_mask": np.ones_like(t)}),
        tokens,
        padding_mask=mask,
    )
    file_ppl = evaluation.perplexity(path, tokens, padding_mask=mask)
    assert file_ppl == pytest.approx(keras_ppl, rel=1e-3)
    assert evaluation.perplexity(Generator(path), tokens, padding_mask=mask) == pytest.approx(
        file_ppl, rel=1e-9
    )
    assert 10 < keras_ppl < 10_000
