"""Tiny random keras-hub causal LMs with a tiny byte-level BPE vocabulary.

Shared by the generator export and runtime tests: `tiny_llama3()` and
`tiny_gpt2()` build models the way users get them from keras-hub (backbone,
tokenizer, preprocessor, `CausalLM`), with random weights large enough that a
layout mistake changes the greedy tokens.
"""

import keras
import keras_hub
import numpy as np

from tests.models import tiny_llama

SPECIAL = tiny_llama.SPECIAL
MERGES = tiny_llama.MERGES
CHAT_TEMPLATE = tiny_llama.CHAT_TEMPLATE
vocabulary = tiny_llama.vocabulary_ids


def _randomize(backbone, seed):
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        if variable.path.endswith(("scale", "gamma")):
            variable.assign(1.0 + 0.2 * rng.normal(size=variable.shape))
        else:
            variable.assign(0.2 * rng.normal(size=variable.shape))


def tiny_llama3(tie_word_embeddings=True, seed=0, sequence_length=128):
    """A 2-block Llama3CausalLM (4 query heads, 2 key/value heads, head dim 16)."""
    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.Llama3Tokenizer(
        vocabulary=vocabulary(),
        merges=MERGES,
        bos_token=SPECIAL[1],
        eos_token=SPECIAL[2],
        misc_special_tokens=set(SPECIAL),
    )
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=len(vocabulary()),
        tie_word_embeddings=tie_word_embeddings,
        dtype="float32",
        **tiny_llama.CONFIG,
    )
    _randomize(backbone, seed)
    preprocessor = keras_hub.models.Llama3CausalLMPreprocessor(
        tokenizer, sequence_length=sequence_length, add_start_token=False
    )
    return keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=preprocessor)


def tiny_gpt2(seed=0, sequence_length=128):
    """A 2-block GPT2CausalLM (4 heads, hidden 64, 128 positions)."""
    keras.utils.set_random_seed(seed)
    vocab = vocabulary()
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocab, merges=MERGES)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=len(vocab),
        num_layers=2,
        num_heads=4,
        hidden_dim=64,
        intermediate_dim=128,
        max_sequence_length=128,
        dtype="float32",
    )
    _randomize(backbone, seed)
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer, sequence_length=sequence_length
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)
