"""The label-bias problem (Lafferty, McCallum & Pereira 2001, Sec. 2), shown on the paper's rib/rob example.

Two words share their first letter: ``r i b`` is tagged ``R1 I B1`` and ``r o b``
is tagged ``R2 O B2``; ``rib`` is three times as frequent. Features see only the
current letter. With the transitions observed in training (``R1`` is only ever
followed by ``I``), the MEMM's per-state normalisation passes all of ``R1``'s
mass to ``I`` whatever the letter is, so ``p(R1 I B1 | r o b) = p(R1 | r)``
= 3/4 beats ``p(R2 O B2 | r o b) = 1/4``: the MEMM tags ``rob`` as ``rib``. The
CRF normalises over whole sequences and gets ``rob`` right.
"""

from __future__ import annotations

import numpy as np
import pytest

from latentnlp.models.sequence.crf import FeatureCRF
from latentnlp.models.sequence.features import FeatureTemplates
from latentnlp.models.sequence.loglinear import LogLinearConfig
from latentnlp.models.sequence.memm import MEMM

LETTER_ONLY = FeatureTemplates(window=0, lowercase=False, word_bigrams=False, affix=0, shape=False)
WORDS = [list("rib")] * 3 + [list("rob")]
TAGS = [["R1", "I", "B1"]] * 3 + [["R2", "O", "B2"]]


def _config(transitions: str) -> LogLinearConfig:
    return LogLinearConfig(templates=LETTER_ONLY, c2=0.01, transitions=transitions, max_iterations=500)


def test_memm_is_stuck_and_crf_is_not():
    memm = MEMM(_config("observed")).fit(WORDS, TAGS)
    crf = FeatureCRF(_config("observed")).fit(WORDS, TAGS)
    # both fit the training data
    assert memm.predict([list("rib")]) == crf.predict([list("rib")]) == [["R1", "I", "B1"]]
    # the MEMM cannot leave the rib path once it has entered it
    assert memm.predict([list("rob")]) == [["R1", "I", "B1"]]
    assert crf.predict([list("rob")]) == [["R2", "O", "B2"]]
    # provably stuck: a tag with one observed successor gives it probability exactly 1 for every letter
    r1, i = memm.labels_.index("R1"), memm.labels_.index("I")
    for word in (list("rob"), list("rib"), list("rxb")):
        local = memm.local_probabilities([word])[0]  # (L, C + 1, C)
        assert local[1, r1, i] == 1.0
    # so the MEMM's probability of the wrong path is just p(R1 | r) = 3/4 (up to the L2 penalty)
    (p_wrong, path), _ = memm.nbest([list("rob")], n=2)[0]
    assert path == ["R1", "I", "B1"] and p_wrong == pytest.approx(0.75, abs=0.01)


@pytest.mark.parametrize("transitions", ["all", "observed"])
def test_crf_prefers_the_evidence_of_the_second_letter(transitions):
    crf = FeatureCRF(_config(transitions)).fit(WORDS, TAGS)
    (p_right, path), *_ = crf.nbest([list("rob")], n=3)[0]
    assert path == ["R2", "O", "B2"] and p_right > 0.8
    marg = crf.marginals([list("rob")])[0]
    assert marg[0, crf.labels_.index("R2")] > 0.8  # the evidence at position 1 flows back to position 0
    assert np.allclose(marg.sum(1), 1.0)
