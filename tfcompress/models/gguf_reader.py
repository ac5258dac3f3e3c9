"""Reads a llama-architecture GGUF file into plain numpy arrays and Python values.

No Keras here: `from_gguf` builds the model from what this module returns.
"""

import os

import numpy as np

# Types `gguf.quants.dequantize` reads and that the tests round-trip through
# `gguf.quants.quantize`; K-quants and i-quants are left out until they can be
# checked against a reference.
SUPPORTED_TENSOR_TYPES = (
    "F32",
    "F16",
    "BF16",
    "Q8_0",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
)

_PER_LAYER = (
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
)


def _gguf():
    try:
        import gguf
    except ImportError as error:
        raise ImportError(
            "Reading GGUF files needs the `gguf` package. Install it with "
            '`pip install "tfcompress[llm]"` or `pip install gguf`.'
        ) from error
    return gguf


def open_gguf(path):
    """Opens `path` with `gguf.GGUFReader`, turning its failures into clear errors."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            "`path` must be a str or os.PathLike pointing at a .gguf file. "
            f"Received: path={path!r} of type {type(path).__name__}"
        )
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"`path` does not name an existing file. Received: path={path!r}. "
            "For the bundled SmolLM2 chat model use `tfcompress.models.smollm2_path()`."
        )
    gguf = _gguf()
    try:
        return gguf.GGUFReader(path)
    except Exception as error:  # the reader raises ValueError, IndexError, struct/numpy errors
        raise ValueError(
            f"`path` is not a readable GGUF file (corrupt, truncated or another "
            f"format). Received: path={path!r}; the gguf reader said: {error}"
        ) from error


def field_value(field):
    """The Python value of a `ReaderField`: str, int, float, bool or a list of them."""
    gguf = _gguf()
    kind = field.types[0]
    if kind == gguf.GGUFValueType.ARRAY:
        if field.types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return [field.parts[i][0].item() for i in field.data]
    if kind == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return field.parts[field.data[0]][0].item()


def metadata(reader):
    """All key/value metadata of an open reader, as a dict of Python values."""
    return {
        name: field_value(field)
        for name, field in reader.fields.items()
        if not name.startswith("GGUF.")
    }


def required(values, key, path):
    if key not in values:
        raise ValueError(
            f"The GGUF file has no `{key}` metadata, which a llama model needs. "
            f"Received: path={path!r}"
        )
    return values[key]


def llama_config(values, path):
    """Llama3Backbone arguments from GGUF metadata.

    Raises:
        ValueError: for another architecture, or rotary scaling Llama3Backbone
            cannot express.
    """
    architecture = values.get("general.architecture")
    if architecture != "llama":
        raise ValueError(
            "`from_gguf` reads llama-architecture GGUF files "
            "(general.architecture='llama': Llama, SmolLM2, TinyLlama, ...). "
            f"Received: path={path!r} with general.architecture={architecture!r}"
        )
    num_query_heads = int(required(values, "llama.attention.head_count", path))
    hidden_dim = int(required(values, "llama.embedding_length", path))
    head_dim = hidden_dim // num_query_heads
    rope_dim = values.get("llama.rope.dimension_count", head_dim)
    if rope_dim != head_dim:
        raise ValueError(
            "Llama3Backbone rotates the whole head; this GGUF rotates "
            f"llama.rope.dimension_count={rope_dim} of head_dim={head_dim} "
            f"dimensions. Received: path={path!r}"
        )
    scaling = values.get("llama.rope.scaling.type", "none")
    if scaling not in ("none", "linear"):
        raise ValueError(
            "Supported llama.rope.scaling.type values are 'none' and 'linear'. "
            f"Received: path={path!r} with llama.rope.scaling.type={scaling!r}"
        )
    config = {
        "num_layers": int(required(values, "llama.block_count", path)),
        "hidden_dim": hidden_dim,
        "intermediate_dim": int(required(values, "llama.feed_forward_length", path)),
        "num_query_heads": num_query_heads,
        "num_key_value_heads": int(values.get("llama.attention.head_count_kv", num_query_heads)),
        "rope_max_wavelength": float(values.get("llama.rope.freq_base", 10000.0)),
        "layer_norm_epsilon": float(
            required(values, "llama.attention.layer_norm_rms_epsilon", path)
        ),
    }
    if scaling == "linear":
        config["rope_position_scaling_factor"] = float(values["llama.rope.scaling.factor"])
    return config


def dequantized_tensors(reader, path):
    """Every tensor as float32 in the Hugging Face layout (slowest dimension first).

    Raises:
        ValueError: when a tensor's type is not in SUPPORTED_TENSOR_TYPES.
    """
    gguf = _gguf()
    # Every type is checked before the first (slow) dequantization.
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        if kind not in SUPPORTED_TENSOR_TYPES:
            raise ValueError(
                f"Tensor {tensor.name!r} has GGUF type {kind}, which `from_gguf` "
                f"does not read. Supported types: {', '.join(SUPPORTED_TENSOR_TYPES)}. "
                f"Re-quantize the model to one of them (llama.cpp's llama-quantize). "
                f"Received: path={path!r}"
            )
    tensors = {}
    for tensor in reader.tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        # GGUF lists dimensions fastest first; numpy wants them slowest first.
        shape = tuple(int(d) for d in reversed(tensor.shape))
        tensors[tensor.name] = np.asarray(values, dtype=np.float32).reshape(shape)
    return tensors


def check_llama_tensors(names, num_layers, path):
    """Fails on a missing tensor or one Llama3Backbone has no place for (e.g. biases).

    Args:
        names: the tensor names in the file.
        num_layers: llama.block_count.
        path: the file, for the message.
    """
    expected = {"token_embd.weight", "output_norm.weight"}
    for i in range(num_layers):
        expected.update(f"blk.{i}.{name}.weight" for name in _PER_LAYER)
    missing = sorted(expected - set(names))
    unknown = sorted(set(names) - expected - {"output.weight"})
    if missing or unknown:
        raise ValueError(
            "The GGUF tensors do not match a Llama3Backbone "
            f"(missing: {missing[:5] or 'none'}; not supported: {unknown[:5] or 'none'}). "
            f"Received: path={path!r}"
        )


def unpermute_rows(weight, num_heads):
    """Undoes llama.cpp's interleaved-rotary row order of a Q or K projection.

    llama.cpp's converter reorders each head's rows from the half-split layout
    (keras-hub's and Hugging Face's RotaryEmbedding) to pairs; this is its inverse.
    """
    rows, columns = weight.shape
    head_dim = rows // num_heads
    return (
        weight.reshape(num_heads, head_dim // 2, 2, columns).swapaxes(1, 2).reshape(rows, columns)
    )
