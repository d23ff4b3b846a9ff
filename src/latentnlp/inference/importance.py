"""Importance-weighted estimates of a marginal log-likelihood (Burda, Grosse & Salakhutdinov 2016).

With ``K`` samples ``z_k ~ q(z | x)`` and log weights
``log w_k = log p(x, z_k) - log q(z_k | x)``,

    log p(x)  ~=  log (1/K) sum_k w_k          (Burda et al. 2016, Eq. 8)

whose expectation is a lower bound on ``log p(x)`` that is never looser than the
ELBO (K = 1) and tightens monotonically in K (their Theorem 1).
"""

from __future__ import annotations

import math

import torch

__all__ = ["iw_log_mean_exp"]


def iw_log_mean_exp(log_weights: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``log (1/K) sum_k exp(log_weights_k)`` along ``dim``, computed stably.

    Args:
        log_weights: log importance weights, ``K`` along ``dim`` (e.g. ``(K, B)``), nats.
        dim: the sample dimension.

    Returns:
        The estimate with ``dim`` removed (e.g. ``(B,)``), nats.

    Raises:
        ValueError: if the sample dimension is empty.
    """
    k = log_weights.shape[dim]
    if k == 0:
        raise ValueError(f"log_weights has no samples along dim {dim}: shape {tuple(log_weights.shape)}")
    return torch.logsumexp(log_weights, dim=dim) - math.log(k)
