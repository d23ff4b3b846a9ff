"""MADE: Masked Autoencoder for Distribution Estimation (Germain, Gregor, Murray & Larochelle 2015).

An MLP ``x -> h^1 -> ... -> h^L -> logits`` whose weight matrices are multiplied
by binary masks so that output ``d`` depends only on the inputs that come
before ``d`` in an ordering; then ``p(x) = prod_d sigmoid(logit_d)^x_d (1 - sigmoid(logit_d))^(1-x_d)``
is an exact, normalised autoregressive density computed in one pass.

Masks come from *connectivity numbers* (paper, Sec. 4, Eq. 12-13):

* inputs: ``m^0(d)`` = the position of dimension ``d`` in the ordering, ``1..D``;
* hidden layer ``l``: ``m^l(k) ~ Uniform{min_k' m^{l-1}(k'), ..., D - 1}``;
* ``M^{W^l}[k, k'] = 1[m^l(k) >= m^{l-1}(k')]`` and the output mask
  ``M^V[d, k] = 1[m^0(d) > m^L(k)]`` (strict), so output ``d`` sees inputs ``< d`` only.

Training with ``n_masks > 1`` cycles at random through that many mask sets
(connectivity-agnostic training, Sec. 4.2; with ``order_agnostic`` each set also
has its own random ordering), one set per minibatch. At test time the ensemble
of the first ``K`` sets scores ``log (1/K) sum_k p_k(x)`` — the log of the mean
probability, computed as a log-sum-exp over masks (never an average of logits
or of log-probabilities, which would not be a normalised density).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ...evaluation.density import DensityReport
from .common import AutoregressiveFitMixin, check_binary_batch, log_mean_exp, split_batches

__all__ = ["MADEConfig", "MADE", "connectivity_numbers", "masks_from_connectivity"]


def connectivity_numbers(
    n_dims: int, hidden_sizes: list[int], ordering: torch.Tensor, generator: torch.Generator
) -> list[torch.Tensor]:
    """Connectivity numbers ``[m^0, m^1, ..., m^L]`` of one mask set (paper, Sec. 4).

    Args:
        n_dims: ``D``.
        hidden_sizes: units per hidden layer.
        ordering: ``(D,)`` permutation; ``ordering[i]`` is the dimension visited ``i``-th.
        generator: draws the hidden units' numbers.

    Returns:
        ``m^0`` of shape ``(D,)`` with values ``1..D`` (``m^0[ordering[i]] = i + 1``) and
        ``m^l`` of shape ``(hidden_sizes[l-1],)`` with values in ``[min m^{l-1}, D - 1]``.
    """
    m0 = torch.empty(n_dims, dtype=torch.long)
    m0[ordering] = torch.arange(1, n_dims + 1)
    numbers = [m0]
    for size in hidden_sizes:
        low = int(numbers[-1].min())
        high = max(low, n_dims - 1)
        numbers.append(torch.randint(low, high + 1, (size,), generator=generator))
    return numbers


def masks_from_connectivity(numbers: list[torch.Tensor]) -> list[torch.Tensor]:
    """Masks ``[M^{W^1}, ..., M^{W^L}, M^V]`` (float, each ``(out, in)``) from connectivity numbers."""
    masks = [(numbers[l][:, None] >= numbers[l - 1][None, :]).float() for l in range(1, len(numbers))]
    masks.append((numbers[0][:, None] > numbers[-1][None, :]).float())
    return masks


@dataclass
class MADEConfig:
    """MADE hyper-parameters.

    Attributes:
        n_dims: ``D`` (784 for MNIST).
        hidden_sizes: units per hidden layer (paper's MNIST results: one layer of 500, or two).
        n_masks: mask sets trained (1: a single fixed mask; paper: 32 for the ensemble).
        order_agnostic: each mask set has its own random ordering (else the natural ordering).
        eval_masks: ``K`` mask sets averaged at test time (default: all ``n_masks``).
        direct_connection: add a masked direct input-to-output linear term ``(W_direct * M) x`` to
            the output logits, ``M[d, d'] = 1[m^0(d) > m^0(d')]`` (strictly lower-triangular in the
            ordering; no bias). The official MADE code's ``direct_input_connect``; it matters a lot
            for one hidden layer. Default off, so models saved before it existed still load.
        mask_seed: seeds orderings and connectivity numbers.
    """

    n_dims: int = 784
    hidden_sizes: list[int] = field(default_factory=lambda: [500])
    n_masks: int = 1
    order_agnostic: bool = False
    eval_masks: int | None = None
    direct_connection: bool = False
    mask_seed: int = 0

    def __post_init__(self) -> None:
        self.hidden_sizes = [int(h) for h in self.hidden_sizes]
        if self.n_dims < 2:
            raise ValueError(f"MADEConfig.n_dims must be >= 2, got {self.n_dims}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"MADEConfig.hidden_sizes must be non-empty positive sizes, got {self.hidden_sizes}")
        if self.n_masks < 1:
            raise ValueError(f"MADEConfig.n_masks must be >= 1, got {self.n_masks}")
        if self.eval_masks is not None and not 1 <= self.eval_masks <= self.n_masks:
            raise ValueError(f"MADEConfig.eval_masks must be in 1..n_masks={self.n_masks}, got {self.eval_masks}")

    def to_dict(self) -> dict:
        return asdict(self)


class MADE(AutoregressiveFitMixin, nn.Module):
    """Masked autoencoder density estimator over ``{0,1}^D``.

    Buffers ``connectivity_{k}_{l}`` hold every mask set's connectivity numbers, so a
    saved model restores exactly the masks it was trained with.
    """

    monitor = "valid_nll"

    def __init__(self, config: MADEConfig | None = None, **kwargs) -> None:
        super().__init__()
        self.config = config or MADEConfig(**kwargs)
        cfg = self.config
        sizes = [cfg.n_dims, *cfg.hidden_sizes]
        self.hidden = nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1]) for i in range(len(cfg.hidden_sizes)))
        self.output = nn.Linear(sizes[-1], cfg.n_dims)
        self.direct = nn.Linear(cfg.n_dims, cfg.n_dims, bias=False) if cfg.direct_connection else None
        g = torch.Generator().manual_seed(cfg.mask_seed)
        for k in range(cfg.n_masks):
            order = torch.randperm(cfg.n_dims, generator=g) if cfg.order_agnostic else torch.arange(cfg.n_dims)
            for l, m in enumerate(connectivity_numbers(cfg.n_dims, cfg.hidden_sizes, order, g)):
                self.register_buffer(f"connectivity_{k}_{l}", m.to(torch.int32))
        self._mask_cache: dict[int, list[torch.Tensor]] = {}

    # ------------------------------------------------------------------ masks
    def connectivity(self, k: int) -> list[torch.Tensor]:
        """Connectivity numbers ``[m^0, ..., m^L]`` of mask set ``k``."""
        return [getattr(self, f"connectivity_{k}_{l}").long() for l in range(len(self.config.hidden_sizes) + 1)]

    def ordering(self, k: int = 0) -> torch.Tensor:
        """``(D,)`` the dimensions in the order mask set ``k`` generates them."""
        return torch.argsort(self.connectivity(k)[0])

    def masks(self, k: int) -> list[torch.Tensor]:
        """Masks of set ``k``: one ``(out, in)`` float mask per hidden layer, then the output mask."""
        if k not in self._mask_cache:
            self._mask_cache[k] = masks_from_connectivity(self.connectivity(k))
        return self._mask_cache[k]

    def _load_from_state_dict(self, *args, **kwargs):  # masks follow loaded connectivity numbers
        self._mask_cache = {}
        return super()._load_from_state_dict(*args, **kwargs)

    # ------------------------------------------------------------------- core
    def logits(self, x: torch.Tensor, k: int = 0) -> torch.Tensor:
        """``(B, D)`` conditional logits: ``logit_d`` depends only on inputs before ``d`` in set ``k``'s ordering."""
        if not 0 <= k < self.config.n_masks:
            raise ValueError(f"mask set {k} does not exist (n_masks={self.config.n_masks})")
        masks = self.masks(k)
        h = x
        for layer, mask in zip(self.hidden, masks[:-1]):
            h = F.relu(F.linear(h, layer.weight * mask, layer.bias))
        out = F.linear(h, self.output.weight * masks[-1], self.output.bias)
        if self.direct is not None:
            out = out + F.linear(x, self.direct.weight * self.direct_mask(k))
        return out

    def direct_mask(self, k: int) -> torch.Tensor:
        """``(D, D)`` mask of the direct input-to-output weights of set ``k``: ``1[m^0(d) > m^0(d')]``.

        Strictly lower-triangular once rows and columns are put in set ``k``'s ordering, so
        output ``d`` sees, through this path too, only the inputs before ``d``.
        """
        key = -1 - k  # negative keys: direct masks, beside the layer masks of set k
        if key not in self._mask_cache:
            m0 = self.connectivity(k)[0]
            self._mask_cache[key] = (m0[:, None] > m0[None, :]).float()
        return self._mask_cache[key]

    def log_prob(self, x: torch.Tensor, k: int = 0) -> torch.Tensor:
        """Exact ``log p_k(x)`` under mask set ``k``: ``(B,)`` nats.

        Raises:
            ValueError: if ``x`` is not a ``(B, D)`` 0/1 tensor or ``k`` is out of range.
        """
        x = check_binary_batch(x, self.config.n_dims, "x")
        return -F.binary_cross_entropy_with_logits(self.logits(x, k), x, reduction="none").sum(-1)

    def ensemble_log_prob(self, x: torch.Tensor, n_masks: int | None = None) -> torch.Tensor:
        """``log (1/K) sum_{k<K} p_k(x)``, ``(B,)`` nats (``K`` default: ``eval_masks`` or all)."""
        K = n_masks or self.config.eval_masks or self.config.n_masks
        if not 1 <= K <= self.config.n_masks:
            raise ValueError(f"ensemble size must be in 1..{self.config.n_masks}, got {K}")
        return log_mean_exp(torch.stack([self.log_prob(x, k) for k in range(K)]), dim=0)

    # ------------------------------------------------------------ training API
    def sample_noise(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """The minibatch's mask set (connectivity-agnostic training), repeated along the batch: ``(1, batch_size)``."""
        if self.config.n_masks == 1:
            return None
        k = int(torch.randint(self.config.n_masks, (1,), generator=generator))
        return torch.full((1, batch_size), k, dtype=torch.long)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``{"loss": -log p_k(x)}`` ``(B,)`` nats, ``k`` the minibatch's mask set."""
        k = 0 if noise is None or noise.numel() == 0 else int(noise[0, 0])
        return {"loss": -self.log_prob(x, k)}

    def optimization_phases(self, alternate: bool) -> dict[str, list[nn.Parameter]]:
        return {"joint": list(self.parameters())}

    @torch.no_grad()
    def validation_metrics(self, x_valid: torch.Tensor, batch_size: int = 2000) -> dict[str, float]:
        """``valid_nll``: mean NLL (nats per example) of the evaluation ensemble (mask set 0 alone if ``n_masks == 1``)."""
        lp = torch.cat([self.ensemble_log_prob(xb) for xb in split_batches(x_valid, batch_size)])
        return {"valid_nll": float(-lp.double().mean())}

    # --------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, n_masks: int | None = None, batch_size: int = 2000) -> DensityReport:
        """Test NLL in nats per example: exact for one mask set, the mask ensemble otherwise."""
        K = n_masks or self.config.eval_masks or self.config.n_masks
        per_mask = torch.stack(
            [torch.cat([self.log_prob(xb, k) for xb in split_batches(x, batch_size)]) for k in range(K)]
        )  # (K, N)
        if K == 1:
            return DensityReport.from_log_prob(per_mask[0], "exact (one mask)", self.config.n_dims)
        singles = [float(-lp.double().mean()) for lp in per_mask]
        return DensityReport.from_log_prob(
            log_mean_exp(per_mask, dim=0), f"exact (ensemble of {K} masks)", self.config.n_dims,
            mean_single_mask_nll=sum(singles) / K, best_single_mask_nll=min(singles),
        )

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, k: int = 0) -> torch.Tensor:
        """Ancestral sampling with mask set ``k`` (``D`` passes): ``(n, D)`` float 0/1."""
        x = torch.zeros(n, self.config.n_dims)
        for d in self.ordering(k).tolist():
            p = torch.sigmoid(self.logits(x, k)[:, d])
            x[:, d] = torch.bernoulli(p, generator=generator)
        return x

    def init_output_bias(self, marginals: torch.Tensor) -> None:
        """Set the output bias to the logit of the training marginals (a common, harmless start)."""
        p = marginals.clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.output.bias.copy_(torch.log(p / (1 - p)))

