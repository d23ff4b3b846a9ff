"""NADE: the Neural Autoregressive Distribution Estimator (Larochelle & Murray 2011).

For a binary vector ``x`` of ``D`` dimensions visited in an ordering ``o``::

    a_1 = c,   a_{d+1} = a_d + W[:, o_d] x_{o_d}           running pre-activation, O(H) per step
    h_d = sigmoid(a_d)                                    (H,)
    p(x_{o_d} = 1 | x_{o_<d}) = sigmoid(b_{o_d} + V_{o_d} . h_d)
    log p(x) = sum_d log p(x_{o_d} | x_{o_<d})            exact, nats

so the whole likelihood costs ``O(HD)`` per example (paper, Sec. 3, Eq. 2-3).
Parameters are tied to the *dimension* (``W[:, i]``, ``V[i]``, ``b[i]`` belong to pixel
``i``), so one set of weights defines a NADE for every ordering. With
``order_agnostic=True`` every training minibatch uses a fresh random ordering
(Uria, Murray & Larochelle 2014, "A deep and tractable density estimator",
Sec. 3: training the factorial family of NADEs that share parameters); its test
log-likelihood is then reported for the natural ordering and as the ensemble
``log (1/K) sum_k p_{o_k}(x)`` over ``K`` random orderings.

Compute: on the CPU, a fused C++/OpenMP kernel (``nade_kernel.cpp``, compiled on
first use by ``torch.utils.cpp_extension``) walks each example's ``D`` steps with
the running pre-activation and recomputes them in the backward pass, so nothing of
size ``B x D x H`` is stored; where the kernel cannot be built (no compiler) or on
another device, an equivalent pure-PyTorch path (exclusive cumulative sum, which
does store ``B x D x H``) is used. Both compute the same numbers (tested).
A build lock left behind by a killed compile (torch waits on it forever) is removed
when it is older than ``STALE_LOCK_SECONDS``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...evaluation.density import DensityReport
from .common import AutoregressiveFitMixin, check_binary_batch, log_mean_exp, split_batches

__all__ = ["NADEConfig", "NADE", "nade_log_prob_reference"]

log = logging.getLogger("latentnlp.models.density.nade")

_KERNEL = None
_KERNEL_ERROR: str | None = None


#: A build lock older than this is taken to be left behind by a killed build (one takes ~1 min).
STALE_LOCK_SECONDS = 600.0


def _kernel_build_directory() -> Path:
    """Where the kernel is compiled: a folder of torch's extension root, per Python and torch version."""
    from torch.utils.cpp_extension import get_default_build_root

    tag = f"py{sys.version_info.major}{sys.version_info.minor}_torch{torch.__version__.replace('+', '_')}"
    return Path(get_default_build_root()) / f"latentnlp_nade_kernel_{tag}"


def remove_stale_build_lock(build_directory: Path, max_age_seconds: float = STALE_LOCK_SECONDS,
                            now: float | None = None) -> bool:
    """Delete ``build_directory/lock`` if it is older than ``max_age_seconds``; return whether it was.

    ``now`` is the reference time in seconds since the epoch (default: ``time.time()``).

    ``torch.utils.cpp_extension.load`` takes this file as a lock while it compiles and
    waits, without limit, while it exists. A process killed mid-build leaves it behind
    and every later import then hangs; a build takes about a minute, so a lock older
    than ``max_age_seconds`` cannot belong to a live build.
    """
    lock = Path(build_directory) / "lock"
    try:
        age = (time.time() if now is None else now) - lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if age <= max_age_seconds:
        return False
    log.warning("removing a stale C++ build lock %s (%.0f s old, left by a killed build)", lock, age)
    lock.unlink(missing_ok=True)
    return True


