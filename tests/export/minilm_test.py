"""The real pretrained MiniLM (offline package) through `to_tflite`."""

import re

import numpy as np
import pytest

from tfcompress.data import pydoc_text

import testing

SEQ = 32


def _sentences(count):
    text = re.sub(r"\s+", " ", pydoc_text())
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if 40 <= len(s) <= 200][:count]


@pytest.mark.slow
def test_minilm_dynamic_int8_is_a_quarter_of_fp32_and_keeps_embeddings():
    import keras

    from tfcompress import export, runtime

    backbone, encode = testing.minilm(SEQ)
    inputs = encode(_sentences(16))
    names = list(inputs)
    symbolic = [keras.Input((None,), dtype="int32", name=n) for n in names]
    model = keras.Model(symbolic, backbone(dict(zip(names, symbolic)))["sequence_output"])

    result = export.to_tflite(model, "dynamic_int8", sample={k: v[:4] for k, v in inputs.items()})

    assert result.checks["weights_present"]["passed"]
    assert result.size_bytes < 0.27 * 4 * backbone.count_params()
    assert result.size_bytes > 0.2 * 4 * backbone.count_params()  # weights really there
    lite = runtime.load(result.tflite_bytes)
    mask = inputs["padding_mask"][..., None].astype("float32")

    def pool(hidden):
        return (hidden * mask).sum(1) / mask.sum(1)

    ours = pool(np.asarray(lite.run(inputs)))
    reference = pool(np.asarray(model.predict([inputs[n] for n in names], verbose=0)))
    cosine = (ours * reference).sum(1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1)
    )
    assert cosine.min() > 0.99


def _nn_agreement(reference, candidate):
    def neighbours(x):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        similarity = x @ x.T
        np.fill_diagonal(similarity, -np.inf)
        return similarity.argmax(1)

    return float(np.mean(neighbours(reference) == neighbours(candidate)))


@pytest.mark.slow
def test_minilm_default_verification_and_post_training_int8():
    """Issue 11, items 4 and 5: without `sample` a good dynamic-range MiniLM
    passes verification; full int8 from float with representative data and
    no training keeps the sentence embeddings (`benchmarks/qat_minilm.py
    --norun_qat`: cosine 0.9934-0.9961, NN 91.8-92.6% on 256 sentences at
    length 64, where the stock converter's int8 gives 0.30; this test
    measured 0.9939 mean, 0.990 min, NN 97.9% on 48 sentences)."""
    import tensorflow as tf

    from tfcompress import export, runtime

    backbone, encode = testing.minilm(SEQ)
    dynamic = export.to_tflite(backbone, "dynamic_int8")  # raised cosine_distance 0.0146 > 0.01
    assert dynamic.checks["outputs_match"]["passed"]
    assert "on synthetic inputs" in dynamic.checks["outputs_match"]["detail"]

    sentences = _sentences(112)
    calibration = tf.data.Dataset.from_tensor_slices(encode(sentences[:64])).batch(16)
    held_out = encode(sentences[64:])
    result = export.to_tflite(backbone, "int8", representative_data=calibration)

    mask = held_out["padding_mask"][..., None].astype("float32")

    def pool(hidden):
        return (np.asarray(hidden) * mask).sum(1) / mask.sum(1)

    ours = pool(runtime.load(result.tflite_bytes).run(held_out)["sequence_output"])
    reference = pool(backbone.predict(held_out, verbose=0)["sequence_output"])
    cosine = (ours * reference).sum(1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1)
    )
    agreement = _nn_agreement(reference, ours)
    print(
        "PTQ int8 sentence cosine mean/min, NN agreement:", cosine.mean(), cosine.min(), agreement
    )
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.95, cosine
    assert agreement >= 0.85
    assert result.size_bytes < 0.3 * 4 * backbone.count_params()
