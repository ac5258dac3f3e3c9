"""to_tflite_generator on tiny random keras-hub GPT-2 and Llama3 models."""

import subprocess
import sys

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tests import _tiny_causal_lm
from tfcompress.export import flatbuffer, read_generator_metadata, to_tflite_generator
from tfcompress.export.generator.generator_checks import cache_shapes
from tfcompress.export.generator.graph import cache_names
from tfcompress.export.generator.keras_reference import keras_greedy, keras_step_logits

CACHE = 96
PREFILL = (8, 16)
BUILDERS = {"llama3": _tiny_causal_lm.tiny_llama3, "gpt2": _tiny_causal_lm.tiny_gpt2}


class LiteRTGenerator:
    """The documented protocol (prefill all but the last prompt token, then decode)."""

    def __init__(self, content):
        self.interpreter = Interpreter(model_content=content)
        self.meta = _meta_of(content)
        self.caches = {n: np.zeros(s, np.float32) for n, s in cache_shapes(self.meta).items()}
        self.position = 0

    def prefill(self, ids, length):
        runner = self.interpreter.get_signature_runner(f"prefill_{length}")
        tokens = np.full((1, length), self.meta["pad_token_id"], np.int32)
        tokens[0, : len(ids)] = ids
        positions = np.arange(self.position, self.position + length, dtype=np.int32)
        self.caches = runner(tokens=tokens, input_pos=positions, **self.caches)
        self.position += len(ids)

    def decode(self, token):
        runner = self.interpreter.get_signature_runner("decode")
        out = runner(
            tokens=np.array([[token]], np.int32),
            input_pos=np.array([self.position], np.int32),
            **self.caches,
        )
        self.caches = {n: out[n] for n in self.caches}
        self.position += 1
        return out["logits"][0, 0]

    def greedy(self, prompt_ids, new_tokens, prefill_length):
        self.prefill(prompt_ids[:-1], prefill_length)
        token, out = prompt_ids[-1], []
        for _ in range(new_tokens):
            token = int(np.argmax(self.decode(token)))
            out.append(token)
        return out


def _meta_of(content):
    import json

    model = flatbuffer.read_model(content)
    entry = [
        m for m in model.metadata if m.name in (b"tfcompress_generator", "tfcompress_generator")
    ][0]
    return json.loads(bytes(bytearray(model.buffers[entry.buffer].data)).decode())


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def exported(request):
    causal_lm = BUILDERS[request.param]()
    result = to_tflite_generator(
        causal_lm, target="float32", cache_length=CACHE, prefill_lengths=PREFILL
    )
    return causal_lm, result


def _prompt(causal_lm, text="hello world, hello"):
    return [int(i) for i in keras.ops.convert_to_numpy(causal_lm.preprocessor.tokenizer(text))]


def test_greedy_continuation_equals_keras_for_64_tokens(exported):
    causal_lm, result = exported
    prompt = _prompt(causal_lm)
    expected = keras_greedy(causal_lm, prompt, 64, CACHE)
    assert len(set(expected)) > 5, "a degenerate continuation would not test much"
    assert LiteRTGenerator(result.content).greedy(prompt, 64, 8) == expected


def test_greedy_matches_keras_generate(exported):
    causal_lm, result = exported
    prompt = _prompt(causal_lm)
    causal_lm.compile(sampler="greedy")
    preprocessed = {
        "token_ids": np.array([prompt + [0] * (32 - len(prompt))], np.int32),
        "padding_mask": np.array([[1] * len(prompt) + [0] * (32 - len(prompt))], bool),
    }
    preprocessor, causal_lm.preprocessor = causal_lm.preprocessor, None
    try:
        generated = causal_lm.generate(preprocessed, max_length=32, stop_token_ids=None)
    finally:
        causal_lm.preprocessor = preprocessor
    expected = [int(t) for t in np.asarray(generated["token_ids"])[0, len(prompt) :]]
    assert LiteRTGenerator(result.content).greedy(prompt, 32 - len(prompt), 8) == expected


def test_decode_logits_within_1e_4_of_call_with_cache_each_step(exported):
    causal_lm, result = exported
    ids = [int(i) for i in np.random.default_rng(3).integers(3, 268, size=64)]
    reference = keras_step_logits(causal_lm, ids, CACHE)
    generator = LiteRTGenerator(result.content)
    errors = [np.abs(generator.decode(t) - reference[i]).max() for i, t in enumerate(ids)]
    assert max(errors) < 1e-4
    assert result.checks["logits_match"]["passed"]


def test_prefill_then_decode_equals_token_by_token(exported):
    _, result = exported
    turn_1, turn_2 = [40, 70, 90, 100, 120, 7], [200, 11, 33, 260, 5, 8, 9, 10, 12, 13]
    chunked = LiteRTGenerator(result.content)
    chunked.prefill(turn_1[:-1], 8)
    first = chunked.decode(turn_1[-1])
    # A second turn prefills at the current position with the other length.
    chunked.prefill(turn_2[:-1], 16)
    second = chunked.decode(turn_2[-1])
    stepped = LiteRTGenerator(result.content)
    logits = [stepped.decode(t) for t in turn_1 + turn_2]
    np.testing.assert_allclose(first, logits[len(turn_1) - 1], atol=1e-4)
    np.testing.assert_allclose(second, logits[-1], atol=1e-4)
    used = len(turn_1) + len(turn_2)
    for name in chunked.caches:
        np.testing.assert_allclose(
            chunked.caches[name][:, :used], stepped.caches[name][:, :used], atol=1e-4
        )


