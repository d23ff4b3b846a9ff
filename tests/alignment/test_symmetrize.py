"""Symmetrisation on hand-worked examples."""

import numpy as np
import pytest

from latentnlp.models.alignment import (
    AlignmentSet,
    grow_diag_final_and,
    intersection,
    symmetrize,
    union,
)


def test_intersection_union():
    f = {(0, 0), (1, 1), (2, 1)}
    b = {(0, 0), (1, 1), (1, 2)}
    assert intersection(f, b) == {(0, 0), (1, 1)}
    assert union(f, b) == {(0, 0), (1, 1), (2, 1), (1, 2)}


def test_grow_diag_adds_diagonal_neighbours_of_unaligned_words():
    # Intersection {(0,0)}; (1,1) is a diagonal neighbour in the union with both words unaligned.
    f = {(0, 0), (1, 1)}
    b = {(0, 0), (1, 1), (3, 3)}
    # (3,3) is not next to any link: only FINAL-AND adds it (both words unaligned).
    assert grow_diag_final_and(f, b) == {(0, 0), (1, 1), (3, 3)}


def test_grow_diag_needs_one_unaligned_word():
    # (0,1) neighbours (0,0) and its target word 1 is unaligned: added in GROW-DIAG.
    # (1,0) neighbours (0,0); after (0,1) its source word 1 is still unaligned: added.
    # (1,1) then has both words aligned: not added by GROW-DIAG, and FINAL-AND needs both unaligned.
    f = {(0, 0), (0, 1), (1, 1)}
    b = {(0, 0), (1, 0)}
    assert grow_diag_final_and(f, b) == {(0, 0), (0, 1), (1, 0)}


def test_final_and_only_when_both_unaligned():
    # Intersection empty: nothing to grow from; FINAL-AND adds forward links in row-major
    # order while both words are free: (0,1), then (1,1)? target 1 taken -> no; then backward
    # (2,2) free -> yes; (0,2): source 0 taken -> no.
    f = {(0, 1), (1, 1)}
    b = {(2, 2), (0, 2)}
    assert grow_diag_final_and(f, b) == {(0, 1), (2, 2)}


def test_symmetrize_corpus_swaps_backward_links():
    fwd = AlignmentSet(np.array([[0, 0], [1, 1]], np.int32), np.array([0, 2, 2]))
    bwd = AlignmentSet(np.array([[0, 0], [1, 1], [0, 0]], np.int32), np.array([0, 2, 3]))  # (target, source)
    out = symmetrize(fwd, bwd, "union")
    assert out.to_sets() == [{(0, 0), (1, 1)}, {(0, 0)}]
    assert symmetrize(fwd, bwd, "intersection").to_sets() == [{(0, 0), (1, 1)}, set()]
    with pytest.raises(ValueError, match="unknown symmetrization 'x'"):
        symmetrize(fwd, bwd, "x")


def test_posterior_symmetrize_product_and_mean():
    from latentnlp.models.alignment import posterior_symmetrize

    # one pair, l = 2 source and m = 2 target words; forward (l + 1, m), backward (m + 1, l), row 0 NULL
    fwd = np.array([[0.1, 0.0], [0.9, 0.3], [0.0, 0.7]])
    bwd = np.array([[0.0, 0.2], [0.8, 0.0], [0.2, 0.8]])  # row 1: target word 0 -> source 0 with 0.8
    # scores (source i, target j): product [[0.72, 0.06], [0.0, 0.56]]; mean [[0.85, 0.25], [0.0, 0.75]]
    assert posterior_symmetrize([fwd], [bwd], 0.5).to_sets() == [{(0, 0), (1, 1)}]
    assert posterior_symmetrize([fwd], [bwd], 0.1).to_sets() == [{(0, 0), (1, 1)}]
    assert posterior_symmetrize([fwd], [bwd], 0.05).to_sets() == [{(0, 0), (0, 1), (1, 1)}]
    assert posterior_symmetrize([fwd], [bwd], 0.6).to_sets() == [{(0, 0)}]
    assert posterior_symmetrize([fwd], [bwd], 0.2, combine="mean").to_sets() == [{(0, 0), (0, 1), (1, 1)}]
    with pytest.raises(ValueError, match="unknown combine"):
        posterior_symmetrize([fwd], [bwd], 0.5, combine="max")
    with pytest.raises(ValueError, match="threshold must lie in"):
        posterior_symmetrize([fwd], [bwd], 0.0)
    with pytest.raises(ValueError, match="do not match"):
        posterior_symmetrize([fwd], [bwd.T], 0.5)
