"""The binary (Bernoulli-Bernoulli) restricted Boltzmann machine, trained by CD-k or PCD.

Model. Visible ``v in {0,1}^D``, hidden ``h in {0,1}^H``, energy and joint

    E(v, h) = -b . v - c . h - v W h,        p(v, h) = exp(-E(v, h)) / Z

with ``W`` ``(D, H)``, visible bias ``b`` ``(D,)``, hidden bias ``c`` ``(H,)``. Summing
out ``h`` gives the free energy (Hinton 2010, "A practical guide", Sec. 16.1)

    F(v) = -b . v - sum_j softplus(c_j + (v W)_j),      p(v) = exp(-F(v)) / Z,

and the conditionals factorise: ``p(h_j = 1 | v) = sigmoid(c_j + (v W)_j)``,
``p(v_i = 1 | h) = sigmoid(b_i + (W h)_i)``.

Learning. The NLL gradient is ``grad F(x) - E_{p(v)}[grad F(v)]``. Contrastive
divergence (Hinton 2002) replaces the model expectation by ``k`` steps of block Gibbs
sampling started at the data (CD-k); persistent CD (Tieleman 2008; "stochastic maximum
likelihood", Younes 1989) keeps ``n_chains`` Markov chains alive across parameter
updates instead. :meth:`BernoulliRBM.forward` returns a *surrogate*
``F(x) - mean_c F(v_c)`` whose gradient is exactly that estimate (negative samples
``v_c`` detached); the shared Trainer differentiates the surrogate and only reports the
``"loss"``, which here is a cheap *proxy*, not the NLL: the stochastic pseudo-log-likelihood
estimate of scikit-learn's ``BernoulliRBM.score_samples``, ``D * softplus(F(x) - F(x~))``
with ``x~`` equal to ``x`` with one uniformly chosen bit flipped (Besag 1975). The NLL
itself needs ``log Z``, estimated by annealed importance sampling
(:mod:`latentnlp.inference.ais`; Salakhutdinov & Murray 2008) in :meth:`BernoulliRBM.evaluate`.

Randomness and resuming. Every uniform number the Gibbs sampler and the pseudo-likelihood
use during training comes from :meth:`BernoulliRBM.sample_noise`, i.e. from the
Trainer's seeded generator, and the persistent chains are a registered buffer saved in
every checkpoint, so an interrupted run resumes to exactly the weights of an
uninterrupted one.

Distributed training. CD-k runs under ``torchrun``: each process gets the noise of its
shard of the batch, so N processes compute the gradient of one. PCD refuses
(``RuntimeError``): its chains are shared state that the per-process shards of the batch
do not partition, and DDP would overwrite the other processes' chains with rank 0's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ...evaluation.density import DensityReport
from ...inference.ais import (
    AISResult,
    base_rate_logits,
    rbm_ais,
    rbm_exact_log_partition,
)
from ...training.distributed import DistributedContext

if TYPE_CHECKING:  # pragma: no cover
    from ...training.trainer import TrainConfig, TrainResult

__all__ = ["BernoulliRBM", "RBMConfig"]

_VISIBLE_BIAS_INIT = ("marginals", "zero")


@dataclass
class RBMConfig:
    """Architecture and learning rule of a binary RBM.

    Attributes:
        n_dims: D, visible units (784 for MNIST).
        hidden_dim: H, hidden units (Salakhutdinov & Murray 2008 and Tieleman 2008: 500 for MNIST).
        cd_k: Gibbs sweeps per parameter update (CD-1 / PCD-1; S&M 2008 also train CD-3 and CD-25).
        persistent: ``True``: PCD (Tieleman 2008), the negative chains persist across updates;
            ``False``: CD-k (Hinton 2002), chains restart at each batch's data.
        n_chains: persistent chains (PCD only; Tieleman 2008: 100, one per batch example).
        init_scale: standard deviation of the initial weights (Hinton's guide: 0.01).
        visible_bias_init: ``"marginals"`` starts ``b`` at ``log(p_i / (1 - p_i))`` of the
            training data's (smoothed) pixel marginals (Hinton's guide, Sec. 8); ``"zero"``.
        weight_decay: L2 penalty ``weight_decay/2 * ||W||^2`` added to the surrogate (not
            to the reported loss); Hinton's guide suggests 1e-4 to 1e-5 (0 disables).
    """

    n_dims: int
    hidden_dim: int = 500
    cd_k: int = 1
    persistent: bool = True
    n_chains: int = 100
    init_scale: float = 0.01
    visible_bias_init: str = "marginals"
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_dims", "hidden_dim", "cd_k", "n_chains"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RBMConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.persistent, bool):
            raise TypeError(f"RBMConfig.persistent must be True or False, got {self.persistent!r}")
        if not (self.init_scale > 0 and math.isfinite(self.init_scale)):
            raise ValueError(f"RBMConfig.init_scale must be a positive number, got {self.init_scale!r}")
        if self.visible_bias_init not in _VISIBLE_BIAS_INIT:
            raise ValueError(f"RBMConfig.visible_bias_init must be one of {_VISIBLE_BIAS_INIT}, got {self.visible_bias_init!r}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"RBMConfig.weight_decay must be >= 0, got {self.weight_decay!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class BernoulliRBM(nn.Module):
    """A binary RBM following the density-model protocol of :mod:`latentnlp.models.density`.

    Args:
        config: an :class:`RBMConfig` (or the same fields as keywords). Initial weights
            are drawn from torch's global generator (seed it, or use ``torch.random.fork_rng``).

    Parameters and buffers: ``weight`` ``(D, H)``, ``visible_bias`` ``(D,)``, ``hidden_bias`` ``(H,)``;
    buffers ``chains`` ``(n_chains, D)`` (PCD; ``(0, D)`` for CD-k) and ``base_rate_bias``
    ``(D,)``, the data-marginal logits AIS starts from (zeros until :meth:`init_from_data`).
    Shapes: ``v``/``x`` are ``(B, D)`` float 0/1; ``h`` is ``(B, H)``.
    """

    def __init__(self, config: RBMConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = RBMConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either an RBMConfig or keyword fields, not both")
        self.config = config
        d, h = config.n_dims, config.hidden_dim
        self.weight = nn.Parameter(torch.randn(d, h) * config.init_scale)
        self.visible_bias = nn.Parameter(torch.zeros(d))
        self.hidden_bias = nn.Parameter(torch.zeros(h))
        n_chains = config.n_chains if config.persistent else 0
        self.register_buffer("chains", (torch.rand(n_chains, d) < 0.5).float())
        self.register_buffer("base_rate_bias", torch.zeros(d))

    # ------------------------------------------------------------------ checks
    @property
    def n_dims(self) -> int:
        return self.config.n_dims

    def _device(self) -> torch.device:
        return self.weight.device

    def check_input(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """``x`` as a float tensor on the model's device, after checking it is ``(B, D)`` and 0/1.

        Raises:
            ValueError: naming ``name`` and its shape: wrong rank or width, or a value other than 0 and 1.
        """
        x = torch.as_tensor(x)
        if x.dim() != 2 or x.shape[1] != self.n_dims:
            raise ValueError(f"{name} must have shape (B, {self.n_dims}), got {tuple(x.shape)}")
        x = x.to(device=self._device(), dtype=self.weight.dtype)
        bad = ~((x == 0) | (x == 1))
        if bool(bad.any()):
            row, col = (int(i) for i in torch.nonzero(bad)[0])
            raise ValueError(
                f"{name} of shape {tuple(x.shape)} must hold only 0 and 1; {name}[{row}, {col}] = {float(x[row, col])!r}"
            )
        return x

    # ------------------------------------------------------------------ model
    def hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        """``c + v W``: ``(B, D) -> (B, H)``."""
        return v @ self.weight + self.hidden_bias

    def visible_logits(self, h: torch.Tensor) -> torch.Tensor:
        """``b + W h``: ``(B, H) -> (B, D)``."""
        return h @ self.weight.T + self.visible_bias

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """``p(h_j = 1 | v) = sigmoid(c_j + (v W)_j)``: ``(B, H)``."""
        return torch.sigmoid(self.hidden_logits(v))

    def visible_probs(self, h: torch.Tensor) -> torch.Tensor:
        """``p(v_i = 1 | h) = sigmoid(b_i + (W h)_i)``: ``(B, D)``."""
        return torch.sigmoid(self.visible_logits(h))

    def _free_energy(self, v: torch.Tensor, pre: torch.Tensor | None = None) -> torch.Tensor:
        if pre is None:
            pre = self.hidden_logits(v)
        return -(v @ self.visible_bias) - F.softplus(pre).sum(-1)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """``F(v) = -b.v - sum_j softplus(c_j + (v W)_j)``, so ``p(v) = exp(-F(v)) / Z``: ``(B,)`` nats.

        Raises:
            ValueError: if ``v`` is not ``(B, D)`` 0/1.
        """
        return self._free_energy(self.check_input(v, "v"))

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``E(v, h) = -b.v - c.h - v W h``: ``(B,)``."""
        return -(v @ self.visible_bias) - (h @ self.hidden_bias) - ((v @ self.weight) * h).sum(-1)

    def log_prob(self, x: torch.Tensor, log_z: float | torch.Tensor) -> torch.Tensor:
        """``log p(x) = -F(x) - log Z``: ``(B,)`` nats, given ``log Z`` (exact or an AIS estimate)."""
        return -self.free_energy(x) - log_z

    # ------------------------------------------------------------------ Gibbs
    @property
    def _noise_width(self) -> int:
        return self.config.hidden_dim + self.n_dims

    def _gibbs_from_uniforms(self, v: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        """Block Gibbs sweeps ``v -> h -> v``; ``uniforms`` is ``(k, C, H + D)`` (hidden draws first)."""
        hdim = self.config.hidden_dim
        for u in uniforms:
            h = (u[:, :hdim] < self.hidden_probs(v)).to(v.dtype)
            v = (u[:, hdim:] < self.visible_probs(h)).to(v.dtype)
        return v

    @torch.no_grad()
    def gibbs(self, v: torch.Tensor, n_steps: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n_steps`` sweeps of block Gibbs sampling ``h ~ p(h|v)``, ``v ~ p(v|h)`` from ``v``.

        Args:
            v: ``(C, D)`` 0/1 starting states.
            n_steps: sweeps (>= 0).
            generator: random source.

        Returns:
            ``(C, D)`` 0/1 states after ``n_steps`` sweeps (``v`` itself is not modified).
        """
        v = self.check_input(v, "v")
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        for _ in range(n_steps):
            u = torch.rand(1, v.shape[0], self._noise_width, generator=generator, device=v.device, dtype=v.dtype)
            v = self._gibbs_from_uniforms(v, u)
        return v

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, n_steps: int = 1000) -> torch.Tensor:
        """``n`` approximate samples of ``p(v)``: chains started from the base-rate model, ``n_steps`` Gibbs sweeps.

        Returns:
            ``(n, D)`` float 0/1 (the visible states, not their probabilities).
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        p0 = torch.sigmoid(self.base_rate_bias).expand(n, -1)
        v = (torch.rand(p0.shape, generator=generator, device=p0.device) < p0).to(self.weight.dtype)
        return self.gibbs(v, n_steps, generator)

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def init_from_data(self, x_train: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Data-dependent initialisation: base-rate logits (for AIS and sampling), visible bias, PCD chains.

        Sets ``base_rate_bias`` to the smoothed marginal logits of ``x_train``; ``visible_bias``
        too when ``visible_bias_init == "marginals"``; and the persistent chains to
        randomly chosen training examples.

        Args:
            x_train: ``(N, D)`` 0/1 training data.
            generator: chooses the examples the chains start from.
        """
        x_train = self.check_input(x_train, "x_train")
        logits = base_rate_logits(x_train).to(self.base_rate_bias)
        self.base_rate_bias.copy_(logits)
        if self.config.visible_bias_init == "marginals":
            self.visible_bias.copy_(logits)
        if self.chains.shape[0]:
            idx = torch.randint(0, x_train.shape[0], (self.chains.shape[0],), generator=generator)
            self.chains.copy_(x_train[idx.to(x_train.device)])

    def sample_noise(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniforms for one training step: ``(k, batch_size, m (H + D) + 1)``.

        Layout: ``noise[s, :, :-1]`` reshaped to ``(m * batch_size, H + D)`` holds the
        uniforms of Gibbs sweep ``s`` for each negative chain (hidden draws first);
        ``m = 1`` for CD-k (chain ``i`` starts at example ``i``) and
        ``ceil(n_chains / batch_size)`` for PCD (the first ``n_chains`` rows are used).
        ``noise[0, :, -1]`` picks the bit flipped in each example's pseudo-likelihood.
        The batch is dim 1, so the Trainer can hand each process its shard (CD-k).
        """
        m = math.ceil(self.config.n_chains / batch_size) if self.config.persistent else 1
        shape = (self.config.cd_k, batch_size, m * self._noise_width + 1)
        return torch.rand(shape, generator=generator, device=self._device(), dtype=self.weight.dtype)

    def pseudo_nll(
        self,
        x: torch.Tensor,
        flip_uniforms: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        pre: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Stochastic pseudo-NLL ``D * softplus(F(x) - F(x~))``, ``x~`` = ``x`` with bit ``floor(u D)`` flipped.

        A *proxy* for the NLL (its expectation over the flipped bit is ``-sum_i log p(x_i | x_-i)``,
        the negative pseudo-log-likelihood; scikit-learn's ``BernoulliRBM.score_samples``), cheap
        because it needs no ``Z``. It is not comparable with NLLs of other models.

        Args:
            x: ``(B, D)`` 0/1 (not re-checked here).
            flip_uniforms: ``(B,)`` uniforms choosing the flipped bit; drawn from ``generator`` if omitted.
            pre: ``hidden_logits(x)`` if already computed.

        Returns:
            ``(B,)`` nats.
        """
        b, d = x.shape
        if flip_uniforms is None:
            flip_uniforms = torch.rand(b, generator=generator, device=x.device, dtype=x.dtype)
        i = (flip_uniforms * d).long().clamp_(max=d - 1)  # (B,)
        rows = torch.arange(b, device=x.device)
        xi = x[rows, i]  # (B,)
        sign = 1.0 - 2.0 * xi  # +1 turns a 0 on, -1 turns a 1 off
        if pre is None:
            pre = self.hidden_logits(x)
        pre_flip = pre + sign.unsqueeze(1) * self.weight[i]  # (B, H): only row i of W changes
        f = -(x @ self.visible_bias) - F.softplus(pre).sum(-1)
        f_flip = f - sign * self.visible_bias[i] + F.softplus(pre).sum(-1) - F.softplus(pre_flip).sum(-1)
        return d * F.softplus(f - f_flip)

    def contrastive_surrogate(
        self,
        x: torch.Tensor,
        v_negative: torch.Tensor,
        negative_weights: torch.Tensor | None = None,
        free_energy_x: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``F(x) - sum_c w_c F(v_c)`` per example: ``(B,)``, whose gradient is the CD/PCD gradient.

        The batch mean of its gradient is ``mean_n grad F(x_n) - sum_c w_c grad F(v_c)``,
        the NLL gradient with the model expectation replaced by the negative samples.

        Args:
            x: ``(B, D)`` data.
            v_negative: ``(C, D)`` negative samples (detached here).
            negative_weights: ``(C,)`` weights summing to 1; default ``1/C`` each. With
                every configuration and its exact probability, the gradient is the NLL's.
            free_energy_x: ``F(x)`` (with its graph) if already computed.
        """
        v_negative = v_negative.detach()
        f_neg = self._free_energy(v_negative)
        if negative_weights is None:
            neg = f_neg.mean()
        else:
            neg = (negative_weights.detach().to(f_neg) * f_neg).sum()
        out = (self._free_energy(x) if free_energy_x is None else free_energy_x) - neg
        if self.config.weight_decay:
            out = out + 0.5 * self.config.weight_decay * self.weight.pow(2).sum()
        return out

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One CD-k / PCD step's terms for the Trainer.

        Args:
            x: ``(B, D)`` 0/1 data.
            noise: from :meth:`sample_noise` (drawn from torch's global generator if omitted).

        Returns:
            ``{"loss": pseudo-NLL proxy (not the NLL; see :meth:`pseudo_nll`), "surrogate":
            F(x) - mean F(v_neg), "free_energy": F(x)}``, each ``(B,)`` nats. In training mode
            under PCD the chains advance (and persist); in eval mode they are left as they are.

        Raises:
            ValueError: bad ``x`` or ``noise``.
            RuntimeError: PCD training inside a multi-process group (torchrun); use CD-k there.
        """
        x = self.check_input(x, "x")
        b = x.shape[0]
        cfg = self.config
        if noise is None:
            noise = self.sample_noise(b)
        if noise.dim() != 3 or noise.shape[0] != cfg.cd_k or noise.shape[1] != b or (noise.shape[2] - 1) % self._noise_width:
            raise ValueError(
                f"noise must have shape ({cfg.cd_k}, {b}, m * {self._noise_width} + 1) as sample_noise({b}) makes, "
                f"got {tuple(noise.shape)}"
            )
        noise = noise.to(x)
        chain_u = noise[:, :, :-1].reshape(cfg.cd_k, -1, self._noise_width)
        if cfg.persistent:
            if self.training and DistributedContext.current().enabled:
                raise RuntimeError(
                    "PCD (persistent=True) cannot train in a multi-process group: its persistent chains are "
                    "state shared by the whole batch; train with one process, or with CD-k (persistent=False)"
                )
            if chain_u.shape[1] < cfg.n_chains:
                raise ValueError(f"noise holds uniforms for {chain_u.shape[1]} chains, PCD needs {cfg.n_chains}")
            with torch.no_grad():
                v_neg = self._gibbs_from_uniforms(self.chains, chain_u[:, : cfg.n_chains])
                if self.training:
                    self.chains.copy_(v_neg)
        else:
            with torch.no_grad():
                v_neg = self._gibbs_from_uniforms(x, chain_u)
        pre = self.hidden_logits(x)  # (B, H), shared by the three terms
        f_x = self._free_energy(x, pre)
        with torch.no_grad():
            loss = self.pseudo_nll(x, noise[0, :, -1], pre=pre)
        return {"loss": loss, "surrogate": self.contrastive_surrogate(x, v_neg, free_energy_x=f_x), "free_energy": f_x.detach()}

    def optimization_phases(self, alternate: bool) -> dict[str, list[nn.Parameter]]:
        """``{"joint": [W, b, c]}`` (an RBM has no encoder/decoder phases; ``alternate`` is refused)."""
        if alternate:
            raise ValueError("an RBM has one set of parameters; alternate=True does not apply")
        return {"joint": list(self.parameters())}

    # ------------------------------------------------------------------ evaluation
    @property
    def monitor(self) -> str:
        """The validation key to minimise: the pseudo-NLL proxy (cheap; not the NLL)."""
        return "valid_pseudo_nll"

    @torch.no_grad()
    def validation_metrics(
        self, x_valid: torch.Tensor, seed: int = 0, ais_chains: int = 0, ais_temperatures: int = 1000, batch_size: int = 1000
    ) -> dict[str, float]:
        """Cheap per-epoch figures on held-out data, each labelled by what it is.

        Returns:
            ``valid_pseudo_nll``: mean pseudo-NLL proxy (fixed flips from ``seed``; *not* the NLL);
            ``valid_free_energy``: mean ``F(x)`` (comparing it with the training data's shows overfitting);
            and, when ``ais_chains > 0``, ``valid_nll_ais_quick``: mean NLL with ``log Z`` from a quick,
            rough AIS run (``ais_chains`` chains, ``ais_temperatures`` temperatures), plus ``valid_log_z_ais_quick``.
        """
        x_valid = self.check_input(x_valid, "x_valid")
        gen = torch.Generator(device=self._device()).manual_seed(seed)
        pnll, fe = [], []
        for start in range(0, x_valid.shape[0], batch_size):
            x = x_valid[start : start + batch_size]
            pnll.append(self.pseudo_nll(x, generator=gen).double())
            fe.append(self._free_energy(x).double())
        out = {"valid_pseudo_nll": float(torch.cat(pnll).mean()), "valid_free_energy": float(torch.cat(fe).mean())}
        if ais_chains > 0:
            ais = self.estimate_log_partition(ais_chains, ais_temperatures, seed=seed)
            out["valid_log_z_ais_quick"] = ais.log_z
            out["valid_nll_ais_quick"] = out["valid_free_energy"] + ais.log_z
        return out

    @torch.no_grad()
    def estimate_log_partition(
        self, n_chains: int = 100, betas: torch.Tensor | int | None = None, seed: int = 0
    ) -> AISResult:
        """AIS estimate of ``log Z`` from the base-rate model (:func:`latentnlp.inference.ais.rbm_ais`).

        Args:
            n_chains: M AIS runs (paper: 100).
            betas: schedule tensor, number of temperatures, or ``None`` for the paper's 14,500.
            seed: seeds the runs.
        """
        gen = torch.Generator(device=self._device()).manual_seed(seed)
        return rbm_ais(self, n_chains=n_chains, betas=betas, generator=gen)

    def exact_log_partition(self) -> float:
        """``log Z`` by enumeration of the smaller layer (only for min(D, H) <= 20)."""
        with torch.no_grad():
            return float(rbm_exact_log_partition(self))

    @torch.no_grad()
    def evaluate(
        self,
        x: torch.Tensor,
        ais_chains: int = 100,
        ais_betas: torch.Tensor | int | None = None,
        seed: int = 0,
        ais: AISResult | None = None,
        batch_size: int = 1000,
    ) -> DensityReport:
        """Mean NLL of ``x`` with ``log Z`` estimated by AIS (Salakhutdinov & Murray 2008).

        Args:
            x: ``(N, D)`` 0/1 examples.
            ais_chains: M AIS runs (paper: 100).
            ais_betas: schedule, number of temperatures, or ``None`` for the paper's 14,500.
            seed: seeds AIS.
            ais: a finished :class:`AISResult` to reuse (e.g. to score valid and test with one ``log Z``);
                ``ais_chains``/``ais_betas``/``seed`` are then ignored.
            batch_size: examples per free-energy batch.

        Returns:
            A :class:`DensityReport` with estimator ``"AIS"``; ``details`` hold ``log_z``, ``log_z_minus_3sd``,
            ``log_z_plus_3sd`` (``None`` when infinite), ``nll_interval_3sd`` (the NLL with ``log Z`` at
            either end), the number of chains and temperatures, the effective sample size and AIS seconds.
            The standard error is over examples only; ``log Z``'s uncertainty shifts every example alike.
        """
        x = self.check_input(x, "x")
        if ais is None:
            ais = self.estimate_log_partition(ais_chains, ais_betas, seed=seed)
        fe = torch.cat([self._free_energy(x[s : s + batch_size]).double() for s in range(0, x.shape[0], batch_size)])
        summary = ais.to_dict()
        mean_fe = float(fe.mean())
        lo, hi = summary["log_z_minus_3sd"], summary["log_z_plus_3sd"]
        return DensityReport.from_log_prob(
            -fe.cpu() - ais.log_z,
            "AIS",
            self.n_dims,
            log_z=ais.log_z,
            log_z_minus_3sd=lo,
            log_z_plus_3sd=hi,
            nll_interval_3sd=[None if lo is None else mean_fe + lo, None if hi is None else mean_fe + hi],
            ais_chains=ais.n_chains,
            ais_temperatures=ais.n_temperatures,
            ais_effective_sample_size=summary["effective_sample_size"],
            ais_base="base-rate model (smoothed data marginals)",
            ais_seconds=ais.seconds,
        )

    # ------------------------------------------------------------------ estimator API
    def fit(
        self,
        x_train: torch.Tensor,
        x_valid: torch.Tensor | None = None,
        config: TrainConfig | None = None,
        run_dir: str | None = None,
        init_seed: int = 0,
        validate_kwargs: dict | None = None,
    ) -> BernoulliRBM:
        """Data-dependent initialisation, then CD-k/PCD training with the shared Trainer.

        Args:
            x_train: ``(N, D)`` 0/1 training data.
            x_valid: held-out data for :meth:`validation_metrics` (never the test set); ``None``: no validation.
            config: optimisation settings; default SGD, momentum 0.5, lr 0.05, linear decay, batch 100.
            run_dir: checkpoints and metrics; training resumes from a checkpoint found there (the
                initialisation is then overwritten by the checkpoint's state).
            init_seed: seeds the choice of the chains' starting examples.
            validate_kwargs: extra keywords for :meth:`validation_metrics` (e.g. ``ais_chains``).

        Returns:
            ``self``, with ``train_result_``.
        """
        from ...training.trainer import TrainConfig, Trainer

        if config is None:
            config = TrainConfig(optimizer="sgd", momentum=0.5, learning_rate=0.05, lr_schedule="linear",
                                 batch_size=100, monitor=self.monitor, patience=0)
        x_train = self.check_input(x_train, "x_train")
        self.init_from_data(x_train, torch.Generator().manual_seed(init_seed))
        validate = None
        if x_valid is not None:
            x_valid = self.check_input(x_valid, "x_valid")
            kwargs = validate_kwargs or {}
            keys = self.validation_metrics(x_valid[:1], **(kwargs | {"ais_chains": 0}))
            if config.monitor not in keys and not (kwargs.get("ais_chains") and config.monitor.endswith("ais_quick")):
                raise ValueError(f"TrainConfig.monitor is {config.monitor!r}; an RBM validates {sorted(keys)} (use {self.monitor!r})")

            def validate(model: BernoulliRBM) -> dict[str, float]:
                return model.validation_metrics(x_valid, **kwargs)

        trainer = Trainer(self, config, n_train=x_train.shape[0], collate=lambda idx: x_train[idx], validate=validate, run_dir=run_dir)
        self.train_result_: TrainResult = trainer.fit()
        return self

