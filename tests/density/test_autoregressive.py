"""NADE and MADE: the autoregressive property, normalisation by enumeration, kernel = reference."""

import itertools
import os

import pytest
import torch

from latentnlp.models.density.made import MADE, MADEConfig
from latentnlp.models.density.nade import (
    NADE,
    NADEConfig,
    kernel_available,
    nade_log_prob_reference,
    remove_stale_build_lock,
)


def all_binary_vectors(D: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=D)))


def _perturbed_nade(D=6, H=5, seed=0, **kw) -> NADE:
    torch.manual_seed(seed)
    m = NADE(NADEConfig(n_dims=D, hidden_dim=H, **kw))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 1.0)
    return m


def _made(D=6, hidden=(7, 5), n_masks=3, order_agnostic=True, direct=True, seed=0) -> MADE:
    torch.manual_seed(seed)
    m = MADE(MADEConfig(n_dims=D, hidden_sizes=list(hidden), n_masks=n_masks, order_agnostic=order_agnostic,
                        direct_connection=direct, mask_seed=seed))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 1.0)
    return m


def _check_autoregressive(logits_fn, D: int, ordering: torch.Tensor) -> None:
    """d logit_{o_i} / d x_{o_j} == 0 exactly for every j >= i (and the model does use earlier inputs)."""
    x = torch.rand(4, D).round().requires_grad_(True)
    position = torch.empty(D, dtype=torch.long)
    position[ordering] = torch.arange(D)
    used_earlier = 0
    logits = logits_fn(x)
    for d in range(D):
        (grad,) = torch.autograd.grad(logits[:, d].sum(), x, retain_graph=True)
        later = position >= position[d]
        assert torch.equal(grad[:, later], torch.zeros_like(grad[:, later])), f"output {d} sees inputs at/after it"
        used_earlier += int((grad[:, ~later] != 0).any())
    assert used_earlier >= D - 2  # the masks are not trivially empty


@pytest.mark.parametrize("ordering", [None, torch.tensor([3, 0, 5, 1, 4, 2])])
def test_nade_autoregressive_property(ordering):
    m = _perturbed_nade()
    order = torch.arange(6) if ordering is None else ordering
    _check_autoregressive(lambda x: m.conditional_logits(x, ordering), 6, order)


def test_made_autoregressive_property_every_mask():
    m = _made()
    for k in range(m.config.n_masks):
        _check_autoregressive(lambda x, k=k: m.logits(x, k), 6, m.ordering(k))
    assert len({tuple(m.ordering(k).tolist()) for k in range(3)}) > 1  # order-agnostic: orderings differ


def test_made_one_mask_natural_order_is_strictly_lower_triangular_in_effect():
    m = _made(n_masks=1, order_agnostic=False, direct=False)
    assert torch.equal(m.ordering(0), torch.arange(6))
    _check_autoregressive(lambda x: m.logits(x, 0), 6, torch.arange(6))


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_nade_probabilities_sum_to_one(backend):
    m = _perturbed_nade(D=8, H=4, backend=backend)
    xs = all_binary_vectors(8)
    for ordering in (None, torch.randperm(8, generator=torch.Generator().manual_seed(1))):
        with torch.no_grad():
            total = torch.logsumexp(m.log_prob(xs, ordering).double(), 0)
        assert abs(float(total)) < 1e-5


def test_made_probabilities_sum_to_one_for_each_mask_and_ensemble():
    m = _made(D=8, hidden=(9,), n_masks=4)
    xs = all_binary_vectors(8)
    with torch.no_grad():
        for k in range(4):
            assert abs(float(torch.logsumexp(m.log_prob(xs, k).double(), 0))) < 1e-5
        for K in (2, 4):
            assert abs(float(torch.logsumexp(m.ensemble_log_prob(xs, K).double(), 0))) < 1e-5
        # an average of log-probabilities would not be normalised: the ensemble must differ from it
        mean_logs = torch.stack([m.log_prob(xs, k) for k in range(4)]).mean(0)
        assert float(torch.logsumexp(mean_logs.double(), 0)) < -1e-3


def test_made_connectivity_numbers_follow_the_paper():
    m = _made(D=10, hidden=(30, 30), n_masks=2)
    for k in range(2):
        m0, m1, m2 = m.connectivity(k)
        assert sorted(m0.tolist()) == list(range(1, 11))
        assert int(m1.min()) >= int(m0.min()) and int(m1.max()) <= 9
        assert int(m2.min()) >= int(m1.min()) and int(m2.max()) <= 9


