"""`from_gguf`: a llama.cpp GGUF file as a keras-hub `Llama3CausalLM`."""

import keras_hub
import numpy as np

from tfcompress.core._keras_internals import attention_projections, block_sublayers
from tfcompress.core.checks import check_int
from tfcompress.models import gguf_reader, llama3

# llama.cpp token types (gguf.TokenType): CONTROL and USER_DEFINED tokens are
# matched whole in text, never split by BPE.
_SPECIAL_TOKEN_TYPES = (3, 4)
_DEFAULT_SEQUENCE_LENGTH = 1024
# llama.cpp's `tokenizer.ggml.pre` names (llama-vocab.cpp) of the splits that
# `tfcompress.runtime.bpe_tokenizer.PRE_TOKENIZERS` implements.
_PRE_TOKENIZERS = {
    "gpt-2": "gpt2",
    "gpt2": "gpt2",
    "llama-bpe": "llama3",
    "llama-v3": "llama3",
    "llama3": "llama3",
    "smollm": "smollm",
}


def _pre_tokenizer(values, path):
    name = values.get("tokenizer.ggml.pre")
    if name is None:
        return None
    if name not in _PRE_TOKENIZERS:
        raise ValueError(
            f"`from_gguf` splits text as llama.cpp's pre-tokenizers {sorted(_PRE_TOKENIZERS)}; "
            f"received path={path!r} with tokenizer.ggml.pre={name!r}, whose split it does "
            "not know, so its token ids would differ from the model's own tokenizer."
        )
    return _PRE_TOKENIZERS[name]


def _tokenizer(values, path):
    model = values.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(
            "`from_gguf` reads byte-level BPE tokenizers "
            "(tokenizer.ggml.model='gpt2', as in Llama 3 and SmolLM2). "
            f"Received: path={path!r} with tokenizer.ggml.model={model!r}"
        )
    tokens = gguf_reader.required(values, "tokenizer.ggml.tokens", path)
    merges = gguf_reader.required(values, "tokenizer.ggml.merges", path)
    types = values.get("tokenizer.ggml.token_type", [1] * len(tokens))
    eos_id = int(gguf_reader.required(values, "tokenizer.ggml.eos_token_id", path))
    bos_id = int(values.get("tokenizer.ggml.bos_token_id", eos_id))
    special = {t for t, kind in zip(tokens, types) if kind in _SPECIAL_TOKEN_TYPES}
    return llama3.Llama3Tokenizer(
        vocabulary={token: index for index, token in enumerate(tokens)},
        merges=merges,
        bos_token=tokens[bos_id],
        eos_token=tokens[eos_id],
        misc_special_tokens=special,
        pre_tokenizer=_pre_tokenizer(values, path),
    )


def _kernel(weight, shape):
    # Hugging Face [out, in] -> keras-hub kernel, as convert_llama3.py does.
    return np.reshape(np.transpose(weight), shape)


def _assign_weights(backbone, tensors):
    embedding = backbone.get_layer("token_embedding")
    embedding.embeddings.assign(tensors["token_embd.weight"])
    if not backbone.tie_word_embeddings:
        embedding.reverse_embeddings.assign(np.transpose(tensors["output.weight"]))
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"transformer_layer_{i}")
        sublayers = block_sublayers(block)
        attention = attention_projections(sublayers.attention)

        def weight(name):
            return tensors[f"blk.{i}.{name}.weight"]

        query = gguf_reader.unpermute_rows(weight("attn_q"), backbone.num_query_heads)
        key = gguf_reader.unpermute_rows(weight("attn_k"), backbone.num_key_value_heads)
        pairs = [
            (sublayers.attention_norm.scale, weight("attn_norm")),
            (sublayers.ffn_norm.scale, weight("ffn_norm")),
            (attention.query.kernel, query),
            (attention.key.kernel, key),
            (attention.value.kernel, weight("attn_v")),
            (attention.output.kernel, weight("attn_output")),
            (sublayers.gate.kernel, weight("ffn_gate")),
            (sublayers.up.kernel, weight("ffn_up")),
            (sublayers.down.kernel, weight("ffn_down")),
        ]
        for variable, value in pairs:
            if value.ndim == 2:
                value = _kernel(value, variable.shape)
            variable.assign(value)
    backbone.get_layer("sequence_output_layernorm").scale.assign(tensors["output_norm.weight"])


