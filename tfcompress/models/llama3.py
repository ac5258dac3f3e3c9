"""keras-hub's Llama 3 backbone and tokenizer, with configs that survive a `.keras` round trip.

keras-hub 0.32 leaves `tie_word_embeddings` out of `Llama3Backbone.get_config`
and the special tokens out of `Llama3Tokenizer.get_config`: a tied model (SmolLM2)
or a tokenizer whose special tokens are not Llama 3's (ChatML) saves but does not
load. These subclasses add the missing keys and change nothing else.
"""

import keras
import keras_hub


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
        **kwargs: passed to `keras_hub.models.Llama3Tokenizer`.
    """

    def __init__(
        self,
        vocabulary=None,
        merges=None,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        misc_special_tokens=("<|start_header_id|>", "<|end_header_id|>"),
        **kwargs,
    ):
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.misc_special_tokens = sorted(misc_special_tokens)
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
        )
        return config
