"""Outlier input channels of a decoder's linears, for the `mixed_int8` target.

Hybrid int8 kernels quantize each activation row with one scale set by its
largest value. Llama-family decoders carry a few input channels hundreds of
times larger than the rest (at the down projections of the first and last
blocks, and in the normalized hidden state), so one such channel leaves the
other channels a handful of int8 levels. Those channels go through a small
float matmul instead (LLM.int8()'s decomposition, with dynamic instead of
vector-wise int8).
"""

import numpy as np

from tfcompress.data import pydoc_text

CALIBRATION_TOKENS = 128


def calibration_ids(tokenizer, bos_id, length=CALIBRATION_TOKENS):
    """Token ids of offline English text (Python's own docs), BOS first when given.

    The first part of `pydoc_data.topics`, which the benchmarks' held-out
    perplexity text (its last 10%) does not overlap.
    """
    text = pydoc_text()[: 8 * length]
    ids = [int(i) for i in np.asarray(tokenizer(text)).reshape(-1)]
    if bos_id is not None:
        ids = [int(bos_id)] + ids
    return ids[:length]


def select_outlier_channels(inputs, ratio=6.0, max_channels=8):
    """{linear key: channel indices} of channels whose peak |input| stands out.

    A channel is an outlier when its largest |value| over the calibration
    tokens is over `ratio` times the median channel's; at most `max_channels`
    (the largest) per linear.

    Args:
        inputs: {linear key: [tokens, channels] float inputs}.
        ratio: how many times the median channel's peak makes an outlier.
        max_channels: the most channels split off one linear.

    Returns:
        {key: sorted int indices}, only for linears with outliers.
    """
    if ratio <= 1:
        raise ValueError(f"`ratio` must be > 1. Received: ratio={ratio}")
    if max_channels < 1:
        raise ValueError(f"`max_channels` must be >= 1. Received: max_channels={max_channels}")
    selected = {}
    for key, values in inputs.items():
        peaks = np.abs(np.asarray(values, np.float32)).max(axis=0)
        threshold = ratio * float(np.median(peaks))
        order = np.argsort(-peaks)[:max_channels]
        chosen = sorted(int(i) for i in order if peaks[i] > threshold)
        if chosen:
            selected[key] = chosen
    return selected
