"""Annealed importance sampling (Neal 2001) and the partition function of a binary RBM.

Generic AIS. Given an unnormalised target ``f_1(x)`` with unknown normaliser ``Z_1``,
a tractable base ``f_0(x)`` with known ``Z_0`` that can be sampled exactly, and a
path of intermediate distributions ``f_beta`` for ``0 = beta_0 < beta_1 < ... < beta_K = 1``,
each chain draws ``x_0 ~ p_0`` and, for ``k = 1..K``,

    log w  +=  log f_{beta_k}(x_{k-1}) - log f_{beta_{k-1}}(x_{k-1})
    x_k    ~   T_k(x_{k-1}, .)            (T_k leaves p_{beta_k} invariant; skipped at k = K)

so that ``E[w] = Z_1 / Z_0`` (Neal 2001, Sec. 3). With ``M`` independent chains,
``Z_1 ~= Z_0 * mean(w)``; its logarithm is a stochastic *lower* bound on ``log Z_1`` in
expectation (Jensen), so a log-likelihood ``-F(x) - log Z`` computed from it tends
to be optimistic when the chains have not mixed.

The RBM instance (Salakhutdinov & Murray 2008, Sec. 3-4): the base is the
"base-rate" model ``p_A(v) prop. exp(a . v)`` with ``a`` the logits of the training
data's pixel marginals and no hidden interaction (``Z_A = prod_i (1 + e^{a_i})``);
the path is geometric, ``f_beta(v) = f_A(v)^{1-beta} f_B(v)^beta`` with the hidden
units of the target summed out (at ``beta = 0`` they are free, so ``Z_0 = 2^H prod_i (1 + e^{a_i})``):

    log f_beta(v) = ((1 - beta) a + beta b) . v + sum_j softplus(beta (v W + c)_j)

and ``T_k`` is one sweep of block Gibbs sampling at ``beta_k``:
``h_j ~ Bern(sigmoid(beta (v W + c)_j))``, ``v_i ~ Bern(sigmoid((1 - beta) a_i + beta (b + W h)_i))``.

Error bars follow Salakhutdinov's released ``RBM_AIS.m``: with ``s`` the standard
deviation of the ``M`` weights (scaled by ``Z_0``), ``sigma = s / sqrt(M)`` is the
standard deviation of the estimate ``Z_hat``, and the interval reported is
``[log(Z_hat - 3 sigma), log(Z_hat + 3 sigma)]`` (the lower end is ``-inf`` when
``3 sigma >= Z_hat``). It only describes the Monte-Carlo spread of the weights; it
cannot reveal a bias from chains that never found a mode of the target.

All log quantities are in nats.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "PAPER_BETAS",
    "AISResult",
    "AnnealingPath",
    "RBMBaseRatePath",
    "annealed_importance_sampling",
    "base_rate_logits",
    "betas_schedule",
    "binary_configurations",
    "rbm_ais",
    "rbm_exact_log_partition",
]

#: Salakhutdinov & Murray (2008), Sec. 4.1: 500 temperatures spaced uniformly in
#: [0, 0.5), 4,000 in [0.5, 0.9) and 10,000 in [0.9, 1.0]: 14,500 intermediate distributions.
PAPER_BETAS = (500, 4000, 10000)


@dataclass
class AISResult:
    """An AIS estimate of ``log Z``.

    Attributes:
        log_z: ``log Z_0 + log mean(w)``, nats.
        log_z_lower: ``log(Z_hat - 3 sigma)`` (``-inf`` when the interval reaches 0).
        log_z_upper: ``log(Z_hat + 3 sigma)``.
        log_z_base: ``log Z_0`` of the base distribution.
        log_weights: ``(M,)`` float64 log importance weights ``log w_m`` (without ``log Z_0``).
        n_chains: M.
        n_temperatures: K, intermediate distributions (``len(betas) - 1``).
        seconds: wall time of the run.
    """

    log_z: float
    log_z_lower: float
    log_z_upper: float
    log_z_base: float
    log_weights: torch.Tensor
    n_chains: int
    n_temperatures: int
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def effective_sample_size(self) -> float:
        """``(sum w)^2 / sum w^2``: how many of the M chains carry the estimate."""
        lw = self.log_weights
        return float(torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (the weights are left out; infinities become ``None``)."""

        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "log_z": self.log_z,
            "log_z_minus_3sd": num(self.log_z_lower),
            "log_z_plus_3sd": num(self.log_z_upper),
            "log_z_base": self.log_z_base,
            "n_chains": self.n_chains,
            "n_temperatures": self.n_temperatures,
            "effective_sample_size": self.effective_sample_size,
            "seconds": self.seconds,
        } | self.extra


