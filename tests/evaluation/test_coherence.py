import math

import numpy as np
import pytest
import scipy.sparse as sp

from latentnlp.data.bow import BowCorpus
from latentnlp.evaluation.coherence import npmi_matrix, topic_coherence


def _corpus(rows, vocab=("a", "b", "c", "d")):
    return BowCorpus(counts=sp.csr_matrix(np.array(rows, dtype=np.int64)), vocab=tuple(vocab))


def test_npmi_by_hand():
    # 4 documents: a in 1,2,3; b in 1,2; c in 4; d in 1,2,3,4.
    corpus = _corpus([[1, 2, 0, 1], [3, 1, 0, 1], [1, 0, 0, 5], [0, 0, 2, 1]])
    m = npmi_matrix(corpus, [0, 1, 2, 3])
    # a,b: P(a)=3/4, P(b)=1/2, P(a,b)=1/2 -> log((1/2)/(3/8)) / -log(1/2)
    assert m[0, 1] == pytest.approx(math.log(4 / 3) / math.log(2))
    assert m[0, 2] == -1.0  # a and c never co-occur
    # a,d: P(d) = 1 so PMI = 0
    assert m[0, 3] == pytest.approx(0.0)
    assert np.allclose(m, m.T) and np.all(np.diag(m) == 1.0)


def test_topic_coherence_averages_pairs_and_topics():
    corpus = _corpus([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 0]])
    rep = topic_coherence([["a", "b"], ["a", "c"]], corpus)
    # a,b always together (P=1/2 each, joint 1/2): log 2 / log 2 = 1; a,c never: -1
    assert rep.per_topic == pytest.approx((1.0, -1.0))
    assert rep.mean == pytest.approx(0.0)
    with pytest.raises(ValueError, match="not in the reference vocabulary"):
        topic_coherence([["a", "zebra"]], corpus)
    with pytest.raises(ValueError, match="at least 2"):
        topic_coherence([["a"]], corpus)
