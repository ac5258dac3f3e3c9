import sys

import gguf
import numpy as np
import pytest

from tfcompress.models import from_gguf, gguf_reader

from .tiny_llama import hf_weights, llama_cpp_permute, random_backbone, write_gguf


@pytest.fixture(scope="module")
def weights():
    return hf_weights(random_backbone())


@pytest.mark.parametrize("heads", [1, 3, 9])
def test_unpermute_rows_inverts_llama_cpp_permute(heads):
    weight = np.random.default_rng(0).normal(size=(heads * 8, 5))
    restored = gguf_reader.unpermute_rows(llama_cpp_permute(weight, heads), heads)
    np.testing.assert_array_equal(restored, weight)
    assert not np.array_equal(llama_cpp_permute(weight, heads), weight)


def test_missing_file(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"`path` does not name an existing file.*nope\.gguf.*smollm2_path"
    ):
        from_gguf(tmp_path / "nope.gguf")


def test_path_of_wrong_type():
    with pytest.raises(
        TypeError, match=r"`path` must be a str or os.PathLike.*Received: path=3 of type int"
    ):
        from_gguf(3)


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_text("this is a text file, not GGUF")
    with pytest.raises(ValueError, match=r"`path` is not a readable GGUF file.*model\.gguf"):
        from_gguf(path)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_gguf_file(tmp_path, weights, keep):
    data = write_gguf(tmp_path / "full.gguf", weights, "Q4_1").read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(
        ValueError, match=r"`path` is not a readable GGUF file \(corrupt, truncated"
    ):
        from_gguf(path)


def test_other_architecture(tmp_path, weights):
    path = write_gguf(tmp_path / "gpt2.gguf", weights, architecture="gpt2")
    with pytest.raises(ValueError, match=r"llama-architecture.*general\.architecture='gpt2'"):
        from_gguf(path)


def test_unsupported_tensor_type(tmp_path, weights):
    weights = dict(weights)
    name = "blk.1.ffn_down.weight"
    rows, columns = weights.pop(name).shape
    block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q4_K]
    raw = np.zeros((rows, columns // block_size * type_size), np.uint8)
    path = write_gguf(
        tmp_path / "k_quant.gguf",
        weights,
        extra_tensors=[(name, raw, gguf.GGMLQuantizationType.Q4_K)],
    )
    with pytest.raises(
        ValueError,
        match=r"'blk\.1\.ffn_down\.weight' has GGUF type Q4_K.*Supported types: F32, F16",
    ):
        from_gguf(path)


def test_extra_tensor_is_refused(tmp_path, weights):
    bias = ("blk.0.attn_q.bias", np.zeros(64, np.float32), gguf.GGMLQuantizationType.F32)
    path = write_gguf(tmp_path / "bias.gguf", weights, extra_tensors=[bias])
    with pytest.raises(ValueError, match=r"not supported: \['blk\.0\.attn_q\.bias'\]"):
        from_gguf(path)


def test_missing_tensor_is_refused(tmp_path, weights):
    weights = {k: v for k, v in weights.items() if k != "blk.1.attn_v.weight"}
    with pytest.raises(ValueError, match=r"missing: \['blk\.1\.attn_v\.weight'\]"):
        from_gguf(write_gguf(tmp_path / "missing.gguf", weights))


@pytest.mark.parametrize("sequence_length", [0, 257, 8.0, True])
def test_bad_sequence_length(tmp_path, weights, sequence_length):
    path = write_gguf(tmp_path / "tiny.gguf", weights)
    with pytest.raises(
        ValueError,
        match=r"`sequence_length` must be an int in \[1, 256\].*Received: sequence_length=",
    ):
        from_gguf(path, sequence_length=sequence_length)


def test_metadata_reads_python_values(tmp_path, weights):
    reader = gguf_reader.open_gguf(write_gguf(tmp_path / "tiny.gguf", weights))
    values = gguf_reader.metadata(reader)
    assert values["general.architecture"] == "llama"
    assert values["llama.block_count"] == 2
    assert values["tokenizer.ggml.merges"][:2] == ["h e", "l l"]
    assert values["tokenizer.ggml.add_bos_token"] is False


def test_other_tokenizer(tmp_path, weights, monkeypatch):
    import gguf as gguf_package

    # A Llama 2 / TinyLlama file declares a SentencePiece ('llama') tokenizer.
    original = gguf_package.GGUFWriter.add_tokenizer_model
    monkeypatch.setattr(
        gguf_package.GGUFWriter, "add_tokenizer_model", lambda self, model: original(self, "llama")
    )
    path = write_gguf(tmp_path / "spm.gguf", weights)
    with pytest.raises(ValueError, match=r"byte-level BPE.*tokenizer\.ggml\.model='llama'"):
        from_gguf(path)


def test_without_the_gguf_package(tmp_path, weights, monkeypatch):
    path = write_gguf(tmp_path / "tiny.gguf", weights)
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(
        ImportError, match=r'needs the `gguf` package.*pip install "tfcompress\[llm\]"'
    ):
        from_gguf(path)
