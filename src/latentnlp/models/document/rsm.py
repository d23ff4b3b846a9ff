"""The Replicated Softmax model (Salakhutdinov & Hinton 2009), an undirected topic model, trained by CD-k or PCD.

Model. A document of ``D`` words over a vocabulary of ``V`` words has the count vector
``v`` ``(V,)``, ``D = sum_k v_k``; the ``H`` hidden units are ``h in {0,1}^H`` (paper: 50).
The energy is (paper Sec. 2; the hidden bias is scaled by the document length)

    E(v, h) = -b . v - D a . h - v W h

with ``W`` ``(V, H)``, visible bias ``b`` ``(V,)``, hidden bias ``a`` ``(H,)``. The
conditionals are

    p(h_j = 1 | v) = sigmoid(D a_j + (v W)_j)
    p(v | h)       = Multinomial(D, softmax(b + W h))     (D independent word draws)

and summing out ``h`` gives the free energy ``F(v) = -b . v - sum_j softplus(D a_j + (v W)_j)``.

Which distribution ``log p(v)`` is. The paper defines the model on a document's ``D``
softmax units, one per word position, with shared weights: its visible configuration is
the *ordered* word sequence ``w_1..w_D``. The energy depends on the sequence only through
its counts, so every ordering of ``v`` has the same probability

    p(w_1..w_D) = exp(-F(v)) / Z_D,     Z_D = sum over the V^D sequences = sum_v C(v) exp(-F(v)),

with ``C(v) = D! / prod_k v_k!`` the multinomial coefficient (the number of orderings).
The count vector itself has probability ``C(v) exp(-F(v)) / Z_D``; that is the joint
``p(v, h) prop. C(v) exp(-E(v, h))`` whose conditional ``p(v | h)`` is the multinomial
above, so the Gibbs sampler here samples exactly this model. :meth:`ReplicatedSoftmax.log_prob`
returns the *sequence* log-probability ``-F(v) - log Z_D`` (``counts=True`` adds ``log C(v)``
for the count-vector probability, a distribution that sums to 1 over the count vectors of
length ``D``). The paper's perplexity ``exp(-(1/N) sum_n log p(v_n) / D_n)`` is over word
sequences (as LDA's), and :class:`~latentnlp.models.document.nvdm.NVDM` leaves the
multinomial coefficient out of ``log p(d|z)``, i.e. also scores the sequence: the
perplexities reported here use the sequence log-probability and are comparable with both.
(Using the count-vector probability instead would lower each document's perplexity by the
factor ``exp(log C(v) / D)``, a figure of no model.) All log-probabilities are nats per document.

Partition function. ``Z_D`` depends on the document length (the model is a family of RBMs,
one per ``D``, sharing weights). It has the closed form

    Z_D = sum_h exp(D a . h) (sum_k exp(b_k + (W h)_k))^D,

a sum over ``2^H`` hidden states (:meth:`ReplicatedSoftmax.exact_log_partition`, tiny ``H``
only), and is otherwise estimated by annealed importance sampling (Neal 2001) *separately
for each distinct document length* (the paper likewise runs AIS per document length; no
bucketing of lengths here, so no approximation beyond AIS's own). :class:`RSMAnnealingPath`
anneals from the base model ``p_A(v) = Multinomial(D, softmax(b_A))`` with ``b_A`` the log
smoothed unigram distribution of the training data (the analogue of Salakhutdinov & Murray's
base-rate model) and free hidden units, so ``Z_0 = 2^H (sum_k exp(b_A,k))^D``, along the
geometric path with the hidden units summed out,

    log f_beta(v) = ((1 - beta) b_A + beta b) . v + sum_j softplus(beta (D a_j + (v W)_j)),

with one block-Gibbs sweep at each ``beta`` as the transition:
``h_j ~ Bern(sigmoid(beta (D a_j + (v W)_j)))``, ``v ~ Multinomial(D, softmax((1 - beta) b_A + beta (b + W h)))``.
:func:`rsm_ais` runs the chains of many lengths in one batch; each length gets its own
:class:`~latentnlp.inference.ais.AISResult` with the 3-sigma interval of
:func:`~latentnlp.inference.ais.log_mean_exp_interval` (Salakhutdinov's ``RBM_AIS.m``
convention). ``log Z_hat`` is a stochastic lower bound on ``log Z_D`` in expectation, so an
AIS perplexity tends to be optimistic when the chains have not mixed. The energy grows with
``D``, so long documents need many more temperatures and chains than short ones: with a few
chains and a few hundred temperatures, ``log Z_hat`` of a trained 50-unit model can fall tens
of nats short for documents of hundreds of words. An effective sample size near 1 and a lower
3-sigma end at ``-inf`` are the warning signs; quick estimates (``validation_metrics``'s
``ais_chains``) are for monitoring, not for tables.

Why per-length AIS fails, and what evaluation uses instead. With the words summed out,
``Z_D = sum_h exp(D g(h))``, ``g(h) = a . h + log sum_k exp(b_k + (W h)_k)``: as ``D`` grows the
mass moves from the whole cube ``{0,1}^H`` onto the basins of a few local maxima of ``g``, an
abrupt switch (around 40 words for a PCD-trained 50-unit model on 20 Newsgroups) that
single-bit Gibbs chains do not follow. A trained model's ``g`` can also have a maximum far
from every document: CD-1 on 20 Newsgroups leaves one with ``g = 2.28`` nats per word where a
single word has probability 0.89, and ``log Z_D >= 2.28 D`` then dominates long documents
although no AIS chain ever visits it. :func:`rsm_log_partitions` (``evaluate(ais_space="length")``,
the default of ``latentnlp evaluate``) therefore finds the local maxima (:func:`rsm_hidden_modes`),
runs one AIS chain set through every length with jumps between them (:func:`rsm_length_ais`),
importance-samples their basins (:func:`rsm_mode_importance`), and keeps per length the largest
of these and the rigorous bound :func:`mode_log_partition_bound`.

Learning. The gradient of the NLL of a document is ``grad F(x) - E_{p_D}[grad F(v)]``.
CD-k (Hinton 2002) replaces the model expectation by ``k`` block-Gibbs sweeps started at the
data, each visible step drawing the document's *own* ``D`` words; the paper starts with CD-1
and increases the number of sweeps as learning progresses (``RSMConfig.cd_k`` is fixed per
run: resume a run's weights with a larger ``cd_k`` to follow that schedule). PCD (Tieleman
2008) keeps ``n_chains`` chains alive across updates; each starts at a random training
document and keeps its length, so the chains' lengths are a sample of the training lengths
and ``mean_c grad F(v_c)`` estimates the negative phase averaged over the data's lengths
(the full-data gradient's), not each batch's own lengths. :meth:`ReplicatedSoftmax.forward`
returns the surrogate ``F(x) - mean_c F(v_c)`` (negatives detached) whose gradient is that
estimate; its ``"loss"`` is only a cheap, reported *proxy*: the mean-field reconstruction
cross-entropy ``-sum_k x_k log softmax(b + W p(h|x))_k`` (nats per document; not a likelihood).
Validation reports the pseudo-NLL over word positions (:meth:`ReplicatedSoftmax.pseudo_nll`)
and, on request, a quick AIS perplexity.

Randomness and resuming. Every uniform number training uses comes from
:meth:`ReplicatedSoftmax.sample_noise` (the Trainer's seeded generator); multinomial draws
are made from those uniforms by inverse-CDF sampling (:func:`multinomial_counts`), so each
chain needs as many uniforms as the longest training document (``max_length``, a buffer set
by :meth:`ReplicatedSoftmax.init_from_data`). The persistent chains and ``max_length`` are
buffers saved in every checkpoint, so an interrupted run resumes to exactly the weights of an
uninterrupted one. CD-k runs under ``torchrun`` (each process gets its shard's noise); PCD
refuses, as :class:`~latentnlp.models.density.rbm.BernoulliRBM` does.

Sources: R. Salakhutdinov and G. Hinton, "Replicated Softmax: an Undirected Topic Model",
NIPS 2009; G. Hinton, "Training Products of Experts by Minimizing Contrastive Divergence",
Neural Computation 2002; T. Tieleman, "Training Restricted Boltzmann Machines using
Approximations to the Likelihood Gradient", ICML 2008; R. M. Neal, "Annealed Importance
Sampling", Statistics and Computing 2001; R. Salakhutdinov and I. Murray, "On the Quantitative
Analysis of Deep Belief Networks", ICML 2008; J. Besag, "Statistical Analysis of Non-Lattice
Data", The Statistician 1975 (pseudo-likelihood).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...evaluation.perplexity import PerplexityReport, corpus_perplexity, per_document_perplexity
from ...inference.ais import (
    AISResult,
    AnnealingPath,
    _check_betas,
    betas_schedule,
    log_mean_exp_interval,
)
from ...training.distributed import DistributedContext
from ..density.rbm import BernoulliRBM

if TYPE_CHECKING:  # pragma: no cover
    from ...data.bow import BowCorpus
    from ...training.trainer import TrainConfig, TrainResult

__all__ = [
    "RSMConfig",
    "ReplicatedSoftmax",
    "RSMAnnealingPath",
    "RSMPerplexityReport",
    "log_multinomial_coefficient",
    "multinomial_counts",
    "rsm_ais",
    "rsm_hidden_ais",
    "rsm_length_ais",
    "length_path_schedule",
    "rsm_hidden_modes",
    "mode_log_partition_bound",
    "rsm_mode_importance",
    "rsm_log_partitions",
]

_VISIBLE_BIAS_INIT = ("unigram", "zero")


@dataclass
class RSMConfig:
    """Architecture and learning rule of a Replicated Softmax model.

    Attributes:
        vocab_size: V, words in the vocabulary (2,000 for 20 Newsgroups).
        hidden_dim: H, binary hidden ("topic") units (paper: 50).
        cd_k: Gibbs sweeps per parameter update (paper: CD-1 at first, more sweeps later).
        persistent: ``True``: PCD (Tieleman 2008), chains persist across updates;
            ``False``: CD-k (Hinton 2002, the paper's rule), chains restart at each batch's data.
        n_chains: persistent chains (PCD only).
        init_scale: standard deviation of the initial weights.
        visible_bias_init: ``"unigram"`` starts ``b`` at the log smoothed unigram distribution
            of the training data (``p(v | h = 0)`` is then the unigram model); ``"zero"``.
        weight_decay: L2 penalty ``weight_decay/2 * ||W||^2`` added to the surrogate (0 disables).
    """

    vocab_size: int
    hidden_dim: int = 50
    cd_k: int = 1
    persistent: bool = False
    n_chains: int = 100
    init_scale: float = 0.01
    visible_bias_init: str = "unigram"
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_dim", "cd_k", "n_chains"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RSMConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.persistent, bool):
            raise TypeError(f"RSMConfig.persistent must be True or False, got {self.persistent!r}")
        if not (isinstance(self.init_scale, (int, float)) and self.init_scale > 0 and math.isfinite(self.init_scale)):
            raise ValueError(f"RSMConfig.init_scale must be a positive number, got {self.init_scale!r}")
        if self.visible_bias_init not in _VISIBLE_BIAS_INIT:
            raise ValueError(f"RSMConfig.visible_bias_init must be one of {_VISIBLE_BIAS_INIT}, got {self.visible_bias_init!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"RSMConfig.weight_decay must be >= 0, got {self.weight_decay!r}")

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- helpers


def log_multinomial_coefficient(v: torch.Tensor) -> torch.Tensor:
    """``log C(v) = log D! - sum_k log v_k!``, the number of word orders of each count vector: ``(..., V) -> (...)`` nats."""
    v = v.double()
    return torch.lgamma(v.sum(-1) + 1.0) - torch.lgamma(v + 1.0).sum(-1)


def multinomial_counts(
    logits: torch.Tensor,
    lengths: torch.Tensor,
    uniforms: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Counts ``v_r ~ Multinomial(lengths[r], softmax(logits[r]))`` for every row, by inverse-CDF sampling.

    Each of the ``lengths[r]`` word draws of row ``r`` takes the first word whose cumulative
    probability exceeds its uniform (one sorted search over all rows at once, in float64).

    Args:
        logits: ``(R, V)`` unnormalised log-probabilities.
        lengths: ``(R,)`` non-negative integers, words per row.
        uniforms: ``(R, L)`` with ``L >= max(lengths)``: ``uniforms[r, i]`` for ``i < lengths[r]``
            are row ``r``'s draws (the rest is unused). ``None``: exactly ``sum(lengths)``
            uniforms are drawn from ``generator``.
        generator: random source when ``uniforms`` is ``None``.

    Returns:
        ``(R, V)`` counts in ``logits.dtype``; row ``r`` sums to ``lengths[r]``.

    Raises:
        ValueError: on shape mismatch, negative lengths or too few uniforms per row.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (R, V), got {tuple(logits.shape)}")
    r, v = logits.shape
    lengths = torch.as_tensor(lengths, device=logits.device).long().flatten()
    if lengths.shape != (r,):
        raise ValueError(f"lengths must have shape ({r},) for logits of shape {tuple(logits.shape)}, got {tuple(lengths.shape)}")
    if r and int(lengths.min()) < 0:
        raise ValueError("lengths must be >= 0")
    rows = torch.arange(r, device=logits.device)
    token_rows = rows.repeat_interleave(lengths)  # (T,)
    if uniforms is None:
        u = torch.rand(token_rows.shape[0], generator=generator, device=logits.device, dtype=torch.float64)
    else:
        longest = int(lengths.max()) if r else 0
        if uniforms.dim() != 2 or uniforms.shape[0] != r or uniforms.shape[1] < longest:
            raise ValueError(
                f"uniforms must have shape ({r}, L) with L >= the longest row's {longest} words, got {tuple(uniforms.shape)}"
            )
        mask = torch.arange(uniforms.shape[1], device=logits.device) < lengths.unsqueeze(1)
        u = uniforms[mask].double()  # row-major: the same order as token_rows
    probs = torch.softmax(logits, dim=-1).double()
    cdf = probs.cumsum(-1)
    cdf[:, -1] = 1.0
    # Row r's cumulative probabilities shifted into [r, r + 1]: one increasing sequence for all rows.
    flat = (cdf + rows.unsqueeze(1).double()).flatten()
    idx = torch.searchsorted(flat, u + token_rows.double(), right=True)
    counts = torch.bincount(idx, minlength=r * v)[: r * v]
    return counts.view(r, v).to(logits.dtype)


# --------------------------------------------------------------------------- AIS


class RSMAnnealingPath(AnnealingPath):
    """Geometric path from the multinomial base model to a Replicated Softmax at fixed lengths.

    Args:
        weight: ``(V, H)`` ``W``.
        visible_bias: ``(V,)`` ``b``.
        hidden_bias: ``(H,)`` ``a`` (scaled by the document length in the energy).
        base_bias: ``(V,)`` ``b_A`` of the base ``p_A(v) = Multinomial(D, softmax(b_A))``; zeros give
            the uniform base.
        lengths: ``(L,)`` document lengths ``D >= 1``.

    The state is ``(L * M, V)`` counts, rows ``l*M .. (l+1)*M - 1`` of length ``lengths[l]``
    (lengths are conserved by the transition). With one length the path works with the
    generic :func:`~latentnlp.inference.ais.annealed_importance_sampling`; :func:`rsm_ais`
    runs many lengths in one batch. ``log f_beta`` and ``Z_0`` are over word *sequences*
    (see the module docstring).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        visible_bias: torch.Tensor,
        hidden_bias: torch.Tensor,
        base_bias: torch.Tensor,
        lengths: Sequence[int] | torch.Tensor,
    ) -> None:
        self.W = weight.detach()
        self.b = visible_bias.detach()
        self.a = hidden_bias.detach()
        self.b_base = base_bias.detach().to(self.W)
        v, h = self.W.shape
        for name, t, n in (("visible_bias", self.b, v), ("hidden_bias", self.a, h), ("base_bias", self.b_base, v)):
            if t.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) for a weight of shape {(v, h)}, got {tuple(t.shape)}")
        lengths = torch.as_tensor(lengths).flatten()
        if lengths.numel() == 0 or lengths.is_floating_point() and not bool((lengths == lengths.round()).all()):
            raise ValueError(f"lengths must be a non-empty sequence of integers, got {lengths.tolist()}")
        self.lengths = lengths.long().to(self.W.device)
        if int(self.lengths.min()) < 1:
            raise ValueError(f"document lengths must be >= 1, got {self.lengths.tolist()}")

    def log_base_partitions(self) -> torch.Tensor:
        """``log Z_0(D) = H log 2 + D log sum_k exp(b_A,k)`` for each length: ``(L,)`` float64."""
        return self.W.shape[1] * math.log(2.0) + self.lengths.double() * torch.logsumexp(self.b_base.double(), 0)

    def log_base_partition(self) -> float:
        if self.lengths.numel() != 1:
            raise ValueError(f"this path holds {self.lengths.numel()} lengths: use log_base_partitions() (or rsm_ais)")
        return float(self.log_base_partitions()[0])

    def sample_base(self, n_chains: int, generator: torch.Generator | None) -> torch.Tensor:
        row_lengths = self.lengths.repeat_interleave(n_chains)
        return multinomial_counts(self.b_base.expand(row_lengths.shape[0], -1), row_lengths, generator=generator)

    def _pre(self, v: torch.Tensor) -> torch.Tensor:
        return v @ self.W + v.sum(-1, keepdim=True) * self.a  # (M, H)

    def log_unnormalized(self, state: torch.Tensor, beta: float) -> torch.Tensor:
        pre = self._pre(state).double()
        vis = state.double() @ ((1.0 - beta) * self.b_base + beta * self.b).double()
        return vis + F.softplus(beta * pre).sum(-1)

    def _move(self, v: torch.Tensor, pre: torch.Tensor, beta: float, generator: torch.Generator | None) -> torch.Tensor:
        ph = torch.sigmoid(beta * pre)
        h = (torch.rand(ph.shape, generator=generator, device=ph.device, dtype=ph.dtype) < ph).to(v.dtype)
        logits = (1.0 - beta) * self.b_base + beta * (h @ self.W.T + self.b)
        return multinomial_counts(logits, v.sum(-1).round().long(), generator=generator)

    def transition(self, state: torch.Tensor, beta: float, generator: torch.Generator | None) -> torch.Tensor:
        return self._move(state, self._pre(state), beta, generator)

    def step(self, state, beta_prev, beta, generator, move=True):
        # One matrix product serves the weight update and the hidden draw; the increment is
        # formed term by term in float64 (see RBMBaseRatePath.step).
        pre = self._pre(state)
        pre64 = pre.double()
        dv = state.double() @ (self.b - self.b_base).double()
        increment = (beta - beta_prev) * dv + (F.softplus(beta * pre64) - F.softplus(beta_prev * pre64)).sum(-1)
        if move:
            state = self._move(state, pre, beta, generator)
        return increment, state


