"""Numpy reference computations for the distillation tests."""

import numpy as np


def log_softmax(z):
    z = np.float64(z)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def numpy_kd(teacher, student, temperature, mask=None, reverse=False):
    """T² · KL(softmax(t/T) ‖ softmax(s/T)), mask-weighted mean over positions."""
    p = log_softmax(np.float64(teacher) / temperature)
    q = log_softmax(np.float64(student) / temperature)
    if reverse:
        p, q = q, p
    kl = (np.exp(p) * (p - q)).sum(-1)
    mask = np.ones(kl.shape) if mask is None else np.broadcast_to(mask, kl.shape)
    return (kl * mask).sum() / mask.sum() * temperature**2


def numpy_ce(logits, labels, mask=None):
    """Sparse cross-entropy from logits, mask-weighted mean over positions."""
    log_probs = log_softmax(logits)
    picked = np.take_along_axis(log_probs, np.asarray(labels)[..., None], -1)[..., 0]
    mask = np.ones(picked.shape) if mask is None else np.broadcast_to(mask, picked.shape)
    return -(picked * mask).sum() / mask.sum()


def numpy_relation(teacher, student, mask=None, num_heads=None):
    """MiniLMv2 relation KL: softmax(X_h X_hᵀ/√d) per head, KL per query, masked mean."""
    teacher, student = np.float64(teacher), np.float64(student)
    if num_heads is None:
        num_heads = teacher.shape[2] if teacher.ndim == 4 else 1

    def log_relations(x):
        batch, seq = x.shape[:2]
        heads = x.reshape(batch, seq, num_heads, -1).transpose(0, 2, 1, 3)
        scores = heads @ heads.transpose(0, 1, 3, 2) / np.sqrt(heads.shape[-1])
        if mask is not None:
            scores = np.where(np.asarray(mask)[:, None, None, :] > 0, scores, -np.inf)
        return log_softmax(scores)

    p, q = log_relations(teacher), log_relations(student)
    # Padded keys have probability 0 on both sides: they add nothing.
    with np.errstate(invalid="ignore"):
        terms = np.where(np.isfinite(p), np.exp(p) * (p - q), 0.0)
    per_query = terms.sum(-1).mean(1)
    weights = np.ones(per_query.shape) if mask is None else np.asarray(mask, "float64")
    return (per_query * weights).sum() / weights.sum()
