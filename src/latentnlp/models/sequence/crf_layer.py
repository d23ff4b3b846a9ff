"""A linear-chain CRF output layer for neural taggers (Lafferty et al. 2001; Lample et al. 2016).

A network gives every position ``n`` of a sentence of ``L`` words a score
``unary[n, j]`` for each of the ``C`` tags; the layer adds learned transition
scores and defines

    s(z) = start[z_0] + sum_{n<L} unary[n, z_n] + sum_{n<L-1} transition[z_n, z_{n+1}] + end[z_{L-1}]
    p(z | x) = exp(s(z)) / Z(x),      Z(x) = sum_z exp(s(z))

(Lample et al. 2016, Eq. 1-2, whose ``A`` holds our ``start``/``end`` as the
transitions from/to their extra start and end tags; Huang, Xu & Yu 2015;
Ma & Hovy 2016, Sec. 2.3). All scores are in nats.

Every dynamic program here is the toolkit's one linear-chain implementation,
:mod:`latentnlp.structured.linear_chain`: the layer builds
:class:`~latentnlp.structured.linear_chain.ChainPotentials` with
:func:`~latentnlp.structured.linear_chain.crf_potentials` and calls
:func:`~latentnlp.structured.linear_chain.log_partition` (forward algorithm)
and :func:`~latentnlp.structured.linear_chain.node_marginals` (forward-backward
as the gradient of ``log Z``). Decoding has two exact implementations of the
same max-semiring recursion: ``"autograd"`` is
:func:`~latentnlp.structured.linear_chain.viterbi` (path read from the gradient
of the best score) and ``"backpointer"`` (the default) is
:func:`backpointer_viterbi` below, the textbook recursion with explicit
backpointers (Rabiner 1989, Eq. 30-35), which needs no backward pass and is
about 2x faster on CPU (``benchmarks/crf_throughput.py``).

Shapes: ``B`` sentences padded to ``N`` positions, ``C`` tags; ``lengths (B,)``
with ``1 <= lengths[b] <= N``; values of ``unary`` and ``tags`` at padding
positions are ignored.
"""

from __future__ import annotations

import torch
from torch import nn

from ...structured.linear_chain import (
    _check_lengths,
    ChainPotentials,
    crf_potentials,
    log_partition,
    node_marginals,
    viterbi,
)

__all__ = ["CRFLayer", "backpointer_viterbi", "DECODERS"]

DECODERS = ("backpointer", "autograd")