@pytest.mark.skipif(not kernel_available(), reason="no C++ compiler for the NADE kernel")
def test_nade_kernel_matches_reference_values_and_gradients():
    m = _perturbed_nade(D=37, H=11, seed=3)  # D not a multiple of the kernel's block of 8 examples
    x = (torch.rand(13, 37, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    weights = torch.randn(13)
    lp = m.log_prob(x)
    ref = nade_log_prob_reference(x, m.WT, m.V, m.c, m.b)
    torch.testing.assert_close(lp, ref, rtol=1e-5, atol=1e-4)
    g_kernel = torch.autograd.grad((lp * weights).sum(), list(m.parameters()))
    g_ref = torch.autograd.grad((ref * weights).sum(), list(m.parameters()))
    for name, a, b in zip(["WT", "V", "c", "b"], g_kernel, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=name)


def test_nade_matches_its_definition_by_explicit_loop():
    m = _perturbed_nade(D=5, H=3, backend="torch")
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])
    a = m.c.detach().clone()
    expected = 0.0
    for d in range(5):
        p = torch.sigmoid(torch.sigmoid(a) @ m.V[d] + m.b[d])
        expected += torch.log(p if x[0, d] == 1 else 1 - p).item()
        a = a + x[0, d] * m.WT[d]
    assert m.log_prob(x)[0].item() == pytest.approx(expected, abs=1e-5)


def test_bad_input_raises_naming_the_tensor():
    m = _perturbed_nade()
    with pytest.raises(ValueError, match=r"x must have shape \(B, 6\), got \(2, 5\)"):
        m.log_prob(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        m.log_prob(torch.full((2, 6), 0.5))
    with pytest.raises(ValueError, match="permutation"):
        m.log_prob(torch.zeros(2, 6), torch.tensor([0, 0, 1, 2, 3, 4]))
    with pytest.raises(ValueError, match="mask set 5"):
        _made().log_prob(torch.zeros(2, 6), 5)


def test_samples_are_binary_and_follow_the_model():
    torch.manual_seed(0)
    m = NADE(NADEConfig(n_dims=4, hidden_dim=3))
    m.init_output_bias(torch.tensor([0.9, 0.1, 0.5, 0.5]))
    with torch.no_grad():
        m.V.zero_()  # independent pixels with the given marginals
    s = m.sample(4000, torch.Generator().manual_seed(0))
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(s.mean(0), torch.tensor([0.9, 0.1, 0.5, 0.5]), atol=0.03, rtol=0)
    made = _made(D=5, hidden=(6,), n_masks=2)
    assert made.sample(3, torch.Generator().manual_seed(0), k=1).shape == (3, 5)


def test_made_state_dict_round_trip_restores_masks():
    a = _made(n_masks=3, seed=1)
    b = MADE(MADEConfig(n_dims=6, hidden_sizes=[7, 5], n_masks=3, order_agnostic=True, direct_connection=True, mask_seed=99))
    b.masks(0)  # populate the cache with the wrong masks
    b.load_state_dict(a.state_dict())
    x = torch.rand(3, 6).round()
    torch.testing.assert_close(a.ensemble_log_prob(x), b.ensemble_log_prob(x))


@pytest.mark.skipif(not kernel_available(), reason="no C++ compiler for the NADE kernel")
@pytest.mark.parametrize("scale", [30.0, 200.0])
def test_nade_kernel_is_finite_and_exact_with_saturated_units(scale):
    """Pre-activations far beyond exp's range (the kernel is built with -ffast-math) stay finite and exact."""
    torch.manual_seed(0)
    m = NADE(NADEConfig(n_dims=40, hidden_dim=9))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, scale)
    x = (torch.rand(10, 40) < 0.3).float()
    lp = m.log_prob(x)
    ref = nade_log_prob_reference(x, m.WT, m.V, m.c, m.b)
    assert torch.isfinite(lp).all()
    torch.testing.assert_close(lp, ref, rtol=1e-4, atol=1e-2 * scale / 30)
    grads = torch.autograd.grad(lp.sum(), list(m.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)


def test_nade_ordering_ensemble_is_normalised_and_reported():
    m = _perturbed_nade(D=7, H=4, backend="torch")
    xs = all_binary_vectors(7)
    with torch.no_grad():
        report = m.evaluate(xs, n_orderings=3, seed=0)
        orders = [torch.randperm(7, generator=torch.Generator().manual_seed(0)) for _ in range(1)]
        assert abs(float(torch.logsumexp(m.log_prob(xs, orders[0]).double(), 0))) < 1e-5
    assert report.estimator == "exact (ensemble of 3 random orderings)"
    # log of a mean probability >= mean of the logs (Jensen): the ensemble NLL is at most the mean single NLL
    assert report.nll <= report.details["mean_single_ordering_nll"] + 1e-9
    noise = NADE(NADEConfig(n_dims=7, hidden_dim=4, order_agnostic=True)).sample_noise(5, torch.Generator().manual_seed(0))
    assert noise.shape == (7, 5) and all(torch.equal(noise[:, 0], noise[:, i]) for i in range(5))


def test_stale_build_lock_is_removed_and_a_fresh_one_kept(tmp_path):
    """A lock left by a killed compile would make every later kernel load wait forever."""
    assert remove_stale_build_lock(tmp_path) is False  # no lock
    lock = tmp_path / "lock"
    lock.touch()
    written = 1_000_000.0
    os.utime(lock, (written, written))  # fixed file time: the test never reads the clock
    assert remove_stale_build_lock(tmp_path, max_age_seconds=600, now=written + 60) is False  # a live build's lock
    assert lock.exists()
    assert remove_stale_build_lock(tmp_path, max_age_seconds=600, now=written + 3600) is True
    assert not lock.exists()
