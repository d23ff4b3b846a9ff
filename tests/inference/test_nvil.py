"""NVIL (Mnih & Gregor 2014) against exact gradients of tiny sigmoid belief nets.

The toy models are small enough to enumerate every latent configuration, so the exact
ELBO gradient is ``d/d(theta, phi) sum_h Q(h|x) [log P(x,h) - log Q(h|x)]`` by autograd.
Per-sample NVIL gradients come from one backward pass: every parameter is expanded to a
leading sample dimension ``S`` (``p.expand(S, ...)``), so the gradient of the expanded
tensor is one gradient per sample, and their mean and standard error are compared with
the exact value.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from latentnlp.inference.nvil import NVILConfig, NVILEstimator
from latentnlp.training.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

DT = torch.float64
V, K = 6, 4  # one-layer model: 6 word types, 4 binary latents (16 configurations)
THETA1, PHI1 = ("a", "W", "c"), ("U", "d")
# Documents of very different lengths (3 to 40 words): their learning signals differ by tens
# of nats, which a constant baseline cannot remove and an input-dependent one can.
DOCS = torch.tensor(
    [
        [2, 0, 1, 0, 0, 0],
        [0, 3, 0, 1, 1, 0],
        [1, 1, 4, 0, 2, 2],
        [6, 0, 0, 5, 3, 6],
        [3, 8, 2, 2, 0, 5],
        [9, 4, 7, 0, 12, 8],
    ],
    dtype=DT,
)


# ----------------------------------------------------------------------------- toy models
def _bernoulli_log_prob(h: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``sum_k log Bernoulli(h_k; sigmoid(logits_k))`` over the last dimension."""
    return (h * logits - F.softplus(logits)).sum(-1)


def _configs(k: int) -> torch.Tensor:
    """All ``2^k`` binary vectors, ``(2^k, k)``."""
    return ((torch.arange(2**k)[:, None] >> torch.arange(k)) & 1).to(DT)


def _expand(params: dict[str, torch.Tensor], s: int) -> dict[str, torch.Tensor]:
    return {name: p.unsqueeze(0).expand(s, *p.shape) for name, p in params.items()}


def _q_input(x: torch.Tensor) -> torch.Tensor:
    return torch.log1p(x)


def sbn1_params(seed: int = 0) -> dict[str, torch.Tensor]:
    """theta: prior logits a (K,), decoder W (V, K), c (V,); phi: U (K, V), d (K,)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape, scale=1.0: torch.randn(*shape, generator=g, dtype=DT) * scale
    return {"a": r(K), "W": r(V, K), "c": r(V, scale=0.5), "U": r(K, V, scale=0.7), "d": r(K, scale=0.5)}


def sbn1_terms(P: dict[str, torch.Tensor], x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log P(x, h)`` and ``log Q(h | x)``, ``(S, B)``, for parameters with a leading sample dim S.

    P(h) = prod_k Bernoulli(sigmoid(a_k)); P(x | h) = sum_v x_v log softmax(W h + c)_v;
    Q(h | x) = prod_k Bernoulli(sigmoid(U log(1 + x) + d)_k).
    """
    log_prior = _bernoulli_log_prob(h, P["a"][:, None, :])
    logits = torch.einsum("svk,sbk->sbv", P["W"], h) + P["c"][:, None, :]
    log_lik = (x * torch.log_softmax(logits, -1)).sum(-1)
    q_logits = torch.einsum("skv,bv->sbk", P["U"], _q_input(x)) + P["d"][:, None, :]
    return log_prior + log_lik, _bernoulli_log_prob(h, q_logits)


def sbn1_sample(P: dict[str, torch.Tensor], x: torch.Tensor, s: int, gen: torch.Generator) -> torch.Tensor:
    """``h ~ Q(h | x)``: ``(s, B, K)`` 0/1, no gradient."""
    probs = torch.sigmoid(_q_input(x) @ P["U"].detach().T + P["d"].detach())
    return (torch.rand(s, *probs.shape, generator=gen, dtype=DT) < probs).to(DT)