def betas_schedule(n_temperatures: int | None = None, counts: Sequence[int] = PAPER_BETAS) -> torch.Tensor:
    """Inverse temperatures ``0 = beta_0 < ... < beta_K = 1`` in the paper's three bands.

    Args:
        n_temperatures: K; ``None`` gives the paper's 14,500. Other values keep the
            paper's proportions (500 : 4,000 : 10,000 over [0, .5) / [.5, .9) / [.9, 1]).
        counts: temperatures per band, used as given when ``n_temperatures`` is ``None``.

    Returns:
        ``(K + 1,)`` float64 tensor.

    Raises:
        ValueError: if ``n_temperatures < 3``.
    """
    counts = [int(c) for c in counts]
    if n_temperatures is not None:
        if n_temperatures < 3:
            raise ValueError(f"n_temperatures must be >= 3, got {n_temperatures}")
        total = sum(counts)
        counts = [max(1, round(n_temperatures * c / total)) for c in counts]
        counts[-1] = max(1, n_temperatures - sum(counts[:-1]))
    edges = (0.0, 0.5, 0.9, 1.0)
    parts = [torch.linspace(edges[i], edges[i + 1], counts[i] + 1, dtype=torch.float64)[:-1] for i in range(3)]
    return torch.cat(parts + [torch.ones(1, dtype=torch.float64)])


class AnnealingPath:
    """A path of unnormalised distributions ``f_beta``, ``beta in [0, 1]``, for :func:`annealed_importance_sampling`.

    Subclasses implement :meth:`sample_base`, :meth:`log_base_partition`,
    :meth:`log_unnormalized` and :meth:`transition`; they may override :meth:`step`
    to share work between the weight update and the transition.
    """

    def sample_base(self, n_chains: int, generator: torch.Generator | None) -> Any:
        """``n_chains`` exact, independent samples of ``p_0`` (any state type; batch first)."""
        raise NotImplementedError

    def log_base_partition(self) -> float:
        """``log Z_0``."""
        raise NotImplementedError

    def log_unnormalized(self, state: Any, beta: float) -> torch.Tensor:
        """``log f_beta(state)``: ``(M,)``."""
        raise NotImplementedError

    def transition(self, state: Any, beta: float, generator: torch.Generator | None) -> Any:
        """One move of a Markov chain that leaves ``p_beta`` invariant."""
        raise NotImplementedError

    def step(
        self, state: Any, beta_prev: float, beta: float, generator: torch.Generator | None, move: bool = True
    ) -> tuple[torch.Tensor, Any]:
        """``(log f_beta(state) - log f_beta_prev(state), T_beta(state))``; the state is kept when ``move`` is false."""
        increment = self.log_unnormalized(state, beta) - self.log_unnormalized(state, beta_prev)
        if move:
            state = self.transition(state, beta, generator)
        return increment, state


def _check_betas(betas: torch.Tensor) -> torch.Tensor:
    betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
    if betas.numel() < 2:
        raise ValueError(f"betas must hold at least 2 values (0 and 1), got {betas.numel()}")
    if betas[0] != 0.0 or betas[-1] != 1.0:
        raise ValueError(f"betas must run from 0 to 1, got {float(betas[0])} .. {float(betas[-1])}")
    if not bool((betas[1:] > betas[:-1]).all()):
        raise ValueError("betas must be strictly increasing")
    return betas


def log_mean_exp_interval(log_weights: torch.Tensor, log_z_base: float, n_sd: float = 3.0) -> tuple[float, float, float]:
    """``(log Z_hat, log(Z_hat - n_sd sigma), log(Z_hat + n_sd sigma))`` from log weights, stably.

    ``Z_hat = Z_0 mean(w)``, ``sigma = Z_0 std(w) / sqrt(M)`` (sample standard deviation).
    """
    lw = log_weights.double()
    m = lw.numel()
    shift = float(lw.max())
    w = torch.exp(lw - shift)  # in (0, 1]
    mean = float(w.mean())
    sd = float(w.std(unbiased=True)) / math.sqrt(m) if m > 1 else 0.0
    base = log_z_base + shift
    log_z = base + math.log(mean)
    upper = base + math.log(mean + n_sd * sd)
    lower = base + math.log(mean - n_sd * sd) if mean - n_sd * sd > 0 else -math.inf
    return log_z, lower, upper


