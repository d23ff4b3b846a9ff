"""Latent Dirichlet allocation (Blei, Ng & Jordan 2003) as the classical baseline of the document-model table.

Model. ``K`` topics ``phi_k ~ Dir(eta)`` over the ``V`` words; a document draws
``theta ~ Dir(alpha)`` (``alpha`` a ``(K,)`` vector), then each of its ``N`` words
``z_n ~ Cat(theta)``, ``w_n ~ Cat(phi_{z_n})``. The table's reference figures are LDA-50 1091
and LDA-200 1058 per-document perplexity on 20 Newsgroups (Mnih & Gregor 2014, Table 1;
Miao et al. 2016, Table 1).

Training is delegated to a well-kept library: tomotopy's collapsed Gibbs sampler (Griffiths
& Steyvers 2004) in C++ (``pip install 'latentnlp[bench]'``; imported only inside
:meth:`LDABaseline.fit`, so the package imports without it). By default it also learns an
asymmetric ``alpha`` by Minka's fixed-point updates every ``optimize_interval`` iterations;
``eta`` stays fixed. After training, ``topic_word_`` is the posterior mean of ``phi`` given
the final Gibbs state, ``(n_kv + eta) / (n_k + V eta)``, computed here in float64 over the
*full* vocabulary (tomotopy's own ``get_topic_word_dist`` covers only words seen in
training), and ``alpha_`` is the library's final (learned) ``alpha``.

Held-out likelihood. A document's probability ``p(w_1..w_N) = int prod_n sum_k theta_k
phi_{k w_n} Dir(theta | alpha) dtheta`` is estimated by the left-to-right method of Wallach,
Murray, Salakhutdinov & Mimno (2009, "Evaluation Methods for Topic Models", Algorithm 3),
implemented here in numpy with ``phi`` and ``alpha`` held fixed, vectorised over documents
and particles. It factorises ``p(w) = prod_n p(w_n | w_<n)`` and keeps ``R`` particles, each
a topic assignment ``z_<n`` of the words read so far with a normalised weight ``W_r``
(initially ``1/R``). At position ``n`` (0-based; ``n_k`` = topic counts of the particle's
``z_<n``, ``A = sum_k alpha_k``):

1. (Gibbs rejuvenation, Algorithm 3's inner loop; see ``rejuvenate`` below) resample every
   ``z_m``, ``m < n``, in order, from ``p(z_m = k | rest) prop. phi_{k w_m} (n_k^-m + alpha_k)``;
2. ``u_r = sum_k phi_{k w_n} (n_k + alpha_k) / (n + A)`` = ``p(w_n | z_<n, w_<n)``, and
   ``p_n = sum_r W_r u_r`` (the particle average, since the weights are ``1/R`` unless step 3
   left them unequal);
3. (``resample_particles=True``, the default; not in Algorithm 3) reweight ``W_r <- W_r u_r / p_n``
   and, when the effective sample size ``1 / sum_r W_r^2`` falls below ``ess_threshold * R``,
   draw ``R`` ancestors by systematic resampling and reset the weights to ``1/R``;
4. draw ``z_n`` from ``p(z_n = k | z_<n, w_n) prop. phi_{k w_n} (n_k + alpha_k)``.

The result is ``log p_hat(w) = sum_n log p_n`` in nats. With step 3 this is a (fully adapted)
particle filter and ``p_hat(w)`` is an *unbiased* estimate of ``p(w)`` for every ``R >= 1`` --
the usual unbiasedness of a particle filter's normalising constant (Del Moral 2004; Andrieu,
Doucet & Holenstein 2010), which also holds with resampling triggered by the effective
sample size (Whiteley, Lee & Heine 2016) -- with or without the Gibbs sweeps (moves that
leave ``p(z_<n | w_<n)`` invariant); ``log p_hat`` converges to ``log p(w)`` as ``R`` grows.
Algorithm 3 as printed (``resample_particles=False``) multiplies plain particle averages of
``u_r`` without weighting the particles by them: that is unbiased for ``R = 1`` only; for
``R > 1`` and ``N >= 3`` it has a bias that more particles do not remove (tested on tiny
models; for one LDA-50 model on the 355 held-out 20 Newsgroups documents of <= 40 words, with
no sweeps, its per-document perplexity stays at 882 from R = 100 to R = 500, while the
unbiased estimate gives 873 at R = 500 and full Algorithm 3 sweeps with resampling 868 at
R = 100). By Jensen's inequality
``E[log p_hat] <= log p(w)``, so a perplexity from the estimate is too high in expectation,
as with an importance-weighted estimate; the gap shrinks as ``R`` grows (report ``R``, and
raise it until the figure is stable).

``rejuvenate`` picks the positions before which the Gibbs sweep over ``z_<n`` runs:
``"every"`` position is Algorithm 3 exactly, ``O(N^2)`` per document (20 Newsgroups has
documents of 4,000+ words, too slow in numpy); ``"doubling"`` (default) sweeps before
positions 1, 2, 4, 8, ..., which costs ``O(N)`` in all and keeps most of the gain; ``"none"``
never sweeps (as MALLET's ``evaluate-topics`` by default, whose ``--use-resampling`` is
Algorithm 3's sweep). Between sweeps a particle's assignments are kept as a genealogy
(drawn topic, ancestor) and written out only before a sweep.

Word order. LDA's ``p(w_1..w_N)`` is the same for every order of the words (exchangeability),
but a bag of words has no order, and the estimator's variance depends on it. With
``word_order="random"`` (default) each document's tokens are put in a seeded random order;
``"counts"`` uses the expanded-count order (word ids ascending, each repeated by its count).

Randomness. Every random number is a counter-based hash (splitmix64) of ``(seed, i, step,
particle)``, where ``i`` is the document's position in the call. A document's estimate
therefore depends only on ``seed``, its position ``i`` and its counts, never on the batch
size or on the other documents in the call (tested).

As in NVDM and both papers, ``log p(d)`` is the log-probability of the word *sequence*: the
multinomial coefficient of the count vector is left out. Per-document perplexity is
``exp(mean_d -log p(d) / N_d)``, corpus perplexity ``exp(-sum_d log p(d) / sum_d N_d)``
(:mod:`latentnlp.evaluation.perplexity`).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from ...atomic import atomic_write_text
from ...evaluation.perplexity import PerplexityReport, corpus_perplexity, per_document_perplexity
from ...training.checkpoint import atomic_save_tensors, load_tensors

if TYPE_CHECKING:  # pragma: no cover
    from ...data.bow import BowCorpus

__all__ = ["LDAConfig", "LDABaseline", "LDAPerplexityReport", "left_to_right_log_likelihood"]

_INSTALL_HINT = "pip install 'latentnlp[bench]'"
_WORD_ORDERS = ("random", "counts")
_REJUVENATION = ("none", "doubling", "every")
_MAX_TOPICS = 32767  # tomotopy's limit


def _import_tomotopy():
    """Import tomotopy, or raise an ImportError that names the extra to install."""
    try:
        with warnings.catch_warnings():
            # tomotopy 0.14's extension module emits "builtin type _VocabDict has no __module__
            # attribute" (DeprecationWarning) on import; under ``-W error`` the import would fail.
            warnings.filterwarnings("ignore", message=r".*has no __module__ attribute", category=DeprecationWarning)
            import tomotopy
    except ImportError as exc:
        raise ImportError(
            f"LDABaseline.fit needs the tomotopy library (collapsed Gibbs LDA in C++), which is not installed: "
            f"{_INSTALL_HINT}"
        ) from exc
    return tomotopy


# --------------------------------------------------------------------------- config


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass
class LDAConfig:
    """Settings of the LDA baseline (tomotopy's collapsed Gibbs sampler).

    Attributes:
        n_topics: K (the table: 50 and 200; tomotopy allows up to 32,767).
        alpha: initial symmetric document-topic Dirichlet parameter, per topic (each
            ``alpha_k = alpha``; tomotopy's default 0.1). Learned when ``optimize_interval > 0``.
        eta: symmetric topic-word Dirichlet parameter (fixed; tomotopy's default 0.01).
        iterations: Gibbs sweeps over the training corpus.
        burn_in: sweeps before ``alpha`` optimisation starts.
        optimize_interval: re-estimate ``alpha`` (Minka's fixed point) every this many
            sweeps; 0 keeps ``alpha`` fixed at its initial value.
        seed: seed of the sampler (with ``workers=1`` a fit is reproducible).
        workers: sampler threads (1 on a shared machine; > 1 is faster but not reproducible).
        log_interval: record the library's log-likelihood per word every this many sweeps.

    Raises:
        ValueError: a field out of range or of the wrong type (named).
    """

    n_topics: int = 50
    alpha: float = 0.1
    eta: float = 0.01
    iterations: int = 1000
    burn_in: int = 0
    optimize_interval: int = 10
    seed: int = 0
    workers: int = 1
    log_interval: int = 50

    def __post_init__(self) -> None:
        for name, low in (("n_topics", 1), ("iterations", 1), ("workers", 1), ("log_interval", 1),
                          ("burn_in", 0), ("optimize_interval", 0), ("seed", 0)):
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise ValueError(f"LDAConfig.{name} must be an integer >= {low}, got {value!r}")
            setattr(self, name, int(value))
        if self.n_topics > _MAX_TOPICS:
            raise ValueError(f"LDAConfig.n_topics must be <= {_MAX_TOPICS} (tomotopy's limit), got {self.n_topics}")
        if self.seed >= 2**32:
            raise ValueError(f"LDAConfig.seed must be < 2**32, got {self.seed}")
        for name in ("alpha", "eta"):
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"LDAConfig.{name} must be a finite number > 0, got {value!r}")
            setattr(self, name, float(value))

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class LDAPerplexityReport(PerplexityReport):
    """Perplexities of an LDA model from the left-to-right estimate of ``log p(d)``.

    LDA has no variational bound here: ``bound_per_document``, ``bound_corpus``,
    ``elbo_nats_per_doc`` and ``kl_nats_per_doc`` are NaN and ``elbo_samples`` is 0.
    ``estimate_per_document`` / ``estimate_corpus`` come from the left-to-right estimate
    (word-sequence probability, nats; see the module docstring), and ``iw_samples`` is the
    number of particles R (the estimator is sequential importance sampling, and like an
    importance-weighted estimate it is unbiased for ``p(d)``, so ``E[log p_hat] <= log p(d)``).

    Attributes (besides :class:`PerplexityReport`'s):
        estimator: what produced the estimate, in words.
        log_p_nats_per_doc: mean estimate of ``log p(d)``, nats per document.
        particles: R.
        rejuvenate / resample_particles / ess_threshold / word_order: the estimator's settings.
        seed: its seed.
        seconds: wall time of the estimate.
    """

    estimator: str = ""
    log_p_nats_per_doc: float = math.nan
    particles: int = 0
    rejuvenate: str = "doubling"
    resample_particles: bool = True
    ess_threshold: float = 0.5
    word_order: str = "random"
    seed: int = 0
    seconds: float = 0.0

    def format(self) -> str:
        return "\n".join(
            [
                f"documents: {self.n_docs}   tokens: {self.n_tokens}",
                f"{'':28s}{'per-document':>14s}{'corpus':>12s}",
                f"{'perplexity, left-to-right':28s}{self.estimate_per_document:14.1f}{self.estimate_corpus:12.1f}"
                f"   ({self.estimator})",
                f"log p(word sequence) {self.log_p_nats_per_doc:.2f} nats/doc; no ELBO bound for LDA "
                f"(bound fields are NaN); {self.seconds:.1f} s",
            ]
        )


# --------------------------------------------------------------------------- random numbers

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = _U64(30), _U64(27), _U64(31), _U64(11)
_TAG_REJUVENATE, _TAG_RESAMPLE, _TAG_SAMPLE, _TAG_ORDER = 0, 1, 2, 3


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic; always arrays, never scalars)."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def _doc_keys(seed: int, positions: np.ndarray) -> np.ndarray:
    """``(B,)`` uint64 key of each document from the seed and its position in the call."""
    base = _mix(np.array([seed], dtype=np.uint64) ^ _U64(0x5DEECE66D))
    return _mix(base ^ _mix((positions.astype(np.uint64) + _U64(1)) * _GOLDEN))


def _stream(keys: np.ndarray, step: int, tag: int) -> np.ndarray:
    """``(B,)`` uint64 state of one random stream (``step``, ``tag``) of each document."""
    return _mix(keys ^ _mix(np.array([step * 4 + tag + 1], dtype=np.uint64) * _GOLDEN))


def _uniforms(keys: np.ndarray, step: int, tag: int, salts: np.ndarray) -> np.ndarray:
    """``(B, len(salts))`` float64 uniforms in ``[0, 1)``, one per document and salt (particle)."""
    state = _stream(keys, step, tag)
    bits = _mix(state[:, None] ^ salts[None, :])
    return (bits >> _S11).astype(np.float64) * (1.0 / 9007199254740992.0)  # 2**-53


# --------------------------------------------------------------------------- inputs


def _as_count_rows(docs: object, vocab_size: int) -> sp.csr_matrix:
    """``BowCorpus`` / scipy sparse / numpy / torch ``(D, V)`` counts -> canonical int64 CSR."""
    counts = getattr(docs, "counts", docs)  # a BowCorpus holds a CSR matrix
    if isinstance(counts, torch.Tensor):
        counts = counts.detach().cpu().numpy()
    if sp.issparse(counts):
        counts = sp.csr_matrix(counts, copy=True)
        counts.sum_duplicates()
    else:
        counts = np.asarray(counts)
        if counts.ndim != 2:
            raise ValueError(f"count rows must have shape (D, V), got {counts.shape}")
        counts = sp.csr_matrix(counts)
    if counts.ndim != 2 or counts.shape[1] != vocab_size:
        raise ValueError(f"count rows must have shape (D, {vocab_size}), got {counts.shape}")
    data = counts.data
    if data.dtype == bool:
        raise TypeError("count rows must hold integer counts, got booleans")
    if not np.issubdtype(data.dtype, np.integer):
        if not np.issubdtype(data.dtype, np.floating) or not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
            raise ValueError("count rows must hold non-negative integer counts")
    if data.size and data.min() < 0:
        raise ValueError("count rows must hold non-negative integer counts")
    counts = counts.astype(np.int64)
    counts.eliminate_zeros()
    counts.sort_indices()
    return counts


def _check_parameters(topic_word: object, alpha: object) -> tuple[np.ndarray, np.ndarray]:
    phi = np.array(topic_word.detach().cpu().numpy() if isinstance(topic_word, torch.Tensor) else topic_word, dtype=np.float64)
    a = np.array(alpha.detach().cpu().numpy() if isinstance(alpha, torch.Tensor) else alpha, dtype=np.float64)
    if phi.ndim != 2 or phi.shape[0] < 1 or phi.shape[1] < 1:
        raise ValueError(f"topic_word must have shape (K, V) with K, V >= 1, got {phi.shape}")
    if not np.all(np.isfinite(phi)) or (phi < 0).any():
        raise ValueError("topic_word must be finite and non-negative")
    sums = phi.sum(1)
    if np.any(np.abs(sums - 1.0) > 1e-6):
        raise ValueError(f"every row of topic_word must sum to 1 (a distribution over words), got sums {sums[:5]}")
    if a.shape != (phi.shape[0],):
        raise ValueError(f"alpha must have shape ({phi.shape[0]},) to match topic_word {phi.shape}, got {a.shape}")
    if not np.all(np.isfinite(a)) or (a <= 0).any():
        raise ValueError("alpha must be finite and > 0")
    return phi, a


def _check_estimator_args(n_particles: object, seed: object, word_order: object, rejuvenate: object,
                          ess_threshold: object) -> None:
    if not _is_int(n_particles) or n_particles < 1:
        raise ValueError(f"n_particles must be an integer >= 1, got {n_particles!r}")
    if not _is_int(seed) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    if word_order not in _WORD_ORDERS:
        raise ValueError(f"word_order must be one of {_WORD_ORDERS}, got {word_order!r}")
    if rejuvenate not in _REJUVENATION:
        raise ValueError(f"rejuvenate must be one of {_REJUVENATION}, got {rejuvenate!r}")
    if not _is_real(ess_threshold) or not 0.0 <= ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold must be a number in [0, 1], got {ess_threshold!r}")


def _token_sequences(counts: sp.csr_matrix, keys: np.ndarray, word_order: str) -> list[np.ndarray]:
    """Each document's word ids ``(N_d,)`` in the order the estimator reads them."""
    out = []
    for d in range(counts.shape[0]):
        lo, hi = counts.indptr[d], counts.indptr[d + 1]
        tokens = np.repeat(counts.indices[lo:hi].astype(np.int64), counts.data[lo:hi])
        if word_order == "random" and tokens.size > 1:
            ranks = _mix(_stream(keys[d : d + 1], 0, _TAG_ORDER) ^ _mix(np.arange(1, tokens.size + 1, dtype=np.uint64) * _GOLDEN))
            tokens = tokens[np.argsort(ranks, kind="stable")]
        out.append(tokens)
    return out


# --------------------------------------------------------------------------- the estimator


def _categorical(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws: ``weights`` ``(..., C)`` unnormalised, ``u`` ``(...)`` uniforms -> ``(...)`` indices."""
    cdf = np.cumsum(weights, axis=-1)
    idx = (cdf < (u * cdf[..., -1])[..., None]).sum(-1)
    return np.minimum(idx, weights.shape[-1] - 1)


def _sweep_before(n: int, rejuvenate: str) -> bool:
    """Whether a Gibbs sweep over ``z_<n`` runs before position ``n`` (0-based)."""
    if n == 0 or rejuvenate == "none":
        return False
    return rejuvenate == "every" or (n & (n - 1)) == 0  # "doubling": n = 1, 2, 4, 8, ...


def _systematic(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Systematic resampling: ``weights`` ``(m, R)`` (rows sum to 1), ``u`` ``(m,)`` -> ``(m, R)`` ancestors.

    Particle ``i`` gets ``ceil(R C_i - u) - ceil(R C_{i-1} - u)`` offspring (``C`` the cumulative
    weights, ``C_R = 1``), ``R`` in all and ``R w_i`` in expectation; row by row, so the draws
    of one document never depend on the others.
    """
    m, R = weights.shape
    cdf = np.cumsum(weights, axis=1)
    cdf[:, -1] = 1.0
    edges = np.ceil(R * cdf - u[:, None])
    offspring = np.diff(edges, axis=1, prepend=0.0).astype(np.int64)  # (m, R), each row sums to R
    return np.repeat(np.tile(np.arange(R), m), offspring.ravel()).reshape(m, R)


def _left_to_right_batch(
    phi_t: np.ndarray,
    alpha: np.ndarray,
    tokens: list[np.ndarray],
    keys: np.ndarray,
    n_particles: int,
    rejuvenate: str,
    resample_particles: bool,
    ess_threshold: float,
) -> np.ndarray:
    """Left-to-right estimates for one batch whose documents are sorted by decreasing length.

    ``phi_t`` is ``(V, K)`` (``phi`` transposed, so one word's topic column is a contiguous row);
    documents still being read at position ``n`` are always a prefix of the batch, so every
    step works on views ``[:m]``. With rejuvenation, the assignments ``z_<n`` of each particle
    are kept as its genealogy (``drawn``, ``parent``) and written out (``history``) only
    before a Gibbs sweep, so resampling costs ``O(R)`` per document and step, not ``O(R n)``.
    """
    n_docs, n_topics, R = len(tokens), phi_t.shape[1], n_particles
    lengths = np.array([t.size for t in tokens], dtype=np.int64)
    n_max = int(lengths[0]) if n_docs else 0
    words = np.zeros((n_docs, max(n_max, 1)), dtype=np.int64)  # (B, N_max), padded with word 0
    for b, t in enumerate(tokens):
        words[b, : t.size] = t
    alpha_sum = float(alpha.sum())
    counts = np.zeros((n_docs, R, n_topics), dtype=np.float64)  # n_k of each particle, (B, R, K)
    weights = np.full((n_docs, R), 1.0 / R)  # normalised particle weights
    keep_history = rejuvenate != "none"
    if keep_history:  # (B, R, N_max) each
        history = np.zeros((n_docs, R, n_max), dtype=np.int64)  # z_j of particle r, valid for j < written
        drawn = np.zeros((n_docs, R, n_max), dtype=np.int64)  # z_j drawn by particle r at step j
        parent = np.zeros((n_docs, R, n_max), dtype=np.int64)  # particle r's ancestor at step j
        written = 0
    identity = np.arange(R)
    salts = _mix(np.arange(1, R + 1, dtype=np.uint64) * _M2)  # one per particle
    log_p = np.zeros(n_docs, dtype=np.float64)
    for n in range(n_max):
        m = int(np.count_nonzero(lengths > n))  # documents with N_d > n: a prefix, as lengths decrease
        key, cnt = keys[:m], counts[:m]
        flat = cnt.reshape(m * R, n_topics)
        rows = np.arange(m * R)
        if _sweep_before(n, rejuvenate):  # Algorithm 3: one Gibbs sweep over z_<n, in reading order
            hist = history[:m]
            current = np.broadcast_to(identity, (m, R)).copy()  # trace each particle's line back
            for j in range(n - 1, written - 1, -1):
                hist[:, :, j] = np.take_along_axis(drawn[:m, :, j], current, axis=1)
                current = np.take_along_axis(parent[:m, :, j], current, axis=1)
            if written:
                hist[:, :, :written] = np.take_along_axis(hist[:, :, :written], current[:, :, None], axis=1)
            written = n
            for j in range(n):
                old = hist[:, :, j].reshape(-1)
                flat[rows, old] -= 1.0
                probs = (cnt + alpha) * phi_t[words[:m, j]][:, None, :]  # (m, R, K)
                new = _categorical(probs, _uniforms(key, n * (n - 1) // 2 + j, _TAG_REJUVENATE, salts))
                flat[rows, new.reshape(-1)] += 1.0
                hist[:, :, j] = new
        joint = (cnt + alpha) * phi_t[words[:m, n]][:, None, :]  # (m, R, K): p(z_n = k, w_n | z_<n) * (n + sum alpha)
        u = joint.sum(-1)  # (m, R): p(w_n | z_<n) * (n + sum alpha)
        ancestors = None
        if resample_particles:
            w = weights[:m] * u
            total = w.sum(-1)  # (m,): sum_r W_r p(w_n | z_<n, r) * (n + sum alpha)
            log_p[:m] += np.log(total) - math.log(n + alpha_sum)
            w /= total[:, None]
            resample = 1.0 / (w * w).sum(-1) < ess_threshold * R  # effective sample size too small
            if R > 1 and resample.any():
                drawn_ancestors = _systematic(w, _uniforms(key, n, _TAG_RESAMPLE, salts[:1])[:, 0])
                ancestors = np.where(resample[:, None], drawn_ancestors, identity)
                cnt[...] = np.take_along_axis(cnt, ancestors[:, :, None], axis=1)
                joint = np.take_along_axis(joint, ancestors[:, :, None], axis=1)
                w[resample] = 1.0 / R
            weights[:m] = w
        else:  # Algorithm 3 as printed: the plain particle average
            log_p[:m] += np.log(u.mean(-1)) - math.log(n + alpha_sum)
        z = _categorical(joint, _uniforms(key, n, _TAG_SAMPLE, salts))  # (m, R)
        flat[rows, z.reshape(-1)] += 1.0
        if keep_history:
            drawn[:m, :, n] = z
            parent[:m, :, n] = identity if ancestors is None else ancestors
    return log_p


def left_to_right_log_likelihood(
    topic_word: np.ndarray | torch.Tensor,
    alpha: np.ndarray | torch.Tensor,
    docs: "BowCorpus | sp.spmatrix | np.ndarray | torch.Tensor",
    n_particles: int = 20,
    seed: int = 0,
    *,
    rejuvenate: str = "doubling",
    resample_particles: bool = True,
    ess_threshold: float = 0.5,
    word_order: str = "random",
    max_batch_elements: int = 2**22,
) -> torch.Tensor:
    """Left-to-right estimate (Wallach et al. 2009, Algorithm 3) of ``log p(w_1..w_N)`` for each document.

    See the module docstring for the algorithm, its unbiasedness, the word order and the
    random numbers.

    Args:
        topic_word: ``phi``, ``(K, V)``, each row a distribution over the words.
        alpha: ``(K,)`` Dirichlet parameter of the document-topic proportions (> 0).
        docs: ``D`` documents as ``(D, V)`` integer counts: a :class:`~latentnlp.data.bow.BowCorpus`,
            a scipy sparse matrix, or a numpy / torch array. Empty documents get exactly 0.
        n_particles: R >= 1.
        seed: seeds the word order and every draw (an integer in ``[0, 2**64)``).
        rejuvenate: when Algorithm 3's Gibbs sweep over the earlier assignments runs:
            ``"doubling"`` (before positions 1, 2, 4, ...; ``O(N)``), ``"every"`` (Algorithm 3
            exactly; ``O(N^2)`` per document) or ``"none"``.
        resample_particles: weight the particles by their predictive probabilities and resample
            them (makes ``p_hat`` unbiased for every R); ``False`` is Algorithm 3 as printed.
        ess_threshold: resample when the effective sample size is below ``ess_threshold * R``
            (0: never, a sequential importance sampler; 1: whenever the weights differ).
        word_order: ``"random"`` (seeded, per document) or ``"counts"`` (word ids ascending).
        max_batch_elements: documents are read in batches (sorted by length) of at most this
            many ``documents x R x K`` state entries (about 8 bytes each, a few times over) and,
            with rejuvenation, ``documents x R x N_max`` (three int64 arrays of that size).

    Returns:
        ``(D,)`` float64 tensor of estimates of ``log p(w_1..w_N)``, nats per document (the
        multinomial coefficient left out). The estimate is random (``exp`` of it is unbiased);
        it depends only on ``seed``, the document's counts and its position in ``docs``.

    Raises:
        ValueError: bad ``topic_word`` / ``alpha`` (shape, sign, rows not summing to 1), counts
            that are not non-negative integers or whose V differs, or a bad ``n_particles``,
            ``seed``, ``rejuvenate``, ``ess_threshold`` or ``word_order``.
        TypeError: boolean counts.
    """
    phi, a = _check_parameters(topic_word, alpha)
    _check_estimator_args(n_particles, seed, word_order, rejuvenate, ess_threshold)
    counts = _as_count_rows(docs, phi.shape[1])
    n_particles, seed = int(n_particles), int(seed)
    n_docs = counts.shape[0]
    keys = _doc_keys(seed, np.arange(n_docs))
    tokens = _token_sequences(counts, keys, word_order)
    lengths = np.array([t.size for t in tokens], dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")  # longest first: the active documents are a prefix
    phi_t = np.ascontiguousarray(phi.T)  # (V, K)
    per_doc = n_particles * phi.shape[0]
    out = np.zeros(n_docs, dtype=np.float64)
    start = 0
    while start < n_docs:
        idx = order[start:]
        stop = max(1, min(len(idx), max_batch_elements // per_doc))
        if rejuvenate != "none":  # the assignment history is (B, R, N_max) integers
            stop = max(1, min(stop, max_batch_elements // (n_particles * max(1, int(lengths[idx[0]])))))
        idx = idx[:stop]
        if lengths[idx[0]] > 0:
            out[idx] = _left_to_right_batch(
                phi_t, a, [tokens[i] for i in idx], keys[idx], n_particles, rejuvenate, bool(resample_particles),
                float(ess_threshold),
            )
        start += stop
    return torch.from_numpy(out)


# --------------------------------------------------------------------------- the model


class LDABaseline:
    """LDA trained by tomotopy's collapsed Gibbs sampler, scored by the left-to-right estimator.

    Args:
        config: an :class:`LDAConfig` (or the same fields as keywords).

    Learned state (after :meth:`fit`, :meth:`from_parameters` or :meth:`load`):
        topic_word_: ``(K, V)`` float64 numpy array, row ``k`` = ``phi_k`` (sums to 1).
        alpha_: ``(K,)`` float64 numpy array, the document-topic Dirichlet parameter the
            library ended with (learned unless ``optimize_interval == 0``).
        eta_: the topic-word Dirichlet parameter (float).
        history_: ``[{"iteration": i, "ll_per_word": l}, ...]``, the library's training
            log-likelihood per word (nats) every ``log_interval`` sweeps.
        fit_seconds_: wall time of the library's training.
        n_train_docs_ / n_train_tokens_: non-empty training documents and their tokens.
        library_model_: the tomotopy model after :meth:`fit` (``None`` after :meth:`load`;
            not saved).
    """

    def __init__(self, config: LDAConfig | None = None, **kwargs) -> None:
        if config is None:
            config = LDAConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either an LDAConfig or keyword fields, not both")
        if not isinstance(config, LDAConfig):
            raise TypeError(f"config must be an LDAConfig, got {type(config).__name__}")
        self.config = config
        self.topic_word_: np.ndarray | None = None
        self.alpha_: np.ndarray | None = None
        self.eta_: float = config.eta
        self.history_: list[dict] = []
        self.fit_seconds_: float = 0.0
        self.n_train_docs_: int = 0
        self.n_train_tokens_: int = 0
        self.library_model_ = None

    # ------------------------------------------------------------------ state
    @property
    def n_topics(self) -> int:
        return self.config.n_topics

    @property
    def vocab_size(self) -> int:
        """V of the fitted model."""
        return int(self._fitted()[0].shape[1])

    def _fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self.topic_word_ is None or self.alpha_ is None:
            raise ValueError("this LDABaseline is not fitted; call fit(), from_parameters() or load() first")
        return self.topic_word_, self.alpha_

    @classmethod
    def from_parameters(
        cls,
        topic_word: np.ndarray | torch.Tensor,
        alpha: np.ndarray | torch.Tensor,
        config: LDAConfig | None = None,
    ) -> "LDABaseline":
        """A model with given ``phi`` ``(K, V)`` and ``alpha`` ``(K,)`` (e.g. from another implementation).

        Raises:
            ValueError: bad shapes or values (see :func:`left_to_right_log_likelihood`), or a
                ``config`` whose ``n_topics`` differs from K.
        """
        phi, a = _check_parameters(topic_word, alpha)
        config = config or LDAConfig(n_topics=phi.shape[0])
        if config.n_topics != phi.shape[0]:
            raise ValueError(f"config.n_topics = {config.n_topics} but topic_word has K = {phi.shape[0]} rows")
        model = cls(config)
        model.topic_word_, model.alpha_ = phi, a
        return model

    # ------------------------------------------------------------------ training
    def fit(self, train: "BowCorpus") -> "LDABaseline":
        """Train on ``train`` with tomotopy's collapsed Gibbs sampler (``config.iterations`` sweeps).

        Every word of the vocabulary keeps its column (words absent from ``train`` get
        ``phi_kv = eta / (n_k + V eta)``); empty documents are skipped.

        Returns:
            ``self`` with ``topic_word_`` ``(K, V)``, ``alpha_`` ``(K,)`` and the other learned state.

        Raises:
            ImportError: tomotopy is not installed (``pip install 'latentnlp[bench]'``).
            ValueError: ``train`` has no tokens.
        """
        tp = _import_tomotopy()
        cfg = self.config
        rows = getattr(train, "counts", train)  # a BowCorpus, or (D, V) count rows
        if len(getattr(rows, "shape", ())) != 2:
            raise ValueError(f"train must be a BowCorpus or (D, V) counts, got shape {getattr(rows, 'shape', None)}")
        counts = _as_count_rows(rows, int(rows.shape[1]))
        n_words = counts.shape[1]
        if counts.nnz == 0:
            raise ValueError("the training corpus has no tokens")
        names = [str(v) for v in range(n_words)]  # tomotopy sees column ids as word strings
        model = tp.LDAModel(tw=tp.TermWeight.ONE, min_cf=0, min_df=0, rm_top=0, k=cfg.n_topics,
                            alpha=cfg.alpha, eta=cfg.eta, seed=cfg.seed)
        model.burn_in = cfg.burn_in
        model.optim_interval = cfg.optimize_interval
        n_docs = 0
        for d in range(counts.shape[0]):
            lo, hi = counts.indptr[d], counts.indptr[d + 1]
            if hi > lo:
                model.add_doc([names[v] for v in np.repeat(counts.indices[lo:hi], counts.data[lo:hi]).tolist()])
                n_docs += 1
        history = []
        start = time.perf_counter()
        done = 0
        while done < cfg.iterations:
            step = min(cfg.log_interval, cfg.iterations - done)
            model.train(step, workers=cfg.workers)
            done += step
            history.append({"iteration": done, "ll_per_word": float(model.ll_per_word)})
        self.fit_seconds_ = time.perf_counter() - start
        # Posterior mean of phi given the final assignments, over the full vocabulary.
        column = np.array([int(w) for w in model.vocabs], dtype=np.int64)  # tomotopy word id -> our column
        words = np.concatenate([np.asarray(doc.words, dtype=np.int64) for doc in model.docs])
        topics = np.concatenate([np.asarray(doc.topics, dtype=np.int64) for doc in model.docs])
        n_kv = np.bincount(topics * n_words + column[words], minlength=cfg.n_topics * n_words)
        n_kv = n_kv.reshape(cfg.n_topics, n_words).astype(np.float64)
        self.topic_word_ = (n_kv + cfg.eta) / (n_kv.sum(1, keepdims=True) + n_words * cfg.eta)
        self.alpha_ = np.asarray(model.alpha, dtype=np.float64).reshape(cfg.n_topics).copy()
        self.eta_ = cfg.eta
        self.history_ = history
        self.n_train_docs_ = n_docs
        self.n_train_tokens_ = int(counts.data.sum())
        self.library_model_ = model
        return self

    # ------------------------------------------------------------------ evaluation
    def left_to_right_log_likelihood(
        self,
        docs: "BowCorpus | sp.spmatrix | np.ndarray | torch.Tensor",
        n_particles: int = 20,
        seed: int = 0,
        *,
        rejuvenate: str = "doubling",
        resample_particles: bool = True,
        ess_threshold: float = 0.5,
        word_order: str = "random",
        max_batch_elements: int = 2**22,
    ) -> torch.Tensor:
        """Left-to-right estimate of ``log p(w_1..w_N)`` under this model: ``(D,)`` float64, nats per document.

        Arguments, result and errors as :func:`left_to_right_log_likelihood` (also ValueError
        if the model is not fitted).
        """
        phi, a = self._fitted()
        return left_to_right_log_likelihood(
            phi, a, docs, n_particles, seed, rejuvenate=rejuvenate, resample_particles=resample_particles,
            ess_threshold=ess_threshold,
            word_order=word_order, max_batch_elements=max_batch_elements,
        )

    def evaluate(
        self,
        corpus: "BowCorpus | sp.spmatrix | np.ndarray | torch.Tensor",
        n_particles: int = 20,
        seed: int = 0,
        *,
        rejuvenate: str = "doubling",
        resample_particles: bool = True,
        ess_threshold: float = 0.5,
        word_order: str = "random",
        max_batch_elements: int = 2**22,
    ) -> LDAPerplexityReport:
        """Per-document and corpus perplexity of ``corpus`` from the left-to-right estimate.

        Args:
            corpus: documents to score (no empty documents: ``corpus.drop_empty()`` first).
            n_particles, seed, rejuvenate, resample_particles, ess_threshold, word_order, max_batch_elements:
                as :func:`left_to_right_log_likelihood`.

        Returns:
            An :class:`LDAPerplexityReport`: ``estimate_*`` from the left-to-right estimate,
            ``bound_*`` NaN (LDA has no ELBO here), ``iw_samples = particles = R``.

        Raises:
            ValueError: an empty document or an empty set, the model not fitted, or as
                :func:`left_to_right_log_likelihood`.
        """
        phi, _ = self._fitted()
        counts = _as_count_rows(corpus, phi.shape[1])
        lengths = torch.as_tensor(np.asarray(counts.sum(1)).ravel(), dtype=torch.float64)
        if lengths.numel() == 0:
            raise ValueError("perplexity of an empty set of documents is undefined (D = 0)")
        if bool((lengths < 1).any()):
            bad = torch.nonzero(lengths < 1).flatten()[:5].tolist()
            raise ValueError(f"documents {bad} are empty; drop empty documents first (corpus.drop_empty())")
        start = time.perf_counter()
        log_p = self.left_to_right_log_likelihood(
            counts, n_particles, seed, rejuvenate=rejuvenate, resample_particles=resample_particles,
            ess_threshold=ess_threshold,
            word_order=word_order, max_batch_elements=max_batch_elements,
        )
        seconds = time.perf_counter() - start
        parts = [f"left-to-right, Wallach et al. 2009 Alg. 3, R = {n_particles}",
                 f"Gibbs rejuvenation: {rejuvenate}",
                 f"systematic resampling at ESS < {ess_threshold:g} R (unbiased)" if resample_particles
                 else "no particle resampling (Alg. 3 as printed; biased for R > 1)",
                 f"{word_order} word order"]
        return LDAPerplexityReport(
            n_docs=int(lengths.numel()),
            n_tokens=int(lengths.sum()),
            bound_per_document=math.nan,
            bound_corpus=math.nan,
            elbo_nats_per_doc=math.nan,
            kl_nats_per_doc=math.nan,
            elbo_samples=0,
            estimate_per_document=per_document_perplexity(log_p, lengths),
            estimate_corpus=corpus_perplexity(log_p, lengths),
            iw_samples=int(n_particles),
            estimator=", ".join(parts),
            log_p_nats_per_doc=float(log_p.mean()),
            particles=int(n_particles),
            rejuvenate=rejuvenate,
            resample_particles=bool(resample_particles),
            ess_threshold=float(ess_threshold),
            word_order=word_order,
            seed=int(seed),
            seconds=seconds,
        )

    def topic_words(self, vocab: Sequence[str], n_words: int = 10) -> list[list[str]]:
        """The ``n_words`` most probable words of each topic (largest ``phi_kv``; ties by column).

        Returns:
            K lists of words.

        Raises:
            ValueError: ``vocab`` length differs from V, ``n_words < 1``, or the model is not fitted.
        """
        phi, _ = self._fitted()
        if len(vocab) != phi.shape[1]:
            raise ValueError(f"vocab has {len(vocab)} words, the model has V = {phi.shape[1]}")
        if not _is_int(n_words) or n_words < 1:
            raise ValueError(f"n_words must be an integer >= 1, got {n_words!r}")
        top = np.argsort(-phi, axis=1, kind="stable")[:, : int(n_words)]
        return [[vocab[i] for i in row] for row in top.tolist()]

    # ------------------------------------------------------------------ I/O
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``lda.safetensors`` (``topic_word``, ``alpha``) and ``lda.json`` (config and the rest), atomically.

        The tomotopy model itself is not saved (its format is the library's own); a loaded
        model can be evaluated and inspected but not trained further.

        Raises:
            ValueError: the model is not fitted.
        """
        phi, a = self._fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_save_tensors(directory / "lda.safetensors", {"topic_word": torch.from_numpy(phi), "alpha": torch.from_numpy(a)})
        meta = {
            "model": "lda",
            "config": self.config.to_dict(),
            "n_topics": int(phi.shape[0]),
            "vocab_size": int(phi.shape[1]),
            "eta": self.eta_,
            "history": self.history_,
            "fit_seconds": self.fit_seconds_,
            "n_train_docs": self.n_train_docs_,
            "n_train_tokens": self.n_train_tokens_,
        }
        atomic_write_text(directory / "lda.json", json.dumps(meta, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "LDABaseline":
        """Rebuild a model written by :meth:`save` (safetensors and JSON only; nothing is unpickled).

        Raises:
            FileNotFoundError: a file is missing.
            ValueError: the folder holds another model, or the tensors disagree with the metadata.
        """
        directory = Path(directory)
        meta_path = directory / "lda.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: no LDA model here")
        meta = json.loads(meta_path.read_text())
        if meta.get("model") != "lda":
            raise ValueError(f"{meta_path}: holds a {meta.get('model')!r} model, not 'lda'")
        tensors, _ = load_tensors(directory / "lda.safetensors")
        if set(tensors) != {"topic_word", "alpha"}:
            raise ValueError(f"{directory / 'lda.safetensors'}: expected tensors topic_word and alpha, got {sorted(tensors)}")
        phi = tensors["topic_word"].numpy()
        if phi.shape != (meta["n_topics"], meta["vocab_size"]):
            raise ValueError(f"{directory}: topic_word has shape {phi.shape}, metadata says ({meta['n_topics']}, {meta['vocab_size']})")
        model = cls.from_parameters(phi, tensors["alpha"].numpy(), LDAConfig(**meta["config"]))
        model.eta_ = float(meta["eta"])
        model.history_ = list(meta.get("history", []))
        model.fit_seconds_ = float(meta.get("fit_seconds", 0.0))
        model.n_train_docs_ = int(meta.get("n_train_docs", 0))
        model.n_train_tokens_ = int(meta.get("n_train_tokens", 0))
        return model
