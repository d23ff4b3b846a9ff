"""Symmetrisation of two directional word alignments (Och & Ney 2003; Koehn, Och & Marcu 2003).

A directional model aligns each target word to at most one source word, so it cannot
express one-to-many links in the other direction. Training both directions and
combining them helps: *intersection* is precise, *union* recalls more, and
*grow-diag-final-and* starts from the intersection and adds union links next to it.

Both inputs are ``(source_pos, target_pos)`` links of the same sentence pair: ``forward``
from the model ``p(target | source)`` and ``backward`` from ``p(source | target)`` with its
links already swapped into ``(source_pos, target_pos)`` order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from .ibm import AlignmentSet

__all__ = ["SYMMETRIZATIONS", "grow_diag_final_and", "intersection", "symmetrize", "union"]

Links = set[tuple[int, int]]

_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def intersection(forward: Iterable[tuple[int, int]], backward: Iterable[tuple[int, int]]) -> Links:
    """Links proposed by both directions."""
    return set(forward) & set(backward)


def union(forward: Iterable[tuple[int, int]], backward: Iterable[tuple[int, int]]) -> Links:
    """Links proposed by either direction."""
    return set(forward) | set(backward)


def grow_diag_final_and(forward: Iterable[tuple[int, int]], backward: Iterable[tuple[int, int]]) -> Links:
    """Koehn et al. (2003)'s grow-diag-final-and, as in Moses' ``symal``.

    GROW-DIAG: starting from the intersection, and until nothing changes, visit the
    current links in row-major ``(source, target)`` order (links added during a pass
    are visited in the same pass when they come later in that order, as in the
    nested loops of the reference pseudo-code); for each of the 8 neighbours of a
    link that is in the union, add it if its source or its target word is still
    unaligned. FINAL-AND: then, for ``forward`` and then ``backward``, add (in
    row-major order) each link whose source *and* target words are both unaligned.

    Returns:
        The symmetrised links.
    """
    fwd, bwd = set(forward), set(backward)
    both = fwd | bwd
    alignment = fwd & bwd
    src_aligned = {i for i, _ in alignment}
    tgt_aligned = {j for _, j in alignment}
    changed = True
    while changed:
        changed = False
        heap = sorted(alignment)
        while heap:
            i, j = heapq.heappop(heap)
            for di, dj in _NEIGHBOURS:
                point = (i + di, j + dj)
                if point in both and point not in alignment and (point[0] not in src_aligned or point[1] not in tgt_aligned):
                    alignment.add(point)
                    src_aligned.add(point[0])
                    tgt_aligned.add(point[1])
                    changed = True
                    if point > (i, j):
                        heapq.heappush(heap, point)
    for links in (fwd, bwd):
        for i, j in sorted(links):
            if i not in src_aligned and j not in tgt_aligned:
                alignment.add((i, j))
                src_aligned.add(i)
                tgt_aligned.add(j)
    return alignment


SYMMETRIZATIONS = {
    "intersection": intersection,
    "union": union,
    "grow-diag-final-and": grow_diag_final_and,
}
"""Name -> function(forward, backward) -> links."""


def symmetrize(forward: AlignmentSet, backward: AlignmentSet, method: str = "grow-diag-final-and") -> AlignmentSet:
    """Symmetrise two corpora of alignments pair by pair.

    Args:
        forward: links ``(source_pos, target_pos)`` of the ``source -> target`` model.
        backward: links of the ``target -> source`` model *as it output them*, i.e.
            ``(target_pos, source_pos)``; they are swapped here.
        method: a key of :data:`SYMMETRIZATIONS`.

    Raises:
        ValueError: for an unknown method or corpora of different lengths.
    """
    if method not in SYMMETRIZATIONS:
        raise ValueError(f"unknown symmetrization {method!r}; choose from {sorted(SYMMETRIZATIONS)}")
    if len(forward) != len(backward):
        raise ValueError(f"forward alignments cover {len(forward)} pairs but backward ones {len(backward)}")
    fn = SYMMETRIZATIONS[method]
    out = []
    for k in range(len(forward)):
        f = map(tuple, forward[k].tolist())
        b = ((j, i) for i, j in backward[k].tolist())
        out.append(fn(f, b))
    return AlignmentSet.from_sets(out)
