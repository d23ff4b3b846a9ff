"""Batched linear-chain dynamic programs (forward algorithm, marginals, Viterbi, sampling).

One forward recursion, written once over a :mod:`semiring <.semirings>`, serves
every linear-chain model of the toolkit: hidden Markov models
(:func:`hmm_potentials`) and linear-chain CRFs (:func:`crf_potentials`) are only
converters from their parameters to the generic :class:`ChainPotentials`
(the design of Torch-Struct's ``LinearChain``; Rush 2020).

Potentials (all scores in nats, log space; ``-inf`` forbids a choice)
--------------------------------------------------------------------
A batch of ``B`` chains padded to ``N`` positions over ``C`` states is scored by

* ``start : (B, C)`` — ``start[b, i]`` is the score of ``z_0 = i`` (for an HMM:
  ``log pi_i + log b_i(x_0)``);
* ``edge : (B, N-1, C, C)`` — ``edge[b, n, i, j]`` is the score of the pair
  ``(z_n = i, z_{n+1} = j)`` with everything that depends on ``z_{n+1}`` folded
  in (for an HMM: ``log a_ij + log b_j(x_{n+1})``).

and chain ``b`` has ``lengths[b]`` (``1 <= L <= N``) real positions. The score
of a path ``z_0 .. z_{L-1}`` is

    s(z) = start[z_0] + sum_{n=0}^{L-2} edge[n, z_n, z_{n+1}],

and ``Z = sum_z exp(s(z))``. The separate ``start`` term is what lets a chain
of length 1 (no edges at all; ``N == 1`` gives ``edge`` of shape
``(B, 0, C, C)``) have a well defined ``Z = sum_i exp(start[i])``. Edges at or
beyond a chain's end (``n >= L - 1``) are padding: their values, even NaN, are
ignored and their marginals are exactly 0.

Algorithms (Rabiner 1989, "A tutorial on hidden Markov models", Sec. III)
-----------------------------------------------------------------------
* :func:`log_partition` — forward algorithm in the log semiring, ``(B,)``; cost
  ``O(B N C^2)`` time, ``N`` sequential steps.
* :func:`marginals`, :func:`node_marginals`, :func:`posterior` — gradients of
  ``log Z`` (Eisner 2016, "Inside-outside and forward-backward algorithms are
  just backprop"): the backward pass of autograd *is* the backward algorithm
  (written out by hand in one autograd function, for speed).
* :func:`viterbi` — the same recursion in the max semiring; the best path is
  read from the gradient of its score (one-hot edge indicators).
* :func:`kbest` — the ``k`` best paths (top-``k`` max semiring with backpointers).
* :func:`sample` — forward filtering, backward sampling (Carter & Kohn 1994;
  Frühwirth-Schnatter 1994): exact samples from ``p(z) = exp(s(z)) / Z``.
* :func:`path_score` — ``s(z)`` of given paths.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .semirings import LogSemiring, MaxSemiring, Semiring

__all__ = [
    "ChainPotentials",
    "ChainPosterior",
    "log_partition",
    "marginals",
    "node_marginals",
    "posterior",
    "viterbi",
    "kbest",
    "sample",
    "path_score",
    "hmm_potentials",
    "crf_potentials",
]


@dataclass(frozen=True)
class ChainPotentials:
    """Log potentials of a batch of linear chains (see the module docstring for the convention).

    Attributes:
        start: ``(B, C)`` float, score of the first state, nats.
        edge: ``(B, N-1, C, C)`` float, ``edge[b, n, i, j]`` = score of ``(z_n = i, z_{n+1} = j)``, nats.

    Raises:
        ValueError: if the shapes or dtypes disagree (the message shows both shapes).
    """

    start: torch.Tensor
    edge: torch.Tensor

    def __post_init__(self) -> None:
        start, edge = self.start, self.edge
        if not isinstance(start, torch.Tensor) or not isinstance(edge, torch.Tensor):
            raise ValueError("ChainPotentials.start and .edge must be torch tensors")
        if start.dim() != 2 or edge.dim() != 4:
            raise ValueError(
                f"expected start (B, C) and edge (B, N-1, C, C), got start {tuple(start.shape)} "
                f"and edge {tuple(edge.shape)}"
            )
        B, C = start.shape
        if edge.shape[0] != B or edge.shape[2] != C or edge.shape[3] != C:
            raise ValueError(
                f"edge has shape {tuple(edge.shape)}, expected ({B}, N-1, {C}, {C}) to match start {tuple(start.shape)}"
            )
        if not start.is_floating_point() or start.dtype != edge.dtype:
            raise ValueError(f"start and edge must share one floating dtype, got {start.dtype} and {edge.dtype}")
        if C < 1:
            raise ValueError(f"need at least one state, got start of shape {tuple(start.shape)}")

    @property
    def batch_size(self) -> int:
        """``B``."""
        return self.start.shape[0]

    @property
    def max_length(self) -> int:
        """``N``, the padded number of positions (``edge.shape[1] + 1``)."""
        return self.edge.shape[1] + 1

    @property
    def num_states(self) -> int:
        """``C``."""
        return self.start.shape[1]


@dataclass(frozen=True)
class ChainPosterior:
    """Everything one forward-backward pass gives.

    Attributes:
        log_partition: ``(B,)`` ``log Z`` in nats (``-inf`` if every path is forbidden).
        node: ``(B, N, C)`` ``p(z_n = i)``; 0 at padding and for impossible chains.
        edge: ``(B, N-1, C, C)`` ``p(z_n = i, z_{n+1} = j)``; 0 at padding and for impossible chains.
    """

    log_partition: torch.Tensor
    node: torch.Tensor
    edge: torch.Tensor


# --------------------------------------------------------------------------- checks
def _check_lengths(lengths: torch.Tensor, batch_size: int, max_length: int, device: torch.device) -> torch.Tensor:
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.shape != (batch_size,):
        raise ValueError(f"lengths has shape {tuple(lengths.shape)}, expected ({batch_size},)")
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
    lengths = lengths.to(device=device, dtype=torch.long)
    bad = ((lengths < 1) | (lengths > max_length)).nonzero().flatten()
    if bad.numel():
        b = bad[0].item()
        raise ValueError(
            f"lengths must lie in [1, N={max_length}], got lengths[{b}] = {lengths[b].item()} "
            f"({bad.numel()} bad entries)"
        )
    return lengths


def _check(potentials: ChainPotentials, lengths: torch.Tensor) -> torch.Tensor:
    if not isinstance(potentials, ChainPotentials):
        raise ValueError(f"potentials must be a ChainPotentials, got {type(potentials).__name__}")
    return _check_lengths(lengths, potentials.batch_size, potentials.max_length, potentials.start.device)


def _edge_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """``(B, N-1)`` bool: edge ``n`` of chain ``b`` is real iff ``n + 1 < lengths[b]``."""
    positions = torch.arange(1, max_length, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


# --------------------------------------------------------------------------- the dynamic program
def _pack(lengths: torch.Tensor, num_edges: int) -> tuple[torch.Tensor | None, torch.Tensor | None, list[int]]:
    """Sort the chains by length, longest first, for the packed recursion (one host read of ``lengths``).

    Returns ``(order, inverse, active)``: ``order[r]`` is the chain at sorted row ``r``
    and ``inverse`` undoes it (both ``None`` when the batch is already sorted,
    e.g. all chains full); ``active[n] = k_n >= 1`` is the number of chains with a
    real edge ``n`` (``lengths > n + 1``), which are the sorted rows ``[:k_n]``.
    ``len(active)`` is the number of steps, ``max(lengths) - 1``.
    """
    host = lengths.tolist()
    B = len(host)
    if all(host[b] >= host[b + 1] for b in range(B - 1)):
        order = inverse = None
        ordered = host
    else:
        rows = sorted(range(B), key=lambda b: -host[b])  # stable
        ordered = [host[b] for b in rows]
        back = [0] * B
        for r, b in enumerate(rows):
            back[b] = r
        order = torch.tensor(rows, dtype=torch.long, device=lengths.device)
        inverse = torch.tensor(back, dtype=torch.long, device=lengths.device)
    active = []
    k = B
    for n in range(min(num_edges, ordered[0] - 1)):
        while ordered[k - 1] <= n + 1:
            k -= 1
        active.append(k)
    return order, inverse, active


def _packed_forward(
    semiring: type[Semiring],
    start: torch.Tensor,
    edge: torch.Tensor,
    order: torch.Tensor | None,
    inverse: torch.Tensor | None,
    active: list[int],
    keep_all: bool = False,
) -> torch.Tensor:
    """The packed recursion of :func:`_forward` with autograd recording every step (any semiring)."""
    B = start.shape[0]
    num_edges = edge.shape[1]
    alpha = start if order is None else start.index_select(0, order)  # (B, C), sorted
    done = []  # alphas of finished chains, the last sorted rows first
    steps = [alpha]
    # unbind once: indexing edge[:, n] in the loop would make autograd build a full-size
    # gradient per step (quadratic in N).
    edges = edge.unbind(1)
    for n, k in enumerate(active):
        if k < alpha.shape[0]:  # sorted rows [k:] have no edge n: their alpha is final
            done.append(alpha[k:])
            alpha = alpha[:k]
        if order is None:
            edge_n = edges[n] if k == B else edges[n][:k]
        else:
            edge_n = edges[n].index_select(0, order[:k])  # only the real edges are read
        # (k, C, 1) * (k, C, C) summed over the previous state i -> (k, C)
        alpha = semiring.sum(semiring.mul(alpha.unsqueeze(-1), edge_n), dim=-2)
        if keep_all:
            steps.append(torch.cat([alpha, *reversed(done)], dim=0) if done else alpha)
    if keep_all:
        steps.extend([steps[-1]] * (num_edges + 1 - len(steps)))  # every chain has ended
        out = torch.stack(steps, dim=1)  # (B, N, C)
    else:
        out = torch.cat([alpha, *reversed(done)], dim=0) if done else alpha
    return out if inverse is None else out.index_select(0, inverse)


def _step_input(
    edge: torch.Tensor, alpha: torch.Tensor, n: int, order: torch.Tensor | None, out: torch.Tensor
) -> torch.Tensor:
    """``out[b, i, j] = alpha[b, i] + edge[chain of sorted row b, n, i, j]`` for the ``k = len(alpha)`` first rows."""
    k = alpha.shape[0]
    if order is None:
        return torch.add(edge[:k, n], alpha.unsqueeze(-1), out=out)
    return torch.index_select(edge[:, n], 0, order[:k], out=out).add_(alpha.unsqueeze(-1))


def _unsort_rows_(x: torch.Tensor, source: list[int]) -> torch.Tensor:
    """``x.index_select(0, source)`` computed in place, row by row along the cycles of the permutation.

    Saves allocating a second buffer as large as ``x``: on CPU, freshly allocated
    buffers of this size are page-faulted in anew at every call, which costs more
    than the copy (measured with the CRF layer at ``B=32, N=50, C=45``).
    """
    source = list(source)
    row = torch.empty_like(x[0])
    for first in range(len(source)):
        if source[first] in (first, -1):  # in place already, or done
            continue
        row.copy_(x[first])
        at = first
        while source[at] != first:
            x[at].copy_(x[source[at]])
            following = source[at]
            source[at] = -1
            at = following
        x[at].copy_(row)
        source[at] = -1
    return x


def _unsort(x: torch.Tensor, inverse: torch.Tensor | None) -> torch.Tensor:
    """Rows of ``x`` (owned by the caller) back in batch order."""
    if inverse is None:
        return x
    if x.device.type == "cpu" and x[0].numel() > 4096:
        return _unsort_rows_(x, inverse.tolist())
    return x.index_select(0, inverse)


def _log_forward_pass(
    start: torch.Tensor,
    edge: torch.Tensor,
    order: torch.Tensor | None,
    inverse: torch.Tensor | None,
    active: list[int],
    keep: bool,
) -> tuple[torch.Tensor, tuple]:
    """The packed log-semiring recursion without autograd (see :class:`_FusedForward`).

    Returns the final alphas ``(B, C)`` in batch order and, when ``keep``, what
    the backward pass needs: the buffer ``(B, N-1, C, C)`` (sorted rows) of the
    normalised weights ``exp(alpha_n[i] + edge[n, i, j] - max_i)`` with 0 at
    padding, and the ``(k_n, C)`` column sums of each step.
    """
    B, C = start.shape
    alpha = start if order is None else start.index_select(0, order)  # (B, C), sorted
    if not keep:
        work = torch.empty((B, C, C), dtype=edge.dtype, device=edge.device)  # one step's scratch, reused
    elif order is not None:
        work = edge.index_select(0, order)  # sorted; padding is overwritten, never read (faster than per step)
    else:
        work = torch.empty(edge.shape, dtype=edge.dtype, device=edge.device)
    sums = []
    done = []  # alphas of finished chains, the last sorted rows first
    big = torch.finfo(edge.dtype).max
    for n, k in enumerate(active):
        if k < alpha.shape[0]:  # sorted rows [k:] have no edge n: their alpha is final
            done.append(alpha[k:])
            alpha = alpha[:k]
        if keep and order is not None:
            x = work[:k, n].add_(alpha.unsqueeze(-1))
        else:
            x = _step_input(edge, alpha, n, order, work[:k, n] if keep else work[:k])
        # x[b, i, j] = alpha[b, i] + edge[b, n, i, j]; logsumexp over i as torch.logsumexp computes it
        top = x.amax(dim=1)  # (k, C)
        # torch.logsumexp shifts an all -inf (or +inf) column by 0 instead; clamping to the finite range
        # gives the same values in one operation (-inf - (-max) is still -inf, exp of it 0, log of the sum -inf).
        top.clamp_(min=-big, max=big)
        x.sub_(top.unsqueeze(1)).exp_()
        total = x.sum(dim=1)  # (k, C): >= 1 (the max contributes exp(0)), or 0 for an all -inf column
        alpha = total.log().add_(top)
        if keep:
            sums.append(total.clamp_(min=1))  # all -inf column: its weights are 0, so is their gradient
    out = torch.cat([alpha, *reversed(done)], dim=0) if done else alpha
    if inverse is not None:
        out = out.index_select(0, inverse)
    if not keep:
        return out, ()
    for n, k in enumerate(active):
        if k < B:
            work[k:, n].zero_()
    if len(active) < edge.shape[1]:
        work[:, len(active) :].zero_()
    return out, (work, sums)


def _log_backward_pass(saved: tuple, g: torch.Tensor, active: list[int]) -> torch.Tensor:
    """Backward algorithm: turns the buffer of :func:`_log_forward_pass` in place into ``d/d edge`` (sorted rows).

    ``g`` (sorted, ``(B, C)``) enters as ``d/d alpha`` of the final alphas and leaves as ``d/d start``.
    """
    work, sums = saved
    for n in range(len(active) - 1, -1, -1):
        k = active[n]
        # d/d edge[n, i, j] = g_{n+1}[j] * exp(x[i, j] - alpha_{n+1}[j]) = g_{n+1}[j] * weight[i, j] / sum_j
        x = work[:k, n].mul_((g[:k] / sums[n]).unsqueeze(1))
        torch.sum(x, dim=2, out=g[:k])  # d/d alpha_n
    return work


def _max_forward_pass(
    start: torch.Tensor,
    edge: torch.Tensor,
    order: torch.Tensor | None,
    inverse: torch.Tensor | None,
    active: list[int],
    keep: bool,
) -> tuple[torch.Tensor, tuple]:
    """The packed max-semiring recursion without autograd (see :class:`_FusedForward`).

    Returns the final alphas ``(B, C)`` in batch order and, when ``keep``, the
    ``(k_n, C)`` argmax over the previous state of each step (``torch.max``'s,
    whose gradient goes to that one entry).
    """
    B, C = start.shape
    alpha = start if order is None else start.index_select(0, order)  # (B, C), sorted
    work = torch.empty((B, C, C), dtype=edge.dtype, device=edge.device)  # one step's scratch, reused
    best = []
    done = []
    for n, k in enumerate(active):
        if k < alpha.shape[0]:
            done.append(alpha[k:])
            alpha = alpha[:k]
        x = _step_input(edge, alpha, n, order, work[:k])
        if keep:
            alpha, arg = x.max(dim=1)  # (k, C)
            best.append(arg)
        else:
            alpha = x.amax(dim=1)
    out = torch.cat([alpha, *reversed(done)], dim=0) if done else alpha
    if inverse is not None:
        out = out.index_select(0, inverse)
    return out, (tuple(best),)


def _max_backward_pass(saved: tuple, g: torch.Tensor, active: list[int], edge: torch.Tensor) -> torch.Tensor:
    """``d/d edge`` (sorted rows) of the max-semiring recursion; ``g`` as in :func:`_log_backward_pass`."""
    (best,) = saved
    grad = torch.zeros(edge.shape, dtype=g.dtype, device=g.device)
    for n in range(len(active) - 1, -1, -1):
        k = active[n]
        arg, gk = best[n], g[:k]
        grad[:k, n].scatter_(1, arg.unsqueeze(1), gk.unsqueeze(1))  # d/d edge[n, arg[j], j] = g_{n+1}[j]
        g[:k] = torch.zeros_like(gk).scatter_add_(1, arg, gk)  # d/d alpha_n[i] = sum_{j: arg[j] = i} g_{n+1}[j]
    return grad


class _FusedForward(torch.autograd.Function):
    """The packed forward recursion in the log or max semiring with a hand-written backward pass.

    Same values and gradients as :func:`_packed_forward` (``alpha_{n+1}[j] =
    logsumexp_i`` or ``max_i`` of ``alpha_n[i] + edge[n, i, j]``, computed as
    ``torch.logsumexp`` and ``torch.max`` compute them: a column that is all
    ``-inf`` gives ``-inf`` and a zero gradient; the max sends its gradient to
    the index ``torch.max`` returns), without autograd's bookkeeping,
    temporaries and final gather of per-step gradients:

    * log: the forward pass writes the normalised weights
      ``exp(x[i, j] - max_i x[i, j])`` (``x = alpha_n[i] + edge[n, i, j]``) of
      every step into one buffer of the size of ``edge``; the backward pass (the
      backward algorithm) scales them in place into ``d/d edge[n, i, j] =
      g_{n+1}[j] * exp(x[i, j] - alpha_{n+1}[j])``, with ``g_n[i] = sum_j d/d
      edge[n, i, j]``, and returns that buffer as the gradient;
    * max: the forward pass keeps the argmax of every step, the backward pass
      scatters ``g_{n+1}`` there.

    Padding is never read and its gradient is exactly 0. A second backward
    through the same graph (``retain_graph``) recomputes the consumed log
    buffer; a differentiable one (``create_graph``) goes through
    :func:`_packed_forward` and autograd.
    """

    @staticmethod
    def forward(ctx, semiring, start, edge, order, inverse, active):  # type: ignore[override]
        keep = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        forward_pass = _log_forward_pass if semiring is LogSemiring else _max_forward_pass
        out, saved = forward_pass(start, edge, order, inverse, active, keep)
        if keep:
            ctx.save_for_backward(start, edge)
            ctx.semiring, ctx.saved = semiring, saved
            ctx.order, ctx.inverse, ctx.active = order, inverse, active
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        start, edge = ctx.saved_tensors  # (also checks that they were not modified in place since)
        semiring, order, inverse, active = ctx.semiring, ctx.order, ctx.inverse, ctx.active
        need_start, need_edge = ctx.needs_input_grad[1:3]
        if torch.is_grad_enabled():  # create_graph: differentiate through autograd's own graph
            with torch.enable_grad():
                out = _packed_forward(semiring, start, edge, order, inverse, active)
                wrt = [t for t, need in ((start, need_start), (edge, need_edge)) if need]
                grads = list(torch.autograd.grad(out, wrt, grad_out, create_graph=True))
            return None, grads.pop(0) if need_start else None, grads.pop(0) if need_edge else None, None, None, None
        g = grad_out.contiguous().clone() if order is None else grad_out.index_select(0, order)  # d/d alpha, sorted
        if semiring is LogSemiring:
            saved, ctx.saved = ctx.saved, None  # the buffer is consumed in place
            if saved is None:  # a second backward (retain_graph): recompute it
                _, saved = _log_forward_pass(start, edge, order, inverse, active, keep=True)
            grad_edge = _log_backward_pass(saved, g, active)
        else:
            grad_edge = _max_backward_pass(ctx.saved, g, active, edge)
        grad_start = _unsort(g, inverse) if need_start else None
        grad_edge = _unsort(grad_edge, inverse) if need_edge else None
        return None, grad_start, grad_edge, None, None, None


def _forward(
    semiring: type[Semiring], start: torch.Tensor, edge: torch.Tensor, lengths: torch.Tensor, keep_all: bool = False
) -> torch.Tensor:
    """Forward recursion ``alpha_{n+1}[j] = sum_i alpha_n[i] * edge[n, i, j]`` in ``semiring``.

    A chain's alpha is carried unchanged past its end, so the returned final
    alpha is ``alpha_{L-1}`` of every chain. Returns ``(B, C)``, or ``(B, N, C)``
    with every step when ``keep_all``.

    Packed recursion: the chains are sorted by length once (:func:`_pack`, one
    host read of ``lengths``), so that the chains that still have edge ``n``
    are a prefix of the sorted batch; step ``n`` reads only their edges, and the
    sort is undone at the end. Padding is never read, so NaN or inf there cannot
    reach values or gradients (its gradient is exactly 0). The log and max
    semirings without ``keep_all`` (``log Z`` and the marginals, the hot path of
    CRF training; the Viterbi score and path) run in :class:`_FusedForward`;
    every other case step by step under autograd (:func:`_packed_forward`).
    """
    B, C = start.shape
    num_edges = edge.shape[1]
    if B == 0 or num_edges == 0:
        return start.unsqueeze(1).expand(B, num_edges + 1, C).clone() if keep_all else start
    order, inverse, active = _pack(lengths, num_edges)
    if not active:
        if edge.requires_grad:  # every chain has length 1; edge still gets its (zero) gradient, reading nothing
            start = start + edge[:, :0].sum()
    elif semiring in (LogSemiring, MaxSemiring) and not keep_all:
        return _FusedForward.apply(semiring, start, edge, order, inverse, active)
    return _packed_forward(semiring, start, edge, order, inverse, active, keep_all)


def _total_and_gradients(
    semiring: type[Semiring], potentials: ChainPotentials, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Semiring total ``(B,)`` and its gradients w.r.t. ``start`` ``(B, C)`` and ``edge`` ``(B, N-1, C, C)``."""
    with torch.enable_grad():
        start = potentials.start.detach().requires_grad_(True)
        edge = potentials.edge.detach().requires_grad_(True)
        total = semiring.sum(_forward(semiring, start, edge, lengths), dim=-1)  # (B,)
        grad_start, grad_edge = torch.autograd.grad(total.sum(), (start, edge), allow_unused=True)
    if grad_start is None:
        grad_start = torch.zeros_like(start)
    if grad_edge is None:  # N == 1: no edges at all
        grad_edge = torch.zeros_like(edge)
    return total.detach(), grad_start, grad_edge


