import math

import torch

from latentnlp.structured.semirings import LogSemiring, MaxSemiring, safe_logsumexp

NEG_INF = -math.inf


def test_log_semiring_all_minus_inf_row_gives_minus_inf_and_zero_gradient():
    x = torch.tensor([[NEG_INF, NEG_INF, NEG_INF], [0.0, math.log(3.0), NEG_INF]], requires_grad=True)
    y = LogSemiring.sum(x, dim=-1)
    assert y[0].item() == NEG_INF
    assert y[1].item() == torch.logsumexp(torch.tensor([0.0, math.log(3.0)]), 0).item()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.equal(x.grad[0], torch.zeros(3))
    assert torch.allclose(x.grad[1], torch.tensor([0.25, 0.75, 0.0]))


def test_safe_logsumexp_matches_torch_on_finite_input_and_any_dim():
    x = torch.randn(3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for dim in (0, 1, -1):
        assert torch.allclose(safe_logsumexp(x, dim), torch.logsumexp(x, dim))


def test_semiring_identities():
    x = torch.tensor([1.0, -2.0])
    for semiring in (LogSemiring, MaxSemiring):
        assert torch.equal(semiring.mul(x, torch.tensor(semiring.one)), x)
        assert semiring.zero == NEG_INF
        both = torch.stack([x, torch.full_like(x, semiring.zero)])
        assert torch.equal(semiring.sum(both, dim=0), x)  # zero is the additive identity


def test_max_semiring_gradient_is_one_hot_and_nan_free():
    x = torch.tensor([[1.0, 3.0, 2.0], [NEG_INF, NEG_INF, NEG_INF]], requires_grad=True)
    y = MaxSemiring.sum(x, dim=-1)
    assert y.tolist() == [3.0, NEG_INF]
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[0].tolist() == [0.0, 1.0, 0.0]
    assert x.grad[1].sum().item() == 1.0