def test_signature_names_shapes_and_dtypes(exported):
    causal_lm, result = exported
    meta = result.metadata
    interpreter = Interpreter(model_content=result.content)
    assert set(interpreter.get_signature_list()) == {"decode", "prefill_8", "prefill_16"}
    cache_shape = [1, CACHE, meta["num_kv_heads"], meta["head_dim"]]
    names = cache_names(meta["num_layers"])
    for key, length in (("decode", 1), ("prefill_8", 8), ("prefill_16", 16)):
        runner = interpreter.get_signature_runner(key)
        inputs = {k: (list(v["shape"]), v["dtype"]) for k, v in runner.get_input_details().items()}
        assert inputs == {
            "tokens": ([1, length], np.int32),
            "input_pos": ([length], np.int32),
            **{n: (cache_shape, np.float32) for n in names},
        }
        outputs = {
            k: (list(v["shape"]), v["dtype"]) for k, v in runner.get_output_details().items()
        }
        expected = {n: (cache_shape, np.float32) for n in names}
        if key == "decode":
            expected["logits"] = ([1, 1, causal_lm.backbone.vocabulary_size], np.float32)
        assert outputs == expected


def test_builtin_ops_only_with_in_place_cache_updates(exported):
    _, result = exported
    model = flatbuffer.read_model(result.content)
    assert not any(flatbuffer.is_custom(model, op) for sg in model.subgraphs for op in sg.operators)
    index = {d.signatureKey.decode(): d.subgraphIndex for d in model.signatureDefs}
    decode = flatbuffer.op_names(model, index["decode"])
    assert decode.count("DYNAMIC_UPDATE_SLICE") == 2 * result.metadata["num_layers"]
    # Static shapes: no SHAPE ops, and one PACK (the update's start index,
    # shared by every layer).
    assert "SHAPE" not in decode and decode.count("PACK") == 1
    assert result.checks["builtin_ops"]["passed"]


def test_metadata_round_trip(exported, tmp_path):
    causal_lm, result = exported
    path = tmp_path / "tiny.tflite"
    path.write_bytes(result.content)
    meta = read_generator_metadata(path)
    tokenizer = causal_lm.preprocessor.tokenizer
    assert meta == result.metadata
    assert meta["format_version"] == 1
    assert meta["cache_length"] == CACHE and meta["prefill_lengths"] == [8, 16]
    assert meta["tokenizer"]["vocabulary"] == tokenizer.vocabulary
    assert meta["tokenizer"]["merges"] == list(tokenizer.merges)
    assert meta["end_token_ids"] == [tokenizer.end_token_id]
    assert meta["vocabulary_size"] == causal_lm.backbone.vocabulary_size
    assert meta["sampling"].keys() == {"temperature", "top_k", "top_p"}


def test_read_generator_metadata_imports_no_tensorflow(exported, tmp_path):
    _, result = exported
    path = tmp_path / "tiny.tflite"
    path.write_bytes(result.content)
    code = (
        "import sys; from tfcompress.export import read_generator_metadata; "
        f"m = read_generator_metadata({str(path)!r}); "
        "print(m['num_layers'], 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(result.metadata["num_layers"]), "False", "False"]


def test_chat_template_and_sampling_go_into_metadata():
    causal_lm = _tiny_causal_lm.tiny_llama3(tie_word_embeddings=False, seed=2)
    result = to_tflite_generator(
        causal_lm,
        target="float32",
        cache_length=32,
        prefill_lengths=(4,),
        chat_template=_tiny_causal_lm.CHAT_TEMPLATE,
        sampling={"temperature": 0.7, "top_p": 0.9},
    )
    meta = result.metadata
    assert meta["chat_template"] == _tiny_causal_lm.CHAT_TEMPLATE
    # top_k comes from the model's own sampler (keras-hub's default TopKSampler(k=5)).
    assert meta["sampling"] == {"temperature": 0.7, "top_k": 5, "top_p": 0.9}
    assert meta["tokenizer"]["special_tokens"]["<|im_end|>"] == 2
    assert meta["end_token_ids"] == [2] and meta["start_token_id"] == 1
    # An untied head is its own matrix and still matches Keras.
    assert result.checks["logits_match"]["relative_error"] < 1e-5


def test_read_generator_metadata_rejects_other_files(tmp_path, dense_tflite):
    path = tmp_path / "plain.tflite"
    path.write_bytes(dense_tflite)
    with pytest.raises(ValueError, match="has no 'tfcompress_generator' metadata"):
        read_generator_metadata(path)
    with pytest.raises(ValueError, match="must be an existing .tflite file"):
        read_generator_metadata(tmp_path / "missing.tflite")