def _node_from_edges(start_marginal: torch.Tensor, edge_marginal: torch.Tensor) -> torch.Tensor:
    """``(B, N, C)`` node quantities: position 0 from ``start``, position ``n >= 1`` summed over ``z_{n-1}``."""
    return torch.cat([start_marginal.unsqueeze(1), edge_marginal.sum(dim=-2)], dim=1)


# --------------------------------------------------------------------------- public API
def log_partition(potentials: ChainPotentials, lengths: torch.Tensor) -> torch.Tensor:
    """Log partition function ``log Z`` of each chain (forward algorithm, log semiring).

    Args:
        potentials: :class:`ChainPotentials` with ``start (B, C)`` and ``edge (B, N-1, C, C)``, nats.
        lengths: ``(B,)`` integer tensor, ``1 <= lengths[b] <= N``.

    Returns:
        ``(B,)`` ``log Z`` in nats; ``-inf`` for a chain whose every path is
        forbidden. Differentiable with respect to the potentials (its gradient
        is :func:`posterior`'s marginals).

    Raises:
        ValueError: on inconsistent shapes, non-integer ``lengths`` or a length outside ``[1, N]``.

    Source: Rabiner (1989), Eq. 19-21, in log space; Torch-Struct ``LinearChain``.
    """
    lengths = _check(potentials, lengths)
    return LogSemiring.sum(_forward(LogSemiring, potentials.start, potentials.edge, lengths), dim=-1)


