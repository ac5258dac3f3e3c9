"""Low-rank factorization of Dense and EinsumDense kernels (SVD, ASVD, SVD-LLM)."""

from tfcompress.low_rank.factorize import factorize
from tfcompress.low_rank.low_rank_dense import LowRankDense
from tfcompress.low_rank.low_rank_einsum_dense import LowRankEinsumDense
from tfcompress.low_rank.low_rank_report import LowRankReport, low_rank_report

__all__ = [
    "LowRankDense",
    "LowRankEinsumDense",
    "LowRankReport",
    "factorize",
    "low_rank_report",
]
