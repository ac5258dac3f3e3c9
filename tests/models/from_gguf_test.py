import gguf
import keras
import keras_hub
import numpy as np
import pytest

import tfcompress
from tfcompress.models import from_gguf

import testing
from .tiny_llama import hf_weights, llama_cpp_permute, random_backbone, source_tokenizer, write_gguf


@pytest.fixture(scope="module")
def tiny_llama():
    """(backbone, its weights under llama.cpp names), tied embeddings."""
    backbone = random_backbone()
    return backbone, hf_weights(backbone)


TOKEN_IDS = np.array([[1, 120, 7, 64, 250, 3, 40, 2, 99, 11, 0, 267]], dtype="int32")


def logits(backbone, token_ids=TOKEN_IDS):
    causal_lm = keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None)
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    return keras.ops.convert_to_numpy(causal_lm(inputs))


# Logit correlation with the float32 source, two random layers: measured values
# minus a margin (F16 0.999999, BF16 0.99992, Q8_0 0.9994, Q5 0.97, Q4 0.89).
MIN_CORRELATION = {
    "F16": 0.9999,
    "BF16": 0.999,
    "Q8_0": 0.999,
    "Q5_1": 0.9,
    "Q5_0": 0.9,
    "Q4_1": 0.8,
    "Q4_0": 0.8,
}


def roundtripped(weights, tensor_type):
    """What a reader sees after `tensor_type` storage: matrices quantized row-block-wise.

    Quantization blocks run along rows, so llama.cpp's row permutation commutes
    with it and the reference needs no permutation.
    """
    qtype = gguf.GGMLQuantizationType[tensor_type]
    result = {}
    for name, weight in weights.items():
        if weight.ndim == 2 and tensor_type != "F32":
            weight = gguf.quants.dequantize(
                gguf.quants.quantize(weight.astype(np.float32), qtype), qtype
            )
        result[name] = np.asarray(weight, np.float32).reshape(weights[name].shape)
    return result


def test_float32_logits_equal_the_source_model(tiny_llama, tmp_path):
    backbone, weights = tiny_llama
    causal_lm = from_gguf(write_gguf(tmp_path / "tiny.gguf", weights))
    assert isinstance(causal_lm, keras_hub.models.Llama3CausalLM)
    loaded = causal_lm.backbone
    assert loaded.tie_word_embeddings
    for key, value in {
        "num_layers": 2,
        "num_query_heads": 4,
        "num_key_value_heads": 2,
        "hidden_dim": 64,
        "intermediate_dim": 128,
        "rope_max_wavelength": 50000.0,
        "vocabulary_size": 268,
    }.items():
        assert loaded.get_config()[key] == value, key
    assert loaded.get_config()["layer_norm_epsilon"] == pytest.approx(1e-5)
    np.testing.assert_allclose(logits(loaded), logits(backbone), atol=1e-5, rtol=1e-5)


def test_untied_output_weight_is_the_lm_head(tmp_path):
    backbone = random_backbone(tie_word_embeddings=False, seed=2)
    causal_lm = from_gguf(write_gguf(tmp_path / "untied.gguf", hf_weights(backbone)))
    assert not causal_lm.backbone.tie_word_embeddings
    np.testing.assert_allclose(logits(causal_lm.backbone), logits(backbone), atol=1e-5, rtol=1e-5)


def test_unpermuting_matters(tiny_llama, tmp_path):
    # A file holding Hugging Face's row order (no llama.cpp permutation) must
    # load wrong: otherwise the exact-logits test would pass with no inverse at all.
    backbone, weights = tiny_llama
    unpermuted = dict(weights)
    for i in range(2):
        for kind, heads in (("attn_q", 4), ("attn_k", 2)):
            name = f"blk.{i}.{kind}.weight"
            # The writer permutes; pre-applying the inverse cancels it.
            unpermuted[name] = _inverse_permute(weights[name], heads)
            np.testing.assert_array_equal(llama_cpp_permute(unpermuted[name], heads), weights[name])
    wrong = from_gguf(write_gguf(tmp_path / "wrong.gguf", unpermuted))
    assert np.abs(logits(wrong.backbone) - logits(backbone)).max() > 1e-2


