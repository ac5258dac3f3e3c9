"""Pruning for Keras 3 (TFMOT's public names) and structured pruning.

`tensorflow_model_optimization.sparsity.keras` -> `tfcompress.sparsity`.
"""

from tfcompress.sparsity.masks import is_m_by_n_sparse, m_by_n_mask, magnitude_mask, sparsity
from tfcompress.sparsity.one_shot import prune_one_shot
from tfcompress.sparsity.prunable_layer import PrunableLayer
from tfcompress.sparsity.prune import prune_low_magnitude
from tfcompress.sparsity.prune_structured import prune_structured
from tfcompress.sparsity.pruned_cached_attention import PrunedCachedMultiHeadAttention
from tfcompress.sparsity.pruned_llama_attention import PrunedLlamaAttention
from tfcompress.sparsity.pruning_callbacks import PruningSummaries, UpdatePruningStep
from tfcompress.sparsity.pruning_schedule import ConstantSparsity, PolynomialDecay, PruningSchedule
from tfcompress.sparsity.pruning_wrapper import PruneLowMagnitude
from tfcompress.sparsity.report import SparsityReport, sparsity_report
from tfcompress.sparsity.strip import strip_pruning
from tfcompress.sparsity.structured_report import StructuredPruningReport

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PrunableLayer",
    "PruneLowMagnitude",
    "PrunedCachedMultiHeadAttention",
    "PrunedLlamaAttention",
    "PruningSchedule",
    "PruningSummaries",
    "SparsityReport",
    "StructuredPruningReport",
    "UpdatePruningStep",
    "is_m_by_n_sparse",
    "m_by_n_mask",
    "magnitude_mask",
    "prune_low_magnitude",
    "prune_one_shot",
    "prune_structured",
    "sparsity",
    "sparsity_report",
    "strip_pruning",
]
