"""Perplexity of a causal language model on token ids."""

import os

import numpy as np

from tfcompress.evaluation import _runner


def _log_softmax(logits):
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _check_tokens(token_ids, padding_mask):
    tokens = np.asarray(token_ids)
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError(
            "`token_ids` must be an int array of shape [batch, seq] with seq >= 2 "
            f"(one token predicts the next). Received shape {tokens.shape}."
        )
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(
            "`token_ids` must hold integer token ids. Received dtype "
            f"{tokens.dtype}; convert with `token_ids.astype('int32')`."
        )
    if padding_mask is None:
        return tokens, np.ones(tokens.shape, dtype=bool)
    mask = np.asarray(padding_mask)
    if mask.shape != tokens.shape:
        raise ValueError(
            "`padding_mask` must have the shape of `token_ids`. Received "
            f"padding_mask.shape={mask.shape}, token_ids.shape={tokens.shape}."
        )
    return tokens, mask != 0


def _generator(model):
    """A `tfcompress.runtime.Generator` for a generator file path, or `model` if it is one."""
    from tfcompress.runtime import generator

    if isinstance(model, generator.Generator):
        return model
    if isinstance(model, (str, os.PathLike)):
        return generator.Generator(model)
    return None


def _generator_logits(generator, batch):
    # Teacher-forced through the file's own decode signature, one sequence
    # at a time (the file runs batch 1), from an empty cache each time.
    return np.stack([generator.logits(row) for row in batch])


def perplexity(model, token_ids, padding_mask=None, batch_size=8):
    """Perplexity `exp(mean next-token negative log-likelihood)` of a causal LM.

    The logits at position `t` are scored against the token at `t + 1`; a
    target counts when `padding_mask` is nonzero at it. The mean is over every
    counted target of every sequence (token-weighted), not per sequence.

    Args:
        model: a `keras.Model` (or callable, or object with `.run`) mapping int
            token ids `[batch, seq]` to logits `[batch, seq, vocab]`. For a
            keras-hub `CausalLM` that takes a dict, pass a callable, e.g.
            `lambda t: lm({"token_ids": t, "padding_mask": t != 0})`. Also a
            generator `.tflite` path (from `tfcompress.export.to_tflite_generator`)
            or a `tfcompress.runtime.Generator`: each sequence then runs
            teacher-forced through the file's `decode` signature, token by
            token from an empty cache, so the file's own numbers are scored.
        token_ids: int array `[num_sequences, seq]`.
        padding_mask: optional array like `token_ids`, nonzero for real tokens.
        batch_size: sequences per model call.

    Returns:
        The perplexity as a float (a model with uniform logits scores the
        vocabulary size).

    Raises:
        ValueError: on bad shapes, token ids outside the vocabulary, or a mask
            that leaves no target to score.

    Example:

    ```python
    ppl = tfcompress.evaluation.perplexity(lm, token_ids, padding_mask=mask)
    ```
    """
    _runner.check_int(batch_size, "batch_size", 1)
    tokens, mask = _check_tokens(token_ids, padding_mask)
    generator = _generator(model)
    total_nll, count = 0.0, 0
    for start in range(0, len(tokens), batch_size):
        batch = tokens[start : start + batch_size]
        if generator is not None:
            logits = _generator_logits(generator, batch)
        else:
            logits = _runner.predict(model, batch, batch_size=len(batch))
        if logits.shape[:2] != batch.shape or logits.ndim != 3:
            raise ValueError(
                "`model` must map token ids [batch, seq] to logits [batch, seq, "
                f"vocab]. For inputs of shape {batch.shape} it returned "
                f"{logits.shape}."
            )
        targets = batch[:, 1:]
        if targets.min() < 0 or targets.max() >= logits.shape[-1]:
            raise ValueError(
                f"`token_ids` must be in [0, {logits.shape[-1]}) (the model's "
                f"vocabulary). Received ids in [{targets.min()}, {targets.max()}]."
            )
        log_probs = _log_softmax(logits[:, :-1])
        target_log_probs = np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
        weights = mask[start : start + batch_size, 1:]
        total_nll -= float(np.sum(target_log_probs[weights]))
        count += int(weights.sum())
    if count == 0:
        raise ValueError(
            "`padding_mask` leaves no target token to score: each sequence needs "
            "a nonzero mask value after its first position."
        )
    return float(np.exp(total_nll / count))
