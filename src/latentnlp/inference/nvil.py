"""NVIL: the score-function gradient estimator of Mnih & Gregor (2014) with all its variance reduction.

Setting. A model ``P_theta(x, h)`` with *discrete* latents ``h`` (a sigmoid belief net,
a DARN, a discrete document model) and an inference network ``Q_phi(h | x)`` from which
``h`` is sampled exactly. The variational lower bound (ELBO) of a datum is

    L(x) = E_Q[ l(x, h) ],        l(x, h) = log P_theta(x, h) - log Q_phi(h | x)   (nats),

``l`` being the *learning signal* (paper Sec. 2). Its gradients are

    dL/dtheta = E_Q[ d/dtheta log P_theta(x, h) ]                       (pathwise)
    dL/dphi   = E_Q[ (l(x, h) - b(x)) d/dphi log Q_phi(h | x) ]         (score function, REINFORCE)

where any ``b`` that does not depend on ``h`` leaves the expectation unchanged because
``E_Q[d/dphi log Q] = 0`` (Williams 1992). The term ``E_Q[-d/dphi log Q]`` of the exact
gradient is zero in expectation and left out, as in the paper. NVIL's variance reduction
(paper Sec. 3, Algorithm 1), each an option of :class:`NVILConfig`:

* **Centering** (Sec. 3.1). ``l`` is replaced by ``l - b_psi(x) - c``: ``c`` is a running
  average of ``l - b_psi(x)`` over training batches (the *constant baseline*), ``b_psi``
  an MLP of the input (the *input-dependent baseline*, one hidden layer of
  ``baseline_hidden`` tanh units, paper: 100), trained to minimise ``(l - b_psi(x) - c)^2``.
  A model may add its own ``h``-independent term to ``b_psi`` (``baseline_offset``, trained by
  the same regression): document models use one linear in the word counts, because a
  document's signal scales with its length (hundreds to thousands of nats) and an MLP
  trained by Adam's small steps takes thousands of updates to reach that scale.
* **Variance normalisation** (Sec. 3.2). The centred signal is divided by
  ``max(1, sqrt(v))``, ``v`` a running average of the batch variance of ``l - b_psi(x)``;
  this keeps the size of the inference network's updates roughly constant as the
  signal's scale changes during training, without ever amplifying a small signal.
* **Local learning signals** (Sec. 3.3). With several stochastic layers each layer's
  score term is multiplied by only the part of ``l`` that depends on that layer, with
  its own baseline, running statistics and normaliser (see below).

Running averages (Algorithm 1): for every training batch, with ``m`` and ``s2`` the mean
and (population) variance of ``l - b_psi(x)`` over all its samples,

    c <- alpha c + (1 - alpha) m,        v <- alpha v + (1 - alpha) s2

so ``alpha`` (paper: 0.8) is the weight kept on the old value: close to 1 averages over
many batches (``~ 1 / (1 - alpha)``), 0 keeps only the last batch. Two choices here that
the paper leaves open or does differently, both documented so they can be checked:

1. A batch is centred and normalised with the statistics of the batches *before* it, and
   the averages are updated afterwards; Algorithm 1 updates first, which makes ``c``
   depend on the batch's own samples and biases the gradient by a factor ``(1 - alpha)/n``
   for ``n`` samples in the batch. Here ``c`` and ``v`` are constants with respect to the
   current samples, so the estimate is exactly unbiased (up to ``1/max(1, sqrt(v))``).
2. The first training batch (``num_updates == 0``) initialises ``c`` and ``v`` with its own
   statistics instead of averaging them with arbitrary starting values; with
   ``centering="input"`` it also sets the output bias of ``b_psi`` to its mean signal, so the
   MLP starts at the right scale (document signals are hundreds of nats). That one step is
   biased by ``O(1/n)``; every later one is not. In ``"both"`` mode ``b_psi`` starts at 0
   and learns the residual around ``c``.

Statistics are updated only in training mode (``module.train()``) and are persistent
buffers (``signal_mean``, ``signal_var``, ``num_updates``), so a checkpoint resumes exactly.
Under ``torch.distributed`` the batch sums are all-reduced, so every process computes the
statistics of the global batch, as one process would.

Surrogate (Pyro style). :meth:`NVILEstimator.surrogate` returns the honest per-example
``"loss"`` ``-(log P - log Q)`` (detached: differentiating it would silently drop the
inference network's gradient) and a ``"surrogate"`` whose gradient is the NVIL estimate:

    surrogate = -log P(x, h)                                   (theta: pathwise)
                - sum_k A_k * (log Q_k - stop(log Q_k))        (phi: score function)
                + sum_k 1/2 (l_k - c_k - b_k(x))^2 / n_k       (psi: baseline regression)
                + stop(log Q)

with ``A_k = stop((l_k - b_k(x) - c_k) / n_k)`` the centred, normalised, detached signal
of layer ``k`` and ``n_k = max(1, sqrt(v_k))`` (1 without variance normalisation); in the
regression term ``l_k``, ``c_k`` and ``n_k`` are constants and ``x`` is detached, so only
``psi`` learns from it, with exactly Algorithm 1's update ``(l - b - c)/n * d b/d psi``.
The ``stop`` terms only shift the value: the surrogate *equals* the loss plus the
baseline's regression loss, while its gradient is NVIL's. Because ``log Q_k - stop(log Q_k)``
is zero in value, a signal that still carried a graph could not leak a gradient through
``A_k`` either (the classic ``-A * log Q`` form relies on ``A`` being detached). The shared
:class:`~latentnlp.training.Trainer` differentiates ``"surrogate"`` and reports ``"loss"``.

Local learning signals: the convention. Number the stochastic layers ``k = 0..L-1`` in
the order ``Q`` samples them (layer 0 from ``x``; layer ``k`` from ``x, h_0..h_{k-1}``), and
pass ``log_q[k] = log Q(h_k | x, h_<k)`` and ``log_p[k]`` = the sum of the terms of
``log P(x, h)`` whose *latest* (highest-numbered) latent layer is ``k``. The signal of
layer ``k`` is

    l_k = sum_{j >= k} (log_p[j] - log_q[j])

i.e. every term that reads ``h_k`` or a layer sampled after it (those depend on ``h_k``
through ``Q``'s sampling), while the terms that read only ``x, h_0..h_{k-1}`` are dropped:
given ``h_<k`` they are constants, so ``E_Q[T d/dphi log Q(h_k | x, h_<k)] = 0`` and the
estimate stays unbiased. ``l_0`` is the full signal ``l``. For a two-layer SBN
``P(x|h_0) P(h_0|h_1) P(h_1)`` with ``Q(h_0|x) Q(h_1|h_0)``:
``log_p = [log P(x|h_0), log P(h_0|h_1) + log P(h_1)]``, ``log_q = [log Q(h_0|x), log Q(h_1|h_0)]``,
giving ``l_1 = log P(h_0, h_1) - log Q(h_1|h_0)``, the paper's local signal. Assigning a
term to a layer *earlier* than its latest one biases the gradient of the later layers.
Layer ``k``'s input-dependent baseline may read anything sampled before ``h_k``
(``x``, ``h_<k``; pass a list of per-layer inputs), never ``h_k`` or later.

Sources: A. Mnih and K. Gregor, "Neural Variational Inference and Learning in Belief
Networks", ICML 2014 (Sec. 2-3, Algorithm 1); R. J. Williams, "Simple statistical
gradient-following algorithms for connectionist reinforcement learning", Machine Learning
8, 1992 (REINFORCE); the surrogate-objective convention of Pyro's ``Trace_ELBO``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.distributed as dist
from torch import nn

from ..training.distributed import DistributedContext

__all__ = ["NVILConfig", "NVILEstimator", "CENTERINGS"]

CENTERINGS = ("none", "constant", "input", "both")


@dataclass
class NVILConfig:
    """Which of NVIL's variance-reduction techniques are used; paper values per field.

    Attributes:
        centering: ``"none"`` (plain REINFORCE), ``"constant"`` (subtract the running mean
            ``c``), ``"input"`` (subtract the input-dependent baseline ``b_psi(x)``) or
            ``"both"`` (``b_psi(x) + c``, the paper's full method).
        variance_normalization: divide the centred signal by ``max(1, sqrt(v))``, ``v`` the
            running variance of ``l - b_psi(x)`` (paper: on).
        alpha: running-average rate in ``[0, 1)``: the weight kept on the old ``c`` and ``v`` at
            each training batch, ``c <- alpha c + (1 - alpha) batch_mean`` (paper: 0.8).
        baseline_hidden: tanh units in the hidden layer of ``b_psi`` (paper: 100).
    """

    centering: str = "both"
    variance_normalization: bool = True
    alpha: float = 0.8
    baseline_hidden: int = 100

    def __post_init__(self) -> None:
        if self.centering not in CENTERINGS:
            raise ValueError(f"NVILConfig.centering must be one of {CENTERINGS}, got {self.centering!r}")
        if not isinstance(self.variance_normalization, bool):
            raise ValueError(f"NVILConfig.variance_normalization must be a bool, got {self.variance_normalization!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"NVILConfig.alpha must be a number in [0, 1), got {self.alpha!r}")
        self.alpha = float(self.alpha)
        if isinstance(self.baseline_hidden, bool) or not isinstance(self.baseline_hidden, int) or self.baseline_hidden < 1:
            raise ValueError(f"NVILConfig.baseline_hidden must be a positive integer, got {self.baseline_hidden!r}")

    @property
    def uses_constant(self) -> bool:
        """Whether the running mean ``c`` is subtracted."""
        return self.centering in ("constant", "both")

    @property
    def uses_input(self) -> bool:
        """Whether the input-dependent baseline ``b_psi(x)`` is subtracted."""
        return self.centering in ("input", "both")

    def to_dict(self) -> dict:
        return asdict(self)


def _as_layers(value: torch.Tensor | Sequence[torch.Tensor], name: str) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    layers = list(value)
    if not layers or not all(isinstance(t, torch.Tensor) for t in layers):
        raise ValueError(f"{name} must be a tensor or a non-empty list of tensors, got {type(value).__name__}")
    return layers


class NVILEstimator(nn.Module):
    """NVIL's gradient estimator: running statistics (buffers) and input-dependent baselines.

    Args:
        config: an :class:`NVILConfig` (or its fields as keywords).
        input_dim: width ``D`` of the baseline's input ``x`` (one int for every layer, or one
            per layer); required when ``config.centering`` is ``"input"`` or ``"both"``.
        n_layers: ``L``, stochastic layers with their own (local) learning signal (paper
            Sec. 3.3); 1 for a single signal.

    Buffers (persistent, in ``state_dict``): ``signal_mean`` ``(L,)`` (``c``),
    ``signal_var`` ``(L,)`` (``v``), ``num_updates`` (training batches seen). Parameters: the
    baselines ``b_psi`` (``baselines[k]``: ``D_k -> baseline_hidden -> 1``), none otherwise.
    Put them in the same optimiser phase as the inference network.

    Attributes:
        last_diagnostics: after each call, ``(L,)`` detached tensors over all the batch's
            samples: ``"signal_mean"``/``"signal_var"`` (of ``l_k``), ``"centered_mean"``/
            ``"centered_var"`` (of the signal ``A_k`` multiplying the score), and, with a
            baseline, ``"baseline_mse"`` (mean of ``(l_k - c_k - b_k(x))^2``, nats^2).

    Raises:
        ValueError: ``n_layers < 1``, or a baseline is configured without ``input_dim``
            (or with one per layer of the wrong length).
    """

    def __init__(
        self,
        config: NVILConfig | None = None,
        *,
        input_dim: int | Sequence[int] | None = None,
        n_layers: int = 1,
        **kwargs,
    ) -> None:
        super().__init__()
        if config is None:
            config = NVILConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either an NVILConfig or keyword fields, not both")
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
        self.config = config
        self.n_layers = n_layers
        self.register_buffer("signal_mean", torch.zeros(n_layers))
        self.register_buffer("signal_var", torch.zeros(n_layers))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self.baselines = nn.ModuleList()
        self.input_dims: list[int] | None = None
        if config.uses_input:
            if input_dim is None:
                raise ValueError(f"input_dim is required with centering={config.centering!r} (the baseline's input width)")
            dims = [input_dim] * n_layers if isinstance(input_dim, int) else list(input_dim)
            if len(dims) != n_layers or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
                raise ValueError(f"input_dim must be a positive int or {n_layers} positive ints, got {input_dim!r}")
            self.input_dims = dims
            for d in dims:
                mlp = nn.Sequential(nn.Linear(d, config.baseline_hidden), nn.Tanh(), nn.Linear(config.baseline_hidden, 1))
                nn.init.zeros_(mlp[2].weight)  # b_psi starts at 0 (or at the first batch's mean, see module doc)
                nn.init.zeros_(mlp[2].bias)
                self.baselines.append(mlp)
        self.last_diagnostics: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ pieces
    def baseline(self, x: torch.Tensor, layer: int = 0) -> torch.Tensor:
        """``b_psi(x)`` of ``layer``: ``(..., D_k) -> (...)`` nats; ``x`` is detached (only ``psi`` learns).

        Raises:
            RuntimeError: if the config has no input-dependent baseline.
            ValueError: if ``x``'s last dimension is not ``D_k``.
        """
        if not self.config.uses_input:
            raise RuntimeError(f"centering={self.config.centering!r} has no input-dependent baseline")
        assert self.input_dims is not None
        if x.dim() < 1 or x.shape[-1] != self.input_dims[layer]:
            raise ValueError(f"baseline input of layer {layer} must have shape (..., {self.input_dims[layer]}), got {tuple(x.shape)}")
        mlp = self.baselines[layer]
        return mlp(x.detach().to(mlp[0].weight.dtype)).squeeze(-1)

    @staticmethod
    def learning_signals(
        log_p: torch.Tensor | Sequence[torch.Tensor], log_q: torch.Tensor | Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """The (local) learning signals ``l_k = sum_{j >= k} (log_p[j] - log_q[j])``, detached, nats.

        With single tensors this is ``[log_p - log_q]``. See the module docstring for the
        convention that makes ``l_k`` the part of ``l`` that depends on layer ``k``.
        """
        p, q = _as_layers(log_p, "log_p"), _as_layers(log_q, "log_q")
        if len(p) != len(q):
            raise ValueError(f"log_p has {len(p)} layers, log_q has {len(q)}")
        out: list[torch.Tensor] = []
        acc = None
        for pk, qk in zip(reversed(p), reversed(q)):
            term = (pk - qk).detach()
            acc = term if acc is None else acc + term
            out.append(acc)
        return out[::-1]

    def normalizers(self) -> torch.Tensor:
        """``n_k = max(1, sqrt(v_k))`` of the current statistics, ``(L,)``; ones without variance normalisation."""
        return self._normalizer(self.signal_var)

    def _normalizer(self, var: torch.Tensor) -> torch.Tensor:
        if not self.config.variance_normalization:
            return torch.ones_like(var)
        return var.clamp(min=0.0).sqrt().clamp(min=1.0)

    @torch.no_grad()
    def _batch_statistics(self, residuals: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and population variance of each layer's ``l_k - b_k(x)`` over the (global) batch, float64."""
        sums = torch.stack(
            [torch.stack([r.new_tensor(float(r.numel())), r.sum(), r.pow(2).sum()]) for r in (t.double() for t in residuals)]
        )  # (L, 3): count, sum, sum of squares; shifted data would be more robust, float64 suffices
        ctx = DistributedContext.current()
        if ctx.enabled:
            dist.all_reduce(sums)
        count = sums[:, 0].clamp(min=1.0)
        mean = sums[:, 1] / count
        var = (sums[:, 2] / count - mean.pow(2)).clamp(min=0.0)
        return mean, var

    # ------------------------------------------------------------------ estimator
    def surrogate(
        self,
        log_p: torch.Tensor | Sequence[torch.Tensor],
        log_q: torch.Tensor | Sequence[torch.Tensor],
        x: torch.Tensor | Sequence[torch.Tensor] | None = None,
        baseline_offset: torch.Tensor | Sequence[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Honest loss and NVIL surrogate of a batch of sampled latents.

        Args:
            log_p: ``log P_theta(x, h)`` of the sampled ``h``, with its graph: ``(B,)``, or
                ``(S, B)`` for ``S`` samples per example; or a list of ``L`` such tensors,
                the per-layer terms of the module docstring's convention (local signals).
            log_q: ``log Q_phi(h | x)`` with its graph, same shape(s); ``log_q[k] =
                log Q(h_k | x, h_<k)``. The samples ``h`` themselves must carry no gradient
                (discrete).
            x: the baselines' input: ``(B, D)`` (or ``(S, B, D)``, e.g. an earlier layer's
                samples), or a list of one per layer; required with an input-dependent
                baseline, ignored otherwise.
            baseline_offset: an optional model-supplied part of the input-dependent baseline,
                ``(B,)`` (or the signal's shape), or one per layer, *with* its graph: the
                baseline becomes ``b_k(x) = offset_k(x) + b_psi_k(x)`` and the regression
                trains the offset's parameters too. It must not depend on ``h_k`` or a later
                layer (it may read ``x``, ``h_<k`` and any parameters); a function linear in
                the word counts, for instance, predicts the length-dependent bulk of a
                document's signal (:class:`~latentnlp.models.document.sbn.DocumentSBN`).
                Needs ``centering`` ``"input"`` or ``"both"``.

        Returns:
            Per-example ``(B,)`` tensors (means over the ``S`` samples), safe to return from a
            model's ``forward`` to the Trainer: ``"loss"`` ``-(log P - log Q)``, nats, detached;
            ``"surrogate"`` (value ``loss`` + baseline regression loss; gradient NVIL's);
            ``"centered_signal"`` and ``"centered_signal_sq"`` (``A`` and ``A^2``; with ``L > 1``
            one pair per layer, suffixed ``_k``); with a baseline, ``"baseline_residual_sq"``
            (``(l - c - b)^2``, nats^2, suffixed likewise). Batch statistics go to
            :attr:`last_diagnostics`. In training mode the running statistics then advance.

        Raises:
            ValueError: mismatched layer counts or shapes, a wrong number of layers for this
                estimator, or a missing / misshapen baseline input.
        """
        p, q = _as_layers(log_p, "log_p"), _as_layers(log_q, "log_q")
        if len(p) != len(q):
            raise ValueError(f"log_p has {len(p)} layers, log_q has {len(q)}")
        if len(p) != self.n_layers:
            raise ValueError(f"this estimator has n_layers={self.n_layers}, got {len(p)} layers of log-probabilities")
        shape = p[0].shape
        if len(shape) not in (1, 2) or any(t.shape != shape for t in p + q):
            raise ValueError(
                "log_p and log_q must all have the same shape, (B,) or (S, B); got "
                f"{[tuple(t.shape) for t in p]} and {[tuple(t.shape) for t in q]}"
            )
        batch = shape[-1]
        signals = self.learning_signals(p, q)  # detached l_k
        cfg = self.config

        first = self.training and int(self.num_updates) == 0
        baselines: list[torch.Tensor | None] = [None] * self.n_layers
        if baseline_offset is not None and not cfg.uses_input:
            raise ValueError(f"baseline_offset needs an input-dependent baseline; centering={cfg.centering!r}")
        if cfg.uses_input:
            if x is None:
                raise ValueError(f"centering={cfg.centering!r} needs the baseline input x")
            xs = [x] * self.n_layers if isinstance(x, torch.Tensor) else list(x)
            if len(xs) != self.n_layers:
                raise ValueError(f"x must be one tensor or a list of {self.n_layers}, got {len(xs)}")
            for k, xk in enumerate(xs):
                if not (xk.dim() == 2 and xk.shape[0] == batch) and tuple(xk.shape[:-1]) != tuple(shape):
                    raise ValueError(
                        f"baseline input of layer {k} must have shape ({batch}, D) or {tuple(shape)} + (D,), got {tuple(xk.shape)}"
                    )
            offsets: list[torch.Tensor | None] = [None] * self.n_layers
            if baseline_offset is not None:
                offsets = [baseline_offset] * self.n_layers if isinstance(baseline_offset, torch.Tensor) else list(baseline_offset)
                if len(offsets) != self.n_layers:
                    raise ValueError(f"baseline_offset must be one tensor or a list of {self.n_layers}, got {len(offsets)}")
                for k, o in enumerate(offsets):
                    if tuple(o.shape) not in ((batch,), tuple(shape)):
                        raise ValueError(f"baseline_offset of layer {k} must have shape ({batch},) or {tuple(shape)}, "
                                         f"got {tuple(o.shape)}")

            def full_baseline(k: int) -> torch.Tensor:
                b = self.baseline(xs[k], k).to(signals[k].dtype)
                if offsets[k] is not None:
                    b = b + offsets[k].to(b.dtype)
                return b.expand(shape) if b.shape != shape else b

            if first and cfg.centering == "input":  # start b_psi at the first batch's mean signal (module doc, choice 2)
                with torch.no_grad():
                    start, _ = self._batch_statistics([s - full_baseline(k) for k, s in enumerate(signals)])
                    for k, mlp in enumerate(self.baselines):
                        mlp[2].bias.add_(start[k].to(mlp[2].bias))
            for k in range(self.n_layers):
                baselines[k] = full_baseline(k)

        residuals = [s if b is None else s - b.detach() for s, b in zip(signals, baselines)]  # l_k - b_k(x)
        # Centre with the statistics of the batches before this one (module doc, choice 1).
        mean = self.signal_mean.detach().clone()
        var = self.signal_var.detach().clone()
        batch_mean = batch_var = None
        if self.training:
            batch_mean, batch_var = self._batch_statistics(residuals)
            if first:  # no earlier batches: initialise with this one's (module doc, choice 2)
                mean, var = batch_mean.to(mean), batch_var.to(var)
        norm = self._normalizer(var)

        log_q_total = sum(q[1:], q[0])
        surrogate = -sum(p[1:], p[0]) + log_q_total.detach()
        loss = -(sum(p[1:], p[0]) - log_q_total).detach()
        out: dict[str, torch.Tensor] = {}
        diag: dict[str, list[torch.Tensor]] = {"signal_mean": [], "signal_var": [], "centered_mean": [], "centered_var": []}
        if cfg.uses_input:
            diag["baseline_mse"] = []
        reduce = (lambda t: t.mean(0)) if len(shape) == 2 else (lambda t: t)
        for k in range(self.n_layers):
            c_k = mean[k].to(signals[k]) if cfg.uses_constant else signals[k].new_zeros(())
            n_k = norm[k].to(signals[k])
            centered = ((residuals[k] - c_k) / n_k).detach()  # A_k
            surrogate = surrogate - centered * (q[k] - q[k].detach())
            suffix = "" if self.n_layers == 1 else f"_{k}"
            out[f"centered_signal{suffix}"] = reduce(centered)
            out[f"centered_signal_sq{suffix}"] = reduce(centered.pow(2))
            diag["signal_mean"].append(signals[k].mean())
            diag["signal_var"].append(signals[k].var(unbiased=False))
            diag["centered_mean"].append(centered.mean())
            diag["centered_var"].append(centered.var(unbiased=False))
            if baselines[k] is not None:
                residual = signals[k] - c_k - baselines[k]  # l, c constants; b_psi with its graph
                surrogate = surrogate + 0.5 * residual.pow(2) / n_k
                out[f"baseline_residual_sq{suffix}"] = reduce(residual.detach().pow(2))
                diag["baseline_mse"].append(residual.detach().pow(2).mean())
        out = {"loss": reduce(loss), "surrogate": reduce(surrogate), **out}
        self.last_diagnostics = {key: torch.stack(v).detach() for key, v in diag.items()}

        if self.training:
            assert batch_mean is not None and batch_var is not None
            with torch.no_grad():
                if first:
                    self.signal_mean.copy_(batch_mean)
                    self.signal_var.copy_(batch_var)
                else:
                    a = cfg.alpha
                    self.signal_mean.copy_(a * self.signal_mean.double() + (1.0 - a) * batch_mean)
                    self.signal_var.copy_(a * self.signal_var.double() + (1.0 - a) * batch_var)
                self.num_updates.add_(1)
        return out

    def forward(
        self,
        log_p: torch.Tensor | Sequence[torch.Tensor],
        log_q: torch.Tensor | Sequence[torch.Tensor],
        x: torch.Tensor | Sequence[torch.Tensor] | None = None,
        baseline_offset: torch.Tensor | Sequence[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Same as :meth:`surrogate` (calling the module runs hooks)."""
        return self.surrogate(log_p, log_q, x, baseline_offset)

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"centering={cfg.centering!r}, variance_normalization={cfg.variance_normalization}, "
            f"alpha={cfg.alpha}, n_layers={self.n_layers}"
        )