def posterior(potentials: ChainPotentials, lengths: torch.Tensor) -> ChainPosterior:
    """``log Z`` with node and edge marginals, from one forward and one backward (autograd) pass.

    The marginals are the gradient of ``log Z`` with respect to the potentials
    (Eisner 2016): ``p(z_n = i, z_{n+1} = j) = d log Z / d edge[n, i, j]`` and
    ``p(z_0 = i) = d log Z / d start[i]``. They are returned detached.

    Args and errors: as :func:`log_partition`.

    Returns:
        A :class:`ChainPosterior` (``log_partition (B,)``, ``node (B, N, C)``,
        ``edge (B, N-1, C, C)``). Each real position's node marginals sum to 1
        and padding is 0; a chain with ``log Z = -inf`` has all-zero marginals.
    """
    lengths = _check(potentials, lengths)
    log_z, grad_start, grad_edge = _total_and_gradients(LogSemiring, potentials, lengths)
    return ChainPosterior(log_partition=log_z, node=_node_from_edges(grad_start, grad_edge), edge=grad_edge)


def marginals(potentials: ChainPotentials, lengths: torch.Tensor) -> torch.Tensor:
    """Edge marginals ``p(z_n = i, z_{n+1} = j)``, shape ``(B, N-1, C, C)``, 0 at padding.

    See :func:`posterior` (same arguments, errors and source).
    """
    return posterior(potentials, lengths).edge


