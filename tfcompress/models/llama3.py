"""keras-hub's Llama 3 backbone and tokenizer, with configs that survive a `.keras` round trip.

keras-hub 0.32 leaves `tie_word_embeddings` out of `Llama3Backbone.get_config`
and the special tokens out of `Llama3Tokenizer.get_config`: a tied model (SmolLM2)
or a tokenizer whose special tokens are not Llama 3's (ChatML) saves but does not
load. These subclasses add the missing keys. The tokenizer also takes the
model's own pre-tokenizer: keras-hub splits every byte-level BPE with Llama 3's
pattern, which SmolLM2 (GGUF `tokenizer.ggml.pre` "smollm") does not use.
"""

import keras
import keras_hub

from tfcompress.runtime.bpe_tokenizer import PRE_TOKENIZERS


@keras.saving.register_keras_serializable(package="tfcompress")
class Llama3Backbone(keras_hub.models.Llama3Backbone):
    """`keras_hub.models.Llama3Backbone` whose config records `tie_word_embeddings`.

    Args:
        **kwargs: the arguments of `keras_hub.models.Llama3Backbone`.
    """

    def get_config(self):
        config = super().get_config()
        config["tie_word_embeddings"] = self.tie_word_embeddings
        return config


@keras.saving.register_keras_serializable(package="tfcompress")
class Llama3Tokenizer(keras_hub.models.Llama3Tokenizer):
    """`keras_hub.models.Llama3Tokenizer` whose config records its special tokens.

    Args:
        vocabulary: dict of token to id, or a path (as in keras-hub).
        merges: list of "a b" merge rules, or a path.
        bos_token: the start token.
        eos_token: the end token (generation stops on it).
        misc_special_tokens: other tokens matched whole, never split.
        pre_tokenizer: None keeps keras-hub's split (Llama 3's pattern);
            "gpt2", "llama3" or "smollm" (the names of
            `tfcompress.runtime.bpe_tokenizer.PRE_TOKENIZERS`) split as that
            model's own tokenizer (llama.cpp, Hugging Face) does. It applies
            to eager calls (keras-hub's `tokenizers` path); inside a
            `tf.function` or `tf.data` graph keras-hub's TensorFlow path
            splits as GPT-2.
        **kwargs: passed to `keras_hub.models.Llama3Tokenizer`.

    Raises:
        ValueError: an unknown `pre_tokenizer` name.
    """

    def __init__(
        self,
        vocabulary=None,
        merges=None,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        misc_special_tokens=("<|start_header_id|>", "<|end_header_id|>"),
        pre_tokenizer=None,
        **kwargs,
    ):
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.misc_special_tokens = sorted(misc_special_tokens)
        if pre_tokenizer is not None and pre_tokenizer not in PRE_TOKENIZERS:
            raise ValueError(
                f"`pre_tokenizer` must be None or one of {sorted(PRE_TOKENIZERS)}. "
                f"Received: pre_tokenizer={pre_tokenizer!r}"
            )
        self.pre_tokenizer = pre_tokenizer
        super().__init__(
            vocabulary=vocabulary,
            merges=merges,
            bos_token=bos_token,
            eos_token=eos_token,
            misc_special_tokens=set(misc_special_tokens),
            **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            misc_special_tokens=self.misc_special_tokens,
            pre_tokenizer=self.pre_tokenizer,
        )
        return config

    def set_vocabulary_and_merges(self, vocabulary, merges):
        super().set_vocabulary_and_merges(vocabulary, merges)
        hf_tokenizer = getattr(self, "_tokenizer", None)
        if self.pre_tokenizer is None or hf_tokenizer is None:
            return
        from tokenizers import Regex, pre_tokenizers

        # "isolated" keeps both the matches and the text between them as
        # pieces, as llama.cpp's regex split does; the byte-level step then
        # only maps bytes (its own GPT-2 split is off).
        splits = [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated")
            for pattern in PRE_TOKENIZERS[self.pre_tokenizer]
        ]
        hf_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            splits
            + [pre_tokenizers.ByteLevel(add_prefix_space=self.add_prefix_space, use_regex=False)]
        )