def sbn1_exact_grad(P: dict[str, torch.Tensor], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``d/dparams -sum_docs ELBO`` by enumerating the 2^K configurations."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in P.items()}
    H = _configs(K)
    h = H[:, None, :].expand(H.shape[0], x.shape[0], K)
    lp, lq = sbn1_terms(_expand(leaves, H.shape[0]), x, h)
    torch.testing.assert_close(lq.exp().sum(0), torch.ones(x.shape[0], dtype=DT))  # Q is normalised
    elbo = (lq.exp() * (lp - lq)).sum()
    grads = torch.autograd.grad(-elbo, list(leaves.values()))
    return {k: g.flatten() for k, g in zip(leaves, grads)}


def sbn1_nvil_grads(est: NVILEstimator, P: dict[str, torch.Tensor], x: torch.Tensor, h: torch.Tensor):
    """Per-sample NVIL gradients ``{name: (S, numel)}`` of the surrogate summed over documents, and the output."""
    s = h.shape[0]
    leaves = {k: v.detach().clone().requires_grad_() for k, v in P.items()}
    Pe = _expand(leaves, s)
    for t in Pe.values():
        t.retain_grad()
    lp, lq = sbn1_terms(Pe, x, h)
    out = est(lp, lq, _q_input(x))
    (out["surrogate"].sum() * s).backward()  # the surrogate is a mean over the S samples
    return {k: Pe[k].grad.reshape(s, -1) for k in P}, out


def _z_scores(samples: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """``(mean - exact) / standard error`` per coordinate."""
    se = samples.std(0) / math.sqrt(samples.shape[0])
    return (samples.mean(0) - exact) / (se + 1e-12)


def _warm_up(est: NVILEstimator, P, x, steps: int, gen: torch.Generator, s: int = 16, lr: float = 0.0) -> None:
    """Training-mode calls on fresh samples; with ``lr > 0`` Adam fits the baseline psi (theta, phi fixed)."""
    est.train()
    opt = torch.optim.Adam(est.parameters(), lr=lr) if lr > 0 and len(list(est.parameters())) else None
    Pd = _expand({k: v.detach() for k, v in P.items()}, s)
    for _ in range(steps):
        lp, lq = sbn1_terms(Pd, x, sbn1_sample(P, x, s, gen))
        out = est(lp, lq, _q_input(x))
        if opt is not None:
            opt.zero_grad()
            out["surrogate"].sum().backward()
            opt.step()


def _estimator(centering: str, normalization: bool, hidden: int = 16, **kw) -> NVILEstimator:
    torch.manual_seed(0)
    cfg = NVILConfig(centering=centering, variance_normalization=normalization, baseline_hidden=hidden, **kw)
    return NVILEstimator(cfg, input_dim=V).double()


# ----------------------------------------------------------------------------- unbiasedness
@pytest.mark.parametrize("normalization", [False, True])
@pytest.mark.parametrize("centering", ["none", "constant", "input", "both"])
def test_gradient_is_unbiased_against_enumeration(centering, normalization):
    P, x = sbn1_params(0), DOCS[:4]
    exact = sbn1_exact_grad(P, x)
    gen = torch.Generator().manual_seed(1)
    est = _estimator(centering, normalization)
    _warm_up(est, P, x, steps=10, gen=gen)  # running statistics away from their start
    if est.config.uses_input:  # an arbitrary but non-trivial b_psi(x): any h-independent baseline is unbiased
        with torch.no_grad():
            est.baselines[0][2].weight.normal_(0.0, 3.0, generator=torch.Generator().manual_seed(2))
            est.baselines[0][2].bias.fill_(-7.0)
        b = est.baseline(_q_input(x))
        assert b.std() > 1.0
    n = est.normalizers()[0].item()  # the normaliser this (training-mode) batch is scaled by
    if normalization:
        assert n > 1.5  # the test must see the scaling
    else:
        assert n == 1.0
    updates = int(est.num_updates)
    h = sbn1_sample(P, x, 20_000, gen)
    grads, _ = sbn1_nvil_grads(est, P, x, h)
    assert int(est.num_updates) == updates + 1  # training mode: statistics advanced after use
    z = {}
    for name in THETA1:  # pathwise: not scaled by the normaliser
        z[name] = _z_scores(grads[name], exact[name])
    for name in PHI1:  # score function: E = exact / n
        z[name] = _z_scores(grads[name] * n, exact[name])
    allz = torch.cat(list(z.values()))
    worst = {k: round(v.abs().max().item(), 2) for k, v in z.items()}
    assert allz.abs().max() < 4.5, worst
    assert allz.pow(2).mean() < 2.0, allz.pow(2).mean()  # ~1 for an unbiased estimator
    # and the estimate is informative: relative error of the phi gradient well below 1
    phi_mean = torch.cat([grads[k].mean(0) for k in PHI1]) * n
    phi_exact = torch.cat([exact[k] for k in PHI1])
    assert (phi_mean - phi_exact).norm() < 0.5 * phi_exact.norm()


# ----------------------------------------------------------------------------- variance
def _phi_variance(est: NVILEstimator, P, x, gen: torch.Generator, s: int = 10_000) -> float:
    """Per-sample variance of the phi gradient, summed over phi's coordinates (eval mode: frozen statistics)."""
    est.eval()
    grads, _ = sbn1_nvil_grads(est, P, x, sbn1_sample(P, x, s, gen))
    g = torch.cat([grads[k] for k in PHI1], 1)
    return g.var(0).sum().item()


def test_variance_drops_with_each_baseline():
    P, x = sbn1_params(0), DOCS
    var = {}
    for centering in ("none", "constant", "input", "both"):
        gen = torch.Generator().manual_seed(3)
        est = _estimator(centering, False)
        if centering != "none":
            _warm_up(est, P, x, steps=200 if est.config.uses_input else 30, gen=gen, lr=0.03)
        var[centering] = _phi_variance(est, P, x, gen)
    # measured (seeded, nats^2 per sample): none 1.86e5, constant 5.46e4, input 4.16e3, both 4.44e3;
    # what is left with a baseline is the spread of l within a document, which no baseline removes
    assert var["constant"] < 0.5 * var["none"], var
    assert var["input"] < 0.2 * var["constant"], var
    assert var["both"] < 0.2 * var["constant"], var


def test_fitted_baseline_tracks_the_per_document_mean_signal():
    P, x = sbn1_params(0), DOCS
    gen = torch.Generator().manual_seed(4)
    est = _estimator("both", True)
    _warm_up(est, P, x, steps=300, gen=gen, lr=0.03)
    H = _configs(K)
    lp, lq = sbn1_terms(_expand(P, H.shape[0]), x, H[:, None, :].expand(H.shape[0], x.shape[0], K))
    elbo = (lq.exp() * (lp - lq)).sum(0)  # E_Q[l] per document: the optimal b(x) + c
    with torch.no_grad():
        fitted = est.baseline(_q_input(x)) + est.signal_mean[0]
    assert elbo.max() - elbo.min() > 30.0  # the documents' signals differ a lot
    assert (fitted - elbo).abs().max() < 3.0, (fitted, elbo)  # measured: 1.6 nats at most, ELBOs -12 to -106
    assert est.last_diagnostics["centered_mean"].abs().item() < 1.0


# ----------------------------------------------------------------------------- two layers
K1, K2, V2 = 3, 2, 5
THETA2, PHI2_L0, PHI2_L1 = ("a2", "A", "a1", "W", "c"), ("U", "d1"), ("G", "d2")


def sbn2_params(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape, scale=1.0: torch.randn(*shape, generator=g, dtype=DT) * scale
    return {
        "a2": r(K2), "A": r(K1, K2, scale=2.0), "a1": r(K1), "W": r(V2, K1), "c": r(V2, scale=0.5),
        "U": r(K1, V2, scale=0.7), "d1": r(K1, scale=0.5), "G": r(K2, K1, scale=1.5), "d2": r(K2, scale=0.5),
    }  # fmt: skip


def sbn2_terms(P, x, h1, h2):
    """Local terms of P(x|h1) P(h1|h2) P(h2) and Q(h1|x) Q(h2|h1), each ``(S, B)``.

    Returns ``(log_p, log_q)`` in the estimator's convention: ``log_p[0] = log P(x|h1)`` (its
    latest latent is h1), ``log_p[1] = log P(h1|h2) + log P(h2)`` (latest: h2);
    ``log_q = [log Q(h1|x), log Q(h2|h1)]``.
    """
    log_x = (x * torch.log_softmax(torch.einsum("svk,sbk->sbv", P["W"], h1) + P["c"][:, None, :], -1)).sum(-1)
    log_h1 = _bernoulli_log_prob(h1, torch.einsum("sij,sbj->sbi", P["A"], h2) + P["a1"][:, None, :])
    log_h2 = _bernoulli_log_prob(h2, P["a2"][:, None, :])
    log_q1 = _bernoulli_log_prob(h1, torch.einsum("skv,bv->sbk", P["U"], _q_input(x)) + P["d1"][:, None, :])
    log_q2 = _bernoulli_log_prob(h2, torch.einsum("sjk,sbk->sbj", P["G"], h1) + P["d2"][:, None, :])
    return [log_x, log_h1 + log_h2], [log_q1, log_q2], (log_x, log_h1, log_h2)


def sbn2_sample(P, x, s, gen):
    p1 = torch.sigmoid(_q_input(x) @ P["U"].T + P["d1"])
    h1 = (torch.rand(s, *p1.shape, generator=gen, dtype=DT) < p1).to(DT)
    p2 = torch.sigmoid(h1 @ P["G"].T + P["d2"])
    h2 = (torch.rand(p2.shape, generator=gen, dtype=DT) < p2).to(DT)  # p2 is already (s, B, K2)
    return h1, h2


def sbn2_exact_grad(P, x):
    leaves = {k: v.detach().clone().requires_grad_() for k, v in P.items()}
    H = _configs(K1 + K2)
    c, b = H.shape[0], x.shape[0]
    h1 = H[:, None, :K1].expand(c, b, K1)
    h2 = H[:, None, K1:].expand(c, b, K2)
    lp, lq, _ = sbn2_terms(_expand(leaves, c), x, h1, h2)
    lp, lq = sum(lp), sum(lq)
    torch.testing.assert_close(lq.exp().sum(0), torch.ones(b, dtype=DT))
    grads = torch.autograd.grad(-(lq.exp() * (lp - lq)).sum(), list(leaves.values()))
    return {k: g.flatten() for k, g in zip(leaves, grads)}


def sbn2_nvil_grads(est, P, x, h1, h2, assign="local"):
    s = h1.shape[0]
    leaves = {k: v.detach().clone().requires_grad_() for k, v in P.items()}
    Pe = _expand(leaves, s)
    for t in Pe.values():
        t.retain_grad()
    lp, lq, (log_x, log_h1, log_h2) = sbn2_terms(Pe, x, h1, h2)
    if assign == "global":  # one signal for both layers (a one-layer estimator)
        out = est(sum(lp), sum(lq), _q_input(x))
    elif assign == "wrong":  # log P(h1|h2) filed under layer 0 although it reads h2: biased
        out = est([log_x + log_h1, log_h2], lq, [_q_input(x), h1])
    else:
        out = est(lp, lq, [_q_input(x), h1])  # layer 1's baseline reads h1 (sampled before h2)
    (out["surrogate"].sum() * s).backward()
    return {k: Pe[k].grad.reshape(s, -1) for k in P}, out


def _two_layer_estimator(centering="both", normalization=True, n_layers=2):
    torch.manual_seed(0)
    cfg = NVILConfig(centering=centering, variance_normalization=normalization, baseline_hidden=8)
    dims = [V2, K1][:n_layers] if n_layers == 2 else V2
    return NVILEstimator(cfg, input_dim=dims, n_layers=n_layers).double()


def _warm_two_layer(est, P, x, gen, steps=10, assign="local"):
    est.train()
    for _ in range(steps):
        h1, h2 = sbn2_sample(P, x, 16, gen)
        sbn2_nvil_grads(est, P, x, h1, h2, assign=assign)


def _two_layer_z(grads, exact, norms):
    z = [_z_scores(grads[k], exact[k]) for k in THETA2]
    z += [_z_scores(grads[k] * norms[0], exact[k]) for k in PHI2_L0]
    z += [_z_scores(grads[k] * norms[1], exact[k]) for k in PHI2_L1]
    return torch.cat(z)


def test_local_learning_signals_are_unbiased_on_two_layer_sbn():
    P, x = sbn2_params(0), DOCS[:4, :V2]
    exact = sbn2_exact_grad(P, x)
    gen = torch.Generator().manual_seed(5)
    est = _two_layer_estimator()
    _warm_two_layer(est, P, x, gen)
    with torch.no_grad():  # non-trivial baselines for both layers
        for k, mlp in enumerate(est.baselines):
            mlp[2].weight.normal_(0.0, 2.0, generator=torch.Generator().manual_seed(10 + k))
    norms = est.normalizers().tolist()
    assert norms[0] > 1.5 and norms[0] != norms[1]  # separate statistics per layer
    h1, h2 = sbn2_sample(P, x, 20_000, gen)
    grads, out = sbn2_nvil_grads(est, P, x, h1, h2)
    z = _two_layer_z(grads, exact, norms)
    assert z.abs().max() < 4.5, z
    assert z.pow(2).mean() < 2.0
    assert {"centered_signal_0", "centered_signal_1", "baseline_residual_sq_1"} <= set(out)
    # the convention: l_1 = log P(h1|h2) + log P(h2) - log Q(h2|h1); l_0 = the full signal
    lp, lq, (log_x, log_h1, log_h2) = sbn2_terms(_expand(P, 20_000), x, h1, h2)
    l0, l1 = NVILEstimator.learning_signals(lp, lq)
    torch.testing.assert_close(l1, log_h1 + log_h2 - lq[1])
    torch.testing.assert_close(l0, sum(lp) - sum(lq))


def test_misassigned_local_term_is_detectably_biased():
    """Guards the power of the two-layer test: filing log P(h1|h2) under layer 0 drops a
    term that depends on h2 from layer 1's signal, and the comparison must notice."""
    P, x = sbn2_params(0), DOCS[:4, :V2]
    exact = sbn2_exact_grad(P, x)
    gen = torch.Generator().manual_seed(5)
    est = _two_layer_estimator()
    _warm_two_layer(est, P, x, gen, assign="wrong")
    h1, h2 = sbn2_sample(P, x, 20_000, gen)
    grads, _ = sbn2_nvil_grads(est, P, x, h1, h2, assign="wrong")
    z = _two_layer_z(grads, exact, est.normalizers().tolist())
    assert z.abs().max() > 10.0


def test_local_signal_has_lower_variance_than_the_global_one():
    P, x = sbn2_params(0), DOCS[:, :V2]
    var = {}
    for assign in ("global", "local"):
        gen = torch.Generator().manual_seed(6)
        est = _two_layer_estimator("constant", False, n_layers=1 if assign == "global" else 2)
        _warm_two_layer(est, P, x, gen, steps=30, assign=assign)
        est.eval()
        grads, _ = sbn2_nvil_grads(est, P, x, *sbn2_sample(P, x, 20_000, gen), assign=assign)
        var[assign] = torch.cat([grads[k] for k in PHI2_L1], 1).var(0).sum().item()
    # measured (seeded): global 1.41e3, local 2.96e1 for the top layer's phi
    assert var["local"] < 0.2 * var["global"], var


# ----------------------------------------------------------------------------- contract
def test_loss_is_the_honest_bound_not_the_surrogate():
    P, x = sbn1_params(0), DOCS[:4]
    gen = torch.Generator().manual_seed(7)
    h = sbn1_sample(P, x, 5, gen)
    lp, lq = sbn1_terms(_expand(P, 5), x, h)
    for centering in ("none", "both"):
        est = _estimator(centering, True).eval()  # fresh statistics: c = 0, n = 1
        with torch.no_grad():
            if est.config.uses_input:
                est.baselines[0][2].bias.fill_(3.0)  # b(x) = 3
        out = est(lp, lq, _q_input(x))
        torch.testing.assert_close(out["loss"], -(lp - lq).mean(0))
        assert out["loss"].shape == out["surrogate"].shape == (4,)
        assert not out["loss"].requires_grad
        if centering == "none":  # no baseline: the surrogate's value is the loss, its gradient is not
            torch.testing.assert_close(out["surrogate"], out["loss"])
        else:  # value = loss + 1/2 (l - c - b)^2 / n, the baseline's regression loss
            torch.testing.assert_close(out["surrogate"] - out["loss"], (0.5 * (lp - lq - 3.0) ** 2).mean(0))
            torch.testing.assert_close(out["baseline_residual_sq"], ((lp - lq - 3.0) ** 2).mean(0))


def test_single_example_shape_and_known_surrogate_gradient():
    """(B,) inputs; d surrogate / d log q = -A, d / d log p = -1, with A by hand."""
    est = _estimator("constant", True, alpha=0.5)
    est.train()
    lp0 = torch.tensor([-10.0, -14.0], dtype=DT)
    lq0 = torch.tensor([-1.0, -2.0], dtype=DT)
    est(lp0, lq0)  # first batch: c = mean(l) = -10.5, v = var(l) = 2.25
    torch.testing.assert_close(est.signal_mean, torch.tensor([-10.5], dtype=DT))
    torch.testing.assert_close(est.signal_var, torch.tensor([2.25], dtype=DT))
    lp = torch.tensor([-20.0, -4.0], dtype=DT, requires_grad=True)
    lq = torch.tensor([-3.0, -1.0], dtype=DT, requires_grad=True)
    out = est(lp, lq)  # l = (-17, -3): centred with the old c, n = max(1, 1.5)
    out["surrogate"].sum().backward()
    A = (torch.tensor([-17.0, -3.0], dtype=DT) + 10.5) / 1.5
    torch.testing.assert_close(lq.grad, -A)
    torch.testing.assert_close(lp.grad, -torch.ones(2, dtype=DT))
    torch.testing.assert_close(out["centered_signal"], A)
    # then c <- 0.5 c + 0.5 mean(l), v <- 0.5 v + 0.5 var(l)   (alpha = 0.5)
    torch.testing.assert_close(est.signal_mean, torch.tensor([0.5 * -10.5 + 0.5 * -10.0], dtype=DT))
    torch.testing.assert_close(est.signal_var, torch.tensor([0.5 * 2.25 + 0.5 * 49.0], dtype=DT))
    torch.testing.assert_close(est.last_diagnostics["centered_mean"], A.mean().reshape(1))


def test_baseline_regression_gradient_and_detached_inputs():
    est = _estimator("both", True)
    est.train()
    x = torch.rand(3, V, dtype=DT, requires_grad=True)
    lp = torch.tensor([-5.0, -9.0, -1.0], dtype=DT, requires_grad=True)
    lq = torch.zeros(3, dtype=DT, requires_grad=True)
    est(lp.detach(), lq.detach(), x)  # initialise c, v
    with torch.no_grad():
        est.baselines[0][2].bias.fill_(0.25)
    c, n = est.signal_mean[0].item(), est.normalizers()[0].item()
    out = est(lp, lq, x)
    bias = est.baselines[0][2].bias
    (g_bias,) = torch.autograd.grad(out["surrogate"].sum(), [bias], retain_graph=True)
    b = est.baseline(x).detach()
    # d/db 1/2 (l - c - b)^2 / n = -(l - c - b) / n: Algorithm 1's psi update
    torch.testing.assert_close(g_bias, (-(lp.detach() - c - b) / n).sum().reshape(1))
    out["surrogate"].sum().backward()
    assert x.grad is None  # the baseline never trains its input
    torch.testing.assert_close(lp.grad, -torch.ones(3, dtype=DT))  # the regression does not reach theta


def test_baseline_offset_is_trained_by_the_regression_and_keeps_the_gradient_unbiased():
    """A model-supplied offset (here linear in x, as DocumentSBN's word weights) joins b_psi."""
    P, x = sbn1_params(0), DOCS[:4]
    exact = sbn1_exact_grad(P, x)
    gen = torch.Generator().manual_seed(3)
    est = _estimator("both", True)
    beta = torch.randn(V, dtype=DT, generator=torch.Generator().manual_seed(4), requires_grad=True)
    _warm_up(est, P, x, steps=10, gen=gen)
    offset = x @ beta  # (B,), with its graph
    assert offset.detach().std() > 0.5
    n = est.normalizers()[0].item()
    s = 20_000
    h = sbn1_sample(P, x, s, gen)
    leaves = {k: v.detach().clone().requires_grad_() for k, v in P.items()}
    Pe = _expand(leaves, s)
    for t in Pe.values():
        t.retain_grad()
    lp, lq = sbn1_terms(Pe, x, h)
    c = est.signal_mean[0].item()
    out = est(lp, lq, _q_input(x), offset)
    (out["surrogate"].sum() * s).backward()
    for name in PHI1:  # the score-function part stays unbiased with the offset
        z = _z_scores(Pe[name].grad.reshape(s, -1) * n, exact[name])
        assert z.abs().max() < 4.5, (name, z.abs().max())
    # the regression reaches beta: d/d beta sum_d mean_s 1/2 (l - c - b_psi - x.beta)^2 / n (times s)
    residual = ((lp - lq).detach() - c - est.baseline(_q_input(x)).detach() - offset.detach()).mean(0)  # (B,)
    torch.testing.assert_close(beta.grad, -(residual @ x) * s / n, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="baseline_offset"):
        est(lp.detach(), lq.detach(), _q_input(x), torch.zeros(5, dtype=DT))
    with pytest.raises(ValueError, match="baseline_offset needs"):
        _estimator("constant", True)(lp.detach(), lq.detach(), None, offset.detach())


def test_statistics_are_buffers_updated_only_in_training_and_resume_exactly():
    P, x = sbn1_params(0), DOCS[:4]
    gen = torch.Generator().manual_seed(8)
    est = _estimator("both", True)
    keys = set(est.state_dict())
    assert {"signal_mean", "signal_var", "num_updates"} <= keys
    assert any(k.startswith("baselines.0.") for k in keys)
    _warm_up(est, P, x, steps=5, gen=gen, lr=0.01)
    assert int(est.num_updates) == 5
    saved = {k: v.clone() for k, v in est.state_dict().items()}
    est.eval()
    h = sbn1_sample(P, x, 8, gen)
    lp, lq = sbn1_terms(_expand(P, 8), x, h)
    before = est(lp, lq, _q_input(x))
    for k, v in est.state_dict().items():
        assert torch.equal(v, saved[k]), k  # eval mode: nothing moves
    est.train()
    after = est(lp, lq, _q_input(x))
    torch.testing.assert_close(after["surrogate"], before["surrogate"])  # old statistics used ...
    assert int(est.num_updates) == 6 and not torch.equal(est.signal_mean, saved["signal_mean"])  # ... then updated
    fresh = _estimator("both", True)
    fresh.load_state_dict(est.state_dict())
    a, b = est(lp, lq, _q_input(x)), fresh(lp, lq, _q_input(x))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for k, v in est.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k


def test_input_only_baseline_starts_at_the_first_batch_mean():
    est = _estimator("input", False)
    est.train()
    lp = torch.tensor([-100.0, -120.0], dtype=DT)
    out = est(lp, torch.zeros(2, dtype=DT), torch.zeros(2, V, dtype=DT))
    torch.testing.assert_close(est.baselines[0][2].bias, torch.tensor([-110.0], dtype=DT))
    torch.testing.assert_close(out["centered_signal"], torch.tensor([10.0, -10.0], dtype=DT))


def test_bad_configs_and_inputs_raise():
    for kwargs, field in [
        ({"centering": "mean"}, "centering"),
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"baseline_hidden": 0}, "baseline_hidden"),
        ({"variance_normalization": "yes"}, "variance_normalization"),
    ]:
        with pytest.raises(ValueError, match=f"NVILConfig.{field}"):
            NVILConfig(**kwargs)
    assert NVILConfig().to_dict() == {"centering": "both", "variance_normalization": True, "alpha": 0.8, "baseline_hidden": 100}
    with pytest.raises(ValueError, match="input_dim"):
        NVILEstimator(NVILConfig(centering="input"))
    with pytest.raises(ValueError, match="input_dim"):
        NVILEstimator(NVILConfig(), input_dim=[3, 4], n_layers=3)
    with pytest.raises(ValueError, match="n_layers"):
        NVILEstimator(NVILConfig(centering="none"), n_layers=0)
    with pytest.raises(TypeError):
        NVILEstimator(NVILConfig(), alpha=0.5, input_dim=3)
    est = NVILEstimator(centering="both", input_dim=3).double()
    lp, lq = torch.zeros(2, 4, dtype=DT), torch.zeros(2, 4, dtype=DT)
    with pytest.raises(ValueError, match="needs the baseline input"):
        est(lp, lq)
    with pytest.raises(ValueError, match="baseline input of layer 0"):
        est(lp, lq, torch.zeros(4, 5, dtype=DT))
    with pytest.raises(ValueError, match="same shape"):
        est(lp, lq[:, :3], torch.zeros(4, 3, dtype=DT))
    with pytest.raises(ValueError, match="n_layers=1"):
        est([lp, lp], [lq, lq], torch.zeros(4, 3, dtype=DT))
    with pytest.raises(ValueError, match="log_p has 2 layers, log_q has 1"):
        est([lp, lp], [lq], torch.zeros(4, 3, dtype=DT))


# ----------------------------------------------------------------------------- with the Trainer
class _ToySBN(nn.Module):
    """The one-layer toy as a Trainer model: forward(x, noise) -> the estimator's dict."""

    def __init__(self) -> None:
        super().__init__()
        P = sbn1_params(0)
        self.theta = nn.ParameterDict({k: nn.Parameter(P[k].clone()) for k in THETA1})
        self.phi = nn.ParameterDict({k: nn.Parameter(P[k].clone()) for k in PHI1})
        self.nvil = _estimator("both", True, hidden=8)

    def sample_noise(self, batch_size, generator=None):
        return torch.rand(2, batch_size, K, generator=generator, dtype=DT)

    def forward(self, x, noise):
        P = {**self.theta, **self.phi}
        probs = torch.sigmoid(_q_input(x) @ P["U"].T + P["d"])
        h = (noise < probs.detach()).to(DT)  # (2, B, K)
        lp, lq = sbn1_terms(_expand(P, noise.shape[0]), x, h)
        return self.nvil(lp, lq, _q_input(x))

    def optimization_phases(self, alternate):
        return {"joint": list(self.parameters())}


class _Stop(Exception):
    pass


def _fit_toy(run_dir, stop_at=None):
    model = _ToySBN()
    docs = torch.cat([DOCS, DOCS.flip(1)])  # 12 documents, 3 steps of 4 per epoch

    def on_step(trainer, epoch, step):
        if step == stop_at:
            raise _Stop

    cfg = TrainConfig(epochs=3, batch_size=4, learning_rate=1e-2, seed=3, progress=False)
    Trainer(model, cfg, len(docs), collate=lambda i: docs[i], run_dir=run_dir, on_step=on_step).fit()
    return model


def test_trainer_reports_the_bound_and_resumes_exactly(tmp_path):
    full = _fit_toy(tmp_path / "full")
    assert int(full.nvil.num_updates) == 9
    with pytest.raises(_Stop):
        _fit_toy(tmp_path / "cut", stop_at=5)  # inside epoch 2; the checkpoint holds epoch 1
    resumed = _fit_toy(tmp_path / "cut")
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    history = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert "train_surrogate" not in history[0] and history[0]["train_loss"] > 10.0  # -ELBO in nats
    assert "train_centered_signal" in history[0] and "train_baseline_residual_sq" in history[0]
