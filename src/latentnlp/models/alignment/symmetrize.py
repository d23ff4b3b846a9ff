"""Symmetrisation of two directional word alignments (Och & Ney 2003; Koehn, Och & Marcu 2003).

A directional model aligns each target word to at most one source word, so it cannot
express one-to-many links in the other direction. Training both directions and
combining them helps: *intersection* is precise, *union* recalls more, and
*grow-diag-final-and* starts from the intersection and adds union links next to it.

Both inputs are ``(source_pos, target_pos)`` links of the same sentence pair: ``forward``
from the model ``p(target | source)`` and ``backward`` from ``p(source | target)`` with its
links already swapped into ``(source_pos, target_pos)`` order.

:func:`posterior_symmetrize` combines the two directions' *link posteriors* instead of
their Viterbi links (posterior decoding, Liang, Taskar & Klein 2006): a link is kept
when the combined posterior reaches a threshold chosen on held-out data.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

import numpy as np

from .ibm import AlignmentSet

__all__ = ["POSTERIOR_COMBINATIONS", "SYMMETRIZATIONS", "grow_diag_final_and", "intersection", "posterior_symmetrize", "symmetrize", "union"]

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


POSTERIOR_COMBINATIONS = ("product", "mean")
"""How :func:`posterior_symmetrize` combines the two directions' posteriors of a link."""


def posterior_symmetrize(
    forward: Sequence[np.ndarray],
    backward: Sequence[np.ndarray],
    threshold: float = 0.5,
    combine: str = "product",
) -> AlignmentSet:
    """Posterior decoding of two directional models: keep ``(i, j)`` when the combined posterior >= ``threshold``.

    With ``combine="product"`` the score of a link is ``p_fwd(a_j = i) * p_bwd(b_i = j)``,
    the agreement of the two models' posteriors as used for decoding by Liang, Taskar &
    Klein (2006, "Alignment by Agreement"; here the models are trained independently). It
    behaves like a soft intersection: a link needs both directions' support, but unlike
    the Viterbi intersection a word may keep several links whose posteriors are high. With
    ``combine="mean"`` the score is ``(p_fwd + p_bwd) / 2``, a soft union. The threshold
    trades precision for recall and is to be chosen on held-out gold alignments.

    Args:
        forward: per pair, the ``(l + 1, m)`` posteriors of the ``source -> target`` model
            (:meth:`IBMModel1.link_posteriors`; row 0 NULL).
        backward: per pair, the ``(m + 1, l)`` posteriors of the ``target -> source`` model
            as it output them (row 0 NULL, then target positions).
        threshold: in ``(0, 1]``.
        combine: ``"product"`` or ``"mean"``.

    Returns:
        The links as 0-based ``(source_pos, target_pos)`` per pair.

    Raises:
        ValueError: for an unknown ``combine``, a threshold outside ``(0, 1]``, or
            inputs whose numbers of pairs or shapes disagree.
    """
    if combine not in POSTERIOR_COMBINATIONS:
        raise ValueError(f"unknown combine {combine!r}; choose from {list(POSTERIOR_COMBINATIONS)}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    if len(forward) != len(backward):
        raise ValueError(f"forward posteriors cover {len(forward)} pairs but backward ones {len(backward)}")
    out = []
    for k, (pf, pb) in enumerate(zip(forward, backward)):
        pf, pb = np.asarray(pf, dtype=np.float64), np.asarray(pb, dtype=np.float64)
        if pf.ndim != 2 or pb.ndim != 2 or pf.shape[0] - 1 != pb.shape[1] or pf.shape[1] != pb.shape[0] - 1:
            raise ValueError(f"pair {k}: forward posteriors of shape {pf.shape} do not match backward ones of shape {pb.shape}")
        a, b = pf[1:], pb[1:].T  # (l, m) each, NULL rows dropped
        score = a * b if combine == "product" else 0.5 * (a + b)
        i, j = np.nonzero(score >= threshold)
        out.append(set(zip(i.tolist(), j.tolist())))
    return AlignmentSet.from_sets(out)