@torch.no_grad()
def annealed_importance_sampling(
    path: AnnealingPath,
    betas: torch.Tensor,
    n_chains: int = 100,
    generator: torch.Generator | None = None,
) -> AISResult:
    """Estimate ``log Z_1`` of ``path`` with ``n_chains`` AIS runs, batched.

    Args:
        path: the :class:`AnnealingPath`.
        betas: ``(K + 1,)`` strictly increasing, from 0 to 1 (see :func:`betas_schedule`).
        n_chains: M independent runs.
        generator: random source (seed it for a reproducible estimate).

    Returns:
        An :class:`AISResult`.

    Raises:
        ValueError: bad ``betas`` or ``n_chains < 1``.
    """
    betas = _check_betas(betas)
    if n_chains < 1:
        raise ValueError(f"n_chains must be >= 1, got {n_chains}")
    t0 = time.perf_counter()
    state = path.sample_base(n_chains, generator)
    log_w = torch.zeros(n_chains, dtype=torch.float64)
    bl = betas.tolist()
    for k in range(1, len(bl)):
        increment, state = path.step(state, bl[k - 1], bl[k], generator, move=k < len(bl) - 1)
        log_w += increment.double().cpu()
    log_z_base = float(path.log_base_partition())
    log_z, lower, upper = log_mean_exp_interval(log_w, log_z_base)
    return AISResult(
        log_z=log_z,
        log_z_lower=lower,
        log_z_upper=upper,
        log_z_base=log_z_base,
        log_weights=log_w,
        n_chains=n_chains,
        n_temperatures=len(bl) - 1,
        seconds=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------- the RBM


def base_rate_logits(x: torch.Tensor, pseudo_count: float = 1.0) -> torch.Tensor:
    """Logits ``log(p / (1 - p))`` of the smoothed per-dimension marginals of 0/1 data.

    ``p_i = (sum_n x_ni + pseudo_count) / (N + 2 pseudo_count)``, so pixels that are
    always off get a large negative but finite logit (about -10.8 for N = 50,000).

    Args:
        x: ``(N, D)`` 0/1 data.

    Returns:
        ``(D,)`` float32 logits.
    """
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"x must have shape (N, D) with N >= 1, got {tuple(x.shape)}")
    p = (x.double().sum(0) + pseudo_count) / (x.shape[0] + 2 * pseudo_count)
    return torch.logit(p).float()


class RBMBaseRatePath(AnnealingPath):
    """Geometric path from a base-rate model to a binary RBM (Salakhutdinov & Murray 2008).

    Args:
        weight: ``(D, H)`` visible-hidden weights ``W``.
        visible_bias: ``(D,)`` ``b``.
        hidden_bias: ``(H,)`` ``c``.
        base_logits: ``(D,)`` base-rate logits ``a`` (see :func:`base_rate_logits`); zeros give the uniform base.

    The energy is ``E(v, h) = -b.v - c.h - v W h``; the state is ``v``: ``(M, D)`` floats 0/1.
    """

    def __init__(self, weight: torch.Tensor, visible_bias: torch.Tensor, hidden_bias: torch.Tensor, base_logits: torch.Tensor):
        self.W = weight.detach()
        self.b = visible_bias.detach()
        self.c = hidden_bias.detach()
        self.a = base_logits.detach().to(self.W)
        d, h = self.W.shape
        for name, t, n in (("visible_bias", self.b, d), ("hidden_bias", self.c, h), ("base_logits", self.a, d)):
            if t.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) for a weight of shape {(d, h)}, got {tuple(t.shape)}")

    def sample_base(self, n_chains: int, generator: torch.Generator | None) -> torch.Tensor:
        p = torch.sigmoid(self.a).expand(n_chains, -1)
        return (torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype) < p).to(self.W.dtype)

    def log_base_partition(self) -> float:
        # At beta = 0 the target's H hidden units are free: f_0(v) = exp(a.v) 2^H.
        return float(F.softplus(self.a.double()).sum()) + self.W.shape[1] * math.log(2.0)

    def log_unnormalized(self, state: torch.Tensor, beta: float) -> torch.Tensor:
        pre = (state @ self.W + self.c).double()
        vis = state.double() @ ((1.0 - beta) * self.a + beta * self.b).double()
        return vis + F.softplus(beta * pre).sum(-1)

    def _move(self, v: torch.Tensor, pre: torch.Tensor, beta: float, generator: torch.Generator | None) -> torch.Tensor:
        ph = torch.sigmoid(beta * pre)
        h = (torch.rand(ph.shape, generator=generator, device=ph.device, dtype=ph.dtype) < ph).to(v.dtype)
        pv = torch.sigmoid((1.0 - beta) * self.a + beta * (h @ self.W.T + self.b))
        return (torch.rand(pv.shape, generator=generator, device=pv.device, dtype=pv.dtype) < pv).to(v.dtype)

    def transition(self, state: torch.Tensor, beta: float, generator: torch.Generator | None) -> torch.Tensor:
        return self._move(state, state @ self.W + self.c, beta, generator)

    def step(self, state, beta_prev, beta, generator, move=True):
        # One matrix product serves both the weight update and the hidden draw.
        pre = state @ self.W + self.c  # (M, H)
        # The increment is a small difference of large sums: form it term by term in float64
        # (thousands of float32 round-offs would otherwise accumulate along the path).
        pre64 = pre.double()
        dv = state.double() @ (self.b - self.a).double()  # (M,)
        increment = (beta - beta_prev) * dv + (F.softplus(beta * pre64) - F.softplus(beta_prev * pre64)).sum(-1)
        if move:
            state = self._move(state, pre, beta, generator)
        return increment, state


