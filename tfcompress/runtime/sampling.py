"""`Sampler`: the next token from logits (greedy, temperature, top-k, top-p), numpy only."""

import numpy as np


class Sampler:
    """Picks the next token id from a logits vector.

    `temperature=0` (or `top_k=1`) is greedy: the arg max, ties to the lowest
    id. Otherwise the logits are divided by `temperature`, cut to the `top_k`
    largest, then to the smallest set whose probability reaches `top_p`
    (always at least one token), and one id is drawn. The draws come from one
    `numpy.random.Generator` seeded with `seed`: the same seed over the same
    logits gives the same ids.

    Args:
        temperature: float >= 0.
        top_k: int >= 1, or None/0 for no cut.
        top_p: float in (0, 1].
        seed: int seed, or None for fresh entropy.

    Raises:
        ValueError: an argument out of range.

    Example:

    ```python
    sampler = tfcompress.runtime.Sampler(temperature=0.7, top_p=0.9, seed=0)
    token = sampler(logits)
    ```
    """

    def __init__(self, temperature=0.0, top_k=None, top_p=1.0, seed=None):
        if not isinstance(temperature, (int, float)) or temperature < 0:
            raise ValueError(
                f"`temperature` must be a number >= 0 (0 is greedy). Received: temperature={temperature!r}"
            )
        if top_k is not None and (not isinstance(top_k, int) or top_k < 0):
            raise ValueError(
                f"`top_k` must be an int >= 1, or 0/None for no cut. Received: top_k={top_k!r}"
            )
        if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise ValueError(f"`top_p` must be in (0, 1]. Received: top_p={top_p!r}")
        self.temperature = float(temperature)
        self.top_k = top_k or None
        self.top_p = float(top_p)
        self.seed = seed
        self.reset()

    def reset(self):
        """Restarts the random stream from `seed`."""
        self._rng = np.random.default_rng(self.seed)

    @property
    def greedy(self):
        return self.temperature == 0.0 or self.top_k == 1

    def probabilities(self, logits):
        """The distribution the next id is drawn from, as float64 `[vocab]`."""
        logits = np.asarray(logits, dtype=np.float64).reshape(-1)
        if self.greedy:
            probabilities = np.zeros_like(logits)
            probabilities[int(np.argmax(logits))] = 1.0
            return probabilities
        scaled = logits / self.temperature
        if self.top_k is not None and self.top_k < scaled.size:
            kth = np.partition(scaled, -self.top_k)[-self.top_k]
            scaled = np.where(scaled >= kth, scaled, -np.inf)
        probabilities = np.exp(scaled - scaled.max())
        probabilities /= probabilities.sum()
        if self.top_p < 1.0:
            order = np.argsort(-probabilities, kind="stable")
            cumulative = np.cumsum(probabilities[order])
            # The tolerance keeps 0.5 + 0.3 from missing top_p=0.8 by rounding.
            keep = order[: int(np.searchsorted(cumulative, self.top_p - 1e-9)) + 1]
            kept = np.zeros_like(probabilities)
            kept[keep] = probabilities[keep]
            probabilities = kept / kept.sum()
        return probabilities

    def __call__(self, logits):
        """Returns the next token id (an int)."""
        if self.greedy:
            return int(np.argmax(np.asarray(logits).reshape(-1)))
        probabilities = self.probabilities(logits)
        return int(self._rng.choice(probabilities.size, p=probabilities))
