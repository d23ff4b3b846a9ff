"""Negative log-likelihood of density estimators for binary vectors, in nats, with its estimator named.

The figure the NADE, MADE and RBM papers report on binarized MNIST is the average
test negative log-likelihood ``-(1/N) sum_n log p(x_n)`` in nats per example (not
per dimension, not bits). How ``log p`` was obtained matters and is kept beside it:

* ``exact``: autoregressive models (NADE, MADE with one mask);
* ``exact (ensemble of K masks)``: ``log (1/K) sum_k p_k(x)`` of K MADE masks;
* ``AIS``: an RBM's ``log p(x) = -F(x) - log Z`` with ``log Z`` estimated by annealed
  importance sampling (Salakhutdinov & Murray 2008); the estimate carries the
  uncertainty of ``log Z`` in addition to the Monte-Carlo error of the mean.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

__all__ = ["DensityReport", "mean_nll"]


def mean_nll(log_p: torch.Tensor) -> tuple[float, float]:
    """``(mean, standard error)`` of ``-log_p`` over examples.

    Args:
        log_p: ``(N,)`` log-likelihoods in nats.

    Raises:
        ValueError: if ``log_p`` is not 1-d, is empty, or holds NaN/inf (naming the first bad index).
    """
    log_p = torch.as_tensor(log_p, dtype=torch.float64)
    if log_p.dim() != 1 or log_p.numel() == 0:
        raise ValueError(f"log_p must have shape (N,) with N >= 1, got {tuple(log_p.shape)}")
    bad = torch.nonzero(~torch.isfinite(log_p)).flatten()
    if bad.numel():
        raise ValueError(f"log_p has non-finite values at examples {bad[:5].tolist()}")
    nll = -log_p
    se = float(nll.std(unbiased=True) / math.sqrt(nll.numel())) if nll.numel() > 1 else float("nan")
    return float(nll.mean()), se


@dataclass
class DensityReport:
    """Test negative log-likelihood of a density model.

    Attributes:
        nll: mean negative log-likelihood, nats per example.
        standard_error: standard error of that mean over examples (nats).
        estimator: how ``log p(x)`` was obtained (``"exact"``, ``"exact (ensemble of 32 masks)"``, ``"AIS"``...).
        n_examples: number of examples scored.
        n_dims: dimensions per example (784 for MNIST).
        details: estimator-specific figures, e.g. AIS ``log_z`` and its error interval.
    """

    nll: float
    standard_error: float
    estimator: str
    n_examples: int
    n_dims: int
    details: dict = field(default_factory=dict)

    @classmethod
    def from_log_prob(cls, log_p: torch.Tensor, estimator: str, n_dims: int, **details) -> "DensityReport":
        nll, se = mean_nll(log_p)
        return cls(nll=nll, standard_error=se, estimator=estimator, n_examples=int(log_p.numel()), n_dims=n_dims, details=details)

    @property
    def bits_per_dim(self) -> float:
        return self.nll / (self.n_dims * math.log(2.0))

    def to_dict(self) -> dict:
        return asdict(self) | {"bits_per_dim": self.bits_per_dim}

    def format(self) -> str:
        lines = [
            f"NLL: {self.nll:.2f} nats per example (+/- {self.standard_error:.2f} s.e. over {self.n_examples} examples; "
            f"{self.bits_per_dim:.4f} bits/dim) — estimator: {self.estimator}"
        ]
        for k, v in self.details.items():
            lines.append(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}")
        return "\n".join(lines)
