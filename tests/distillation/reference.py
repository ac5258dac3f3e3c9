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
