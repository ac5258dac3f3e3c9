"""Reference logits from keras-hub's own `call_with_cache`, one token per step."""

import keras
import numpy as np

from tfcompress.core._keras_internals import build_cache


def _check_fits(steps, cache_length):
    if steps > cache_length:
        raise ValueError(
            f"{steps} steps do not fit in a cache of {cache_length} positions (the exported "
            f"file's cache_length). Pass at most {cache_length} token ids."
        )


def _step_cache(causal_lm, steps):
    """A cache of exactly `steps` positions.

    `call_with_cache` masks every position after the current one and writes
    the current one, so the positions a longer cache would add are never
    read: their logits are the same (to float rounding), while seeding the
    cache runs the model over all its positions (a 512-token forward pass
    to check 4 steps of a SmolLM2 export).
    """
    return build_cache(causal_lm, keras.ops.zeros((1, steps), "int32"))


def keras_step_logits(causal_lm, token_ids, cache_length):
    """Logits [len(token_ids), V] of feeding `token_ids` one at a time.

    Uses the model's `call_with_cache`, exactly as `generate` does, so the
    export is checked against keras-hub itself.

    Args:
        causal_lm: a keras-hub `CausalLM` with `call_with_cache`.
        token_ids: the ids fed at positions 0, 1, ...
        cache_length: the exported file's cache length; the steps must fit in it.

    Raises:
        ValueError: more token ids than `cache_length`.
    """
    token_ids = np.asarray(token_ids, np.int32).reshape(1, -1)
    _check_fits(token_ids.shape[1], cache_length)
    cache = _step_cache(causal_lm, token_ids.shape[1])
    logits = []
    for i in range(token_ids.shape[1]):
        step, _, cache = causal_lm.call_with_cache(token_ids[:, i : i + 1], cache, i)
        logits.append(keras.ops.convert_to_numpy(step)[0, 0])
    return np.stack(logits)


def keras_greedy(causal_lm, prompt_ids, new_tokens, cache_length):
    """Greedy continuation of `prompt_ids` by `call_with_cache` (token ids).

    Raises:
        ValueError: the prompt and new tokens do not fit in `cache_length`.
    """
    ids = [int(t) for t in prompt_ids]
    steps = len(ids) + new_tokens - 1
    _check_fits(steps, cache_length)
    cache = _step_cache(causal_lm, steps)
    for i in range(steps):
        step, _, cache = causal_lm.call_with_cache(np.array([[ids[i]]], np.int32), cache, i)
        if i >= len(ids) - 1:
            ids.append(int(np.argmax(keras.ops.convert_to_numpy(step)[0, 0])))
    return ids[len(prompt_ids) :]
