import numpy as np
import pytest
import torch
from sklearn.metrics import v_measure_score

from latentnlp.evaluation.tagging import (
    accuracy,
    contingency,
    many_to_one_accuracy,
    one_to_one_accuracy,
    v_measure,
)


def test_accuracy_by_hand():
    assert accuracy([1, 2, 3], [1, 0, 3]) == pytest.approx(2 / 3)
    assert accuracy(torch.tensor([4, 4]), np.array([4, 4])) == 1.0


def test_many_to_one_and_one_to_one_by_hand():
    # cluster 0 -> gold 0 three times; cluster 1 -> gold 0 twice, gold 1 once.
    pred, gold = [0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 1]
    assert many_to_one_accuracy(pred, gold) == pytest.approx(5 / 6)  # both clusters map to tag 0
    assert one_to_one_accuracy(pred, gold) == pytest.approx(4 / 6)  # 0 -> 0 (3), 1 -> 1 (1)


def test_more_clusters_than_tags_and_arbitrary_label_values():
    pred, gold = [10, 11, 12, 12], [-3, -3, 7, 7]
    assert many_to_one_accuracy(pred, gold) == 1.0
    assert one_to_one_accuracy(pred, gold) == pytest.approx(3 / 4)  # 12 -> 7 (2), one of 10/11 -> -3 (1)
    table, pred_labels, gold_labels = contingency(pred, gold)
    assert table.tolist() == [[1, 0], [1, 0], [0, 2]]
    assert pred_labels.tolist() == [10, 11, 12] and gold_labels.tolist() == [-3, 7]


def test_renamed_perfect_clustering_scores_one():
    gold = np.array([0, 1, 2, 1, 0, 2, 2])
    pred = (gold + 1) % 3 + 5
    assert many_to_one_accuracy(pred, gold) == 1.0
    assert one_to_one_accuracy(pred, gold) == 1.0
    assert v_measure(pred, gold) == pytest.approx(1.0)
    assert accuracy(pred, gold) == 0.0


def test_v_measure_by_hand_and_against_sklearn():
    # one cluster over two balanced classes: homogeneity 0, completeness 1 -> V = 0
    assert v_measure([0, 0, 0, 0], [0, 0, 1, 1]) == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    pred, gold = rng.integers(0, 5, 200), rng.integers(0, 4, 200)
    assert v_measure(pred, gold) == pytest.approx(v_measure_score(gold, pred))
    assert v_measure(pred, gold, beta=2.0) == pytest.approx(v_measure_score(gold, pred, beta=2.0))
    assert one_to_one_accuracy(pred, gold) <= many_to_one_accuracy(pred, gold)


@pytest.mark.parametrize("fn", [accuracy, many_to_one_accuracy, one_to_one_accuracy, v_measure])
def test_errors(fn):
    with pytest.raises(ValueError, match="got 3 and 2"):
        fn([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match="integer"):
        fn([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match=r"shape \(1, 2\)"):
        fn([[0, 1]], [[0, 1]])