def backpointer_viterbi(potentials: ChainPotentials, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Best path of each chain by the max-semiring forward recursion with explicit backpointers.

    ``delta_0 = start``; ``delta_{n+1}[j] = max_i delta_n[i] + edge[n, i, j]``
    with ``psi_{n+1}[j]`` its argmax. The best final state is
    ``argmax_j delta_{L-1}[j]`` and the path is read backwards through ``psi``.
    As in packed RNN sequences, the chains are sorted by length once and step
    ``n`` runs only over the chains that still have edge ``n`` (a prefix of the
    sorted batch), so padding costs nothing and is never read. Same conventions,
    result and cost (``O(sum_b L_b C^2)``) as
    :func:`latentnlp.structured.linear_chain.viterbi`, but without an autograd
    graph. Ties go to the lowest state index (``torch.max``), so on exact ties
    the path may differ from ``viterbi``'s (the score does not).

    Args:
        potentials: :class:`ChainPotentials` (``start (B, C)``, ``edge (B, N-1, C, C)``), nats.
            Edge values at padding (even NaN) are ignored.
        lengths: ``(B,)`` integer tensor, ``1 <= lengths[b] <= N`` (read on the host once).

    Returns:
        ``(paths, scores)``: ``paths (B, N)`` LongTensor with ``-1`` at padding;
        ``scores (B,)`` the best path's score ``s(z)`` in nats (detached; ``-inf``
        when every path is forbidden, the path then being arbitrary).

    Raises:
        ValueError: as :func:`latentnlp.structured.linear_chain.log_partition`.

    Source: Viterbi (1967); Rabiner (1989), Sec. III-B, Eq. 30-35.
    """
    if not isinstance(potentials, ChainPotentials):
        raise ValueError(f"potentials must be a ChainPotentials, got {type(potentials).__name__}")
    B, N = potentials.batch_size, potentials.max_length
    lengths = _check_lengths(lengths, B, N, potentials.start.device)
    with torch.no_grad():
        start, edge = potentials.start.detach(), potentials.edge.detach()
        order = torch.argsort(lengths, descending=True, stable=True)  # (B,): longest first
        sorted_lengths = lengths[order]
        n_edges = (sorted_lengths - 1).tolist()  # non-increasing; chain b has edges 0 .. L_b - 2
        delta = start.index_select(0, order)  # (B, C), sorted order
        pointers = []  # pointers[n]: (k_n, C) argmaxes of the k_n chains that have edge n
        k = B
        for n in range(N - 1):
            while k > 0 and n_edges[k - 1] <= n:
                k -= 1
            if k == 0:
                break
            edge_n = edge[:, n].index_select(0, order[:k])  # (k, C_prev, C)
            # (k, C_prev, 1) + (k, C_prev, C) -> max over C_prev -> (k, C)
            best, arg = (delta[:k].unsqueeze(-1) + edge_n).max(dim=1)
            delta = torch.cat([best, delta[k:]])  # finished chains keep delta_{L-1}
            pointers.append(arg)
        scores, state = delta.max(dim=-1)  # (B,), z_{L-1} of each sorted chain
        paths = torch.empty((B, N), dtype=torch.long, device=delta.device)
        for n in range(N - 1, -1, -1):
            if n < len(pointers):
                # z_n = psi_{n+1}[z_{n+1}] for the chains with edge n; the others keep z_{L-1}
                k = pointers[n].shape[0]
                previous = pointers[n].gather(1, state[:k].unsqueeze(1)).squeeze(1)
                state = torch.cat([previous, state[k:]])
            paths[:, n] = state
        paths = paths.masked_fill(torch.arange(N, device=paths.device).unsqueeze(0) >= sorted_lengths.unsqueeze(1), -1)
        unsorted = torch.empty_like(paths)
        unsorted[order] = paths
        unsorted_scores = torch.empty_like(scores)
        unsorted_scores[order] = scores
    return unsorted, unsorted_scores
    return paths, scores


class CRFLayer(nn.Module):
    """Linear-chain CRF on top of per-position tag scores.

    Args:
        num_tags: ``C >= 1``.
        init_scale: the parameters start uniform in ``[-init_scale, init_scale]``
            (pytorch-crf's initialisation; 0 starts them at 0).
        decoder: default exact decoder of :meth:`decode`, one of :data:`DECODERS`.

    Parameters:
        transition: ``(C, C)``, ``transition[i, j]`` = score of tag ``j`` right after
            tag ``i`` (rows = previous tag), nats.
        start: ``(C,)`` score of the first tag; end: ``(C,)`` score of the last tag.

    Raises:
        ValueError: on a non-positive ``num_tags``, a negative ``init_scale`` or an unknown decoder.
    """

    def __init__(self, num_tags: int, init_scale: float = 0.1, decoder: str = "backpointer") -> None:
        super().__init__()
        if not isinstance(num_tags, int) or num_tags < 1:
            raise ValueError(f"num_tags must be a positive integer, got {num_tags!r}")
        if not init_scale >= 0:
            raise ValueError(f"init_scale must be >= 0, got {init_scale!r}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        self.num_tags = num_tags
        self.decoder = decoder
        self.transition = nn.Parameter(torch.empty(num_tags, num_tags))
        self.start = nn.Parameter(torch.empty(num_tags))
        self.end = nn.Parameter(torch.empty(num_tags))
        for p in (self.transition, self.start, self.end):
            nn.init.uniform_(p, -init_scale, init_scale)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, decoder={self.decoder!r}"

    # ------------------------------------------------------------ validation
    def _check(self, unary: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        C = self.num_tags
        if not isinstance(unary, torch.Tensor) or unary.dim() != 3 or unary.shape[2] != C or unary.shape[1] < 1:
            shape = tuple(unary.shape) if isinstance(unary, torch.Tensor) else type(unary).__name__
            raise ValueError(f"unary must have shape (B, N >= 1, C={C}), got {shape}")
        if not unary.is_floating_point():
            raise ValueError(f"unary must be a floating tensor, got dtype {unary.dtype}")
        return _check_lengths(lengths, unary.shape[0], unary.shape[1], unary.device)

    def _check_tags(self, tags: torch.Tensor, unary: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, N, C = unary.shape
        if not isinstance(tags, torch.Tensor):
            tags = torch.as_tensor(tags)
        if tags.shape != (B, N):
            raise ValueError(f"tags has shape {tuple(tags.shape)}, expected ({B}, {N}) to match unary {tuple(unary.shape)}")
        if tags.is_floating_point() or tags.is_complex() or tags.dtype == torch.bool:
            raise ValueError(f"tags must be an integer tensor, got dtype {tags.dtype}")
        tags = tags.to(device=unary.device, dtype=torch.long)
        real = torch.arange(N, device=unary.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, N)
        bad = (real & ((tags < 0) | (tags >= C))).nonzero()
        if bad.numel():
            b, n = bad[0].tolist()
            raise ValueError(f"tags[{b}, {n}] = {tags[b, n].item()} is not a tag in [0, {C})")
        return torch.where(real, tags, torch.zeros_like(tags))  # padding -> 0 (ignored below)

    # ------------------------------------------------------------ the model
    def _unary_with_end(self, unary: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``unary`` with ``end`` added at each chain's last real position, ``(B, N, C)``.

        Equivalent to ``crf_potentials(..., end=end)`` (which adds ``end`` to the
        edge into the last position) but touches a ``(B, N, C)`` tensor instead
        of a second ``(B, N-1, C, C)`` one, forward and backward.
        """
        B, N, C = unary.shape
        is_last = torch.arange(N, device=unary.device).unsqueeze(0) == (lengths - 1).unsqueeze(1)  # (B, N)
        end = self.end.to(unary.dtype).view(1, 1, C).expand(B, N, C)
        return unary + torch.where(is_last.unsqueeze(-1), end, torch.zeros((), dtype=unary.dtype, device=unary.device))

    def potentials(self, unary: torch.Tensor, lengths: torch.Tensor) -> ChainPotentials:
        """The chain potentials of the CRF (:func:`~latentnlp.structured.linear_chain.crf_potentials`).

        Args:
            unary: ``(B, N, C)`` emission scores, nats.
            lengths: ``(B,)`` integer, ``1 <= lengths[b] <= N``.

        Returns:
            :class:`ChainPotentials` with ``start (B, C)`` and ``edge (B, N-1, C, C)``,
            differentiable w.r.t. ``unary`` and the layer's parameters; ``end`` is
            folded into the unary score of each chain's last position.

        Raises:
            ValueError: on a wrong shape (naming the tensor and its shape) or a length outside ``[1, N]``.
        """
        lengths = self._check(unary, lengths)
        dtype = unary.dtype
        return crf_potentials(
            self._unary_with_end(unary, lengths), self.transition.to(dtype), lengths, start=self.start.to(dtype)
        )

    def log_partition(self, unary: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``log Z(x)`` of each sentence, ``(B,)`` nats (forward algorithm); differentiable.

        Args and errors: as :meth:`potentials`.
        """
        lengths = self._check(unary, lengths)
        return log_partition(self.potentials(unary, lengths), lengths)

    def score(self, unary: torch.Tensor, tags: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``s(z)`` of the given tag sequences, ``(B,)`` nats; differentiable.

        Computed term by term from ``unary``, ``transition``, ``start`` and
        ``end`` in ``O(B N)`` (equal to
        :func:`~latentnlp.structured.linear_chain.path_score` of :meth:`potentials`).

        Args:
            unary: ``(B, N, C)`` emission scores, nats.
            tags: ``(B, N)`` integer tags in ``[0, C)``; values at padding are ignored.
            lengths: ``(B,)`` integer, ``1 <= lengths[b] <= N``.

        Raises:
            ValueError: on a wrong shape, a bad length, or a tag outside ``[0, C)`` at
                a real position (naming the row and position).
        """
        lengths = self._check(unary, lengths)
        z = self._check_tags(tags, unary, lengths)  # (B, N), 0 at padding
        B, N, _ = unary.shape
        real = torch.arange(N, device=unary.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, N)
        zero = torch.zeros((), dtype=unary.dtype, device=unary.device)
        emit = unary.gather(2, z.unsqueeze(-1)).squeeze(-1)  # (B, N)
        total = torch.where(real, emit, zero).sum(1)
        transition = self.transition.to(unary.dtype)
        if N > 1:
            pair = transition[z[:, :-1], z[:, 1:]]  # (B, N-1)
            total = total + torch.where(real[:, 1:], pair, zero).sum(1)
        last = z.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # (B,)
        return total + self.start.to(unary.dtype)[z[:, 0]] + self.end.to(unary.dtype)[last]

    def log_likelihood(self, unary: torch.Tensor, tags: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``log p(tags | x) = s(tags) - log Z(x)``, ``(B,)`` nats per sentence (<= 0); differentiable.

        Args and errors: as :meth:`score`.
        """
        return self.score(unary, tags, lengths) - self.log_partition(unary, lengths)

    def forward(self, unary: torch.Tensor, tags: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`log_likelihood`."""
        return self.log_likelihood(unary, tags, lengths)

    def decode(
        self, unary: torch.Tensor, lengths: torch.Tensor, method: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Viterbi decoding: the highest-scoring tag sequence of each sentence.

        Args:
            unary: ``(B, N, C)`` emission scores, nats.
            lengths: ``(B,)`` integer, ``1 <= lengths[b] <= N``.
            method: ``"backpointer"`` (:func:`backpointer_viterbi`) or ``"autograd"``
                (:func:`latentnlp.structured.linear_chain.viterbi`); ``None``: the
                layer's ``decoder``. Both are exact.

        Returns:
            ``(best_scores, paths)``: ``best_scores (B,)`` is ``s(z*)`` in nats
            (detached); ``paths (B, N)`` LongTensor of tags with ``-1`` at padding.

        Raises:
            ValueError: as :meth:`potentials`, or on an unknown ``method``.
        """
        method = self.decoder if method is None else method
        if method not in DECODERS:
            raise ValueError(f"method must be one of {DECODERS}, got {method!r}")
        lengths = self._check(unary, lengths)
        with torch.no_grad():
            potentials = self.potentials(unary.detach(), lengths)
            if method == "backpointer":
                paths, scores = backpointer_viterbi(potentials, lengths)
            else:
                paths, scores = viterbi(potentials, lengths)
        return scores.detach(), paths

    def marginals(self, unary: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Node marginals ``p(z_n = j | x)``, ``(B, N, C)``, detached; 0 at padding.

        The gradient of :meth:`log_partition` with respect to ``unary``
        (forward-backward as backprop; Eisner 2016). Args and errors: as :meth:`potentials`.
        """
        lengths = self._check(unary, lengths)
        return node_marginals(self.potentials(unary, lengths), lengths)