def _inverse_permute(weight, heads):
    rows, columns = weight.shape
    return (
        weight.reshape(heads, rows // heads // 2, 2, columns).swapaxes(1, 2).reshape(rows, columns)
    )


@pytest.mark.parametrize("tensor_type", sorted(MIN_CORRELATION))
def test_quantized_tensors_dequantize_in_place(tiny_llama, tmp_path, tensor_type):
    backbone, weights = tiny_llama
    causal_lm = from_gguf(write_gguf(tmp_path / f"{tensor_type}.gguf", weights, tensor_type))
    reader = gguf.GGUFReader(str(tmp_path / f"{tensor_type}.gguf"))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == tensor_type
    assert types["token_embd.weight"] == tensor_type

    # Exact: the loaded model equals the source with each matrix quantized and
    # dequantized by gguf itself, written back as F32.
    reference = from_gguf(write_gguf(tmp_path / "ref.gguf", roundtripped(weights, tensor_type)))
    np.testing.assert_allclose(
        logits(causal_lm.backbone), logits(reference.backbone), atol=1e-4, rtol=1e-4
    )

    # Within quantization error of the float32 source: logits keep their ranking.
    got, want = logits(causal_lm.backbone)[0], logits(backbone)[0]
    correlation = np.corrcoef(got.ravel(), want.ravel())[0, 1]
    assert correlation > MIN_CORRELATION[tensor_type]


def test_tokenizer_round_trips_text_and_special_tokens(tiny_llama, tmp_path):
    _, weights = tiny_llama
    causal_lm = from_gguf(write_gguf(tmp_path / "tiny.gguf", weights))
    tokenizer = causal_lm.preprocessor.tokenizer
    text = "<|im_start|>user\nhello world<|im_end|>\n"
    ids = keras.ops.convert_to_numpy(tokenizer(text)).tolist()
    assert ids[0] == 1 and ids[-2] == 2
    assert tokenizer.token_to_id("hello") in ids and tokenizer.token_to_id("Ġworld") in ids
    assert ids == keras.ops.convert_to_numpy(source_tokenizer()(text)).tolist()
    assert tokenizer.detokenize(ids) == text
    assert tokenizer.start_token_id == 1 and tokenizer.end_token_id == 2
    preprocessor = causal_lm.preprocessor
    assert not preprocessor.add_start_token and not preprocessor.add_end_token
    assert preprocessor.sequence_length == 256


def test_tokenizer_splits_with_the_files_pre_tokenizer(tiny_llama, tmp_path):
    _, weights = tiny_llama
    path = write_gguf(tmp_path / "smollm.gguf", weights, pre_tokenizer="smollm")
    tokenizer = from_gguf(path, sequence_length=16).preprocessor.tokenizer
    assert tokenizer.pre_tokenizer == "smollm"
    plain = from_gguf(write_gguf(tmp_path / "plain.gguf", weights), sequence_length=16)
    assert plain.preprocessor.tokenizer.pre_tokenizer is None


def test_generator_metadata_carries_the_pre_tokenizer_to_the_runtime(tiny_llama, tmp_path):
    from tfcompress.export.generator.tokenizer_metadata import tokenizer_metadata
    from tfcompress.runtime import BytePairTokenizer

    _, weights = tiny_llama
    path = write_gguf(tmp_path / "smollm.gguf", weights, pre_tokenizer="smollm")
    causal_lm = from_gguf(path, sequence_length=16)
    spec = tokenizer_metadata(causal_lm)["tokenizer"]
    assert spec["pre_tokenizer"] == "smollm"
    runtime = BytePairTokenizer(
        spec["vocabulary"], spec["merges"], spec["special_tokens"], spec["pre_tokenizer"]
    )
    text = "<|im_start|>hello world\n    12\n\n3 hello<|im_end|>"
    keras_ids = keras.ops.convert_to_numpy(causal_lm.preprocessor.tokenizer(text)).tolist()
    assert runtime.encode(text) == keras_ids
    assert runtime.pre_tokenize("\n    12") == ["\n    ", "1", "2"]


def test_unknown_pre_tokenizer_is_refused(tiny_llama, tmp_path):
    _, weights = tiny_llama
    path = write_gguf(tmp_path / "other.gguf", weights, pre_tokenizer="deepseek-coder")
    with pytest.raises(ValueError, match="tokenizer.ggml.pre='deepseek-coder'"):
        from_gguf(path)


def test_generate_matches_the_source_model(tiny_llama, tmp_path):
    backbone, weights = tiny_llama
    causal_lm = from_gguf(write_gguf(tmp_path / "tiny.gguf", weights), sequence_length=16)
    source = keras_hub.models.Llama3CausalLM(
        backbone=backbone,
        preprocessor=keras_hub.models.Llama3CausalLMPreprocessor(
            source_tokenizer(), sequence_length=16
        ),
    )
    causal_lm.compile(sampler="greedy")
    source.compile(sampler="greedy")
    got = causal_lm.generate("hello world", max_length=16, strip_prompt=True)
    assert got == source.generate("hello world", max_length=16, strip_prompt=True)
    assert len(got) > 0


def test_public_names():
    assert tfcompress.models.from_gguf is from_gguf
    assert set(tfcompress.models.__all__) == {"from_gguf", "smollm2_path"}


def test_saves_and_reloads_with_tokenizer(tiny_llama, tmp_path):
    _, weights = tiny_llama
    causal_lm = from_gguf(write_gguf(tmp_path / "tiny.gguf", weights), sequence_length=16)
    inputs = {"token_ids": TOKEN_IDS, "padding_mask": np.ones_like(TOKEN_IDS)}
    restored = testing.run_model_saving_test(causal_lm, inputs, tmp_path)
    assert restored.backbone.tie_word_embeddings
    text = "<|im_start|>hello world<|im_end|>"
    tokenizer = restored.preprocessor.tokenizer
    assert keras.ops.convert_to_numpy(tokenizer(text)).tolist() == (
        keras.ops.convert_to_numpy(causal_lm.preprocessor.tokenizer(text)).tolist()
    )
    assert tokenizer.end_token_id == 2 and restored.preprocessor.sequence_length == 16
