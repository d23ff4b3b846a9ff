"""Optimiser choice, learning-rate schedules and surrogate objectives of the shared Trainer."""

import math

import pytest
import torch
from torch import nn

from latentnlp.training.trainer import TrainConfig, Trainer


class Quadratic(nn.Module):
    """loss = (w - x)^2 per example; optional surrogate with a different gradient."""

    def __init__(self, surrogate_scale: float | None = None) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.surrogate_scale = surrogate_scale

    def optimization_phases(self, alternate: bool) -> dict:
        return {"joint": [self.w]}

    def forward(self, x, noise=None):
        out = {"loss": (self.w - x) ** 2}
        if self.surrogate_scale is not None:
            # gradient is surrogate_scale * d/dw (w - x)^2, loss value is reported unchanged.
            out["surrogate"] = self.surrogate_scale * (self.w - x) ** 2
        return out


def test_schedules_give_documented_rates():
    cfg = TrainConfig(epochs=4, learning_rate=0.8, lr_schedule="linear")
    assert [cfg.learning_rate_at(e) for e in range(4)] == pytest.approx([0.8, 0.6, 0.4, 0.2])
    cos = TrainConfig(epochs=4, learning_rate=1.0, lr_schedule="cosine")
    assert cos.learning_rate_at(2) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
    assert TrainConfig(epochs=4, learning_rate=0.3).learning_rate_at(3) == 0.3


@pytest.mark.parametrize("bad", [dict(optimizer="adagrad"), dict(lr_schedule="exponential"), dict(momentum=1.0)])
def test_bad_options_raise(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_sgd_steps_match_hand_computation_and_are_recorded():
    x = torch.tensor([1.0, 3.0])  # mean target 2; one batch of both examples per epoch
    model = Quadratic()
    cfg = TrainConfig(epochs=2, batch_size=2, learning_rate=0.25, optimizer="sgd", lr_schedule="linear",
                      progress=False, patience=0)
    res = Trainer(model, cfg, 2, collate=lambda i: x[i]).fit()
    # grad of mean (w - x)^2 = 2 (w - 2): epoch 1 lr 0.25 -> w = 1; epoch 2 lr 0.125 -> w = 1 + 0.25 = 1.25
    assert model.w.item() == pytest.approx(1.25)
    assert [r["learning_rate"] for r in res.history] == pytest.approx([0.25, 0.125])
    assert isinstance(Trainer(Quadratic(), cfg, 2, collate=lambda i: x[i]).optimizers["joint"], torch.optim.SGD)


def test_surrogate_is_differentiated_and_loss_is_reported():
    x = torch.tensor([1.0, 3.0])
    model = Quadratic(surrogate_scale=0.5)
    cfg = TrainConfig(epochs=1, batch_size=2, learning_rate=0.25, optimizer="sgd", progress=False, patience=0)
    res = Trainer(model, cfg, 2, collate=lambda i: x[i]).fit()
    assert model.w.item() == pytest.approx(0.5)  # 0.25 * 0.5 * 2 * 2
    assert res.history[0]["train_loss"] == pytest.approx(5.0)  # mean of 1 and 9 at w = 0
    assert "train_surrogate" not in res.history[0]


def test_nonfinite_reported_loss_raises_even_with_finite_surrogate():
    class BadLoss(Quadratic):
        def forward(self, x, noise=None):
            return {"loss": torch.full_like(x, float("nan")), "surrogate": (self.w - x) ** 2}

    cfg = TrainConfig(epochs=1, batch_size=2, progress=False, patience=0)
    with pytest.raises(FloatingPointError, match="non-finite terms: \\['loss'\\]"):
        Trainer(BadLoss(), cfg, 2, collate=lambda i: torch.tensor([1.0, 2.0])[i]).fit()
