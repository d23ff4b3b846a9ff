"""Semirings for dynamic programs over log-space scores (Torch-Struct's design).

A dynamic program such as the forward algorithm only ever *adds* scores along a
structure and *sums* over alternatives, so it can be written once against an
abstract semiring ``(sum, mul, zero, one)`` and reused (Goodman 1999, "Semiring
parsing"; Rush 2020, "Torch-Struct: Deep Structured Prediction Library"):

================  =====================  ==========  ==========  ===================
semiring          ``sum(x, dim)``        ``mul``     ``zero``    dynamic program
================  =====================  ==========  ==========  ===================
:class:`LogSemiring`  ``logsumexp``      ``+``       ``-inf``    log partition (nats)
:class:`MaxSemiring`  ``max``            ``+``       ``-inf``    Viterbi score
================  =====================  ==========  ==========  ===================

The gradient of the log-semiring result with respect to the input scores is the
vector of marginals (Eisner 2016, "Inside-outside and forward-backward
algorithms are just backprop"); the gradient of the max-semiring result is the
indicator of the best structure.

Minus infinity is a real ``-inf`` (never a large finite stand-in): a forbidden
transition has score ``-inf``. Both semirings handle it without NaNs, in the
value *and* in the gradient; in particular :meth:`LogSemiring.sum` of a slice
that is entirely ``-inf`` is ``-inf`` with gradient ``0`` (``torch.logsumexp``
would give a NaN gradient there).

The classes are stateless namespaces; use them directly (``LogSemiring.sum``),
no instance is needed.
"""

from __future__ import annotations

import math

import torch

__all__ = ["Semiring", "LogSemiring", "MaxSemiring", "safe_logsumexp"]


class _SafeLogSumExp(torch.autograd.Function):
    """``logsumexp`` whose gradient is ``softmax(x)`` and ``0`` where every input is ``-inf``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int) -> torch.Tensor:  # type: ignore[override]
        out = torch.logsumexp(x, dim=dim)
        ctx.save_for_backward(x, out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        x, out = ctx.saved_tensors
        out_k = out.unsqueeze(ctx.dim)
        # exp(x - out) would be exp(-inf + inf) = NaN where out == -inf (then every x is -inf);
        # shifting those slices by 0 instead gives exp(-inf) = 0, the true weight.
        # (Only the small reduced tensor is touched, not x.)
        shift = torch.where(out_k > -math.inf, out_k, torch.zeros_like(out_k))
        return grad_out.unsqueeze(ctx.dim) * torch.exp(x - shift), None


def safe_logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``log(sum(exp(x), dim))`` with NaN-free gradients for all ``-inf`` slices.

    Args:
        x: any floating tensor of scores in nats; ``-inf`` allowed.
        dim: the dimension reduced.

    Returns:
        ``x`` with ``dim`` removed; ``-inf`` where every entry of the slice is
        ``-inf``. Its gradient is ``softmax(x, dim)`` on other slices and ``0``
        on all ``-inf`` slices.
    """
    return _SafeLogSumExp.apply(x, dim)


class Semiring:
    """Interface of a semiring over scores (Torch-Struct ``semirings.Semiring``).

    Attributes:
        zero: the additive identity (``sum`` of nothing); the score of an impossible structure.
        one: the multiplicative identity (``mul`` by it changes nothing).
    """

    zero: float
    one: float

    @classmethod
    def sum(cls, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Semiring sum ("oplus") of ``x`` over ``dim``; the dimension is removed."""
        raise NotImplementedError

    @classmethod
    def mul(cls, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Semiring product ("otimes") of ``a`` and ``b``, broadcasting as ``torch.add``."""
        raise NotImplementedError


class LogSemiring(Semiring):
    """The log semiring: ``sum = logsumexp``, ``mul = +``, ``zero = -inf``, ``one = 0``.

    The forward algorithm in it returns the log partition function ``log Z``
    (nats); its gradient gives the marginals (Eisner 2016).
    """

    zero = -math.inf
    one = 0.0

    @classmethod
    def sum(cls, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """``logsumexp`` over ``dim``; all ``-inf`` slices give ``-inf`` and a zero gradient."""
        return safe_logsumexp(x, dim)

    @classmethod
    def mul(cls, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a + b`` (products of probabilities are sums of log probabilities)."""
        return a + b


class MaxSemiring(Semiring):
    """The max (tropical, Viterbi) semiring: ``sum = max``, ``mul = +``, ``zero = -inf``, ``one = 0``.

    The forward algorithm in it returns the score of the best structure
    (Viterbi 1967; Rabiner 1989, Sec. III-B); its gradient is the one-hot
    indicator of one best structure (``torch.max`` sends the gradient to a
    single argmax, so ties are broken consistently, never split).
    """

    zero = -math.inf
    one = 0.0

    @classmethod
    def sum(cls, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """``max`` over ``dim``; the gradient goes to one maximising entry."""
        return torch.max(x, dim=dim).values

    @classmethod
    def mul(cls, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a + b``."""
        return a + b
