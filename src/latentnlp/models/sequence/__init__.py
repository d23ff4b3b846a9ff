"""Sequence models: hidden Markov models on the linear-chain core (:mod:`latentnlp.structured`)."""

from .hmm import (
    ExpectedCounts,
    HiddenMarkovModel,
    HMMConfig,
    expected_counts,
    fast_expected_counts,
)

__all__ = ["ExpectedCounts", "HiddenMarkovModel", "HMMConfig", "expected_counts", "fast_expected_counts"]
