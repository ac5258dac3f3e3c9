"""Reference logits from keras-hub's own `call_with_cache`, one token per step."""

import keras
import numpy as np

from tfcompress.core._keras_internals import build_cache


def keras_step_logits(causal_lm, token_ids, cache_length):
    """Logits [len(token_ids), V] of feeding `token_ids` one at a time.

    Uses the model's `call_with_cache` over its stacked cache, exactly as
    `generate` does, so the export is checked against keras-hub itself.
    """
    token_ids = np.asarray(token_ids, np.int32).reshape(1, -1)
    padded = np.zeros((1, cache_length), np.int32)
    padded[0, : token_ids.shape[1]] = token_ids[0]
    cache = build_cache(causal_lm, keras.ops.convert_to_tensor(padded))
    logits = []
    for i in range(token_ids.shape[1]):
        step, _, cache = causal_lm.call_with_cache(token_ids[:, i : i + 1], cache, i)
        logits.append(keras.ops.convert_to_numpy(step)[0, 0])
    return np.stack(logits)


def keras_greedy(causal_lm, prompt_ids, new_tokens, cache_length):
    """Greedy continuation of `prompt_ids` by `call_with_cache` (token ids)."""
    ids = [int(t) for t in prompt_ids]
    padded = np.zeros((1, cache_length), np.int32)
    cache = build_cache(causal_lm, keras.ops.convert_to_tensor(padded))
    for i in range(len(ids) + new_tokens - 1):
        step, _, cache = causal_lm.call_with_cache(np.array([[ids[i]]], np.int32), cache, i)
        if i >= len(ids) - 1:
            ids.append(int(np.argmax(keras.ops.convert_to_numpy(step)[0, 0])))
    return ids[len(prompt_ids) :]
