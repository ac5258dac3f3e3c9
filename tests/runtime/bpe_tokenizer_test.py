import numpy as np
import pytest

from tfcompress.models import gguf_reader
from tfcompress.runtime import BytePairTokenizer
from tfcompress.runtime.bpe_tokenizer import byte_to_unicode

# Ordinary text: single spaces, where keras-hub's eager and tf.function paths agree.
TEXTS = [
    "Hello world",
    "The capital of France is Paris.",
    "Numbers 1234567 and 3.14, don't we'll I'M",
    "Unicode: café, naïve, 日本語, emoji 🙂🚀, ünïcödé",
    "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n",
    "What is the capital of France? Answer in one word.",
]


def _keras_hub_ids(tokenizer, text):
    return [int(i) for i in np.asarray(tokenizer(text))]


def _smollm2_vocabulary():
    try:
        from tfcompress.models import smollm2_path

        path = smollm2_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    values = gguf_reader.metadata(gguf_reader.open_gguf(path))
    tokens = values["tokenizer.ggml.tokens"]
    types = values["tokenizer.ggml.token_type"]
    special = {t: i for i, (t, kind) in enumerate(zip(tokens, types)) if kind in (3, 4)}
    return {t: i for i, t in enumerate(tokens)}, list(values["tokenizer.ggml.merges"]), special


@pytest.fixture(scope="module")
def smollm2():
    return _smollm2_vocabulary()


@pytest.mark.slow
def test_matches_keras_hub_llama3_tokenizer_on_smollm2_vocabulary(smollm2):
    import keras_hub

    vocabulary, merges, special = smollm2
    kwargs = dict(
        vocabulary=vocabulary,
        merges=merges,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        misc_special_tokens=set(special),
    )
    eager = keras_hub.models.Llama3Tokenizer(**kwargs)
    graph = keras_hub.models.Llama3Tokenizer(_allow_python_workflow=False, **kwargs)
    for pre_tokenizer in ("gpt2", "llama3", "smollm"):
        ours = BytePairTokenizer(vocabulary, merges, special, pre_tokenizer=pre_tokenizer)
        for text in TEXTS:
            assert ours.encode(text) == _keras_hub_ids(eager, text), (pre_tokenizer, text)
            if "<|" not in text:
                # keras-hub's graph path splits special tokens only inside tf.data.
                assert ours.encode(text) == _keras_hub_ids(graph, text), (pre_tokenizer, text)
            assert ours.decode(ours.encode(text)) == text


def test_whitespace_runs_follow_the_gpt2_split(smollm2):
    vocabulary, merges, special = smollm2
    ours = BytePairTokenizer(vocabulary, merges, special, pre_tokenizer="gpt2")
    ids = ours.encode("a  b")
    assert [ours.decode([i]) for i in ids] == ["a", " ", " b"]


# Code with indentation, digits after indentation and blank lines. The ids are
# llama.cpp's: `llama-tokenize -m SmolLM2-135M-Instruct.Q4_1.gguf --ids
# --no-bos` (llama.cpp 0c1e570, tokenizer.ggml.pre "smollm").
CODE_TEXT = (
    "def f(x):\n    if x > 10:\n        return x  # big\n    return [\n        1,\n"
    "        22,\n    ]\n\n\n2024 notes:\n\n  3 items\tand naïve café.\n \n   end  \n"
)
CODE_IDS_LLAMA_CPP = [
    1604, 275, 24, 104, 727, 472, 585, 1792, 2986, 216, 33, 32, 42, 448, 1003, 1792, 216,
    907, 2066, 472, 1003, 933, 466, 33, 28, 466, 34, 34, 28, 472, 6329, 16506, 34, 32, 34,
    36, 4658, 42, 39892, 35, 3723, 197, 397, 15486, 46494, 37366, 30, 198, 3717, 256, 1112,
    32057,
]  # fmt: skip


def test_smollm_split_gives_llama_cpp_ids_on_code_and_blank_lines(smollm2):
    vocabulary, merges, special = smollm2
    ours = BytePairTokenizer(vocabulary, merges, special, pre_tokenizer="smollm")
    ids = ours.encode(CODE_TEXT)
    assert ids == CODE_IDS_LLAMA_CPP
    # "\n" + indentation before a digit is one token, as is "\n\n\n" before one.
    assert ours.decode([ids[22]]) == "\n        " and ours.decode([ids[31]]) == "\n\n\n"
    assert ours.decode(ids) == CODE_TEXT
    # One combined pattern (the digit rule inside GPT-2's) lets `\s+(?!\S)` see
    # the digit: "\n        1" becomes "\n       ", " ", "1" and the ids differ.
    assert (
        BytePairTokenizer(vocabulary, merges, special, pre_tokenizer="gpt2").encode(CODE_TEXT)
        != CODE_IDS_LLAMA_CPP
    )


