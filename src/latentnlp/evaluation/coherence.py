"""Topic coherence by normalised pointwise mutual information (NPMI).

For a topic's top-N words ``w_1..w_N``, Lau, Newman & Baldwin (2014, EACL,
"Machine Reading Tea Leaves", Sec. 3) score

    NPMI(w_i, w_j) = log( P(w_i, w_j) / (P(w_i) P(w_j)) ) / -log P(w_i, w_j)

averaged over the N(N-1)/2 pairs (Bouma 2009 normalisation). Here the
probabilities are document frequencies in a reference corpus (the training
corpus by default, as the document-model papers do): ``P(w) = D(w) / D`` and
``P(w_i, w_j) = D(w_i, w_j) / D``, where ``D(.)`` counts documents containing
the word(s). A pair that never co-occurs gets NPMI = -1, its limit value; a
pair that always co-occurs gets +1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..data.bow import BowCorpus

__all__ = ["npmi_matrix", "topic_coherence", "CoherenceReport"]


def npmi_matrix(corpus: BowCorpus, word_ids: Sequence[int]) -> np.ndarray:
    """NPMI of every pair of the given words, from document co-occurrence in ``corpus``.

    Args:
        corpus: the reference corpus (documents x vocabulary counts).
        word_ids: ``(n,)`` column indices into ``corpus.vocab``.

    Returns:
        ``(n, n)`` float64 matrix; the diagonal is 1 for words that occur and NaN for words that never occur.

    Raises:
        ValueError: if an id is outside the vocabulary or the corpus is empty.
    """
    ids = np.asarray(word_ids, dtype=np.int64)
    if ids.ndim != 1:
        raise ValueError(f"word_ids must be one-dimensional, got shape {ids.shape}")
    if len(corpus) == 0:
        raise ValueError("the reference corpus has no documents")
    if ids.size and (ids.min() < 0 or ids.max() >= corpus.vocab_size):
        raise ValueError(f"word ids must lie in 0..{corpus.vocab_size - 1}, got {ids.min()}..{ids.max()}")
    present = (corpus.counts[:, ids] > 0).astype(np.float64)  # (D, n) sparse 0/1
    joint = np.asarray((present.T @ present).todense()) / len(corpus)  # (n, n) P(w_i, w_j)
    marginal = np.diag(joint).copy()  # (n,) P(w_i)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(joint) - np.log(marginal)[:, None] - np.log(marginal)[None, :]
        npmi = pmi / -np.log(joint)
    npmi[(joint == 0) & (marginal[:, None] > 0) & (marginal[None, :] > 0)] = -1.0
    both_everywhere = joint == 1.0  # -log P = 0: the words co-occur in every document
    npmi[both_everywhere] = 1.0
    np.fill_diagonal(npmi, np.where(marginal > 0, 1.0, np.nan))
    return npmi


@dataclass(frozen=True)
class CoherenceReport:
    """NPMI coherence of a set of topics.

    Attributes:
        per_topic: NPMI averaged over word pairs, one value per topic.
        mean: average over topics (the figure tables report).
        n_words: top words per topic used (N).
    """

    per_topic: tuple[float, ...]
    mean: float
    n_words: int


def topic_coherence(topics: Sequence[Sequence[str]], corpus: BowCorpus, n_words: int = 10) -> CoherenceReport:
    """Mean pairwise NPMI of each topic's first ``n_words`` words (Lau et al. 2014).

    Args:
        topics: word lists, best word first (e.g. :meth:`NVDM.topic_words`).
        corpus: reference corpus whose vocabulary contains the words.
        n_words: N, words per topic (the usual 10).

    Raises:
        ValueError: if a topic has fewer than 2 words, or a word is not in the corpus vocabulary.
    """
    index = corpus.word_index
    scores = []
    for k, topic in enumerate(topics):
        words = list(topic)[:n_words]
        if len(words) < 2:
            raise ValueError(f"topic {k} has {len(words)} word(s); NPMI needs at least 2")
        missing = [w for w in words if w not in index]
        if missing:
            raise ValueError(f"topic {k}: words not in the reference vocabulary: {missing}")
        m = npmi_matrix(corpus, [index[w] for w in words])
        upper = m[np.triu_indices(len(words), k=1)]
        scores.append(float(np.nanmean(upper)) if np.isfinite(upper).any() else float("nan"))
    return CoherenceReport(per_topic=tuple(scores), mean=float(np.nanmean(scores)) if scores else float("nan"), n_words=n_words)
