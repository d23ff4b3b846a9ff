"""AER, precision and recall by hand, and the alignment picture."""

import pytest

from latentnlp.data.parallel import GoldAlignment
from latentnlp.evaluation.alignment import alignment_scores, plot_alignment


def _gold(sure, possible):
    return GoldAlignment(tuple(map(frozenset, sure)), tuple(frozenset(p | s) for s, p in zip(sure, possible)))


def test_aer_by_hand():
    # Sentence 1: S = {(0,0),(1,1)}, P = S + {(1,2)}; A = {(0,0),(1,2),(2,2)}.
    # Sentence 2: S = {(0,0)}, P = S; A = {}.
    gold = _gold([{(0, 0), (1, 1)}, {(0, 0)}], [{(1, 2)}, set()])
    s = alignment_scores([{(0, 0), (1, 2), (2, 2)}, set()], gold)
    # |A| = 3, |S| = 3, |A ∩ S| = 1, |A ∩ P| = 2.
    assert (s.n_predicted, s.n_sure, s.n_predicted_sure, s.n_predicted_possible) == (3, 3, 1, 2)
    assert s.aer == pytest.approx(1 - (1 + 2) / (3 + 3))
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(1 / 3)


def test_perfect_and_empty():
    gold = _gold([{(0, 0)}], [{(1, 1)}])
    assert alignment_scores([{(0, 0)}], gold).aer == 0.0
    assert alignment_scores([{(0, 0), (1, 1)}], gold).aer == 0.0  # possible links cost nothing
    s = alignment_scores([set()], gold)
    assert s.aer == 1.0 and s.precision == 0.0 and s.recall == 0.0
    with pytest.raises(ValueError, match="2 predicted sentences but the gold standard has 1"):
        alignment_scores([set(), set()], gold)


def test_plot_alignment(tmp_path):
    out = plot_alignment(tmp_path / "a.png", ["le", "chat"], ["the", "cat", "."], [(0, 0), (1, 2)], {(0, 0)}, {(1, 1)})
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"predicted link \(5, 0\) outside the 2 x 3"):
        plot_alignment(tmp_path / "b.png", ["le", "chat"], ["the", "cat", "."], [(5, 0)])
