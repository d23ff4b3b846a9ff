"""Scaled forward-backward for hidden Markov models in probability space (Rabiner 1989, Sec. V-A).

The generic core (:mod:`.linear_chain`) works in log space on ``(B, N-1, C, C)``
edge potentials and differentiates ``log Z`` for the marginals; that is what
every linear-chain model shares, but for Baum-Welch on an HMM it spends
``O(C^2)`` log-sum-exps per token. This module is the specialised E-step of an
HMM: probabilities instead of logs, one ``(k, C) x (C, C)`` matmul per time
step, emissions looked up by ``gather``, and Rabiner's scaling to keep the
numbers in range.

Recursions (``pi`` initial, ``A`` transition, ``b_j(v)`` emission; one sentence of length ``L``)::

    alpha_hat_0 = pi * b(x_0) / c_0,                    c_0 = sum(pi * b(x_0))
    alpha_hat_t = (alpha_hat_{t-1} A) * b(x_t) / c_t,   c_t = sum((alpha_hat_{t-1} A) * b(x_t))
    beta_hat_{L-1} = 1
    beta_hat_t = A (b(x_{t+1}) * beta_hat_{t+1}) / c_{t+1}
    gamma_t = alpha_hat_t * beta_hat_t                  (sums to 1 over states)
    xi_t(i, j) = alpha_hat_t(i) A_ij b_j(x_{t+1}) beta_hat_{t+1}(j) / c_{t+1}
    log p(x) = sum_t log c_t

Batching: sentences are sorted by decreasing length and *packed* time-major
(``torch.nn.utils.rnn.pack_sequence``), so at step ``t`` the ``k_t`` sentences
still running are a prefix of those running at ``t - 1``: no padding is
computed at all, and the number of sequential steps is the longest length.
The transition counts are summed over all steps in one ``(C, T) x (T, C)``
matmul after the backward pass. Cost ``O(T C^2)`` time, ``O(T C)`` memory for
``T`` tokens.

A sentence with ``p(x) = 0`` (some ``c_t = 0``) cannot be scaled; the caller
must handle it (:func:`scaled_expected_counts` reports it, and
:func:`latentnlp.models.sequence.hmm.expected_counts` then falls back to the
log-space core, which gives such sentences ``-inf`` and no counts).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import PackedSequence, pack_sequence, pad_packed_sequence

__all__ = [
    "PackedSentences",
    "pack_sentences",
    "unpack_rows",
    "scaled_expected_counts",
    "scaled_posteriors",
    "scaled_forward_backward",
]


@dataclass(frozen=True)
class PackedSentences:
    """Sentences packed time-major by decreasing length (computed once per corpus, reused every EM iteration).

    Attributes:
        data: ``(T,)`` word ids, time-major: all first words, then all second words, ...
        batch_sizes: ``(N,)`` python list, ``k_t`` = sentences with more than ``t`` words (non-increasing).
        offsets: ``(N + 1,)`` python list, step ``t`` occupies ``data[offsets[t]:offsets[t+1]]``.
        prev: ``(T - k_0,)`` LongTensor, for each packed row at ``t >= 1`` the row of the same sentence at ``t - 1``.
        n_sentences: ``D``.
        sorted_indices: ``(D,)`` LongTensor, the sentences in packing order (longest first);
            ``unsorted_indices`` its inverse (as in :class:`torch.nn.utils.rnn.PackedSequence`).
    """

    data: torch.Tensor
    batch_sizes: list[int]
    offsets: list[int]
    prev: torch.Tensor
    n_sentences: int
    sorted_indices: torch.Tensor
    unsorted_indices: torch.Tensor


def pack_sentences(sentences: list[torch.Tensor]) -> PackedSentences:
    """Pack ``D`` non-empty 1-D LongTensors (already validated) for :func:`scaled_expected_counts`."""
    packed = pack_sequence(sentences, enforce_sorted=False)
    batch_sizes = packed.batch_sizes.tolist()
    offsets = [0]
    for k in batch_sizes:
        offsets.append(offsets[-1] + k)
    device = packed.data.device
    prev = torch.cat(
        [torch.arange(offsets[t - 1], offsets[t - 1] + batch_sizes[t], device=device) for t in range(1, len(batch_sizes))]
    ) if len(batch_sizes) > 1 else torch.zeros(0, dtype=torch.long, device=device)
    return PackedSentences(
        packed.data, batch_sizes, offsets, prev, len(sentences), packed.sorted_indices, packed.unsorted_indices
    )


def unpack_rows(packed: PackedSentences, rows: torch.Tensor) -> list[torch.Tensor]:
    """Split packed per-token rows ``(T, ...)`` back into ``D`` tensors ``(L_d, ...)``, in the original order."""
    seq = PackedSequence(rows, packed.data.new_tensor(packed.batch_sizes).cpu(), packed.sorted_indices,
                         packed.unsorted_indices)
    padded, lengths = pad_packed_sequence(seq, batch_first=True)  # (D, N, ...), (D,)
    return [padded[d, : lengths[d]] for d in range(packed.n_sentences)]


def _forward_backward(init, transition, emission, packed):
    """``(alpha_hat, beta_hat, g, scale)`` packed ``(T, C)``, ``(T, C)``, ``(T, C)``, ``(T,)``, or ``None`` if some ``c_t == 0``."""
    emit = emission.t()[packed.data]  # (T, C): emit[r, j] = b_j(x_r), a gather by word id
    return _forward_backward_rows(init, transition, emit, packed)


def _forward_backward_rows(init, transition, emit, packed):
    """The scaled recursions on a packed per-row factor table ``emit (T, C)`` (see :func:`_forward_backward`)."""
    T, C = emit.shape
    dtype, device = emit.dtype, emit.device
    bs, off = packed.batch_sizes, packed.offsets
    alpha = torch.empty(T, C, dtype=dtype, device=device)  # alpha_hat, packed
    scale = torch.empty(T, dtype=dtype, device=device)  # c_t, packed
    # forward
    a = init.unsqueeze(0) * emit[: bs[0]]  # (k_0, C)
    c = a.sum(-1)
    scale[: bs[0]] = c
    alpha[: bs[0]] = a / c.unsqueeze(-1)
    for t in range(1, len(bs)):
        k, lo, plo = bs[t], off[t], off[t - 1]
        a = torch.mm(alpha[plo : plo + k], transition) * emit[lo : lo + k]  # (k, C) x (C, C) -> (k, C)
        c = a.sum(-1)
        scale[lo : lo + k] = c
        alpha[lo : lo + k] = a / c.unsqueeze(-1)
    if not bool((scale > 0).all()):
        return None
    # backward: g_r = b(x_r) * beta_hat_r / c_r for rows at t >= 1 (what xi and beta_{t-1} need)
    beta = torch.empty(T, C, dtype=dtype, device=device)
    g = torch.empty(T, C, dtype=dtype, device=device)
    last = len(bs) - 1
    beta[off[last] : off[last + 1]] = 1.0
    transition_t = transition.t()
    for t in range(last, 0, -1):
        k, lo = bs[t], off[t]
        g_t = emit[lo : lo + k] * beta[lo : lo + k] / scale[lo : lo + k].unsqueeze(-1)  # (k, C)
        g[lo : lo + k] = g_t
        plo, pk = off[t - 1], bs[t - 1]
        beta[plo : plo + k] = torch.mm(g_t, transition_t)  # sum_j A_ij g_j -> (k, C)
        beta[plo + k : plo + pk] = 1.0  # sentences whose last word is at t - 1
    return alpha, beta, g, scale


def scaled_expected_counts(
    init: torch.Tensor, transition: torch.Tensor, emission: torch.Tensor, packed: PackedSentences
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Baum-Welch E-step in probability space with Rabiner scaling, over packed sentences.

    Args:
        init: ``(C,)`` initial probabilities ``pi``.
        transition: ``(C, C)`` transition probabilities ``A`` (rows: previous state).
        emission: ``(C, V)`` emission probabilities ``b``.
        packed: the sentences, from :func:`pack_sentences` (word ids in ``[0, V)``, on the same device).

    Returns:
        ``(init_counts (C,), transition_counts (C, C), emission_counts (C, V),
        log_likelihood (0-dim, nats), ok)``, the same sums as the log-space E-step.
        ``ok`` is ``False`` when some sentence has probability 0 (a scale
        factor ``c_t == 0``); the counts are then meaningless and must be recomputed.

    Raises:
        ValueError: if the parameter shapes disagree (shapes named).

    Source: Rabiner (1989), Eq. 91-95 (scaling) and Eq. 37-40 (re-estimation);
    Baum et al. (1970).
    """
    if emission.dim() != 2 or init.shape != emission.shape[:1] or transition.shape != (emission.shape[0],) * 2:
        raise ValueError(
            f"expected init (C,), transition (C, C), emission (C, V); got {tuple(init.shape)}, "
            f"{tuple(transition.shape)}, {tuple(emission.shape)}"
        )
    C, V = emission.shape
    T = packed.data.numel()
    dtype, device = emission.dtype, emission.device
    bs = packed.batch_sizes
    result = _forward_backward(init, transition, emission, packed)
    if result is None:
        zero = torch.zeros((), dtype=dtype, device=device)
        return zero, zero, zero, zero, False
    alpha, beta, g, scale = result
    gamma = alpha * beta  # (T, C)
    init_counts = gamma[: bs[0]].sum(0)
    if T > bs[0]:
        # sum over every (t, t+1) pair of alpha_hat_t(i) g_{t+1}(j), times A_ij
        transition_counts = transition * torch.mm(alpha[packed.prev].t(), g[bs[0] :])  # (C, T') x (T', C)
    else:
        transition_counts = torch.zeros(C, C, dtype=dtype, device=device)
    emission_t = torch.zeros(V, C, dtype=dtype, device=device)
    emission_t.index_add_(0, packed.data, gamma)
    return init_counts, transition_counts, emission_t.t().contiguous(), scale.log().sum(), True