def test_pre_tokenizer_patterns_split_each_others_pieces():
    tokenizer = BytePairTokenizer({c: b for b, c in byte_to_unicode().items()}, [])
    smollm = BytePairTokenizer(
        {c: b for b, c in byte_to_unicode().items()}, [], pre_tokenizer="smollm"
    )
    # The digit split comes first: the whitespace before a digit ends its piece.
    assert smollm.pre_tokenize("a\n  0\n\n12") == ["a", "\n  ", "0", "\n\n", "1", "2"]
    assert tokenizer.pre_tokenize("a\n  0\n\n12") == ["a", "\n ", " 0", "\n", "\n", "12"]
    custom = BytePairTokenizer(
        {c: b for b, c in byte_to_unicode().items()}, [], pre_tokenizer=[r"-", r"\p{L}+"]
    )
    assert custom.pre_tokenize("ab-c d") == ["ab", "-", "c", " ", "d"]


def test_matches_keras_hub_gpt2_tokenizer_on_a_tiny_vocabulary():
    import keras_hub

    merges = [
        "Ġ a",
        "Ġ t",
        "h e",
        "Ġt he",
        "Ġ b",
        "b u",
        "u t",
        "t t",
        "e r",
        "bu tt",
        "butt er",
        "f l",
        "fl y",
    ]
    byte_chars = [chr(c) for c in range(33, 127)] + ["Ġ", "Ċ"]
    tokens = sorted(set(byte_chars + [a + b for a, b in (m.split(" ") for m in merges)]))
    vocabulary = {t: i for i, t in enumerate(tokens)}
    vocabulary["<|endoftext|>"] = len(vocabulary)
    ours = BytePairTokenizer(
        vocabulary, merges, special_tokens={"<|endoftext|>": vocabulary["<|endoftext|>"]}
    )
    theirs = keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)
    for text in ["butterfly the a butter", "the butterfly<|endoftext|>\nfly", "a  b   the"]:
        assert ours.encode(text) == _keras_hub_ids(theirs, text), text


def test_special_tokens_are_split_out_first_and_kept_whole():
    vocabulary = {c: i for i, c in enumerate("abc<|>")}
    vocabulary["<|a|>"] = 10
    tokenizer = BytePairTokenizer(vocabulary, [], special_tokens={"<|a|>": 10})
    assert tokenizer.encode("a<|a|>b") == [0, 10, 1]
    assert tokenizer.encode("<|a") == [3, 4, 0]
    assert tokenizer.decode([0, 10, 1]) == "a<|a|>b"


def test_merges_apply_by_rank():
    vocabulary = {t: i for i, t in enumerate(["a", "b", "c", "ab", "bc", "abc"])}
    assert BytePairTokenizer(vocabulary, ["b c", "a bc"]).encode("abc") == [5]
    assert BytePairTokenizer(vocabulary, ["a b", "b c"]).encode("abc") == [3, 2]


def test_decode_of_a_split_character_gives_replacement_not_an_error():
    tokenizer = BytePairTokenizer({c: b for b, c in byte_to_unicode().items()}, [])
    ids = tokenizer.encode("é")
    assert len(ids) == 2
    assert tokenizer.decode(ids[:1]) == "\ufffd"
    assert tokenizer.decode(ids) == "é"


def test_bad_input_errors():
    with pytest.raises(ValueError, match="Merge rule 'a z'"):
        BytePairTokenizer({"a": 0, "b": 1}, ["a z"])
    with pytest.raises(ValueError, match="pre_tokenizer"):
        BytePairTokenizer({"a": 0}, [], pre_tokenizer="(")
    with pytest.raises(ValueError, match="a list of them. Received: pre_tokenizer=\\[\\]"):
        BytePairTokenizer({"a": 0}, [], pre_tokenizer=[])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        BytePairTokenizer({"a": 0}, []).decode([7])
    with pytest.raises(TypeError, match="must be a str"):
        BytePairTokenizer({"a": 0}, []).encode(b"a")