def node_marginals(potentials: ChainPotentials, lengths: torch.Tensor) -> torch.Tensor:
    """Node (unary) marginals ``p(z_n = i)``, shape ``(B, N, C)``, 0 at padding.

    See :func:`posterior` (same arguments, errors and source).
    """
    return posterior(potentials, lengths).node


def viterbi(potentials: ChainPotentials, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Highest-scoring path of each chain (Viterbi algorithm, max semiring).

    The forward recursion runs in the max semiring; the gradient of the best
    score with respect to the potentials is the one-hot indicator of a best
    path, from which the path is read (this replaces explicit backpointers;
    Torch-Struct, Eisner 2016). Ties are broken by ``torch.max``.

    Args:
        potentials: :class:`ChainPotentials` with ``start (B, C)`` and ``edge (B, N-1, C, C)``, nats.
        lengths: ``(B,)`` integer tensor, ``1 <= lengths[b] <= N``.

    Returns:
        ``(paths, scores)``: ``paths`` is a ``(B, N)`` LongTensor of states with
        ``-1`` at padding positions; ``scores`` is ``(B,)``, the best path's
        score ``s(z)`` in nats. When every path of a chain is forbidden its
        score is ``-inf`` and its path is an arbitrary (forbidden) one.

    Raises:
        ValueError: as :func:`log_partition`.

    Source: Viterbi (1967); Rabiner (1989), Sec. III-B, Eq. 30-35.
    """
    lengths = _check(potentials, lengths)
    scores, grad_start, grad_edge = _total_and_gradients(MaxSemiring, potentials, lengths)
    indicators = _node_from_edges(grad_start, grad_edge)  # (B, N, C), one-hot at real positions
    paths = indicators.argmax(dim=-1)
    positions = torch.arange(potentials.max_length, device=paths.device)
    paths = torch.where(positions.unsqueeze(0) < lengths.unsqueeze(1), paths, torch.full_like(paths, -1))
    return paths, scores


def kbest(potentials: ChainPotentials, lengths: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` highest-scoring paths of each chain (list Viterbi in the top-``k`` max semiring).

    The recursion keeps, for every state ``j`` at position ``n``, the ``k`` best
    scores of paths ending in ``j`` with explicit backpointers:
    ``best_{n+1}[j] = top-k over (i, r) of best_n[i][r] + edge[n, i, j]``. Cost
    ``O(B N C^2 k log k)``.

    Args:
        potentials: :class:`ChainPotentials` (``start (B, C)``, ``edge (B, N-1, C, C)``), nats.
        lengths: ``(B,)`` integer tensor, ``1 <= lengths[b] <= N``.
        k: number of paths, ``>= 1``.

    Returns:
        ``(paths, scores)``: ``paths (B, k, N)`` LongTensor with ``-1`` at padding,
        ``scores (B, k)`` non-increasing in nats. Paths are distinct; when a chain
        has fewer than ``k`` allowed paths the remaining scores are ``-inf``
        (their paths are arbitrary). ``paths[:, 0]`` is a Viterbi path.

    Raises:
        ValueError: as :func:`log_partition`, or if ``k < 1``.

    Source: Schwartz & Chow (1990), "The N-best algorithm"; Nilsson & Goldberger
    (2001) for the list-Viterbi recursion; Torch-Struct ``KMaxSemiring``.
    """
    lengths = _check(potentials, lengths)
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = int(k)
    B, N, C = potentials.batch_size, potentials.max_length, potentials.num_states
    start, edge = potentials.start.detach(), potentials.edge.detach()
    # best[b, j, r]: r-th best score of paths ending in j; slot 0 holds start, the rest -inf
    best = torch.full((B, C, k), float("-inf"), dtype=start.dtype, device=start.device)
    best[:, :, 0] = start
    mask = _edge_mask(lengths, N)  # (B, N-1)
    pointers = []  # per step (B, C, k): flat index i * k + r into the previous best
    identity = torch.arange(C * k, device=start.device).view(1, C, k).expand(B, C, k)
    for n in range(N - 1):
        cand = best.unsqueeze(-1) + edge[:, n].unsqueeze(2)  # (B, C_prev, k, 1) + (B, C_prev, 1, C) -> (B, C_prev, k, C)
        cand = cand.reshape(B, C * k, C)
        top, arg = cand.topk(k, dim=1)  # (B, k, C)
        top, arg = top.transpose(1, 2), arg.transpose(1, 2)  # (B, C, k)
        live = mask[:, n, None, None]
        best = torch.where(live, top, best)
        pointers.append(torch.where(live, arg, identity))
    scores, flat = best.reshape(B, C * k).topk(k, dim=1)  # (B, k)
    paths = torch.empty(B, k, N, dtype=torch.long, device=start.device)
    for n in range(N - 1, -1, -1):
        paths[:, :, n] = torch.div(flat, k, rounding_mode="floor")
        if n > 0:
            flat = pointers[n - 1].reshape(B, C * k).gather(1, flat)
    positions = torch.arange(N, device=paths.device).view(1, 1, N)
    paths = torch.where(positions < lengths.view(B, 1, 1), paths, torch.full_like(paths, -1))
    return paths, scores


def path_score(potentials: ChainPotentials, lengths: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
    """Score ``s(z) = start[z_0] + sum_{n < L-1} edge[n, z_n, z_{n+1}]`` of given paths.

    Args:
        potentials: :class:`ChainPotentials` (``start (B, C)``, ``edge (B, N-1, C, C)``), nats.
        lengths: ``(B,)`` integer tensor, ``1 <= lengths[b] <= N``.
        paths: ``(B, N)`` integer tensor of states; entries at padding are ignored.

    Returns:
        ``(B,)`` scores in nats (``log p(z)`` after subtracting :func:`log_partition`).
        Differentiable with respect to the potentials.

    Raises:
        ValueError: on a shape mismatch or a state outside ``[0, C)`` at a real position.
    """
    lengths = _check(potentials, lengths)
    B, N, C = potentials.batch_size, potentials.max_length, potentials.num_states
    paths = torch.as_tensor(paths, device=potentials.start.device)
    if paths.shape != (B, N):
        raise ValueError(f"paths has shape {tuple(paths.shape)}, expected ({B}, {N})")
    real = torch.arange(N, device=paths.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, N)
    bad = (real & ((paths < 0) | (paths >= C))).nonzero()
    if bad.numel():
        b, n = bad[0].tolist()
        raise ValueError(f"paths[{b}, {n}] = {paths[b, n].item()} is not a state in [0, {C})")
    z = torch.where(real, paths, torch.zeros_like(paths)).long()
    score = potentials.start.gather(1, z[:, :1]).squeeze(1)
    if N > 1:
        # edge[b, n, z_n, z_{n+1}]
        rows = potentials.edge.gather(2, z[:, :-1, None, None].expand(B, N - 1, 1, C)).squeeze(2)  # (B, N-1, C)
        pair = rows.gather(2, z[:, 1:, None]).squeeze(2)  # (B, N-1)
        mask = _edge_mask(lengths, N)
        score = score + torch.where(mask, pair, torch.zeros_like(pair)).sum(dim=1)
    return score


def _gumbel_argmax(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw from ``Categorical(softmax(logits))`` per row (Gumbel-max trick); ``-inf`` logits never win."""
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    u = u.clamp_min(torch.finfo(logits.dtype).tiny)
    return (logits - torch.log(-torch.log(u))).argmax(dim=-1)


def sample(
    potentials: ChainPotentials,
    lengths: torch.Tensor,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Exact samples from ``p(z) = exp(s(z)) / Z`` by forward filtering, backward sampling.

    The forward pass keeps ``alpha_n`` (log semiring); then ``z_{L-1}`` is drawn
    with probability proportional to ``exp(alpha_{L-1})`` and, going back,
    ``z_n`` with probability proportional to ``exp(alpha_n[i] + edge[n, i, z_{n+1}])``.

    Args:
        potentials: :class:`ChainPotentials` (``start (B, C)``, ``edge (B, N-1, C, C)``), nats.
        lengths: ``(B,)`` integer tensor, ``1 <= lengths[b] <= N``.
        num_samples: ``S >= 1`` paths per chain.
        generator: the source of randomness (``None``: torch's default generator).

    Returns:
        ``(S, B, N)`` LongTensor of states, ``-1`` at padding. Chains whose every
        path is forbidden get arbitrary paths.

    Raises:
        ValueError: as :func:`log_partition`, or if ``num_samples < 1``.

    Source: Carter & Kohn (1994); Frühwirth-Schnatter (1994); Rabiner (1989) for the forward pass.
    """
    lengths = _check(potentials, lengths)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    S, B, N, C = num_samples, potentials.batch_size, potentials.max_length, potentials.num_states
    with torch.no_grad():
        start, edge = potentials.start.detach(), potentials.edge.detach()
        alphas = _forward(LogSemiring, start, edge, lengths, keep_all=True)  # (B, N, C)
        out = torch.full((S, B, N), -1, dtype=torch.long, device=start.device)
        following = torch.zeros((S, B), dtype=torch.long, device=start.device)  # z_{n+1}
        for n in reversed(range(N)):
            logits = alphas[:, n].unsqueeze(0).expand(S, B, C)
            if n < N - 1:
                # edge[b, n, i, z_{n+1}] for every i -> (S, B, C)
                into_next = edge[:, n].unsqueeze(0).expand(S, B, C, C).gather(
                    3, following[:, :, None, None].expand(S, B, C, 1)
                ).squeeze(3)
                inside = (n < lengths - 1).view(1, B, 1)  # not the chain's last position
                logits = torch.where(inside, logits + into_next, logits)
            draw = _gumbel_argmax(logits, generator)  # (S, B)
            real = (n < lengths).unsqueeze(0)
            out[:, :, n] = torch.where(real, draw, torch.full_like(draw, -1))
            following = torch.where(real, draw, torch.zeros_like(draw))
    return out


# --------------------------------------------------------------------------- converters
def _check_observations(observations: torch.Tensor, lengths: torch.Tensor, vocab_size: int) -> torch.Tensor:
    if observations.dim() != 2:
        raise ValueError(f"observations must have shape (B, N), got {tuple(observations.shape)}")
    if observations.is_floating_point() or observations.is_complex() or observations.dtype == torch.bool:
        raise ValueError(f"observations must be an integer tensor, got dtype {observations.dtype}")
    B, N = observations.shape
    lengths = _check_lengths(lengths, B, N, observations.device)
    real = torch.arange(N, device=observations.device).unsqueeze(0) < lengths.unsqueeze(1)
    bad = (real & ((observations < 0) | (observations >= vocab_size))).nonzero()
    if bad.numel():
        b, n = bad[0].tolist()
        raise ValueError(
            f"observations[{b}, {n}] = {observations[b, n].item()} is outside the vocabulary [0, {vocab_size})"
        )
    return torch.where(real, observations, torch.zeros_like(observations)).long()


def hmm_potentials(
    log_init: torch.Tensor,
    log_transition: torch.Tensor,
    log_emission: torch.Tensor,
    observations: torch.Tensor,
    lengths: torch.Tensor,
) -> ChainPotentials:
    """Potentials of a hidden Markov model with categorical emissions, given observations.

    With ``pi_i = p(z_0 = i)``, ``a_ij = p(z_{n+1} = j | z_n = i)`` and
    ``b_j(v) = p(x_n = v | z_n = j)`` (Rabiner 1989's notation),

        start[b, i]      = log pi_i + log b_i(x_{b,0})
        edge[b, n, i, j] = log a_ij + log b_j(x_{b,n+1})

    so that ``log Z = log p(x_b)`` and ``s(z) = log p(x_b, z)`` (nats).

    Args:
        log_init: ``(C,)`` log initial probabilities ``log pi``.
        log_transition: ``(C, C)`` log transition probabilities, rows indexed by the previous state.
        log_emission: ``(C, V)`` log emission probabilities, rows indexed by the state.
        observations: ``(B, N)`` integer word ids in ``[0, V)``; padding values are ignored.
        lengths: ``(B,)`` integer tensor, ``1 <= lengths[b] <= N``.

    Returns:
        :class:`ChainPotentials` with ``start (B, C)`` and ``edge (B, N-1, C, C)``
        in the dtype of ``log_emission``; differentiable w.r.t. the parameters.

    Raises:
        ValueError: on inconsistent shapes, bad lengths, or a word id outside
        ``[0, V)`` at a real position (the message names the batch row and position).

    Source: Rabiner (1989), Sec. II-III; Torch-Struct ``LinearChain.hmm``.
    """
    if log_emission.dim() != 2:
        raise ValueError(f"log_emission must have shape (C, V), got {tuple(log_emission.shape)}")
    C, V = log_emission.shape
    if log_init.shape != (C,):
        raise ValueError(f"log_init has shape {tuple(log_init.shape)}, expected ({C},) to match log_emission")
    if log_transition.shape != (C, C):
        raise ValueError(f"log_transition has shape {tuple(log_transition.shape)}, expected ({C}, {C})")
    obs = _check_observations(torch.as_tensor(observations, device=log_emission.device), lengths, V)
    emit = log_emission.t()[obs]  # (B, N, C): emit[b, n, j] = log b_j(x_{b,n})
    start = log_init.to(emit.dtype).unsqueeze(0) + emit[:, 0]  # (B, C)
    edge = log_transition.to(emit.dtype)[None, None] + emit[:, 1:, None, :]  # (B, N-1, C, C)
    return ChainPotentials(start=start, edge=edge)


def crf_potentials(
    unary: torch.Tensor,
    transition: torch.Tensor,
    lengths: torch.Tensor,
    start: torch.Tensor | None = None,
    end: torch.Tensor | None = None,
) -> ChainPotentials:
    """Potentials of a linear-chain CRF from per-position and transition scores.

    The score of tags ``z`` of a sentence of length ``L`` is

        s(z) = start[z_0] + sum_{n<L} unary[n, z_n] + sum_{n<L-1} transition[z_n, z_{n+1}] + end[z_{L-1}],

    and the conversion is ``start_pot[b, i] = start[i] + unary[b, 0, i]``,
    ``edge[b, n, i, j] = transition[i, j] + unary[b, n+1, j]``, with ``end``
    added to the last real position of each chain (to the edge into it, or to
    ``start_pot`` when ``L == 1``) — hence ``lengths`` is needed here.

    Args:
        unary: ``(B, N, C)`` emission scores (e.g. a network's outputs), nats.
        transition: ``(C, C)`` transition scores, rows indexed by the previous tag.
        lengths: ``(B,)`` integer tensor, ``1 <= lengths[b] <= N``.
        start: optional ``(C,)`` scores of the first tag (default 0).
        end: optional ``(C,)`` scores of the last tag (default 0).

    Returns:
        :class:`ChainPotentials` (``start (B, C)``, ``edge (B, N-1, C, C)``),
        differentiable with respect to every input score.

    Raises:
        ValueError: on inconsistent shapes or bad lengths.

    Source: Lafferty, McCallum & Pereira (2001); Torch-Struct ``LinearChain``.
    """
    if unary.dim() != 3:
        raise ValueError(f"unary must have shape (B, N, C), got {tuple(unary.shape)}")
    B, N, C = unary.shape
    if transition.shape != (C, C):
        raise ValueError(f"transition has shape {tuple(transition.shape)}, expected ({C}, {C})")
    for name, vec in (("start", start), ("end", end)):
        if vec is not None and vec.shape != (C,):
            raise ValueError(f"{name} has shape {tuple(vec.shape)}, expected ({C},)")
    lengths = _check_lengths(lengths, B, N, unary.device)
    first = unary[:, 0]
    if start is not None:
        first = first + start.unsqueeze(0)
    edge = transition[None, None] + unary[:, 1:, None, :]  # (B, N-1, C, C)
    if end is not None:
        is_last = (torch.arange(N, device=unary.device).unsqueeze(0) == (lengths - 1).unsqueeze(1))[..., None]
        # where, not multiplication: end may hold -inf and 0 * -inf is NaN.
        end_term = torch.where(is_last, end.view(1, 1, C).expand(B, N, C), torch.zeros_like(unary))  # (B, N, C)
        first = first + end_term[:, 0]
        edge = edge + end_term[:, 1:, None, :]
    return ChainPotentials(start=first, edge=edge)
