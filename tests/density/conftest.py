"""Fixtures and builders shared by the RBM and AIS tests."""

import pytest
import torch

from latentnlp.models.density.rbm import BernoulliRBM, RBMConfig


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every RBM/AIS test runs on one thread (the shared ``one_thread`` fixture)."""
    yield


def tiny_rbm(d, h, scale=1.0, seed=0, **kw):
    """A float64 RBM with random weights (std ``scale``) and standard-normal biases."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        rbm = BernoulliRBM(RBMConfig(n_dims=d, hidden_dim=h, init_scale=scale, **kw)).double()
        with torch.no_grad():
            rbm.visible_bias.normal_(0.0, 1.0)
            rbm.hidden_bias.normal_(0.0, 1.0)
    return rbm
