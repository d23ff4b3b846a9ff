"""Sequence models on the linear-chain core (:mod:`latentnlp.structured`).

* :mod:`.hmm` — hidden Markov models (supervised, Baum-Welch, VB EM).
* :mod:`.features` — feature templates and the sparse attribute matrix of the feature-based taggers.
* :mod:`.memm` — maximum-entropy Markov model (locally normalised, L-BFGS).
* :mod:`.crf` — feature-based linear-chain CRF (globally normalised, L-BFGS).
* :mod:`.crf_layer` and :mod:`.neural_crf` — the CRF output layer and the BiLSTM-CRF tagger.
"""

from .crf import FeatureCRF
from .crf_layer import CRFLayer
from .features import FeatureIndex, FeatureTemplates
from .hmm import (
    ExpectedCounts,
    HiddenMarkovModel,
    HMMConfig,
    expected_counts,
    fast_expected_counts,
)
from .loglinear import LogLinearConfig
from .memm import MEMM
from .neural_crf import BiLSTMCRF, BiLSTMCRFConfig, train_bilstm_crf

__all__ = [
    "ExpectedCounts",
    "HiddenMarkovModel",
    "HMMConfig",
    "expected_counts",
    "fast_expected_counts",
    "FeatureCRF",
    "CRFLayer",
    "FeatureIndex",
    "FeatureTemplates",
    "LogLinearConfig",
    "MEMM",
    "BiLSTMCRF",
    "BiLSTMCRFConfig",
    "train_bilstm_crf",
]
