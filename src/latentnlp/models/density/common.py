"""Helpers the density estimators share: input validation, batching, log-mean-exp."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterator

import torch

__all__ = ["check_binary_batch", "split_batches", "log_mean_exp", "fit_density", "AutoregressiveFitMixin"]

if TYPE_CHECKING:
    from ...training.trainer import TrainConfig, TrainResult


def check_binary_batch(x: torch.Tensor, n_dims: int, name: str = "x") -> torch.Tensor:
    """``x`` as float32 if it is a ``(B, n_dims)`` 0/1 tensor.

    Raises:
        ValueError: naming ``name`` and its shape, on a wrong shape or values other than 0 and 1 (NaN included).
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != n_dims:
        raise ValueError(f"{name} must have shape (B, {n_dims}), got {tuple(x.shape)}")
    if not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(f"{name} of shape {tuple(x.shape)} holds values other than 0 and 1")
    return x if x.dtype == torch.float32 else x.float()


def split_batches(x: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Consecutive row blocks of at most ``batch_size`` rows."""
    for i in range(0, x.shape[0], batch_size):
        yield x[i : i + batch_size]


def log_mean_exp(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``log mean_k exp(values_k)`` along ``dim``, stably (a log-sum-exp, not an average of logs)."""
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])


def fit_density(
    model: torch.nn.Module,
    train: torch.Tensor,
    valid: torch.Tensor | None,
    config: "TrainConfig",
    run_dir: str | None = None,
    batch_transform=None,
) -> "TrainResult":
    """Train a density model of this package with the shared :class:`~latentnlp.training.trainer.Trainer`.

    Args:
        model: follows the protocol of :mod:`latentnlp.models.density`.
        train: ``(N, D)`` 0/1 training data (or grey levels with ``batch_transform``).
        valid: ``(M, D)`` 0/1 validation data; ``None``: no validation, no early stopping.
        config: optimisation settings; ``config.monitor`` is set to ``model.monitor``.
        run_dir: where checkpoints and ``metrics.jsonl`` go (resumable).
        batch_transform: maps a list of row indices to a batch (e.g. a
            :class:`~latentnlp.data.binary.DynamicBinarizer`); default ``train[indices]``.

    Returns:
        The trainer's :class:`~latentnlp.training.trainer.TrainResult`; ``model`` holds the best weights.
    """
    from ...training.trainer import Trainer

    config.monitor = model.monitor
    collate = batch_transform or (lambda idx: train[idx])
    validate = None if valid is None else (lambda m: m.validation_metrics(valid))
    trainer = Trainer(model, config, train.shape[0], collate=collate, validate=validate, run_dir=run_dir)
    return trainer.fit()


class AutoregressiveFitMixin:
    """``fit`` for the exact autoregressive models (NADE, MADE), which define ``init_output_bias``."""

    def fit(self, x_train: torch.Tensor, x_valid: torch.Tensor | None = None, config=None, run_dir: str | None = None,
            batch_transform=None):
        """Start the output bias at the training marginals' logits, then train with the shared Trainer.

        Args:
            x_train: ``(N, D)`` 0/1 training data (grey levels in ``[0, 1]`` with ``batch_transform``).
            x_valid: ``(M, D)`` 0/1 held-out data for early stopping on ``valid_nll`` (never the test set).
            config: a :class:`~latentnlp.training.trainer.TrainConfig` (default: Adam, lr 1e-3, batch 100).
            run_dir: checkpoints and metrics; a checkpoint found there is resumed.
            batch_transform: row indices -> batch (e.g. dynamic binarization).

        Returns:
            ``self``, with ``train_result_``.
        """
        from ...training.trainer import TrainConfig

        config = config or TrainConfig(learning_rate=1e-3, batch_size=100)
        self.init_output_bias(x_train.float().mean(0))
        self.train_result_ = fit_density(self, x_train, x_valid, config, run_dir=run_dir, batch_transform=batch_transform)
        return self

