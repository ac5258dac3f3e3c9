"""Cosine similarity between two models' outputs, e.g. sentence embeddings."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class CosineSimilarity:
    """Per-row cosine similarities and their summary.

    Attributes:
        per_row: float64 array, one similarity per row.
        mean: mean over rows.
        min: the worst row.

    `float(result)` is the mean, so a result can go straight into a
    `tfcompress.evaluation.compare` entry.
    """

    per_row: np.ndarray
    mean: float
    min: float

    def __float__(self):
        return self.mean

    def as_dict(self):
        """Returns `{"mean", "min", "rows"}` with plain Python numbers."""
        return {"mean": self.mean, "min": self.min, "rows": int(self.per_row.size)}


def _rows(array, arg_name):
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 0:
        raise ValueError(f"`{arg_name}` must be an array of vectors; received a scalar.")
    return array.reshape(1, -1) if array.ndim == 1 else array.reshape(len(array), -1)


def cosine_similarity(a, b):
    """Cosine similarity of each row of `a` with the same row of `b`.

    Rows are the first axis; other axes are flattened, so `[n, d]` gives n
    similarities and a 1-D vector gives one. Two all-zero rows count as
    identical (1.0); one all-zero row against a nonzero row scores 0.0.

    Args:
        a: array `[n, ...]` (e.g. fp32 embeddings).
        b: array of the same shape (e.g. the compressed model's embeddings).

    Returns:
        A `CosineSimilarity` with `per_row`, `mean` and `min`.

    Raises:
        ValueError: when the shapes differ.

    Example:

    ```python
    cos = tfcompress.evaluation.cosine_similarity(fp32_emb, int8_emb)
    print(cos.mean, cos.min)
    ```
    """
    if np.shape(a) != np.shape(b):
        raise ValueError(
            "`a` and `b` must have the same shape. Received: "
            f"a.shape={np.shape(a)}, b.shape={np.shape(b)}."
        )
    a, b = _rows(a, "a"), _rows(b, "b")
    if a.shape[0] == 0:
        raise ValueError("`a` and `b` have no rows to compare.")
    norm_a = np.linalg.norm(a, axis=1)
    norm_b = np.linalg.norm(b, axis=1)
    denom = norm_a * norm_b
    both_zero = (norm_a == 0) & (norm_b == 0)
    per_row = np.where(denom > 0, np.sum(a * b, axis=1) / np.where(denom > 0, denom, 1.0), 0.0)
    per_row = np.clip(np.where(both_zero, 1.0, per_row), -1.0, 1.0)
    return CosineSimilarity(per_row=per_row, mean=float(per_row.mean()), min=float(per_row.min()))


def _mean_pool(hidden, mask, arg_name):
    hidden = np.asarray(hidden, dtype=np.float64)
    if hidden.ndim != 3:
        raise ValueError(
            f"`{arg_name}` must be token embeddings of shape [batch, seq, dim]. "
            f"Received shape {hidden.shape}."
        )
    if mask is None:
        return hidden.mean(axis=1)
    weights = (np.asarray(mask) != 0).astype(np.float64)
    if weights.shape != hidden.shape[:2]:
        raise ValueError(
            f"`mask` must have shape {hidden.shape[:2]} ([batch, seq]). "
            f"Received: mask.shape={weights.shape}."
        )
    counts = weights.sum(axis=1)
    if np.any(counts == 0):
        empty = np.flatnonzero(counts == 0)[:5].tolist()
        raise ValueError(
            f"`mask` has no real token in rows {empty}, so they have no mean "
            "embedding. Drop those rows or fix the mask (1 = real token)."
        )
    return np.einsum("bsd,bs->bd", hidden, weights) / counts[:, None]


def mean_pooled_cosine(a, b, mask=None):
    """Cosine similarity of mean-pooled sentence embeddings.

    Averages each model's token embeddings over the real tokens (as
    sentence-transformers does for MiniLM), then compares the sentences with
    `cosine_similarity`.

    Args:
        a: token embeddings `[batch, seq, dim]` from the reference model.
        b: token embeddings of the same shape from the compressed model.
        mask: optional `[batch, seq]` padding mask, nonzero for real tokens.
            Without it every position is averaged.

    Returns:
        A `CosineSimilarity` with one row per sentence.

    Raises:
        ValueError: on mismatched shapes or a row whose mask is all zeros.

    Example:

    ```python
    cos = tfcompress.evaluation.mean_pooled_cosine(
        fp32_hidden, int8_hidden, mask=padding_mask)
    ```
    """
    if np.shape(a) != np.shape(b):
        raise ValueError(
            "`a` and `b` must have the same shape. Received: "
            f"a.shape={np.shape(a)}, b.shape={np.shape(b)}."
        )
    return cosine_similarity(_mean_pool(a, mask, "a"), _mean_pool(b, mask, "b"))
