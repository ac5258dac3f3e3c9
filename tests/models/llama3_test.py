import keras
import numpy as np
import pytest

from tests.runtime.bpe_tokenizer_test import CODE_IDS_LLAMA_CPP, CODE_TEXT
from tfcompress.models import gguf_reader
from tfcompress.models.from_gguf import _tokenizer as _gguf_tokenizer
from tfcompress.models.llama3 import Llama3Tokenizer
from tfcompress.runtime import BytePairTokenizer
from tfcompress.runtime.bpe_tokenizer import byte_to_unicode

SPECIAL = ["<|im_start|>", "<|im_end|>"]
# Whitespace merges: with them the split decides the ids ("\n  " is one token
# only when the split keeps it one piece).
MERGES = ["Ġ Ġ", "Ċ ĠĠ", "Ċ Ċ", "Ċ Ġ"]


def _tiny(pre_tokenizer):
    tokens = SPECIAL + sorted(byte_to_unicode().values()) + ["ĠĠ", "ĊĠĠ", "ĊĊ", "ĊĠ"]
    vocabulary = {t: i for i, t in enumerate(tokens)}
    keras_tokenizer = Llama3Tokenizer(
        vocabulary=vocabulary,
        merges=MERGES,
        bos_token=SPECIAL[0],
        eos_token=SPECIAL[1],
        misc_special_tokens=SPECIAL,
        pre_tokenizer=pre_tokenizer,
    )
    special = {t: vocabulary[t] for t in SPECIAL}
    runtime = BytePairTokenizer(vocabulary, MERGES, special, pre_tokenizer=pre_tokenizer or "gpt2")
    return keras_tokenizer, runtime, vocabulary


def _ids(tokenizer, text):
    return keras.ops.convert_to_numpy(tokenizer(text)).tolist()


def test_smollm_split_matches_the_runtime_tokenizer_and_llama_cpp_rules():
    keras_tokenizer, runtime, vocabulary = _tiny("smollm")
    text = "a\n  0\n\n12"
    # Digits first, then GPT-2's split in what is left: "a", "\n  ", "0", "\n\n", "1", "2".
    want = [vocabulary[t] for t in ("a", "ĊĠĠ", "0", "ĊĊ", "1", "2")]
    assert _ids(keras_tokenizer, text) == want
    assert runtime.encode(text) == want
    # keras-hub's own eager path merges across the split: " \n  b" is
    # " ", "\n  ", "b" to it and " \n ", " b" to llama.cpp.
    default, _, _ = _tiny(None)
    text = "a \n  b"
    want = [vocabulary[t] for t in ("a", "Ġ", "ĊĠ", "Ġ", "b")]
    assert _ids(keras_tokenizer, text) == runtime.encode(text) == want
    assert _ids(default, text) != want


def test_gpt2_split_matches_the_runtime_tokenizer():
    keras_tokenizer, runtime, _ = _tiny("gpt2")
    for text in ["a\n  0\n\n12", "x  y\n\n  z", "<|im_start|>hi\n  there<|im_end|>"]:
        assert _ids(keras_tokenizer, text) == runtime.encode(text), text


def test_pre_tokenizer_survives_config_and_saving(tmp_path):
    keras_tokenizer, _, _ = _tiny("smollm")
    config = keras_tokenizer.get_config()
    assert config["pre_tokenizer"] == "smollm"
    restored = Llama3Tokenizer.from_config(config)
    restored.set_vocabulary_and_merges(keras_tokenizer.vocabulary, keras_tokenizer.merges)
    assert _ids(restored, "a\n  0") == _ids(keras_tokenizer, "a\n  0")
    # A `.keras` file rebuilds the tokenizer from its config, then loads its assets.
    keras_tokenizer.save_assets(str(tmp_path))
    loaded = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(keras_tokenizer)
    )
    loaded.load_assets(str(tmp_path))
    assert loaded.pre_tokenizer == "smollm"
    assert _ids(loaded, "a\n  0\n\n12") == _ids(keras_tokenizer, "a\n  0\n\n12")


def test_unknown_pre_tokenizer_is_refused():
    with pytest.raises(ValueError, match="Received: pre_tokenizer='bloom'"):
        _tiny("bloom")


def test_smollm2_vocabulary_gives_llama_cpp_ids():
    try:
        from tfcompress.models import smollm2_path

        path = smollm2_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    # The tokenizer `from_gguf` builds, without loading the 135M weights.
    tokenizer = _gguf_tokenizer(gguf_reader.metadata(gguf_reader.open_gguf(path)), path)
    assert np.asarray(tokenizer(CODE_TEXT)).tolist() == CODE_IDS_LLAMA_CPP
