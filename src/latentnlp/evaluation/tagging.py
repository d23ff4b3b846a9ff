"""Accuracy of taggers, supervised and unsupervised.

A supervised tagger predicts gold tag ids, so plain :func:`accuracy` applies. An
unsupervised one (an HMM trained by EM) predicts *cluster* ids with no fixed
correspondence to the gold tags, and is scored after a mapping (Christodoulopoulos,
Goldwater & Steedman 2010, "Two decades of unsupervised POS induction: how far
have we come?"):

* :func:`many_to_one_accuracy` — each cluster is mapped to the gold tag it
  co-occurs with most (several clusters may share a tag; rises with the number
  of clusters);
* :func:`one_to_one_accuracy` — clusters and tags are matched one to one so as
  to maximise the number of correct tokens (Hungarian algorithm; Kuhn 1955);
  unmatched clusters count as wrong;
* :func:`v_measure` — the harmonic mean of homogeneity and completeness of the
  clustering (Rosenberg & Hirschberg 2007), delegated to scikit-learn.

Inputs are flat arrays of integer labels (one per token, sentences
concatenated), as numpy arrays, torch tensors or lists; label values need not be
contiguous. All scores are fractions in ``[0, 1]``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import v_measure_score

__all__ = ["accuracy", "token_accuracy", "many_to_one_accuracy", "one_to_one_accuracy", "v_measure", "contingency"]


def _as_labels(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat (T,) array of labels, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check(pred: Any, gold: Any) -> tuple[np.ndarray, np.ndarray]:
    pred, gold = _as_labels(pred, "pred"), _as_labels(gold, "gold")
    if pred.shape != gold.shape:
        raise ValueError(f"pred and gold must have the same length, got {pred.shape[0]} and {gold.shape[0]}")
    if pred.size == 0:
        raise ValueError("accuracy of zero tokens is undefined (pred and gold are empty)")
    return pred, gold


def contingency(pred: Any, gold: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Co-occurrence counts of predicted and gold labels.

    Args:
        pred: ``(T,)`` integer predicted labels (cluster ids).
        gold: ``(T,)`` integer gold labels.

    Returns:
        ``(table, pred_labels, gold_labels)``: ``table[k, t]`` is the number of
        tokens with ``pred == pred_labels[k]`` and ``gold == gold_labels[t]``
        (shape ``(K, T_gold)``, int64); the label arrays are sorted and unique.

    Raises:
        ValueError: if the inputs are not flat integer arrays, differ in length (both lengths
        are named) or are empty.
    """
    pred, gold = _check(pred, gold)
    pred_labels, p = np.unique(pred, return_inverse=True)
    gold_labels, g = np.unique(gold, return_inverse=True)
    table = np.zeros((pred_labels.size, gold_labels.size), dtype=np.int64)
    np.add.at(table, (p, g), 1)
    return table, pred_labels, gold_labels


def accuracy(pred: Any, gold: Any) -> float:
    """Fraction of tokens whose predicted tag equals the gold tag.

    Args:
        pred: ``(T,)`` integer predicted tags.
        gold: ``(T,)`` integer gold tags.

    Returns:
        ``mean(pred == gold)`` in ``[0, 1]``.

    Raises:
        ValueError: as :func:`contingency`.
    """
    pred, gold = _check(pred, gold)
    return float(np.mean(pred == gold))


def token_accuracy(pred: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> float:
    """Share of tokens whose predicted tag equals the gold tag, over sentences of tag strings.

    Raises:
        ValueError: if the sentences or their lengths differ, or there are no tokens.
    """
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predicted sentences for {len(gold)} gold ones")
    right = total = 0
    for i, (p, g) in enumerate(zip(pred, gold)):
        if len(p) != len(g):
            raise ValueError(f"sentence {i}: {len(p)} predicted tags for {len(g)} gold ones")
        right += sum(a == b for a, b in zip(p, g))
        total += len(g)
    if total == 0:
        raise ValueError("no tokens to score")
    return right / total


def many_to_one_accuracy(pred: Any, gold: Any) -> float:
    """Accuracy after mapping each cluster to its most frequent gold tag.

    Args and errors: as :func:`accuracy` (``pred`` holds cluster ids).

    Returns:
        ``sum_k max_t table[k, t] / T`` in ``[0, 1]``.

    Source: Johnson (2007); Christodoulopoulos et al. (2010), "M-1".
    """
    table, _, _ = contingency(pred, gold)
    return float(table.max(axis=1).sum() / table.sum())


def one_to_one_accuracy(pred: Any, gold: Any) -> float:
    """Accuracy under the best one-to-one mapping of clusters to gold tags.

    The mapping maximises the number of correctly tagged tokens (Hungarian
    algorithm, ``scipy.optimize.linear_sum_assignment``); with more clusters
    than tags, the unmatched clusters' tokens count as errors.

    Args and errors: as :func:`accuracy` (``pred`` holds cluster ids).

    Returns:
        A fraction in ``[0, 1]``, never above :func:`many_to_one_accuracy`.

    Source: Haghighi & Klein (2006); Christodoulopoulos et al. (2010), "1-1".
    """
    table, _, _ = contingency(pred, gold)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def v_measure(pred: Any, gold: Any, beta: float = 1.0) -> float:
    """V-measure of the clustering ``pred`` against the classes ``gold``.

    Delegates to ``sklearn.metrics.v_measure_score(gold, pred, beta=beta)``.

    Args:
        pred: ``(T,)`` integer cluster ids.
        gold: ``(T,)`` integer gold tags.
        beta: weight of completeness relative to homogeneity (1: harmonic mean).

    Returns:
        A score in ``[0, 1]`` (1: clusters and tags correspond exactly, up to renaming).

    Raises:
        ValueError: as :func:`accuracy`.

    Source: Rosenberg & Hirschberg (2007).
    """
    pred, gold = _check(pred, gold)
    return float(v_measure_score(gold, pred, beta=beta))
