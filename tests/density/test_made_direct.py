"""MADE's direct input-to-output connection: autoregressive, normalised, optional, and loadable."""

import itertools

import pytest
import torch

from latentnlp.models.density.made import MADE, MADEConfig


def all_binary_vectors(D: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=D)))


def _made(D=8, hidden=(9,), n_masks=1, order_agnostic=False, direct=True, seed=0, scale=1.0) -> MADE:
    torch.manual_seed(seed)
    m = MADE(MADEConfig(n_dims=D, hidden_sizes=list(hidden), n_masks=n_masks, order_agnostic=order_agnostic,
                        direct_connection=direct, mask_seed=seed))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, scale)
    return m


def _jacobian_mask(m: MADE, k: int, D: int) -> torch.Tensor:
    """``(D, D)`` bool: ``[d, d']`` true iff ``logit_d`` has a non-zero derivative in ``x_d'`` on random inputs."""
    x = torch.rand(16, D).round().requires_grad_(True)
    logits = m.logits(x, k)
    rows = []
    for d in range(D):
        (g,) = torch.autograd.grad(logits[:, d].sum(), x, retain_graph=True)
        rows.append((g != 0).any(0))
    return torch.stack(rows)


@pytest.mark.parametrize("hidden", [(9,), (7, 5)])
@pytest.mark.parametrize("order_agnostic,n_masks", [(False, 1), (True, 1), (True, 3)])
def test_direct_connection_keeps_the_autoregressive_property(hidden, order_agnostic, n_masks):
    D = 8
    m = _made(D, hidden, n_masks, order_agnostic)
    for k in range(n_masks):
        order = m.ordering(k)
        seen = _jacobian_mask(m, k, D)[order][:, order]  # rows, columns in generation order
        assert not torch.triu(seen).any(), "an output sees an input at or after it"


def test_direct_path_alone_is_exactly_the_strictly_lower_triangle():
    """With the hidden path silenced, the direct term connects every output to every earlier input, and only those."""
    D = 7
    m = _made(D, (5,), n_masks=2, order_agnostic=True)
    with torch.no_grad():
        m.output.weight.zero_()
    for k in range(2):
        order = m.ordering(k)
        seen = _jacobian_mask(m, k, D)[order][:, order]
        assert torch.equal(seen, torch.ones(D, D, dtype=torch.bool).tril(-1))
        mask = m.direct_mask(k)[order][:, order]
        assert torch.equal(mask, torch.ones(D, D).tril(-1))


def test_masked_direct_weights_get_no_gradient():
    D = 6
    m = _made(D, (5,), n_masks=1, order_agnostic=True)
    x = torch.rand(10, D).round()
    (-m.log_prob(x).sum()).backward()
    blocked = m.direct_mask(0) == 0
    assert torch.equal(m.direct.weight.grad[blocked], torch.zeros(int(blocked.sum())))
    assert (m.direct.weight.grad[~blocked] != 0).any()


@pytest.mark.parametrize("hidden", [(9,), (6, 6)])
def test_probabilities_sum_to_one_over_all_binary_vectors_with_direct_connection(hidden):
    D = 10  # all 1,024 vectors
    m = _made(D, hidden, n_masks=3, order_agnostic=True, scale=2.0)
    xs = all_binary_vectors(D)
    with torch.no_grad():
        for k in range(3):
            assert abs(float(torch.logsumexp(m.log_prob(xs, k).double(), 0))) < 1e-5
        assert abs(float(torch.logsumexp(m.ensemble_log_prob(xs, 3).double(), 0))) < 1e-5
    single = _made(D, hidden, n_masks=1, order_agnostic=False, scale=2.0)
    with torch.no_grad():
        assert abs(float(torch.logsumexp(single.log_prob(xs).double(), 0))) < 1e-5


def test_direct_connection_changes_the_model_and_is_off_by_default():
    assert MADEConfig().direct_connection is False
    plain = _made(6, (5,), direct=False)
    assert plain.direct is None and not any("direct" in k for k in plain.state_dict())
    m = _made(6, (5,), direct=True)
    assert m.direct.weight.shape == (6, 6) and m.direct.bias is None
    x = torch.rand(5, 6).round()
    with torch.no_grad():
        before = m.log_prob(x)
        m.direct.weight.mul_(3.0)
        assert not torch.allclose(before, m.log_prob(x))


def test_models_saved_without_the_option_still_load():
    old = _made(6, (5,), direct=False, n_masks=2, order_agnostic=True)
    fresh = MADE(MADEConfig(n_dims=6, hidden_sizes=[5], n_masks=2, order_agnostic=True, mask_seed=0))
    fresh.load_state_dict(old.state_dict())
    x = torch.rand(5, 6).round()
    with torch.no_grad():
        assert torch.equal(fresh.ensemble_log_prob(x), old.ensemble_log_prob(x))
    with_direct = MADE(MADEConfig(n_dims=6, hidden_sizes=[5], direct_connection=True))
    with pytest.raises(RuntimeError):
        with_direct.load_state_dict(old.state_dict())  # the option is part of the model, not silently dropped


def test_direct_mask_follows_loaded_connectivity():
    a = _made(6, (5,), n_masks=1, order_agnostic=True, seed=1)
    b = _made(6, (5,), n_masks=1, order_agnostic=True, seed=2)
    b.direct_mask(0)  # fill the cache before loading
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.direct_mask(0), a.direct_mask(0))
    x = torch.rand(5, 6).round()
    with torch.no_grad():
        assert torch.equal(b.log_prob(x), a.log_prob(x))