def _rbm_params(rbm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return rbm.weight, rbm.visible_bias, rbm.hidden_bias


@torch.no_grad()
def rbm_ais(
    rbm,
    n_chains: int = 100,
    betas: torch.Tensor | int | None = None,
    base_logits: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> AISResult:
    """AIS estimate of an RBM's ``log Z`` from the base-rate model (Salakhutdinov & Murray 2008).

    Args:
        rbm: anything with ``weight`` ``(D, H)``, ``visible_bias`` ``(D,)`` and ``hidden_bias`` ``(H,)``
            (e.g. :class:`latentnlp.models.density.rbm.BernoulliRBM`).
        n_chains: M (paper: 100).
        betas: a ``(K + 1,)`` schedule, an int K (paper proportions), or ``None`` for the paper's 14,500.
        base_logits: ``(D,)`` base-rate logits; default ``rbm.base_rate_bias`` if it has one, else zeros.
        generator: random source.

    Returns:
        An :class:`AISResult` whose ``log_z`` estimates the RBM's log partition function.
    """
    W, b, c = _rbm_params(rbm)
    if base_logits is None:
        base_logits = getattr(rbm, "base_rate_bias", None)
        if base_logits is None:
            base_logits = torch.zeros_like(b)
    if betas is None or isinstance(betas, int):
        betas = betas_schedule(betas)
    return annealed_importance_sampling(RBMBaseRatePath(W, b, c, base_logits), betas, n_chains, generator)


def binary_configurations(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """All ``2^n`` vectors of ``{0, 1}^n``: ``(2^n, n)``, row ``k`` is ``k`` in binary (least significant bit first)."""
    k = torch.arange(2**n, dtype=torch.int64)
    return ((k.unsqueeze(1) >> torch.arange(n)) & 1).to(dtype)


def rbm_exact_log_partition(rbm, max_units: int = 20, chunk_size: int = 1 << 14) -> torch.Tensor:
    """``log Z`` of a binary RBM by enumerating the smaller layer and summing out the other in closed form.

    With ``H <= D``: ``Z = sum_h exp(c.h) prod_i (1 + exp(b_i + (W h)_i))``; otherwise
    ``Z = sum_v exp(-F(v))``. Computed in float64 and differentiable with respect to the
    RBM's parameters (so ``mean F(x) + log Z`` is the exact NLL for autograd).

    Args:
        rbm: anything with ``weight`` ``(D, H)``, ``visible_bias`` and ``hidden_bias``.
        max_units: refuse when the smaller layer has more units than this.
        chunk_size: configurations processed at once.

    Returns:
        0-d float64 tensor, nats.

    Raises:
        ValueError: if ``min(D, H) > max_units`` (2^min(D,H) terms would be summed).
    """
    W, b, c = (t.double() for t in _rbm_params(rbm))
    d, h = W.shape
    n = min(d, h)
    if n > max_units:
        raise ValueError(
            f"exact log Z enumerates 2^{n} configurations of the smaller layer (D = {d}, H = {h}); "
            f"refusing above {max_units} units: use AIS (rbm_ais) instead"
        )
    if h <= d:
        enum_bias, other_bias, weight = c, b, W.T  # enumerate h, sum out v
    else:
        enum_bias, other_bias, weight = b, c, W  # enumerate v, sum out h
    parts = []
    for start in range(0, 2**n, chunk_size):
        k = torch.arange(start, min(start + chunk_size, 2**n), dtype=torch.int64)
        s = ((k.unsqueeze(1) >> torch.arange(n)) & 1).to(W.dtype).to(W.device)  # (C, n)
        parts.append(torch.logsumexp(s @ enum_bias + F.softplus(s @ weight + other_bias).sum(-1), 0))
    return torch.logsumexp(torch.stack(parts), 0)
