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