def scaled_posteriors(
    init: torch.Tensor, transition: torch.Tensor, emission: torch.Tensor, packed: PackedSentences
) -> torch.Tensor | None:
    """Node posteriors ``gamma_t(i) = p(z_t = i | x)``, packed time-major.

    Args: as :func:`scaled_expected_counts`.

    Returns:
        ``(T, C)`` in the packed order of ``packed.data`` (row ``offsets[t] + r``
        is position ``t`` of the ``r``-th longest sentence), or ``None`` when some
        sentence has probability 0. ``torch.nn.utils.rnn.PackedSequence`` with
        the same ``batch_sizes`` and ``pad_packed_sequence`` unpack it.

    Source: Rabiner (1989), Eq. 27 with the scaled variables of Sec. V-A.
    """
    result = _forward_backward(init, transition, emission, packed)
    if result is None:
        return None
    alpha, beta, _, _ = result
    return alpha * beta


def scaled_forward_backward(
    init: torch.Tensor, transition: torch.Tensor, factors: torch.Tensor, packed: PackedSentences
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Scaled forward-backward for any chain with non-negative factors given per token (a linear-chain CRF).

    The same recursions as the HMM E-step with the emission lookup ``b(x_t)``
    replaced by a per-token row ``factors[r]``: the weight of a path is
    ``init[z_0] prod_t factors[t, z_t] prod_t transition[z_{t-1}, z_t]`` and
    ``Z = sum_z weight(z)``. For a CRF with log potentials ``u`` and
    transition scores ``A``, pass ``exp(u - max_c u)`` and ``exp(A - max A)``
    and add the subtracted constants back to ``log Z``.

    Args:
        init: ``(C,)`` non-negative weights of the first state.
        transition: ``(C, C)`` non-negative weights (rows: previous state).
        factors: ``(T, C)`` non-negative per-token weights, *in packed order*
            (row ``packed.offsets[t] + r`` is position ``t`` of the ``r``-th longest
            sentence; build ``packed`` from ``arange`` token indices and gather the rows
            with ``packed.data``).
        packed: the sentences, from :func:`pack_sentences`.

    Returns:
        ``(gamma (T, C), transition_counts (C, C), log_scale (T,))`` — node
        marginals in packed order, expected transition counts summed over the
        corpus, and ``log c_t`` per packed row (a sentence's ``log Z`` is the
        sum of its rows' ``log c_t``) — or ``None`` when some sentence has
        weight 0 (a scale factor underflowed), in which case the caller must
        use the log-space core.

    Raises:
        ValueError: if the shapes disagree (named).

    Source: Rabiner (1989), Sec. V-A; Lafferty, McCallum & Pereira (2001), Sec. 4
    (the CRF's forward-backward is the HMM's with unnormalised factors).
    """
    if factors.dim() != 2 or init.shape != factors.shape[1:] or transition.shape != (factors.shape[1],) * 2:
        raise ValueError(
            f"expected init (C,), transition (C, C), factors (T, C); got {tuple(init.shape)}, "
            f"{tuple(transition.shape)}, {tuple(factors.shape)}"
        )
    if factors.shape[0] != packed.data.numel():
        raise ValueError(f"factors has {factors.shape[0]} rows but the packed sentences have {packed.data.numel()} tokens")
    result = _forward_backward_rows(init, transition, factors, packed)
    if result is None:
        return None
    alpha, beta, g, scale = result
    C = factors.shape[1]
    bs0 = packed.batch_sizes[0]
    if factors.shape[0] > bs0:
        transition_counts = transition * torch.mm(alpha[packed.prev].t(), g[bs0:])
    else:
        transition_counts = torch.zeros(C, C, dtype=factors.dtype, device=factors.device)
    return alpha * beta, transition_counts, scale.log()
