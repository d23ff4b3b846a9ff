"""Annealed importance sampling and exact partition functions of small binary RBMs."""

import math

import pytest
import torch

from latentnlp.inference.ais import (
    RBMBaseRatePath,
    annealed_importance_sampling,
    betas_schedule,
    binary_configurations,
    log_mean_exp_interval,
    rbm_ais,
    rbm_exact_log_partition,
)
from latentnlp.models.density.rbm import BernoulliRBM, RBMConfig
from tests.density.conftest import tiny_rbm as _tiny_rbm


def tiny_rbm(d, h, scale=1.0, seed=0):
    return _tiny_rbm(d, h, scale=scale, seed=seed, persistent=False)


def brute_force_log_z(rbm):
    """log sum_{v,h} exp(-E(v, h)) over both layers: no closed-form summation at all."""
    d, h = rbm.weight.shape
    v = binary_configurations(d)  # (2^d, d)
    hh = binary_configurations(h)  # (2^h, h)
    W, b, c = rbm.weight.detach(), rbm.visible_bias.detach(), rbm.hidden_bias.detach()
    neg_energy = (v @ b).unsqueeze(1) + (hh @ c).unsqueeze(0) + v @ W @ hh.T  # (2^d, 2^h)
    return float(torch.logsumexp(neg_energy.flatten(), 0))


@pytest.mark.parametrize("d,h", [(5, 4), (4, 6)])
def test_exact_log_z_by_summing_one_layer_matches_brute_force(d, h):
    rbm = tiny_rbm(d, h, scale=1.5, seed=d * 10 + h)
    exact = float(rbm_exact_log_partition(rbm).detach())
    assert exact == pytest.approx(brute_force_log_z(rbm), abs=1e-10)
    assert rbm.exact_log_partition() == pytest.approx(exact, abs=1e-12)


def test_exact_log_z_refuses_large_layers():
    rbm = BernoulliRBM(RBMConfig(n_dims=30, hidden_dim=25, persistent=False))
    with pytest.raises(ValueError, match=r"2\^25 configurations.*use AIS"):
        rbm_exact_log_partition(rbm)


def test_ais_matches_enumerated_log_z_within_its_error():
    rbm = tiny_rbm(10, 8, scale=1.0, seed=3)
    exact = float(rbm_exact_log_partition(rbm).detach())
    x = (torch.rand(200, 10, generator=torch.Generator().manual_seed(0)) < 0.3).double()
    from latentnlp.inference.ais import base_rate_logits

    res = rbm_ais(rbm, n_chains=200, betas=400, base_logits=base_rate_logits(x).double(), generator=torch.Generator().manual_seed(1))
    assert res.n_chains == 200 and res.n_temperatures == 400 and res.log_weights.shape == (200,)
    assert res.log_z_lower < res.log_z < res.log_z_upper
    assert res.log_z_upper - res.log_z_lower < 0.5  # a useful interval, not a vacuous one
    assert res.log_z_lower <= exact <= res.log_z_upper, (exact, res.to_dict())
    # The base normaliser counts the target's free hidden units at beta = 0.
    assert res.log_z_base == pytest.approx(float(torch.nn.functional.softplus(base_rate_logits(x).double()).sum()) + 8 * math.log(2))


def test_generic_ais_step_agrees_with_the_fused_rbm_step():
    rbm = tiny_rbm(6, 5, seed=2)

    class Unfused(RBMBaseRatePath):
        step = RBMBaseRatePath.__mro__[1].step  # AnnealingPath.step: two log_unnormalized calls + transition

    args = (rbm.weight, rbm.visible_bias, rbm.hidden_bias, torch.zeros(6, dtype=torch.float64))
    betas = betas_schedule(60)
    fused = annealed_importance_sampling(RBMBaseRatePath(*args), betas, 20, torch.Generator().manual_seed(5))
    generic = annealed_importance_sampling(Unfused(*args), betas, 20, torch.Generator().manual_seed(5))
    torch.testing.assert_close(fused.log_weights, generic.log_weights, rtol=0, atol=1e-9)


def test_betas_schedule_follows_the_paper():
    betas = betas_schedule()
    assert betas.numel() == 14501 and betas[0] == 0 and betas[-1] == 1
    assert int((betas < 0.5).sum()) == 500 and int(((betas >= 0.5) & (betas < 0.9)).sum()) == 4000
    assert bool((betas[1:] > betas[:-1]).all())
    short = betas_schedule(145)
    assert short.numel() == 146 and int((short < 0.5).sum()) == 5


def test_bad_betas_raise():
    rbm = tiny_rbm(4, 3)
    path = RBMBaseRatePath(rbm.weight, rbm.visible_bias, rbm.hidden_bias, torch.zeros(4, dtype=torch.float64))
    for bad, msg in ((torch.tensor([0.0, 0.5]), "from 0 to 1"), (torch.tensor([0.0, 0.6, 0.5, 1.0]), "strictly increasing")):
        with pytest.raises(ValueError, match=msg):
            annealed_importance_sampling(path, bad, 4)


def test_interval_of_log_mean_exp():
    lw = torch.log(torch.tensor([1.0, 2.0, 3.0, 6.0], dtype=torch.float64)) + 1000.0  # huge weights stay finite
    log_z, lo, hi = log_mean_exp_interval(lw, log_z_base=2.0)
    sd = float(torch.tensor([1.0, 2.0, 3.0, 6.0]).std()) / 2
    assert log_z == pytest.approx(1002.0 + math.log(3.0))
    assert hi == pytest.approx(1002.0 + math.log(3.0 + 3 * sd))
    assert lo == -math.inf  # 3 sd > mean: no finite lower end
