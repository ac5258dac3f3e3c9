"""Whether two thin matmuls run faster than one on LiteRT, per shape."""

import keras
import numpy as np

_CACHE = {}


def _tflite(model):
    from tfcompress.export.tflite import to_tflite

    return to_tflite(model, target="float32", batch_size=1, verify=False).tflite_bytes


def factorized_is_faster(rows, m, n, rank, num_threads, runs=200):
    """Times `(rows, m) @ (m, n)` against `(rows, m) @ (m, rank) @ (rank, n)`.

    Both run as float32 LiteRT models with `num_threads`, interleaved in
    rounds so that load from other processes hits both alike; the answer is
    cached per shape for the process.

    Returns:
        `(faster, dense_ms, factorized_ms)` (medians).
    """
    from tfcompress.runtime.benchmark import benchmark
    from tfcompress.runtime.interpreter import load

    key = (rows, m, n, rank, num_threads)
    if key in _CACHE:
        return _CACHE[key]

    def dense():
        inputs = keras.Input((rows, m), batch_size=1)
        return keras.Model(inputs, keras.layers.Dense(n)(inputs))

    def factorized():
        inputs = keras.Input((rows, m), batch_size=1)
        hidden = keras.layers.Dense(rank, use_bias=False)(inputs)
        return keras.Model(inputs, keras.layers.Dense(n)(hidden))

    x = np.random.default_rng(0).random((1, rows, m), dtype=np.float32)
    models = [load(_tflite(build()), num_threads=num_threads) for build in (dense, factorized)]
    times = [[], []]
    for _ in range(5):
        for index, model in enumerate(models):
            times[index].append(benchmark(model, x, warmup=3, runs=runs // 5).p50_ms)
    dense_ms, factorized_ms = float(np.median(times[0])), float(np.median(times[1]))
    _CACHE[key] = (factorized_ms < dense_ms, dense_ms, factorized_ms)
    return _CACHE[key]