def _kernel():
    """The compiled C++ kernel module, or ``None`` (with the reason logged once) if it cannot be built."""
    global _KERNEL, _KERNEL_ERROR
    if _KERNEL is not None or _KERNEL_ERROR is not None:
        return _KERNEL
    try:
        from torch.utils.cpp_extension import load

        source = Path(__file__).with_name("nade_kernel.cpp")
        build_directory = _kernel_build_directory()
        build_directory.mkdir(parents=True, exist_ok=True)
        remove_stale_build_lock(build_directory)
        _KERNEL = load(
            name="latentnlp_nade_kernel",
            sources=[str(source)],
            build_directory=str(build_directory),
            extra_cflags=["-O3", "-march=native", "-ffast-math", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as exc:  # no compiler / ninja: fall back to the PyTorch path
        _KERNEL_ERROR = f"{type(exc).__name__}: {exc}"
        log.warning("NADE C++ kernel unavailable (%s); using the pure-PyTorch path", _KERNEL_ERROR.splitlines()[0])
    return _KERNEL


def kernel_available() -> bool:
    """Whether the fused C++ kernel compiled on this machine."""
    return _kernel() is not None


class _FusedNADE(torch.autograd.Function):
    """``log p(x)`` by the fused kernel; the backward pass walks back from the kept logits and final pre-activations."""

    @staticmethod
    def forward(ctx, x, WT, V, c, b):  # noqa: D401 - autograd signature
        keep = any(ctx.needs_input_grad[1:])
        log_p, logits, a_final = _kernel().nade_forward(x, WT, V, c, b, keep)
        ctx.save_for_backward(x, WT, V, c, b, logits, a_final)
        return log_p

    @staticmethod
    def backward(ctx, grad_out):
        x, WT, V, c, b, logits, a_final = ctx.saved_tensors
        dWT, dV, dc, db = _kernel().nade_backward(x, WT, V, c, b, logits, a_final, grad_out.contiguous())
        return None, dWT, dV, dc, db


def nade_log_prob_reference(x: torch.Tensor, WT: torch.Tensor, V: torch.Tensor, c: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pure-PyTorch NADE log-likelihood (same shapes as the kernel: x (B, D), WT/V (D, H), c (H,), b (D,)).

    Returns:
        ``(B,)`` log p(x) in nats. Stores ``B x D x H`` activations.
    """
    contrib = x.unsqueeze(-1) * WT  # (B, D, H): x_j W[:, j]
    a = torch.cumsum(contrib, dim=1) - contrib + c  # exclusive prefix sums: a_d = c + sum_{j<d} x_j W[:, j]
    h = torch.sigmoid(a)
    logits = (h * V).sum(-1) + b  # (B, D)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


@dataclass
class NADEConfig:
    """NADE hyper-parameters.

    Attributes:
        n_dims: ``D``, dimensions of the binary vectors (784 for MNIST).
        hidden_dim: ``H`` (paper: 500 on binarized MNIST).
        order_agnostic: train with a fresh random ordering per minibatch (Uria et al. 2014).
        eval_orderings: ``K`` random orderings in the ensemble estimate of an
            order-agnostic model (``0``: natural ordering only).
        backend: ``"auto"`` (fused kernel on CPU if it builds, else PyTorch),
            ``"kernel"`` (raise if it cannot be built) or ``"torch"``.
        init_scale: weights start uniform in ``+/- init_scale / sqrt(fan_in)``.
    """

    n_dims: int = 784
    hidden_dim: int = 500
    order_agnostic: bool = False
    eval_orderings: int = 0
    backend: str = "auto"
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.n_dims < 1 or self.hidden_dim < 1:
            raise ValueError(f"NADEConfig needs n_dims >= 1 and hidden_dim >= 1, got {self.n_dims}, {self.hidden_dim}")
        if self.backend not in ("auto", "kernel", "torch"):
            raise ValueError(f"NADEConfig.backend must be 'auto', 'kernel' or 'torch', got {self.backend!r}")
        if self.eval_orderings < 0:
            raise ValueError(f"NADEConfig.eval_orderings must be >= 0, got {self.eval_orderings}")
        if not self.init_scale > 0:
            raise ValueError(f"NADEConfig.init_scale must be > 0, got {self.init_scale}")

    def to_dict(self) -> dict:
        return asdict(self)


class NADE(AutoregressiveFitMixin, nn.Module):
    """Neural Autoregressive Distribution Estimator over ``{0,1}^D``.

    Attributes (parameters):
        WT: ``(D, H)``, row ``i`` is the paper's ``W[:, i]`` (input weights of dimension ``i``).
        V: ``(D, H)`` output weights; ``c``: ``(H,)`` hidden bias; ``b``: ``(D,)`` output bias.
    """

    monitor = "valid_nll"

    def __init__(self, config: NADEConfig | None = None, **kwargs) -> None:
        super().__init__()
        self.config = config or NADEConfig(**kwargs)
        D, H = self.config.n_dims, self.config.hidden_dim
        s = self.config.init_scale
        self.WT = nn.Parameter(torch.empty(D, H).uniform_(-s / math.sqrt(D), s / math.sqrt(D)))
        self.V = nn.Parameter(torch.empty(D, H).uniform_(-s / math.sqrt(H), s / math.sqrt(H)))
        self.c = nn.Parameter(torch.zeros(H))
        self.b = nn.Parameter(torch.zeros(D))

    # ------------------------------------------------------------------ core
    def _use_kernel(self, x: torch.Tensor) -> bool:
        if self.config.backend == "torch" or x.device.type != "cpu" or x.dtype != torch.float32:
            return False
        if self.config.backend == "kernel":
            if _kernel() is None:
                raise RuntimeError(f"NADE backend='kernel' but the C++ kernel could not be built: {_KERNEL_ERROR}")
            return True
        return _kernel() is not None

    def log_prob(self, x: torch.Tensor, ordering: torch.Tensor | None = None) -> torch.Tensor:
        """Exact ``log p(x)`` in nats.

        Args:
            x: ``(B, D)`` 0/1 float tensor.
            ordering: ``(D,)`` permutation of ``0..D-1`` (``None``: the natural order).

        Returns:
            ``(B,)`` log-likelihoods (nats per example).

        Raises:
            ValueError: if ``x`` is not ``(B, D)`` binary, or ``ordering`` is not a permutation.
        """
        x = check_binary_batch(x, self.config.n_dims, "x")
        WT, V, b = self.WT, self.V, self.b
        if ordering is not None:
            ordering = torch.as_tensor(ordering, dtype=torch.long)
            if ordering.shape != (self.config.n_dims,) or not torch.equal(
                torch.sort(ordering).values, torch.arange(self.config.n_dims)
            ):
                raise ValueError(f"ordering must be a permutation of 0..{self.config.n_dims - 1}")
            x, WT, V, b = x[:, ordering], WT[ordering], V[ordering], b[ordering]
        if self._use_kernel(x):
            return _FusedNADE.apply(x.contiguous(), WT.contiguous(), V.contiguous(), self.c.contiguous(), b.contiguous())
        return nade_log_prob_reference(x, WT, V, self.c, b)

    def conditional_logits(self, x: torch.Tensor, ordering: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, D)`` logits of ``p(x_d = 1 | x_<d)`` per dimension (pure-PyTorch path; for inspection and tests)."""
        x = check_binary_batch(x, self.config.n_dims, "x")
        order = torch.arange(self.config.n_dims) if ordering is None else torch.as_tensor(ordering, dtype=torch.long)
        xo, WT, V, b = x[:, order], self.WT[order], self.V[order], self.b[order]
        contrib = xo.unsqueeze(-1) * WT
        h = torch.sigmoid(torch.cumsum(contrib, dim=1) - contrib + self.c)
        logits = (h * V).sum(-1) + b
        out = torch.empty_like(logits)
        out[:, order] = logits
        return out

    def init_output_bias(self, marginals: torch.Tensor) -> None:
        """Set ``b`` to the logit of the training marginals ``(D,)`` (clamped to ``[1e-3, 1 - 1e-3]``)."""
        p = marginals.clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.b.copy_(torch.log(p / (1 - p)))

    # ------------------------------------------------------------ training API
    def sample_noise(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """An ordering for the minibatch (order-agnostic training), repeated along the batch: ``(D, batch_size)``."""
        if not self.config.order_agnostic:
            return None
        order = torch.randperm(self.config.n_dims, generator=generator)
        return order.unsqueeze(1).expand(-1, batch_size)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``{"loss": -log p(x)}``, ``(B,)`` nats (in the minibatch's ordering when order-agnostic)."""
        ordering = None if noise is None or noise.shape[1] == 0 else noise[:, 0]
        return {"loss": -self.log_prob(x, ordering)}

    def optimization_phases(self, alternate: bool) -> dict[str, list[nn.Parameter]]:
        return {"joint": list(self.parameters())}

    @torch.no_grad()
    def validation_metrics(self, x_valid: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
        """``valid_nll``: mean exact NLL (nats per example) in the natural ordering."""
        lp = torch.cat([self.log_prob(xb) for xb in split_batches(x_valid, batch_size)])
        return {"valid_nll": float(-lp.double().mean())}

    # --------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, batch_size: int = 1000, n_orderings: int | None = None, seed: int = 0) -> DensityReport:
        """Test NLL (nats per example), exact.

        Args:
            x: ``(N, D)`` 0/1 data.
            n_orderings: ``K`` random orderings for the ensemble ``log (1/K) sum_k p_{o_k}(x)``
                (default: ``config.eval_orderings``); ``0`` scores the natural ordering only.
            seed: seeds the orderings.
        """
        k = self.config.eval_orderings if n_orderings is None else n_orderings
        natural = torch.cat([self.log_prob(xb) for xb in split_batches(x, batch_size)])
        if k == 0:
            return DensityReport.from_log_prob(natural, "exact (natural ordering)", self.config.n_dims)
        g = torch.Generator().manual_seed(seed)
        orders = [torch.randperm(self.config.n_dims, generator=g) for _ in range(k)]
        per_order = torch.stack(
            [torch.cat([self.log_prob(xb, o) for xb in split_batches(x, batch_size)]) for o in orders]
        )  # (K, N)
        ensemble = log_mean_exp(per_order, dim=0)
        nat_nll = float(-natural.double().mean())
        single = [float(-lp.double().mean()) for lp in per_order]
        return DensityReport.from_log_prob(
            ensemble, f"exact (ensemble of {k} random orderings)", self.config.n_dims,
            natural_ordering_nll=nat_nll, mean_single_ordering_nll=sum(single) / k,
        )

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling in the natural ordering: ``(n, D)`` float 0/1."""
        D = self.config.n_dims
        x = torch.zeros(n, D)
        a = self.c.detach().expand(n, -1).clone()
        for d in range(D):
            h = torch.sigmoid(a)
            p = torch.sigmoid(h @ self.V[d] + self.b[d])
            x[:, d] = torch.bernoulli(p, generator=generator)
            a += x[:, d : d + 1] * self.WT[d]
        return x