@torch.no_grad()
def rsm_ais(
    rsm: "ReplicatedSoftmax",
    lengths: Sequence[int] | torch.Tensor,
    n_chains: int = 100,
    betas: torch.Tensor | int | None = None,
    base_bias: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    max_rows: int = 4096,
) -> dict[int, AISResult]:
    """AIS estimates of ``log Z_D`` for every distinct length in ``lengths``, batched.

    The lengths are processed in groups of ``max(1, max_rows // n_chains)``; within a group
    all chains of all its lengths move together (one :class:`RSMAnnealingPath`).

    Args:
        rsm: anything with ``weight`` ``(V, H)``, ``visible_bias`` ``(V,)``, ``hidden_bias`` ``(H,)``.
        lengths: document lengths (>= 1; repeats are merged).
        n_chains: M AIS runs per length.
        betas: a ``(K + 1,)`` schedule, an int K (Salakhutdinov & Murray's band proportions,
            :func:`~latentnlp.inference.ais.betas_schedule`), or ``None`` for their 14,500.
        base_bias: ``b_A``; default ``rsm.base_rate_bias`` if it has one, else zeros (uniform base).
        generator: random source.
        max_rows: chains moved at once (memory ``max_rows * V`` floats a few times over).

    Returns:
        ``{D: AISResult}`` in increasing ``D``; ``seconds`` is the group's wall time divided
        equally among its lengths, ``extra`` holds ``{"length": D}``.

    Raises:
        ValueError: bad lengths, ``n_chains < 1`` or bad ``betas``.
    """
    W, b, a = rsm.weight, rsm.visible_bias, rsm.hidden_bias
    if base_bias is None:
        base_bias = getattr(rsm, "base_rate_bias", None)
        if base_bias is None:
            base_bias = torch.zeros_like(b)
    distinct = torch.unique(torch.as_tensor(lengths).flatten())
    RSMAnnealingPath(W, b, a, base_bias, distinct)  # validates the lengths once

    def run_group(chunk: torch.Tensor, bl: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        path = RSMAnnealingPath(W, b, a, base_bias, chunk)
        state = path.sample_base(n_chains, generator)
        log_w = torch.zeros(state.shape[0], dtype=torch.float64)
        for k in range(1, len(bl)):
            increment, state = path.step(state, bl[k - 1], bl[k], generator, move=k < len(bl) - 1)
            log_w += increment.double().cpu()
        return log_w, path.log_base_partitions().cpu()

    return _ais_by_length(distinct, n_chains, betas, max_rows, run_group, {})


def _hidden_g(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``g(h) = a . h + log sum_k exp(b_k + (W h)_k)`` of states ``(R, H)``: ``(R,)`` nats per word (``Z_D = sum_h exp(D g(h))``)."""
    return h @ a + torch.logsumexp(h @ W.T + b, -1)


def _flip_gains(h: torch.Tensor, p: torch.Tensor, a: torch.Tensor, exp_w: torch.Tensor, exp_neg_w: torch.Tensor) -> torch.Tensor:
    """``g(h xor e_j) - g(h)`` for every bit: ``(R, H)``, from ``p = softmax(b + W h)`` ``(R, V)``.

    Flipping bit ``j`` adds ``s W_:j`` (``s = +1`` turning it on, ``-1`` off) to the logits, so the
    log-sum-exp changes by ``log sum_k p_k exp(s W_kj)``: two ``(R, V) x (V, H)`` products.
    """
    on = h > 0.5
    return torch.where(on, -a, a) + torch.log(torch.where(on, p @ exp_neg_w, p @ exp_w))


def _hidden_gibbs_sweep(h: torch.Tensor, p: torch.Tensor, t: float | torch.Tensor, a: torch.Tensor, exp_w: torch.Tensor,
                        exp_neg_w: torch.Tensor, u: torch.Tensor) -> None:
    """One systematic-scan Gibbs sweep over the ``H`` bits of ``f_t(h) = exp(t g(h))``, in place.

    ``p(h_j = 1 | h_-j) = sigmoid(t (g(h, h_j = 1) - g(h, h_j = 0)))``. ``h`` ``(R, H)`` 0/1 float64;
    ``p`` ``(R, V)`` ``softmax(b + W h)``, updated with each flip (two ``V``-length products per
    bit instead of a log-sum-exp); ``t`` a float or one temperature per row ``(R,)``; ``u``
    ``(R, H)`` uniforms.
    """
    for j in range(h.shape[1]):
        on = h[:, j] > 0.5
        weighted = p * torch.where(on.unsqueeze(1), exp_neg_w[:, j], exp_w[:, j])  # (R, V) p_k exp(s W_kj)
        ratio = weighted.sum(-1)  # exp(log-sum-exp after the flip - now)
        log_ratio = torch.log(ratio)
        delta = a[j] + torch.where(on, -log_ratio, log_ratio)  # g(h_j = 1) - g(h_j = 0)
        new_on = u[:, j] < torch.sigmoid(t * delta)
        flip = new_on != on
        if bool(flip.any()):
            h[:, j] = new_on.to(h.dtype)
            p.copy_(torch.where(flip.unsqueeze(1), weighted / ratio.unsqueeze(1), p))


def rsm_hidden_ais(
    rsm: "ReplicatedSoftmax",
    lengths: Sequence[int] | torch.Tensor,
    n_chains: int = 20,
    betas: torch.Tensor | int | None = None,
    generator: torch.Generator | None = None,
    max_rows: int = 4096,
) -> dict[int, AISResult]:
    """AIS for ``log Z_D`` over the ``H`` hidden units alone, the words summed out in closed form.

    Summing the word sequences out of the RSM leaves an unnormalised distribution over ``h``:

        f_D(h) = exp(g_D(h)),   g_D(h) = D (a . h + log sum_k exp(b_k + (W h)_k)),   Z_D = sum_h f_D(h)

    (the sum :meth:`ReplicatedSoftmax.exact_log_partition` enumerates for tiny ``H``). This
    anneals from the uniform distribution over ``{0,1}^H`` (``log Z_0 = 0``) along
    ``f_beta(h) = 2^{-H (1 - beta)} f_D(h)^beta``, with one systematic-scan Gibbs sweep over the
    ``H`` bits at each ``beta`` (``p(h_j = 1 | h_-j) = sigmoid(beta (g_D(h, h_j=1) - g_D(h, h_j=0)))``,
    :func:`_hidden_gibbs_sweep`).
    The chain lives in ``H`` binary dimensions instead of ``D`` words over ``V`` types, which is
    this toolkit's alternative to :func:`rsm_ais`'s joint chain (Salakhutdinov & Murray 2008
    sample ``v`` and ``h``); each sweep costs ``2 H`` ``V``-length products per chain.

    Args / Returns / Raises: as :func:`rsm_ais` (no base bias: the base is uniform over ``h``).
    """
    distinct = torch.unique(torch.as_tensor(lengths).flatten())
    if distinct.numel() and int(distinct.min()) < 1:
        raise ValueError(f"lengths must be >= 1, got {int(distinct.min())}")
    W = rsm.weight.detach()  # (V, H), in the model's dtype: float64 would cost 3x the time here
    b, a = rsm.visible_bias.detach(), rsm.hidden_bias.detach()
    h_dim = W.shape[1]
    log2h = h_dim * math.log(2.0)
    exp_w, exp_neg_w = torch.exp(W), torch.exp(-W)

    def run_group(chunk: torch.Tensor, bl: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        d = chunk.to(W).repeat_interleave(n_chains)  # (R,)
        h = (torch.rand(d.numel(), h_dim, generator=generator, device=W.device) < 0.5).to(W.dtype)  # (R, H) ~ uniform
        log_w = torch.zeros(d.numel(), dtype=torch.float64, device=W.device)
        for k in range(1, len(bl)):
            pre = h @ W.T + b  # (R, V), recomputed each sweep so flips do not accumulate rounding
            lse = torch.logsumexp(pre, -1)  # (R,)
            log_w += (bl[k] - bl[k - 1]) * ((d * (h @ a + lse)).double() + log2h)  # g_D(h) - log base(h)
            if k == len(bl) - 1:
                break
            u = torch.rand(d.numel(), h_dim, generator=generator, device=W.device, dtype=W.dtype)
            _hidden_gibbs_sweep(h, torch.exp(pre - lse.unsqueeze(1)), bl[k] * d, a, exp_w, exp_neg_w, u)
        return log_w.cpu(), torch.zeros(chunk.numel(), dtype=torch.float64)  # log Z_0 = 0: a normalised base

    return _ais_by_length(distinct, n_chains, betas, max_rows, run_group, {"space": "hidden"})


def length_path_schedule(
    lengths: Sequence[int] | torch.Tensor,
    n_unit: int = 1000,
    growth: float = 1e-3,
) -> torch.Tensor:
    """Inverse temperatures ``0 = t_0 < t_1 < ... < t_K = max(lengths)`` for :func:`rsm_length_ais`.

    ``[0, 1]`` gets :func:`~latentnlp.inference.ais.betas_schedule` ``(n_unit)`` (Salakhutdinov &
    Murray's band proportions); above 1 the points grow geometrically, ``t_{i+1} = t_i (1 + growth)``,
    and every length in ``lengths`` is added as a point of its own, so the run passes through
    each target exactly.

    Returns:
        ``(K + 1,)`` float64, strictly increasing.

    Raises:
        ValueError: no lengths, a length < 1, ``n_unit < 3`` or ``growth <= 0``.
    """
    d = torch.unique(torch.as_tensor(lengths).flatten()).double()
    if d.numel() == 0 or float(d.min()) < 1 or not bool((d == d.round()).all()):
        raise ValueError(f"lengths must be integers >= 1, got {d.tolist()[:10]}")
    if not (growth > 0 and math.isfinite(growth)):
        raise ValueError(f"growth must be > 0, got {growth!r}")
    unit = betas_schedule(n_unit)
    top = float(d.max())
    if top <= 1.0:
        return unit
    n_geo = math.ceil(math.log(top) / math.log1p(growth))
    geo = torch.exp(torch.arange(1, n_geo + 1, dtype=torch.float64) * math.log1p(growth))
    points = torch.cat([unit, geo[geo < top], d[d > 1.0]])
    return torch.unique(points)  # sorted; ends at max(lengths)


@torch.no_grad()
def rsm_length_ais(
    rsm: "ReplicatedSoftmax",
    lengths: Sequence[int] | torch.Tensor,
    n_chains: int = 100,
    schedule: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    modes: torch.Tensor | None = None,
    flip_prob: float = 0.02,
    return_states: bool = False,
) -> dict[int, AISResult] | tuple[dict[int, AISResult], torch.Tensor]:
    """``log Z_D`` of every length in one AIS run over the hidden units, annealing in the length itself.

    With the words summed out (see :func:`rsm_hidden_ais`), ``Z_D = sum_h exp(D g(h))`` with
    ``g(h) = a . h + log sum_k exp(b_k + (W h)_k)``: the partition functions of *all* lengths
    lie on one tempering path ``f_t(h) = exp(t g(h))``, ``t`` from 0 (uniform over
    ``{0,1}^H``, ``Z_0 = 2^H``) up to the longest length. Every prefix of an AIS run is an AIS
    run for its endpoint (Neal 2001), so the weights accumulated up to ``t = D`` give an
    estimate of ``Z_D`` for each ``D`` on the way; one run serves every length, and a long
    document's estimate comes from all the temperatures below it (about 3,000 for a
    thousand-word document with the default schedule of evaluation) instead of a per-length budget. The estimates of different lengths
    share chains, so their errors are correlated (each is unbiased for its ``Z_D``).

    Transition at each ``t``: one systematic-scan Gibbs sweep over the ``H`` bits,
    ``p(h_j = 1 | h_-j) = sigmoid(t (g(h, h_j = 1) - g(h, h_j = 0)))``. The change of the
    log-sum-exp when bit ``j`` flips is ``log sum_k p_k exp(s W_kj)`` with ``p = softmax(b + W h)``
    kept per chain and ``exp(W)``, ``exp(-W)`` computed once, so a bit costs two ``V``-length
    dot products instead of a ``V``-length log-sum-exp; ``p`` is recomputed from ``h`` at every
    sweep so rounding does not accumulate.

    Mode jumps. As ``t`` grows the mass of ``f_t`` moves from the whole cube onto a few local
    maxima of ``g``; single-bit Gibbs moves cannot cross between them, so chains that sit in a
    lesser maximum when the switch happens stay there, and the estimate falls short by the
    weight of the maxima no chain reached (the effective sample size drops to about 1). Given
    ``modes`` (local maxima of ``g``, e.g. from :func:`rsm_hidden_modes`), each temperature also
    makes one independence Metropolis-Hastings move with the proposal "a mode chosen uniformly,
    each bit flipped with probability ``flip_prob``": a kernel that leaves ``f_t`` invariant,
    so the estimate stays a valid AIS estimate, and chains can reach the dominant maxima.

    Args:
        rsm: anything with ``weight`` ``(V, H)``, ``visible_bias`` ``(V,)``, ``hidden_bias`` ``(H,)``.
        lengths: document lengths (>= 1; repeats are merged).
        n_chains: M AIS runs (shared by all lengths).
        schedule: ``(K + 1,)`` increasing from 0, containing every length; default
            :func:`length_path_schedule` ``(lengths)``.
        generator: random source.
        modes: ``(S, H)`` binary states for the mode-jump proposal, or ``None`` (Gibbs sweeps only).
        flip_prob: per-bit flip probability of the mode-jump proposal, in ``(0, 0.5]``.
        return_states: also return the chains' ``(M, H)`` states at the longest length (a
            simulated-annealing search for the maxima of ``g``, which :func:`rsm_log_partitions`
            polishes with :func:`rsm_hidden_modes`).

    Returns:
        ``{D: AISResult}`` in increasing ``D`` (with ``return_states``, the pair (results, states));
        ``n_temperatures`` is the number of steps up to ``D``; ``seconds`` is the whole run's wall
        time divided equally among the lengths; ``extra`` holds ``{"length": D, "space": "hidden", "path": "length"}``.

    Raises:
        ValueError: bad lengths, ``n_chains < 1``, or a schedule that misses a length or does
            not start at 0.
    """
    if isinstance(n_chains, bool) or not isinstance(n_chains, int) or n_chains < 1:
        raise ValueError(f"n_chains must be a positive integer, got {n_chains!r}")
    distinct = torch.unique(torch.as_tensor(lengths).flatten())
    if schedule is None:
        schedule = length_path_schedule(distinct)
    ts = torch.as_tensor(schedule, dtype=torch.float64).flatten()
    if ts.numel() < 2 or float(ts[0]) != 0.0 or not bool((ts[1:] > ts[:-1]).all()):
        raise ValueError("schedule must start at 0 and be strictly increasing")
    position = {float(t): i for i, t in enumerate(ts.tolist())}
    missing = [int(d) for d in distinct.tolist() if float(d) not in position]
    if missing:
        raise ValueError(f"schedule does not pass through the lengths {missing[:10]}")
    targets = {position[float(d)]: int(d) for d in distinct.tolist()}
    W = rsm.weight.detach().double()  # (V, H)
    b, a = rsm.visible_bias.detach().double(), rsm.hidden_bias.detach().double()
    h_dim = W.shape[1]
    exp_w, exp_neg_w = torch.exp(W), torch.exp(-W)  # (V, H)
    jumps = None if modes is None else _ModeJumps(W, b, a, modes, flip_prob)
    t0 = time.perf_counter()
    h = (torch.rand(n_chains, h_dim, generator=generator, device=W.device) < 0.5).double()  # uniform base
    log_w = torch.zeros(n_chains, dtype=torch.float64, device=W.device)
    tl = ts.tolist()
    found: dict[int, torch.Tensor] = {}
    last = len(tl) - 1
    for k in range(1, len(tl)):
        pre = h @ W.T + b  # (M, V)
        lse = torch.logsumexp(pre, -1)  # (M,)
        log_w += (tl[k] - tl[k - 1]) * (h @ a + lse)  # log f_t(h) - log f_{t_prev}(h) = (t - t_prev) g(h)
        if k in targets:
            found[targets[k]] = log_w.clone()
        if k == last:
            break
        t = tl[k]
        if jumps is not None:
            h, pre, lse = jumps.move(h, pre, lse, t, generator)
        u = torch.rand(n_chains, h_dim, generator=generator, device=W.device, dtype=torch.float64)
        _hidden_gibbs_sweep(h, torch.exp(pre - lse.unsqueeze(1)), t, a, exp_w, exp_neg_w, u)
    seconds = (time.perf_counter() - t0) / max(1, len(targets))
    log2h = h_dim * math.log(2.0)
    out: dict[int, AISResult] = {}
    for d in sorted(found):
        lw = found[d].cpu()
        log_z, lower, upper = log_mean_exp_interval(lw, log2h)
        out[d] = AISResult(
            log_z=log_z, log_z_lower=lower, log_z_upper=upper, log_z_base=log2h, log_weights=lw,
            n_chains=n_chains, n_temperatures=position[float(d)], seconds=seconds,
            extra={"length": d, "space": "hidden", "path": "length"},
        )
    return (out, h) if return_states else out


class _ModeJumps:
    """The independence Metropolis-Hastings move of :func:`rsm_length_ais` (see there).

    Proposal ``q(h) = (1/S) sum_s rho^{d(h, m_s)} (1 - rho)^{H - d(h, m_s)}`` (``d``: Hamming
    distance), which is positive on every state, so the move is reversible with respect to
    ``f_t`` for any ``t``.
    """

    def __init__(self, W: torch.Tensor, b: torch.Tensor, a: torch.Tensor, modes: torch.Tensor, flip_prob: float) -> None:
        modes = torch.as_tensor(modes).to(W).detach()
        if modes.dim() != 2 or modes.shape[1] != W.shape[1] or modes.shape[0] < 1:
            raise ValueError(f"modes must have shape (S, {W.shape[1]}) with S >= 1, got {tuple(modes.shape)}")
        if not bool(((modes == 0) | (modes == 1)).all()):
            raise ValueError("modes must hold 0/1 states")
        if not (0.0 < flip_prob <= 0.5):
            raise ValueError(f"flip_prob must be in (0, 0.5], got {flip_prob!r}")
        self.W, self.b, self.a, self.modes = W, b, a, modes
        self.log_rho, self.log_keep = math.log(flip_prob), math.log1p(-flip_prob)
        self.rho = flip_prob

    def log_q(self, h: torch.Tensor) -> torch.Tensor:
        m = self.modes
        dist = h @ (1.0 - m).T + (1.0 - h) @ m.T  # (R, S) Hamming distances
        logs = dist * self.log_rho + (m.shape[1] - dist) * self.log_keep
        return torch.logsumexp(logs, -1) - math.log(m.shape[0])

    def move(self, h, pre, lse, t, generator):
        r, h_dim = h.shape
        pick = torch.randint(self.modes.shape[0], (r,), generator=generator, device=h.device)
        flips = torch.rand(r, h_dim, generator=generator, device=h.device, dtype=h.dtype) < self.rho
        proposal = torch.where(flips, 1.0 - self.modes[pick], self.modes[pick])
        pre_p = proposal @ self.W.T + self.b
        lse_p = torch.logsumexp(pre_p, -1)
        log_accept = t * (proposal @ self.a + lse_p - h @ self.a - lse) + self.log_q(h) - self.log_q(proposal)
        accept = torch.log(torch.rand(r, generator=generator, device=h.device, dtype=h.dtype)) < log_accept
        col = accept.unsqueeze(1)
        return torch.where(col, proposal, h), torch.where(col, pre_p, pre), torch.where(accept, lse_p, lse)


def rsm_hidden_modes(
    rsm: "ReplicatedSoftmax",
    starts: torch.Tensor | int = 3000,
    generator: torch.Generator | None = None,
    max_iter: int = 1000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local maxima of ``g(h) = a . h + log sum_k exp(b_k + (W h)_k)`` by steepest single-bit ascent.

    ``Z_D = sum_h exp(D g(h))`` (see :func:`rsm_length_ais`), so every state ``h`` gives the
    rigorous bound ``log Z_D >= D g(h)``, and a set of distinct states the bound
    ``log Z_D >= log sum_h exp(D g(h))`` (:func:`mode_log_partition_bound`). From each start the
    ascent flips the bit with the largest gain until no flip gains; all starts move at once
    (the gains of all ``H`` flips of all starts cost two ``(S, V) x (V, H)`` products).

    Args:
        rsm: anything with ``weight`` ``(V, H)``, ``visible_bias``, ``hidden_bias``.
        starts: ``(S, H)`` 0/1 starting states, or a number of uniform random starts.
        generator: random source for random starts.
        max_iter: most flips per start.

    Returns:
        ``(modes, g)``: the distinct local maxima ``(S', H)`` float64 and their ``g`` ``(S',)``
        nats per word, in decreasing ``g``.
    """
    W = rsm.weight.detach().double()
    b, a = rsm.visible_bias.detach().double(), rsm.hidden_bias.detach().double()
    if isinstance(starts, int):
        if starts < 1:
            raise ValueError(f"starts must be >= 1, got {starts}")
        h = (torch.rand(starts, W.shape[1], generator=generator, device=W.device) < 0.5).double()
    else:
        h = torch.as_tensor(starts).to(W).clone()
        if h.dim() != 2 or h.shape[1] != W.shape[1] or not bool(((h == 0) | (h == 1)).all()):
            raise ValueError(f"starts must be 0/1 states of shape (S, {W.shape[1]}), got {tuple(h.shape)}")
    exp_w, exp_neg_w = torch.exp(W), torch.exp(-W)
    for _ in range(max_iter):
        gain = _flip_gains(h, torch.softmax(h @ W.T + b, -1), a, exp_w, exp_neg_w)  # (S, H)
        best, j = gain.max(1)
        moving = torch.nonzero(best > 1e-12).flatten()
        if moving.numel() == 0:
            break
        h[moving, j[moving]] = 1.0 - h[moving, j[moving]]
    modes = torch.unique(h, dim=0)
    g = _hidden_g(modes, W, b, a)
    order = torch.argsort(g, descending=True)
    return modes[order], g[order]


@torch.no_grad()
def rsm_mode_importance(
    rsm: "ReplicatedSoftmax",
    lengths: Sequence[int] | torch.Tensor,
    modes: torch.Tensor,
    n_samples: int = 1000,
    defensive: float = 0.1,
    generator: torch.Generator | None = None,
) -> dict[int, AISResult]:
    """``log Z_D`` for each length by importance sampling from a mixture of the basins of ``g``'s local maxima.

    ``Z_D = sum_h exp(D g(h))`` (see :func:`rsm_length_ais`). For long documents the mass of
    ``exp(D g)`` sits in the basins of a few local maxima ``m`` of ``g``, where the bits flip
    nearly independently: the proposal component of mode ``m`` flips bit ``j`` with
    ``sigmoid(D (g(m xor e_j) - g(m)))`` (its exact conditional at ``m``), and the components are
    weighted by their estimated mass ``exp(D g(m)) prod_j (1 + exp(D (g(m xor e_j) - g(m))))``.
    A share ``defensive`` of the draws comes from the uniform distribution (Hesterberg's
    defensive mixture), so the weights ``exp(D g(h)) / q_D(h)`` are bounded by
    ``2^H exp(D g_max) / defensive`` and the estimator is unbiased for ``Z_D`` for every length.
    It is accurate where the basins hold the mass (long documents) and noisy where the
    distribution is spread over the cube (short ones), the opposite of :func:`rsm_length_ais`
    without mode jumps; :meth:`ReplicatedSoftmax.evaluate` with ``ais_space="length"`` runs both.

    Args:
        rsm: anything with ``weight`` ``(V, H)``, ``visible_bias``, ``hidden_bias``.
        lengths: document lengths (>= 1; repeats merged).
        modes: ``(S, H)`` distinct local maxima of ``g`` (:func:`rsm_hidden_modes`).
        n_samples: draws per length.
        defensive: share of uniform draws, in ``(0, 1)``.
        generator: random source.

    Returns:
        ``{D: AISResult}`` (``n_temperatures = 0``; ``extra["method"] = "mode importance sampling"``),
        ``log Z`` with its 3-sigma interval as for AIS.

    Raises:
        ValueError: bad lengths, modes, ``n_samples < 2`` or ``defensive`` outside ``(0, 1)``.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    if not (0.0 < defensive < 1.0):
        raise ValueError(f"defensive must be in (0, 1), got {defensive!r}")
    distinct = torch.unique(torch.as_tensor(lengths).flatten())
    if distinct.numel() == 0 or int(distinct.min()) < 1:
        raise ValueError(f"lengths must be >= 1, got {distinct.tolist()[:10]}")
    W = rsm.weight.detach().double()
    b, a = rsm.visible_bias.detach().double(), rsm.hidden_bias.detach().double()
    h_dim = W.shape[1]
    m = torch.as_tensor(modes).to(W)
    if m.dim() != 2 or m.shape[1] != h_dim or m.shape[0] < 1 or not bool(((m == 0) | (m == 1)).all()):
        raise ValueError(f"modes must be 0/1 states of shape (S, {h_dim}), got {tuple(m.shape)}")

    g_m = _hidden_g(m, W, b, a)  # (S,)
    gains = _flip_gains(m, torch.softmax(m @ W.T + b, -1), a, torch.exp(W), torch.exp(-W))  # (S, H)
    gains = gains.clamp(max=0.0)  # local maxima: every single flip loses (clamped against rounding)
    sign = 1.0 - 2.0 * m  # (S, H): flipping bit j of m turns h_j into m_j + sign
    log_uniform = math.log(defensive) - h_dim * math.log(2.0)
    out: dict[int, AISResult] = {}
    for d in distinct.tolist():
        t0 = time.perf_counter()
        logit = d * gains  # (S, H) log-odds of flipping each bit
        log_flip, log_keep = F.logsigmoid(logit), F.logsigmoid(-logit)
        log_mass = d * g_m + F.softplus(logit).sum(-1)  # (S,) estimated basin masses
        log_pi = log_mass - torch.logsumexp(log_mass, 0)
        comp = torch.multinomial(log_pi.exp().float(), n_samples, replacement=True, generator=generator).to(W.device)
        uniform = torch.rand(n_samples, generator=generator, device=W.device) < defensive
        flips = torch.rand(n_samples, h_dim, generator=generator, device=W.device, dtype=W.dtype) < torch.sigmoid(logit[comp])
        h = torch.where(flips, 1.0 - m[comp], m[comp])
        coin = (torch.rand(n_samples, h_dim, generator=generator, device=W.device) < 0.5).to(W.dtype)
        h = torch.where(uniform.unsqueeze(1), coin, h)
        # log q_m(h) = sum_j keep_mj + sum_j [h_j != m_j] (flip_mj - keep_mj), with [h_j != m_j] = m_j + h_j sign_mj
        diff = (log_flip - log_keep)  # (S, H)
        log_qm = log_keep.sum(-1) + (m * diff).sum(-1) + h @ (sign * diff).T  # (N, S)
        log_q = torch.logaddexp(torch.full((n_samples,), log_uniform, dtype=W.dtype, device=W.device),
                                math.log1p(-defensive) + torch.logsumexp(log_qm + log_pi, -1))
        lw = (d * _hidden_g(h, W, b, a) - log_q).cpu()
        log_z, lower, upper = log_mean_exp_interval(lw, 0.0)
        out[int(d)] = AISResult(
            log_z=log_z, log_z_lower=lower, log_z_upper=upper, log_z_base=0.0, log_weights=lw, n_chains=n_samples,
            n_temperatures=0, seconds=time.perf_counter() - t0,
            extra={"length": int(d), "space": "hidden", "method": "mode importance sampling"},
        )
    return out


def mode_log_partition_bound(g: torch.Tensor, lengths: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """``log sum_s exp(D g_s) <= log Z_D`` for each length: a rigorous lower bound from distinct states.

    Args:
        g: ``(S,)`` values of ``g`` at *distinct* hidden states (:func:`rsm_hidden_modes`).
        lengths: ``(L,)`` document lengths.

    Returns:
        ``(L,)`` float64 nats.
    """
    d = torch.as_tensor(lengths, dtype=torch.float64).flatten()
    return torch.logsumexp(d.unsqueeze(1) * g.double().cpu().unsqueeze(0), 1)


@torch.no_grad()
def rsm_log_partitions(
    rsm: "ReplicatedSoftmax",
    lengths: Sequence[int] | torch.Tensor,
    starts: torch.Tensor | None = None,
    n_chains: int = 100,
    n_unit: int = 1000,
    n_samples: int = 1000,
    n_modes: int = 200,
    generator: torch.Generator | None = None,
) -> dict[int, AISResult]:
    """``log Z_D`` per length from three lower-side estimates, taking the largest (this toolkit's RSM evaluation).

    1. :func:`rsm_hidden_modes` from ``starts`` (default: 3,000 uniform random states) and from
       every word's preferred state ``[W_k + a > 0]`` finds local maxima of ``g``. (On 20
       Newsgroups the largest maxima are of the second kind, one word with probability 0.6-0.9,
       and ascent from random starts found the best one in some models only.)
    2. :func:`rsm_length_ais`, ``n_chains`` chains through every length (``n_unit`` temperatures in
       ``[0, 1]``, geometric growth ``3 / n_unit`` above), with mode jumps to the best
       ``n_modes`` maxima. Accurate for short documents, where the mass is spread over the cube.
       Its chains' final states, polished by ascent, join the maxima (the annealing finds maxima
       that ascent from random starts misses); :func:`mode_log_partition_bound` turns all of
       them into a rigorous lower bound.
    3. :func:`rsm_mode_importance`, ``n_samples`` draws per length from the basins of the best
       ``n_modes`` maxima. Accurate for long documents, where the mass sits in the basins.

    Both estimators are unbiased for ``Z_D``, so their logarithms err low in expectation, and
    each falls short, never over, when its draws miss part of the mass (the chains stay in
    lesser maxima after the switch from the spread to the concentrated regime; the basins miss
    the spread-out mass of short documents). The largest of the three is kept per length: the
    choice can add at most the Monte-Carlo noise of the larger estimate (a few hundredths of a
    nat when its effective sample size is large), against the tens of nats a missed maximum
    costs. Checked against exact enumeration on trained 20-unit models in
    ``benchmarks/rsm_estimators.py``.

    Returns:
        ``{D: AISResult}``: the chosen estimate, with ``extra`` holding ``"method"`` (``"ais"``,
        ``"importance"`` or ``"mode bound"``) and all three values (``"ais_log_z"``,
        ``"importance_log_z"``, ``"mode_bound"``) and the number of modes found.
    """
    distinct = sorted({int(d) for d in torch.as_tensor(lengths).flatten().tolist()})
    if starts is None:
        starts = 3000
    if isinstance(starts, int):
        starts = (torch.rand(starts, rsm.weight.shape[1], generator=generator, device=rsm.weight.device) < 0.5).double()
    # Each word's preferred state h_j = [W_kj + a_j > 0]: the search then reaches the maxima where one
    # word takes most of the probability, the kind that training leaves far from every document.
    preferred = (rsm.weight.detach() + rsm.hidden_bias.detach() > 0).double()
    first, _ = rsm_hidden_modes(rsm, torch.cat([torch.as_tensor(starts).double().to(preferred), preferred]))
    ais, annealed = rsm_length_ais(rsm, distinct, n_chains=n_chains, generator=generator, modes=first[:n_modes],
                                   schedule=length_path_schedule(distinct, n_unit=n_unit, growth=3.0 / n_unit), return_states=True)
    # The chains end near the best maxima at the longest length (annealing is a better search than
    # ascent from random starts): polish their states and add them to the maxima found before.
    modes, g = rsm_hidden_modes(rsm, torch.cat([first, annealed.to(first)]))
    top = modes[:n_modes]
    bound = mode_log_partition_bound(g, distinct)
    importance = rsm_mode_importance(rsm, distinct, top, n_samples=n_samples, generator=generator)
    out: dict[int, AISResult] = {}
    for i, d in enumerate(distinct):
        values = {"ais": ais[d].log_z, "importance": importance[d].log_z, "mode bound": float(bound[i])}
        method = max(values, key=values.get)
        # The better sampler's result (its weights and effective sample size); when the bound is
        # larger still (its extra modes' share, or the sampler's noise), log Z and the ends of the
        # interval are raised to it: the bound is certain.
        sampler = ais[d] if values["ais"] >= values["importance"] else importance[d]
        lz = values[method]
        chosen = dataclasses.replace(sampler, log_z=lz, log_z_lower=max(sampler.log_z_lower, values["mode bound"]),
                                     log_z_upper=max(sampler.log_z_upper, lz))
        chosen.seconds = ais[d].seconds + importance[d].seconds
        chosen.extra = {"length": d, "space": "hidden", "method": method, "ais_log_z": values["ais"],
                        "importance_log_z": values["importance"], "mode_bound": values["mode bound"], "n_modes": int(modes.shape[0])}
        out[d] = chosen
    return out


def _ais_by_length(
    distinct: torch.Tensor,
    n_chains: int,
    betas: torch.Tensor | int | None,
    max_rows: int,
    run_group,
    extra: dict,
) -> dict[int, AISResult]:
    """What :func:`rsm_ais` and :func:`rsm_hidden_ais` share: validation, grouping of lengths, results.

    ``run_group(chunk, betas_list)`` runs ``n_chains`` chains for every length of ``chunk``
    (those of one length contiguous) and returns their ``(len(chunk) * n_chains,)`` float64 log
    weights and the ``(len(chunk),)`` base log-partitions ``log Z_0``.
    """
    if isinstance(n_chains, bool) or not isinstance(n_chains, int) or n_chains < 1:
        raise ValueError(f"n_chains must be a positive integer, got {n_chains!r}")
    if betas is None or isinstance(betas, int):
        betas = betas_schedule(betas)
    bl = _check_betas(betas).tolist()
    group = max(1, max_rows // n_chains)
    out: dict[int, AISResult] = {}
    for start in range(0, distinct.numel(), group):
        chunk = distinct[start : start + group]
        t0 = time.perf_counter()
        log_w, log_z0 = run_group(chunk, bl)
        seconds = (time.perf_counter() - t0) / chunk.numel()
        for i, d in enumerate(chunk.tolist()):
            lw = log_w[i * n_chains : (i + 1) * n_chains]
            log_z, lower, upper = log_mean_exp_interval(lw, float(log_z0[i]))
            out[int(d)] = AISResult(
                log_z=log_z, log_z_lower=lower, log_z_upper=upper, log_z_base=float(log_z0[i]), log_weights=lw.clone(),
                n_chains=n_chains, n_temperatures=len(bl) - 1, seconds=seconds, extra={"length": int(d), **extra},
            )
    return out


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class RSMPerplexityReport(PerplexityReport):
    """Perplexities of a Replicated Softmax from AIS estimates of ``log Z_D`` (one per document length).

    The RSM has no variational bound: ``bound_per_document``, ``bound_corpus``,
    ``elbo_nats_per_doc`` and ``kl_nats_per_doc`` are NaN and ``elbo_samples`` is 0.
    ``estimate_per_document`` / ``estimate_corpus`` use ``log p(d) = -F(v) - log Z_hat_D``
    (word-sequence probability, nats; see the module docstring) and ``iw_samples`` is the
    number of AIS chains per length (AIS is importance sampling on an extended space).

    Attributes (besides :class:`PerplexityReport`'s):
        log_p_nats_per_doc: mean AIS estimate of ``log p(d)`` (word sequence), nats per document.
        log_multinomial_coefficient_nats_per_doc: mean ``log C(v)``; add it to
            ``log_p_nats_per_doc`` for the mean log-probability of the count vectors.
        estimate_per_document_3sd / estimate_corpus_3sd: the perplexities with every length's
            ``log Z`` at the lower / upper end of its AIS 3-sigma interval (``None`` where the
            lower end is ``-inf``). They describe the Monte-Carlo spread of the AIS weights only,
            not a bias from chains that have not mixed.
        n_lengths: distinct document lengths, i.e. AIS runs.
        ais_chains / ais_temperatures: M and K of each run.
        ais_space: ``"joint"`` (:func:`rsm_ais`, words and hidden units), ``"hidden"``
            (:func:`rsm_hidden_ais`, hidden units with the words summed out) or ``"length"``
            (:func:`rsm_log_partitions`).
        log_z_methods: ``"length"`` only: how many lengths took their ``log Z_D`` from each of
            ``"ais"``, ``"importance"`` and ``"mode bound"``.
        low_ess_document_share: share of the documents whose length's ``log Z_D`` estimate has an
            effective sample size below 10% of its chains or draws (a warning sign of weights
            dominated by a few runs).
        estimate_per_document_low_ess_plus_log2: the per-document perplexity with the ``log Z_D``
            of those documents raised by ``log 2``: a sensitivity figure for ``"length"``, where
            a low effective sample size marks the lengths between the spread-out and the
            concentrated regime; if the AIS chains hold the spread-out mass and the basin draws
            the concentrated mass, the largest of the two falls short of their sum by at most ``log 2``.
        ais_min_effective_sample_size: the smallest effective sample size over the runs.
        ais_seconds: wall time of the AIS runs (0 when a finished estimate was reused).
        ais_base: the base distribution's description.
    """

    log_p_nats_per_doc: float = math.nan
    log_multinomial_coefficient_nats_per_doc: float = math.nan
    estimate_per_document_3sd: tuple[float | None, float | None] = (None, None)
    estimate_corpus_3sd: tuple[float | None, float | None] = (None, None)
    n_lengths: int = 0
    ais_chains: int = 0
    ais_temperatures: int = 0
    ais_min_effective_sample_size: float = math.nan
    ais_seconds: float = 0.0
    ais_base: str = ""
    ais_space: str = "joint"
    log_z_methods: dict = dataclasses.field(default_factory=dict)
    low_ess_document_share: float = math.nan
    estimate_per_document_low_ess_plus_log2: float = math.nan

    def _estimator_text(self) -> str:
        if self.ais_space == "length":
            methods = ", ".join(f"{k} {v}" for k, v in sorted(self.log_z_methods.items()))
            return (f"   (log Z_D: largest of one AIS run through all lengths with mode jumps ({self.ais_chains} chains), "
                    f"mode importance sampling and the mode bound; lengths per method: {methods})")
        return (f"   (log Z_D by AIS per length: {self.ais_chains} chains, {self.ais_temperatures} temperatures"
                + (", over the hidden units with the words summed out)" if self.ais_space == "hidden" else ")"))

    def format(self) -> str:
        def interval(pair: tuple[float | None, float | None]) -> str:
            return "[" + ", ".join("?" if p is None else f"{p:.1f}" for p in pair) + "]"

        return "\n".join(
            [
                f"documents: {self.n_docs}   tokens: {self.n_tokens}   distinct lengths: {self.n_lengths}",
                f"{'':28s}{'per-document':>14s}{'corpus':>12s}",
                f"{'perplexity, AIS estimate':28s}{self.estimate_per_document:14.1f}{self.estimate_corpus:12.1f}"
                + self._estimator_text(),
                f"{'  log Z at -/+ 3 sd':28s}{interval(self.estimate_per_document_3sd):>14s}{interval(self.estimate_corpus_3sd):>12s}",
                f"log p(word sequence) {self.log_p_nats_per_doc:.2f} nats/doc; log multinomial coefficient "
                f"{self.log_multinomial_coefficient_nats_per_doc:.2f} nats/doc; min ESS {self.ais_min_effective_sample_size:.1f}; "
                f"documents whose log Z_D has ESS < 10% of its draws: {100 * self.low_ess_document_share:.1f}% "
                f"(their log Z_D + log 2: per-document perplexity {self.estimate_per_document_low_ess_plus_log2:.1f})",
            ]
        )


def _count_methods(runs: Sequence[AISResult]) -> dict:
    return dict(Counter(r.extra["method"] for r in runs if "method" in r.extra))


# --------------------------------------------------------------------------- the model


class ReplicatedSoftmax(nn.Module):
    """The Replicated Softmax model: a family of RBMs, one per document length, sharing weights.

    Args:
        config: an :class:`RSMConfig` (or the same fields as keywords). Initial weights are
            drawn from torch's global generator (seed it, or use ``torch.random.fork_rng``).

    Parameters and buffers: ``weight`` ``(V, H)``, ``visible_bias`` ``(V,)``, ``hidden_bias``
    ``(H,)`` (``a``, multiplied by ``D`` in the energy); buffers ``chains`` ``(n_chains, V)``
    counts (PCD; ``(0, V)`` for CD-k), ``base_rate_bias`` ``(V,)`` (log unigram distribution
    AIS starts from; zeros until :meth:`init_from_data`) and ``max_length`` (0-d int64, the
    longest training document, which sets the noise width). Shapes: ``v``/``x`` are ``(B, V)``
    float word counts; ``h`` is ``(B, H)`` 0/1; ``D`` is ``(B,)``.
    """

    def __init__(self, config: RSMConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = RSMConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either an RSMConfig or keyword fields, not both")
        self.config = config
        v, h = config.vocab_size, config.hidden_dim
        self.weight = nn.Parameter(torch.randn(v, h) * config.init_scale)
        self.visible_bias = nn.Parameter(torch.zeros(v))
        self.hidden_bias = nn.Parameter(torch.zeros(h))
        self.register_buffer("chains", torch.zeros(config.n_chains if config.persistent else 0, v))
        self.register_buffer("base_rate_bias", torch.zeros(v))
        self.register_buffer("max_length", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ checks
    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def _device(self) -> torch.device:
        return self.weight.device

    def check_input(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """``x`` as a float tensor on the model's device, after checking it is ``(B, V)`` non-negative integer counts.

        Raises:
            ValueError: naming ``name`` and its shape: wrong rank or width, or a negative or fractional entry.
        """
        x = torch.as_tensor(x)
        if x.dim() != 2 or x.shape[1] != self.vocab_size:
            raise ValueError(f"{name} must have shape (B, {self.vocab_size}), got {tuple(x.shape)}")
        x = x.to(device=self._device(), dtype=self.weight.dtype)
        bad = (x < 0) | (x != x.round()) | ~torch.isfinite(x)
        if bool(bad.any()):
            row, col = (int(i) for i in torch.nonzero(bad)[0])
            raise ValueError(
                f"{name} of shape {tuple(x.shape)} must hold non-negative integer word counts; "
                f"{name}[{row}, {col}] = {float(x[row, col])!r}"
            )
        return x

    def _dense(self, corpus: "BowCorpus | torch.Tensor", name: str) -> torch.Tensor:
        if isinstance(corpus, torch.Tensor):
            return self.check_input(corpus, name)
        if corpus.vocab_size != self.vocab_size:
            raise ValueError(f"{name} corpus has V = {corpus.vocab_size}, the model has V = {self.vocab_size}")
        return corpus.to_dense(dtype=self.weight.dtype).to(self._device())

    # ------------------------------------------------------------------ model
    def hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        """``D a + v W``: ``(B, V) -> (B, H)`` (``D = v.sum(-1)``)."""
        return v @ self.weight + v.sum(-1, keepdim=True) * self.hidden_bias

    def visible_logits(self, h: torch.Tensor) -> torch.Tensor:
        """``b + W h``: ``(B, H) -> (B, V)``, the logits of each word draw given ``h``."""
        return h @ self.weight.T + self.visible_bias

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """``p(h_j = 1 | v) = sigmoid(D a_j + (v W)_j)``: ``(B, H)``."""
        return torch.sigmoid(self.hidden_logits(v))

    def word_probs(self, h: torch.Tensor) -> torch.Tensor:
        """``softmax(b + W h)``: ``(B, V)``, each word draw's distribution given ``h``."""
        return torch.softmax(self.visible_logits(h), dim=-1)

    def visible_log_prob_given_hidden(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``log p(v | h) = log Multinomial(v; D, softmax(b + W h))`` of the count vector (with ``log C(v)``): ``(B,)`` nats."""
        return (torch.log_softmax(self.visible_logits(h), -1) * v).sum(-1) + log_multinomial_coefficient(v).to(v.dtype)

    def _free_energy(self, v: torch.Tensor, pre: torch.Tensor | None = None) -> torch.Tensor:
        if pre is None:
            pre = self.hidden_logits(v)
        return -(v @ self.visible_bias) - F.softplus(pre).sum(-1)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """``F(v) = -b.v - sum_j softplus(D a_j + (v W)_j)``: ``(B,)`` nats; ``p(w_1..w_D) = exp(-F(v)) / Z_D``.

        Raises:
            ValueError: if ``v`` is not ``(B, V)`` counts.
        """
        return self._free_energy(self.check_input(v, "v"))

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``E(v, h) = -b.v - D a.h - v W h``: ``(B,)``."""
        d = v.sum(-1)
        return -(v @ self.visible_bias) - d * (h @ self.hidden_bias) - ((v @ self.weight) * h).sum(-1)

    def exact_log_partition(self, lengths: Sequence[int] | torch.Tensor | int, max_hidden: int = 20, chunk_size: int = 4096) -> torch.Tensor:
        """``log Z_D`` by enumerating the ``2^H`` hidden states (word sequences summed in closed form).

        ``Z_D = sum_h exp(D (a.h + log sum_k exp(b_k + (W h)_k)))``. Float64, differentiable
        with respect to the parameters (so ``F(x) + log Z_D`` is the exact NLL for autograd).

        Args:
            lengths: one length or a ``(L,)`` sequence of lengths ``D >= 0``.
            max_hidden: refuse above this many hidden units.
            chunk_size: hidden states processed at once.

        Returns:
            ``(L,)`` float64 (0-d for a single int), nats.

        Raises:
            ValueError: ``H > max_hidden`` or a negative length.
        """
        h_dim = self.config.hidden_dim
        if h_dim > max_hidden:
            raise ValueError(
                f"exact log Z_D enumerates 2^{h_dim} hidden states; refusing above {max_hidden} hidden units: "
                "use AIS (estimate_log_partitions) instead"
            )
        scalar = isinstance(lengths, int)
        d = torch.as_tensor(lengths, dtype=torch.float64, device=self._device()).flatten()
        if d.numel() and float(d.min()) < 0:
            raise ValueError(f"lengths must be >= 0, got {d.tolist()}")
        W, b, a = self.weight.double(), self.visible_bias.double(), self.hidden_bias.double()
        parts = []
        for start in range(0, 2**h_dim, chunk_size):
            k = torch.arange(start, min(start + chunk_size, 2**h_dim), device=W.device)
            h = ((k.unsqueeze(1) >> torch.arange(h_dim, device=W.device)) & 1).double()  # (C, H)
            parts.append(h @ a + torch.logsumexp(h @ W.T + b, -1))  # (C,)
        g = torch.cat(parts)
        out = torch.logsumexp(d.unsqueeze(1) * g.unsqueeze(0), -1)
        return out[0] if scalar else out

    def log_prob(self, x: torch.Tensor, log_z: float | torch.Tensor, counts: bool = False) -> torch.Tensor:
        """``log p(w_1..w_D) = -F(x) - log Z_D``, or with ``counts=True`` the count vector's ``+ log C(x)``.

        Args:
            x: ``(B, V)`` counts.
            log_z: ``log Z_D`` of each document: a float (all of one length) or a ``(B,)`` tensor
                (exact, :meth:`exact_log_partition`, or an AIS estimate).
            counts: add the multinomial coefficient (probability of the bag of words rather
                than of one ordering of it).

        Returns:
            ``(B,)`` nats.
        """
        x = self.check_input(x, "x")
        out = -self._free_energy(x) - torch.as_tensor(log_z, dtype=x.dtype, device=x.device)
        if counts:
            out = out + log_multinomial_coefficient(x).to(out.dtype)
        return out

    def exact_log_prob(self, x: torch.Tensor, counts: bool = False) -> torch.Tensor:
        """:meth:`log_prob` with the exact ``log Z_D`` of each document (tiny ``H`` only): ``(B,)`` float64 nats."""
        x = self.check_input(x, "x")
        out = -self._free_energy(x).double() - self.exact_log_partition(x.sum(-1))
        return out + log_multinomial_coefficient(x) if counts else out

    # ------------------------------------------------------------------ Gibbs
    @property
    def _noise_width(self) -> int:
        return self.config.hidden_dim + int(self.max_length)

    def _gibbs_from_uniforms(self, v: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        """Block Gibbs sweeps ``v -> h -> v``; ``uniforms`` is ``(k, C, H + L)``: hidden draws, then word draws."""
        hdim = self.config.hidden_dim
        lengths = v.sum(-1).round().long()
        for u in uniforms:
            h = (u[:, :hdim] < self.hidden_probs(v)).to(v.dtype)
            v = multinomial_counts(self.visible_logits(h), lengths, u[:, hdim:])
        return v

    @torch.no_grad()
    def gibbs(self, v: torch.Tensor, n_steps: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n_steps`` block-Gibbs sweeps ``h ~ p(h|v)``, ``v ~ Multinomial(D, softmax(b + W h))``; each row keeps its ``D``.

        Args:
            v: ``(C, V)`` starting counts.
            n_steps: sweeps (>= 0).
            generator: random source.

        Returns:
            ``(C, V)`` counts after ``n_steps`` sweeps (``v`` itself is not modified).
        """
        v = self.check_input(v, "v")
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        lengths = v.sum(-1).round().long()
        for _ in range(n_steps):
            ph = self.hidden_probs(v)
            h = (torch.rand(ph.shape, generator=generator, device=ph.device, dtype=ph.dtype) < ph).to(v.dtype)
            v = multinomial_counts(self.visible_logits(h), lengths, generator=generator)
        return v

    @torch.no_grad()
    def sample(
        self, n: int, length: int | torch.Tensor, generator: torch.Generator | None = None, n_steps: int = 1000
    ) -> torch.Tensor:
        """``n`` approximate samples of documents of ``length`` words: Gibbs chains from the base model.

        Args:
            n: chains.
            length: one length ``D >= 1`` or ``(n,)`` lengths.
            n_steps: Gibbs sweeps.

        Returns:
            ``(n, V)`` counts, row ``i`` summing to its length.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        lengths = torch.as_tensor(length, device=self._device()).long().flatten()
        if lengths.numel() == 1:
            lengths = lengths.expand(n)
        if lengths.shape != (n,) or int(lengths.min()) < 1:
            raise ValueError(f"length must be an int >= 1 or {n} of them, got {length!r}")
        v = multinomial_counts(self.base_rate_bias.to(self.weight.dtype).expand(n, -1), lengths, generator=generator)
        return self.gibbs(v, n_steps, generator)

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def init_from_data(self, x_train: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Data-dependent initialisation: base-rate bias, visible bias, ``max_length`` and the PCD chains.

        Sets ``base_rate_bias`` to the log add-one-smoothed unigram distribution of ``x_train``
        (``visible_bias`` too when ``visible_bias_init == "unigram"``), ``max_length`` to its
        longest document, and the persistent chains to randomly chosen training documents.

        Args:
            x_train: ``(N, V)`` training counts (N >= 1, not all documents empty).
            generator: chooses the documents the chains start from.
        """
        x_train = self.check_input(x_train, "x_train")
        lengths = x_train.sum(-1)
        if x_train.shape[0] == 0 or float(lengths.max()) < 1:
            raise ValueError("x_train must hold at least one non-empty document")
        counts = x_train.double().sum(0) + 1.0
        log_unigram = (counts / counts.sum()).log().to(self.base_rate_bias)
        self.base_rate_bias.copy_(log_unigram)
        if self.config.visible_bias_init == "unigram":
            self.visible_bias.copy_(log_unigram)
        self.max_length.fill_(int(lengths.max()))
        if self.chains.shape[0]:
            nonempty = torch.nonzero(lengths > 0).flatten().cpu()
            pick = torch.randint(0, nonempty.numel(), (self.chains.shape[0],), generator=generator)
            self.chains.copy_(x_train[nonempty[pick].to(x_train.device)])

    def sample_noise(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniforms for one training step: ``(k, batch_size, m (H + L))``, ``L = max_length``.

        ``noise[s]`` reshaped to ``(m * batch_size, H + L)`` holds sweep ``s``'s uniforms for
        each negative chain: ``H`` for the hidden draws, then one per word (a chain of ``D`` words
        uses the first ``D``). ``m = 1`` for CD-k (chain ``i`` starts at example ``i``) and
        ``ceil(n_chains / batch_size)`` for PCD (the first ``n_chains`` rows are used). The batch
        is dim 1, so the Trainer can hand each process its shard (CD-k).

        Raises:
            RuntimeError: before :meth:`init_from_data` (``max_length`` is 0).
        """
        if int(self.max_length) < 1:
            raise RuntimeError("max_length is 0: call init_from_data(x_train) (fit does) before drawing training noise")
        m = math.ceil(self.config.n_chains / batch_size) if self.config.persistent else 1
        shape = (self.config.cd_k, batch_size, m * self._noise_width)
        return torch.rand(shape, generator=generator, device=self._device(), dtype=self.weight.dtype)

    def reconstruction(self, x: torch.Tensor, pre: torch.Tensor | None = None) -> torch.Tensor:
        """Mean-field reconstruction cross-entropy ``-sum_k x_k log softmax(b + W p(h|x))_k``: ``(B,)`` nats.

        A cheap training monitor (the ``"loss"`` of :meth:`forward`), *not* a likelihood.
        """
        if pre is None:
            pre = self.hidden_logits(x)
        return -(torch.log_softmax(self.visible_logits(torch.sigmoid(pre)), -1) * x).sum(-1)

    @torch.no_grad()
    def pseudo_nll(
        self,
        x: torch.Tensor,
        token_uniforms: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        chunk_size: int = 64,
    ) -> torch.Tensor:
        """Stochastic pseudo-NLL over word positions: ``-D log p(w_i | w_-i)`` for one position ``i`` per document.

        The position is ``floor(u D)`` (its word is the ``(floor(u D) + 1)``-th token in
        vocabulary order); ``p(w_i = k' | w_-i) prop. exp(-F(x - e_{w_i} + e_{k'}))`` over the
        ``V`` words ``k'``. Its expectation over ``i`` is the negative pseudo-log-likelihood of the
        word sequence, ``-sum_i log p(w_i | w_-i)`` (Besag 1975): a proxy for the NLL that needs no
        ``Z_D``, not comparable with other models' NLLs. Cost ``O(B V H)``. Empty documents give 0.

        Args:
            x: ``(B, V)`` counts (not re-checked).
            token_uniforms: ``(B,)`` uniforms choosing the position; drawn from ``generator`` if omitted.
            chunk_size: documents per ``(chunk, V, H)`` block.

        Returns:
            ``(B,)`` nats.
        """
        b = x.shape[0]
        if token_uniforms is None:
            token_uniforms = torch.rand(b, generator=generator, device=x.device, dtype=torch.float64)
        d = x.sum(-1)
        pos = (token_uniforms.double() * d.double()).floor().clamp(min=0).unsqueeze(1)  # (B, 1)
        word = torch.searchsorted(x.double().cumsum(-1), torch.minimum(pos, (d.double() - 1).clamp(min=0).unsqueeze(1)), right=True)
        word = word.clamp(max=self.vocab_size - 1).squeeze(1)  # (B,)
        out = []
        for s in range(0, b, chunk_size):
            xs, ws = x[s : s + chunk_size], word[s : s + chunk_size]
            pre0 = self.hidden_logits(xs) - self.weight[ws]  # (C, H): the other D - 1 words
            scores = self.visible_bias + F.softplus(pre0.unsqueeze(1) + self.weight.unsqueeze(0)).sum(-1)  # (C, V)
            out.append(-torch.log_softmax(scores, -1).gather(1, ws.unsqueeze(1)).squeeze(1))
        nll = torch.cat(out) if out else x.new_zeros(0)
        return torch.where(d > 0, d * nll, torch.zeros_like(nll))

    # F(x) - sum_c w_c F(v_c) per document, (B,): the CD/PCD gradient (see BernoulliRBM.contrastive_surrogate).
    # With every count vector of the batch's lengths and weights w_c = (n_D / B) p_D(v_c)
    # (n_D documents of length D) its gradient is the exact NLL gradient.
    contrastive_surrogate = BernoulliRBM.contrastive_surrogate

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One CD-k / PCD step's terms for the Trainer.

        Args:
            x: ``(B, V)`` counts.
            noise: from :meth:`sample_noise`; drawn from torch's global generator, wide enough
                for this batch and the chains, if omitted.

        Returns:
            ``{"loss": reconstruction cross-entropy (a proxy, not the NLL; see :meth:`reconstruction`),
            "surrogate": F(x) - mean F(v_neg), "free_energy": F(x)}``, each ``(B,)`` nats. In training
            mode under PCD the chains advance (and persist); in eval mode they are left as they are.

        Raises:
            ValueError: bad ``x`` or ``noise`` (e.g. a document longer than the noise's word draws,
                i.e. than the training data's ``max_length``), or PCD chains never initialised.
            RuntimeError: PCD training inside a multi-process group (torchrun); use CD-k there.
        """
        x = self.check_input(x, "x")
        b = x.shape[0]
        cfg = self.config
        hdim = cfg.hidden_dim
        m = math.ceil(cfg.n_chains / b) if cfg.persistent else 1
        starts = self.chains if cfg.persistent else x
        longest = int(starts.sum(-1).max()) if starts.shape[0] else 0
        if noise is None:
            width = hdim + max(int(self.max_length), longest)
            noise = torch.rand(cfg.cd_k, b, m * width, device=x.device, dtype=x.dtype)
        if noise.dim() != 3 or noise.shape[0] != cfg.cd_k or noise.shape[1] != b or noise.shape[2] % m:
            raise ValueError(
                f"noise must have shape ({cfg.cd_k}, {b}, {m} * (H + L)) as sample_noise({b}) makes, got {tuple(noise.shape)}"
            )
        width = noise.shape[2] // m
        if width - hdim < longest:
            raise ValueError(
                f"noise holds {width - hdim} word draws per chain, but a {'chain' if cfg.persistent else 'document'} "
                f"has {longest} words (longer than max_length = {int(self.max_length)}, the longest training document)"
            )
        noise = noise.to(x)
        chain_u = noise.reshape(cfg.cd_k, -1, width)
        if cfg.persistent:
            if self.training and DistributedContext.current().enabled:
                raise RuntimeError(
                    "PCD (persistent=True) cannot train in a multi-process group: its persistent chains are "
                    "state shared by the whole batch; train with one process, or with CD-k (persistent=False)"
                )
            if bool((self.chains.sum(-1) < 1).any()):
                raise ValueError("the PCD chains hold empty documents: call init_from_data(x_train) (fit does) first")
            with torch.no_grad():
                v_neg = self._gibbs_from_uniforms(self.chains, chain_u[:, : cfg.n_chains])
                if self.training:
                    self.chains.copy_(v_neg)
        else:
            with torch.no_grad():
                v_neg = self._gibbs_from_uniforms(x, chain_u)
        pre = self.hidden_logits(x)  # (B, H), shared by the three terms
        f_x = self._free_energy(x, pre)
        with torch.no_grad():
            loss = self.reconstruction(x, pre)
        return {"loss": loss, "surrogate": self.contrastive_surrogate(x, v_neg, free_energy_x=f_x), "free_energy": f_x.detach()}

    def optimization_phases(self, alternate: bool) -> dict[str, list[nn.Parameter]]:
        """``{"joint": [W, b, a]}`` (an RSM has no encoder/decoder phases; ``alternate`` is refused)."""
        if alternate:
            raise ValueError("an RSM has one set of parameters; alternate=True does not apply")
        return {"joint": list(self.parameters())}

    # ------------------------------------------------------------------ evaluation
    @property
    def monitor(self) -> str:
        """The validation key to minimise: the pseudo-NLL proxy (cheap; not the NLL)."""
        return "valid_pseudo_nll"

    @torch.no_grad()
    def validation_metrics(
        self,
        x_valid: "torch.Tensor | BowCorpus",
        seed: int = 0,
        ais_chains: int = 0,
        ais_temperatures: int = 1000,
        batch_size: int = 500,
    ) -> dict[str, float]:
        """Per-epoch figures on held-out documents, each labelled by what it is (nats per document).

        Returns:
            ``valid_pseudo_nll``: mean pseudo-NLL proxy (fixed positions from ``seed``; *not* the NLL);
            ``valid_reconstruction``: mean reconstruction cross-entropy (proxy);
            ``valid_free_energy``: mean ``F(x)`` (compare with the training data's for overfitting);
            and, when ``ais_chains > 0``, ``valid_perplexity_ais_quick`` (per-document perplexity with
            each length's ``log Z_D`` from a quick, rough AIS run of ``ais_chains`` chains and
            ``ais_temperatures`` temperatures) and ``valid_log_p_ais_quick`` (nats per document).
        """
        x_valid = self._dense(x_valid, "x_valid")
        gen = torch.Generator(device=self._device()).manual_seed(seed)
        pnll, rec, fe = [], [], []
        for start in range(0, x_valid.shape[0], batch_size):
            x = x_valid[start : start + batch_size]
            pre = self.hidden_logits(x)
            pnll.append(self.pseudo_nll(x, generator=gen).double())
            rec.append(self.reconstruction(x, pre).double())
            fe.append(self._free_energy(x, pre).double())
        out = {
            "valid_pseudo_nll": float(torch.cat(pnll).mean()),
            "valid_reconstruction": float(torch.cat(rec).mean()),
            "valid_free_energy": float(torch.cat(fe).mean()),
        }
        if ais_chains > 0:
            report = self.evaluate(x_valid, ais_chains=ais_chains, ais_betas=ais_temperatures, seed=seed, batch_size=batch_size)
            out["valid_perplexity_ais_quick"] = report.estimate_per_document
            out["valid_log_p_ais_quick"] = report.log_p_nats_per_doc
        return out

    @torch.no_grad()
    def estimate_log_partitions(
        self,
        lengths: Sequence[int] | torch.Tensor,
        n_chains: int = 100,
        betas: torch.Tensor | int | None = None,
        seed: int = 0,
        max_rows: int = 4096,
    ) -> dict[int, AISResult]:
        """AIS estimates of ``log Z_D`` for each distinct length (:func:`rsm_ais` from the unigram base).

        Args:
            lengths: document lengths (>= 1).
            n_chains: M AIS runs per length.
            betas: schedule tensor, number of temperatures, or ``None`` for S&M 2008's 14,500.
            seed: seeds the runs.
            max_rows: chains moved at once.
        """
        gen = torch.Generator(device=self._device()).manual_seed(seed)
        return rsm_ais(self, lengths, n_chains=n_chains, betas=betas, generator=gen, max_rows=max_rows)

    @torch.no_grad()
    def evaluate(
        self,
        corpus: "BowCorpus | torch.Tensor",
        ais_chains: int = 100,
        ais_betas: torch.Tensor | int | None = None,
        seed: int = 0,
        ais: dict[int, AISResult] | None = None,
        batch_size: int = 500,
        max_rows: int = 4096,
        ais_space: str = "joint",
    ) -> RSMPerplexityReport:
        """Perplexities of ``corpus`` with ``log Z_D`` estimated by AIS for every distinct document length.

        Args:
            corpus: documents (a :class:`~latentnlp.data.bow.BowCorpus` or ``(N, V)`` counts; no empty documents).
            ais_chains: M AIS runs per length.
            ais_betas: schedule, number of temperatures, or ``None`` for S&M 2008's 14,500.
            seed: seeds AIS.
            ais: finished estimates ``{D: AISResult}`` to reuse (e.g. from :meth:`estimate_log_partitions`
                over the lengths of several sets); ``ais_chains``/``ais_betas``/``seed`` are then ignored.
            batch_size: documents per free-energy batch.
            max_rows: AIS chains moved at once.
            ais_space: ``"joint"`` (default; :func:`rsm_ais`, the chain over words and hidden
                units from the unigram base), ``"hidden"`` (:func:`rsm_hidden_ais`, the
                chain over the hidden units alone, which climbs to the converged value in
                fewer temperatures on 20 Newsgroups but costs ``2 H`` log-sum-exps per sweep), or
                ``"length"`` (:func:`rsm_log_partitions`: one AIS run through all lengths with
                mode jumps, importance sampling from the basins of ``g``'s local maxima, and the
                rigorous mode bound, the largest kept per length; ``ais_chains`` chains, an int
                ``ais_betas`` is the number of temperatures in ``[0, 1]``). The per-length
                estimators miss the maxima that dominate long documents (tens of nats on a
                trained model, see ``benchmarks/rsm_estimators.py``); ``"length"`` is the one to
                report. The local-maximum search starts from 3,000 random states and from the
                rounded posteriors ``p(h | v) > 1/2`` of the first 5,000 documents scored
                (starting points only: the estimate is of the model's ``Z_D``).

        Returns:
            An :class:`RSMPerplexityReport` (``estimate_*`` from AIS; ``bound_*`` NaN: the RSM has no bound).

        Raises:
            ValueError: vocabulary mismatch, bad counts, an empty document, or ``ais`` lacking a length (named).
        """
        x_all = self._dense(corpus, "corpus")
        lengths = x_all.sum(-1).double().cpu()
        if x_all.shape[0] == 0:
            raise ValueError("perplexity of an empty set of documents is undefined (N = 0)")
        if bool((lengths < 1).any()):
            bad = torch.nonzero(lengths < 1).flatten()[:5].tolist()
            raise ValueError(f"documents {bad} are empty; drop empty documents first")
        distinct = sorted({int(d) for d in lengths.long().tolist()})
        if ais_space not in ("joint", "hidden", "length"):
            raise ValueError(f"ais_space must be 'joint', 'hidden' or 'length', got {ais_space!r}")
        settings = None  # (chains, temperatures) to report when the chosen estimator varies by length
        if ais is None:
            if ais_space == "length":
                gen = torch.Generator(device=self._device()).manual_seed(seed)
                posterior = (self.hidden_probs(x_all[:5000]) > 0.5).double()  # starts in the data's region of h
                uniform = (torch.rand(3000, self.config.hidden_dim, generator=gen, device=x_all.device) < 0.5).double()
                n_unit = ais_betas if isinstance(ais_betas, int) else 1000
                ais = rsm_log_partitions(self, distinct, starts=torch.cat([uniform, posterior]), n_chains=ais_chains,
                                         n_unit=n_unit, generator=gen)
                settings = (ais_chains, n_unit)
            elif ais_space == "hidden":
                gen = torch.Generator(device=self._device()).manual_seed(seed)
                ais = rsm_hidden_ais(self, distinct, n_chains=ais_chains, betas=ais_betas, generator=gen, max_rows=max_rows)
            else:
                ais = self.estimate_log_partitions(distinct, ais_chains, ais_betas, seed=seed, max_rows=max_rows)
            seconds = sum(r.seconds for r in ais.values())
        else:
            seconds = 0.0
        missing = [d for d in distinct if d not in ais]
        if missing:
            raise ValueError(f"ais lacks log Z_D for the document lengths {missing[:10]}{' ...' if len(missing) > 10 else ''}")
        fe = torch.cat([self._free_energy(x_all[s : s + batch_size]).double().cpu() for s in range(0, x_all.shape[0], batch_size)])
        log_c = log_multinomial_coefficient(x_all).cpu()

        def per_doc(attr: str) -> torch.Tensor:
            table = {d: getattr(ais[d], attr) for d in distinct}
            return torch.tensor([table[int(d)] for d in lengths.long().tolist()], dtype=torch.float64)

        log_z, log_z_lo, log_z_hi = per_doc("log_z"), per_doc("log_z_lower"), per_doc("log_z_upper")
        log_p = -fe - log_z
        low_ess = per_doc("effective_sample_size").lt(0.1 * per_doc("n_chains"))  # (N,) bool

        def ppl(lz: torch.Tensor) -> tuple[float | None, float | None]:
            if not bool(torch.isfinite(lz).all()):
                return None, None
            return per_document_perplexity(-fe - lz, lengths), corpus_perplexity(-fe - lz, lengths)

        lo_doc, lo_corpus = ppl(log_z_lo)
        hi_doc, hi_corpus = ppl(log_z_hi)
        runs = [ais[d] for d in distinct]
        chains, temperatures = settings or (runs[0].n_chains, runs[0].n_temperatures)
        return RSMPerplexityReport(
            n_docs=int(lengths.numel()),
            n_tokens=int(lengths.sum()),
            bound_per_document=math.nan,
            bound_corpus=math.nan,
            elbo_nats_per_doc=math.nan,
            kl_nats_per_doc=math.nan,
            elbo_samples=0,
            estimate_per_document=per_document_perplexity(log_p, lengths),
            estimate_corpus=corpus_perplexity(log_p, lengths),
            iw_samples=chains,
            log_p_nats_per_doc=float(log_p.mean()),
            log_multinomial_coefficient_nats_per_doc=float(log_c.mean()),
            estimate_per_document_3sd=(lo_doc, hi_doc),
            estimate_corpus_3sd=(lo_corpus, hi_corpus),
            n_lengths=len(distinct),
            ais_chains=chains,
            ais_temperatures=temperatures,
            ais_min_effective_sample_size=min(r.effective_sample_size for r in runs),
            ais_seconds=seconds,
            ais_base={"hidden": "uniform over the hidden units, words summed out in closed form",
                      "length": "uniform over the hidden units, words summed out; one run through every length, "
                                "with mode jumps; the largest of it, mode importance sampling and the mode bound",
                      "joint": "multinomial with the log smoothed unigram distribution of the training data, free hidden units",
                      }[ais_space],
            ais_space=ais_space,
            log_z_methods=_count_methods(runs),
            low_ess_document_share=float(low_ess.double().mean()),
            estimate_per_document_low_ess_plus_log2=per_document_perplexity(log_p - math.log(2.0) * low_ess.double(), lengths),
        )

    @torch.no_grad()
    def transform(self, corpus: "BowCorpus | torch.Tensor", batch_size: int = 1000) -> torch.Tensor:
        """``p(h_j = 1 | v)`` of every document, the paper's document representation: ``(N, H)``."""
        x_all = self._dense(corpus, "corpus")
        out = [self.hidden_probs(x_all[s : s + batch_size]).cpu() for s in range(0, x_all.shape[0], batch_size)]
        return torch.cat(out) if out else torch.zeros(0, self.config.hidden_dim)

    def topic_words(self, vocab: Sequence[str], n_words: int = 10) -> list[list[str]]:
        """For each hidden unit ``j``, the ``n_words`` words with the largest ``W[:, j]`` (switching ``h_j`` on favours them).

        Raises:
            ValueError: if ``vocab`` does not have ``V`` words.
        """
        if len(vocab) != self.vocab_size:
            raise ValueError(f"vocab has {len(vocab)} words, the model has V = {self.vocab_size}")
        top = self.weight.detach().cpu().topk(min(n_words, len(vocab)), dim=0).indices.T  # (H, n)
        return [[vocab[i] for i in row.tolist()] for row in top]

    # ------------------------------------------------------------------ estimator API
    def fit(
        self,
        train: "BowCorpus | torch.Tensor",
        valid: "BowCorpus | torch.Tensor | None" = None,
        config: "TrainConfig | None" = None,
        run_dir: str | None = None,
        init_seed: int = 0,
        validate_kwargs: dict | None = None,
    ) -> "ReplicatedSoftmax":
        """Data-dependent initialisation, then CD-k/PCD training with the shared Trainer.

        Args:
            train: training documents (V must match the model).
            valid: held-out documents for :meth:`validation_metrics` (a part of the training set,
                never the test set); ``None``: no validation.
            config: optimisation settings; default Adam, lr 1e-3, batch 100, 50 epochs, monitor
                ``valid_pseudo_nll``, no early stopping. (Adam is this toolkit's choice, not the paper's:
                the hidden bias's gradient carries the factor ``D`` and is one to three orders of
                magnitude larger than the weights', which one plain-SGD step size handles badly.)
            run_dir: checkpoints and metrics; training resumes from a checkpoint found there (the
                initialisation is then overwritten by the checkpoint's state).
            init_seed: seeds the choice of the PCD chains' starting documents.
            validate_kwargs: extra keywords for :meth:`validation_metrics` (e.g. ``ais_chains``).

        Returns:
            ``self``, with ``train_result_``.

        Raises:
            ValueError: vocabulary mismatch, bad counts, or a ``config.monitor`` validation does not report.
        """
        from ...training.trainer import TrainConfig, Trainer

        if config is None:
            config = TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=100, epochs=50, monitor=self.monitor, patience=0)
        x_train = self._dense(train, "train")
        self.init_from_data(x_train, torch.Generator().manual_seed(init_seed))
        validate = None
        if valid is not None:
            x_valid = self._dense(valid, "valid")
            kwargs = validate_kwargs or {}
            keys = self.validation_metrics(x_valid[:1], **(kwargs | {"ais_chains": 0}))
            if config.monitor not in keys and not (kwargs.get("ais_chains") and config.monitor.endswith("ais_quick")):
                raise ValueError(f"TrainConfig.monitor is {config.monitor!r}; an RSM validates {sorted(keys)} (use {self.monitor!r})")

            def validate(model: ReplicatedSoftmax) -> dict[str, float]:
                return model.validation_metrics(x_valid, **kwargs)

        trainer = Trainer(self, config, n_train=x_train.shape[0], collate=lambda idx: x_train[idx], validate=validate, run_dir=run_dir)
        self.train_result_: TrainResult = trainer.fit()
        return self

    def extra_repr(self) -> str:
        c = self.config
        return f"vocab_size={c.vocab_size}, hidden_dim={c.hidden_dim}, cd_k={c.cd_k}, persistent={c.persistent}"
