"""A tiny random Llama3 model and a writer for it in llama.cpp's GGUF layout."""

import gguf
import keras
import keras_hub
import numpy as np

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d"]
# SmolLM2's ChatML template.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CONFIG = dict(
    num_layers=2,
    num_query_heads=4,
    num_key_value_heads=2,
    hidden_dim=64,
    intermediate_dim=128,
    rope_max_wavelength=50000.0,
    layer_norm_epsilon=1e-5,
)


def _byte_tokens():
    # GPT-2's printable stand-ins for the 256 bytes, as byte-level BPE vocabularies store them.
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    stand_in = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in stand_in:
            stand_in[b] = chr(256 + extra)
            extra += 1
    return [stand_in[b] for b in range(256)]


def vocabulary():
    """SmolLM2's layout: special tokens 0-2, the 256 bytes, then one token per merge."""
    return SPECIAL + _byte_tokens() + [merge.replace(" ", "") for merge in MERGES]


def vocabulary_ids():
    """{token: id} of `vocabulary()`."""
    return {token: i for i, token in enumerate(vocabulary())}


def source_tokenizer():
    tokens = vocabulary()
    return keras_hub.models.Llama3Tokenizer(
        vocabulary={t: i for i, t in enumerate(tokens)},
        merges=MERGES,
        bos_token=SPECIAL[1],
        eos_token=SPECIAL[2],
        misc_special_tokens=set(SPECIAL),
    )


def random_backbone(tie_word_embeddings=True, seed=0):
    """A Llama3Backbone with every weight random (norm gains too), so layout errors show."""
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=len(vocabulary()),
        tie_word_embeddings=tie_word_embeddings,
        dtype="float32",
        **CONFIG,
    )
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        if variable.path.endswith("scale"):
            variable.assign(1.0 + 0.2 * rng.normal(size=variable.shape))
        else:
            variable.assign(0.2 * rng.normal(size=variable.shape))
    return backbone


def hf_weights(backbone):
    """The backbone's weights under llama.cpp tensor names, Hugging Face [out, in] layout."""

    def dense(kernel, in_first):
        kernel = keras.ops.convert_to_numpy(kernel)
        two_d = (
            kernel.reshape(kernel.shape[0], -1)
            if in_first
            else kernel.reshape(-1, kernel.shape[-1])
        )
        return two_d.T

    embedding = backbone.get_layer("token_embedding")
    weights = {
        "token_embd.weight": keras.ops.convert_to_numpy(embedding.embeddings),
        "output_norm.weight": keras.ops.convert_to_numpy(
            backbone.get_layer("sequence_output_layernorm").scale
        ),
    }
    if not backbone.tie_word_embeddings:
        weights["output.weight"] = keras.ops.convert_to_numpy(embedding.reverse_embeddings).T
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"transformer_layer_{i}")
        attention = block._self_attention_layer
        prefix = f"blk.{i}."
        weights[prefix + "attn_norm.weight"] = keras.ops.convert_to_numpy(
            block._self_attention_layernorm.scale
        )
        weights[prefix + "ffn_norm.weight"] = keras.ops.convert_to_numpy(
            block._feedforward_layernorm.scale
        )
        weights[prefix + "attn_q.weight"] = dense(attention._query_dense.kernel, True)
        weights[prefix + "attn_k.weight"] = dense(attention._key_dense.kernel, True)
        weights[prefix + "attn_v.weight"] = dense(attention._value_dense.kernel, True)
        weights[prefix + "attn_output.weight"] = dense(attention._output_dense.kernel, False)
        weights[prefix + "ffn_gate.weight"] = dense(block._feedforward_gate_dense.kernel, True)
        weights[prefix + "ffn_up.weight"] = dense(
            block._feedforward_intermediate_dense.kernel, True
        )
        weights[prefix + "ffn_down.weight"] = dense(block._feedforward_output_dense.kernel, False)
    return weights


def llama_cpp_permute(weight, num_heads):
    """convert_hf_to_gguf.py's `permute`: half-split rotary rows to interleaved pairs."""
    return (
        weight.reshape(num_heads, 2, weight.shape[0] // num_heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def write_gguf(
    path, weights, tensor_type="F32", architecture="llama", extra_tensors=(), pre_tokenizer=None
):
    """Writes `weights` (from `hf_weights`) as llama.cpp's converter would.

    Q and K rows are permuted; matrices are stored as `tensor_type`, vectors as F32.
    `extra_tensors` are (name, raw bytes array, GGMLQuantizationType) written as is.
    `pre_tokenizer` is written as `tokenizer.ggml.pre` when given.
    """
    qtype = gguf.GGMLQuantizationType[tensor_type]
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(CONFIG["num_layers"])
    writer.add_context_length(256)
    writer.add_embedding_length(CONFIG["hidden_dim"])
    writer.add_feed_forward_length(CONFIG["intermediate_dim"])
    writer.add_head_count(CONFIG["num_query_heads"])
    writer.add_head_count_kv(CONFIG["num_key_value_heads"])
    writer.add_rope_freq_base(CONFIG["rope_max_wavelength"])
    writer.add_rope_dimension_count(CONFIG["hidden_dim"] // CONFIG["num_query_heads"])
    writer.add_layer_norm_rms_eps(CONFIG["layer_norm_epsilon"])
    tokens = vocabulary()
    writer.add_tokenizer_model("gpt2")
    if pre_tokenizer is not None:
        writer.add_tokenizer_pre(pre_tokenizer)
    writer.add_token_list(tokens)
    writer.add_token_merges(MERGES)
    writer.add_token_types([3 if t in SPECIAL else 1 for t in tokens])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)
    heads = {"attn_q": CONFIG["num_query_heads"], "attn_k": CONFIG["num_key_value_heads"]}
    for name, weight in weights.items():
        kind = name.split(".")[-2]
        if kind in heads:
            weight = llama_cpp_permute(weight, heads[kind])
        weight = np.ascontiguousarray(weight, dtype=np.float32)
        if weight.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, weight)
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, weight.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(weight, qtype), raw_dtype=qtype)
    for name, raw, raw_type in extra_tensors:
        writer.add_tensor(name, raw, raw_dtype=raw_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
