"""Structured inference: semirings and batched dynamic programs over them.

* :mod:`.semirings` — :class:`LogSemiring` (log partition, marginals) and
  :class:`MaxSemiring` (Viterbi), NaN-free at ``-inf``.
* :mod:`.linear_chain` — forward algorithm, marginals, Viterbi and sampling for
  linear chains, with converters from HMM and CRF parameters.
"""

from .linear_chain import (
    ChainPosterior,
    ChainPotentials,
    crf_potentials,
    hmm_potentials,
    kbest,
    log_partition,
    marginals,
    node_marginals,
    path_score,
    posterior,
    sample,
    viterbi,
)
from .semirings import LogSemiring, MaxSemiring, Semiring, safe_logsumexp

__all__ = [
    "ChainPosterior",
    "ChainPotentials",
    "crf_potentials",
    "hmm_potentials",
    "kbest",
    "log_partition",
    "marginals",
    "node_marginals",
    "path_score",
    "posterior",
    "sample",
    "viterbi",
    "LogSemiring",
    "MaxSemiring",
    "Semiring",
    "safe_logsumexp",
]
