"""The matrix math of low-rank factorization: weighted SVD and rank choice.

No Keras layers here; `keras.ops` in float64 so it runs on any backend.
"""

import heapq

import keras
import numpy as np
from keras import ops

from tfcompress.core.checks import check_number

METHODS = ("svd", "activation_aware", "whitened")
DATA_METHODS = ("activation_aware", "whitened")

# ASVD's exponent on the mean absolute activation of each input channel.
_ASVD_ALPHA = 0.5


def _f64(value):
    return ops.convert_to_tensor(np.asarray(value, dtype="float64"), dtype="float64")


def break_even(shape):
    """The largest rank at which two factors hold fewer numbers than the matrix."""
    m, n = shape
    return (m * n - 1) // (m + n)


def _cholesky_shifted(gram):
    """Lower Cholesky factor of `gram`, shifted by a multiple of I until PD.

    XᵀX of too few rows, or of inputs with constant channels, is singular;
    SVD-LLM adds a small diagonal shift then.
    """
    m = gram.shape[0]
    scale = max(float(np.trace(gram)) / m, 1e-12)
    shift = 0.0
    for step in range(12):
        candidate = gram + shift * np.eye(m)
        try:
            lower = ops.convert_to_numpy(ops.cholesky(_f64(candidate)))
        except ValueError:  # Keras raises where the backend returns NaNs.
            lower = None
        if lower is not None and np.all(np.isfinite(lower)) and np.all(np.diag(lower) > 0):
            return lower
        shift = scale * 10.0 ** (step - 10)
    raise ValueError(
        "XᵀX of the representative data stays singular after a shift of "
        f"{shift:.3g}; pass more (or more varied) `representative_data`."
    )


class Spectrum:
    """The weighted SVD of one kernel matrix, ready to be cut at any rank.

    `matrix` is `(m, n)` (input channels by outputs). With `method`:
    "svd" factors it as it is; "activation_aware" factors `diag(s) W` with
    `s` the mean absolute input of each channel to the power 0.5 (ASVD);
    "whitened" factors `Lᵀ W` with `L` the Cholesky factor of XᵀX (SVD-LLM),
    so the discarded singular values are exactly the output error on the
    data. The scaling is undone on the first factor.

    Attributes:
        singular_values: float64 numpy vector, largest first.
    """

    def __init__(self, matrix, method="svd", gram=None, abs_mean=None):
        matrix = np.asarray(matrix, dtype="float64")
        if method == "svd":
            weighted, self._unscale = matrix, None
        elif method == "activation_aware":
            scale = np.power(np.maximum(np.asarray(abs_mean, "float64"), 1e-8), _ASVD_ALPHA)
            weighted, self._unscale = scale[:, None] * matrix, ("diag", 1.0 / scale)
        elif method == "whitened":
            lower = _cholesky_shifted(np.asarray(gram, "float64"))
            weighted, self._unscale = lower.T @ matrix, ("triangular", lower)
        else:
            raise ValueError(f"Unknown method {method!r}; expected one of {METHODS}.")
        u, s, vt = ops.svd(_f64(weighted), full_matrices=False)
        self._u = ops.convert_to_numpy(u)
        self.singular_values = ops.convert_to_numpy(s)
        self._vt = ops.convert_to_numpy(vt)

    def energy_rank(self, energy):
        """The smallest rank keeping `energy` of the squared spectrum."""
        squares = self.singular_values**2
        total = squares.sum()
        if total == 0:
            return 1
        kept = np.cumsum(squares) / total
        return int(min(np.searchsorted(kept, energy - 1e-12) + 1, len(squares)))

    def discarded(self, rank):
        """Relative squared energy of the singular values past `rank`."""
        squares = self.singular_values**2
        total = squares.sum()
        return float(squares[rank:].sum() / total) if total else 0.0

    def factors(self, rank):
        """`(first (m, rank), second (rank, n))`, float64, first @ second ≈ W."""
        root = np.sqrt(self.singular_values[:rank])
        first = self._u[:, :rank] * root
        second = root[:, None] * self._vt[:rank]
        if self._unscale is not None:
            kind, value = self._unscale
            if kind == "diag":
                first = value[:, None] * first
            else:
                first = ops.convert_to_numpy(
                    keras.ops.solve_triangular(_f64(value.T), _f64(first), lower=False)
                )
        return first, second


# The least share of `keep_fraction` one layer keeps while the budget can be
# met by cutting others. On all-MiniLM-L6-v2 at compression 0.7 (whitened,
# benchmarks/low_rank_minilm.py) the plain greedy put every cut in 7 FFN
# projections, some at rank 16 of 384: held-out cosine 0.800 before and 0.873
# after 100 distillation steps. Spread 0.5 / 0.75 / 1 gave 0.869 / 0.900 /
# 0.884 before, and 0.75 gave 0.958 after 300 steps.
SPREAD = 0.75


def allocate_ranks(layers, keep_fraction, round_to, spread=SPREAD):
    """Ranks meeting a global parameter budget where the error grows least.

    Greedy on the marginal error per parameter saved: every layer starts
    dense; a step either factorizes a dense layer at its largest rounded
    rank below break-even, or lowers a factorized layer's rank by
    `round_to`. A layer at or under `spread * keep_fraction` of its own
    parameters is cut no further until every layer is (so none goes more
    than one step under that floor); only then do the steps continue
    without it. Each step saves at most `round_to * (m + n)`
    parameters, so the result is under the budget by less than one rounding
    step.

    Args:
        layers: `{key: (shape (m, n), bias_count, cost(rank) -> float)}`;
            `cost` is the relative output error at that rank.
        keep_fraction: fraction of the layers' parameters to keep, in (0, 1).
        round_to: rank granularity.
        spread: in [0, 1]; 0 is the plain greedy (cuts may concentrate in
            a few layers), 1 keeps every layer near `keep_fraction` where
            break-even allows.

    Returns:
        `{key: rank or None (dense)}`; the caller checks that rank
        `round_to` everywhere meets the budget.

    Raises:
        ValueError: for a `spread` outside [0, 1].
    """
    check_number(spread, "spread", 0, 1)
    size = {key: m * n + bias for key, ((m, n), bias, _) in layers.items()}
    total = sum(size.values())
    budget = keep_fraction * total
    floor = {key: spread * keep_fraction * count for key, count in size.items()}
    ranks = {key: None for key in layers}
    kept = total
    heap, held = [], []

    def push(key, rank_now, capped):
        (m, n), bias, cost = layers[key]
        if rank_now is None:
            new = (break_even((m, n)) // round_to) * round_to
            saved = m * n - new * (m + n)
            before = 0.0
        else:
            new = rank_now - round_to
            saved = round_to * (m + n)
            before = cost(rank_now)
        if new < 1 or saved <= 0:
            return
        if capped and rank_now is not None and rank_now * (m + n) + bias <= floor[key]:
            held.append(key)
            return
        heapq.heappush(heap, ((cost(new) - before) / saved, key, new, saved))

    for key in layers:
        push(key, None, True)
    for capped in (True, False):
        if not capped:
            for key in held:
                push(key, ranks[key], False)
        while kept > budget and heap:
            _, key, new, saved = heapq.heappop(heap)
            ranks[key] = new
            kept -= saved
            push(key, new, capped)
    return ranks