def from_gguf(path, sequence_length=None):
    """Loads a llama-architecture GGUF file as a keras-hub `Llama3CausalLM`.

    The model comes with its `Llama3Tokenizer` (the file's byte-level BPE
    vocabulary, merges and special tokens) and a `Llama3CausalLMPreprocessor`,
    so `generate` works on strings. Quantized tensors are dequantized to
    float32; the Q and K rows that llama.cpp's converter reorders for its
    interleaved rotary embedding are put back in keras-hub's half-split order.
    A file without `output.weight` gives `tie_word_embeddings=True`. The
    tokenizer splits text with the file's `tokenizer.ggml.pre` (SmolLM2:
    "smollm", each digit alone, then GPT-2's split), so its ids are
    llama.cpp's.

    Args:
        path: a `.gguf` file (str or os.PathLike) with
            `general.architecture='llama'`, a 'gpt2' (byte-level BPE)
            tokenizer, and tensors of the types in
            `tfcompress.models.gguf_reader.SUPPORTED_TENSOR_TYPES`
            (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1).
        sequence_length: the preprocessor's packed length, which is also the
            default `max_length` of `generate`. Defaults to
            min(1024, llama.context_length): `generate` runs the prompt padded
            to this length, so the full 8k context of some models is slow.

    Returns:
        A `keras_hub.models.Llama3CausalLM` with float32 weights. Its backbone
        and tokenizer are `tfcompress.models.llama3` subclasses of keras-hub's,
        whose configs keep `tie_word_embeddings` and the special tokens, so
        the model saves to `.keras` and loads back.

    Raises:
        TypeError: when `path` is not a str or os.PathLike.
        FileNotFoundError: when `path` does not exist.
        ValueError: for a file that is not GGUF, another architecture or
            tokenizer or pre-tokenizer, an unsupported tensor type, missing or
            extra tensors,
            or a `sequence_length` that is not a positive int within the
            model's context length.
        ImportError: when the `gguf` package is not installed.

    Example:

    ```python
    import tfcompress

    causal_lm = tfcompress.models.from_gguf(tfcompress.models.smollm2_path())
    prompt = "<|im_start|>user\\nWhat is the capital of France?<|im_end|>\\n<|im_start|>assistant\\n"
    print(causal_lm.generate(prompt, max_length=64))
    ```
    """
    reader = gguf_reader.open_gguf(path)
    values = gguf_reader.metadata(reader)
    config = gguf_reader.llama_config(values, path)
    context_length = int(values.get("llama.context_length", _DEFAULT_SEQUENCE_LENGTH))
    if sequence_length is None:
        sequence_length = min(_DEFAULT_SEQUENCE_LENGTH, context_length)
    sequence_length = check_int(
        sequence_length,
        "sequence_length",
        1,
        context_length,
        expected=f"an int in [1, {context_length}] (llama.context_length of this file)",
    )
    tokenizer = _tokenizer(values, path)
    gguf_reader.check_llama_tensors(
        [tensor.name for tensor in reader.tensors], config["num_layers"], path
    )
    tensors = gguf_reader.dequantized_tensors(reader, path)

    vocabulary_size = tensors["token_embd.weight"].shape[0]
    if vocabulary_size != tokenizer.vocabulary_size():
        raise ValueError(
            f"token_embd.weight has {vocabulary_size} rows but the tokenizer has "
            f"{tokenizer.vocabulary_size()} tokens. Received: path={path!r}"
        )
    backbone = llama3.Llama3Backbone(
        vocabulary_size=vocabulary_size,
        tie_word_embeddings="output.weight" not in tensors,
        dtype="float32",
        **config,
    )
    _assign_weights(backbone, tensors)
    preprocessor = keras_hub.models.Llama3CausalLMPreprocessor(
        tokenizer,
        sequence_length=sequence_length,
        add_start_token=bool(values.get("tokenizer.ggml.add_bos_token", False)),
        add_end_token=bool(values.get("tokenizer.ggml.add_eos_token", False)),
    )
    return keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=preprocessor)
