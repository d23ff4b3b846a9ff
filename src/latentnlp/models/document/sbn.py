"""Discrete-latent document models trained with NVIL (Mnih & Gregor 2014, Sec. 6.2).

A document ``d`` is a bag of ``N_d`` words over a vocabulary of size ``V``; ``x`` is its
``(V,)`` count vector. The generative model has ``K`` binary latent units ``h``:

    h ~ P(h)                                       (K = latent_dim; paper: 50 and 200)
    w_i | h ~ Categorical(softmax(R h + b_w))      (R: V x K, b_w: V; i = 1..N_d)

with one of two priors (``SBNConfig.prior``):

* ``"factorized"`` (SBN, a one-layer sigmoid belief net, Neal 1992):
  ``P(h) = prod_k Bernoulli(h_k; sigmoid(b_k))``;
* ``"darn"`` (fDARN, the autoregressive prior of Gregor et al. 2014):
  ``P(h) = prod_k Bernoulli(h_k; sigmoid(b_k + sum_{j<k} A_kj h_j))`` with ``A``
  strictly lower triangular (the upper triangle and diagonal of the parameter are masked
  out, so ``P(h_k | h_<k)`` never reads ``h_j`` for ``j >= k`` and ``P`` is normalised by
  the chain rule).

``log P(x | h) = sum_v x_v log softmax(R h + b_w)_v`` in nats: the multinomial coefficient
is left out, as in Mnih & Gregor (2014) and Miao et al. (2016), so perplexities are
comparable with theirs (and with :class:`~latentnlp.models.document.nvdm.NVDM`).

The inference network is ``Q(h | x) = prod_k Bernoulli(h_k; sigmoid(f(t(x))_k))`` with
``f`` affine (``encoder_hidden = 0``: the paper's linear sigmoid-belief inference network)
or an MLP with one hidden layer, and ``t`` the input transform (``SBNConfig.input_transform``):
``"log1p"`` (``log(1 + x)``, the default: damps the counts of frequent words so long
documents do not saturate the sigmoid units), ``"counts"`` (raw ``x``) or
``"frequencies"`` (``x / N_d``). The transform is this toolkit's choice, not the paper's.

Training maximises the ELBO ``L(x) = E_Q[log P(x, h) - log Q(h | x)]`` with NVIL
(:class:`~latentnlp.inference.nvil.NVILEstimator`: score-function gradient for ``Q``,
centred by a running mean and an input-dependent baseline on ``t(x)``, variance
normalised). The baseline gets a learnable term linear in the counts,
``sum_v beta_v x_v`` with ``beta`` started at the log unigram distribution
(``SBNConfig.baseline_word_weights``, this toolkit's addition): with the paper's MLP alone
the baseline's residual stayed near 1.5e6 nats^2 on 20 Newsgroups, variance normalisation
then shrank the inference network's steps a thousandfold and the KL stalled below 2 nats
(test IW perplexity 1041 for SBN-50); with the linear term the residual falls to ~2e3
nats^2 within the first epoch. ``h`` is sampled by comparing uniforms drawn by the Trainer
(:meth:`DocumentSBN.sample_noise`) with ``Q``'s probabilities, so a resumed run sees the
same numbers as an uninterrupted one. The model's forward returns the honest per-document
``"loss"`` ``-(log P(x, h) - log Q(h | x))`` (nats; its mean is ``-ELBO``) and the
``"surrogate"`` the Trainer differentiates.

Evaluation (:meth:`DocumentSBN.evaluate`) reports the per-document perplexity
``exp(mean_d -log p(d) / N_d)`` from the ELBO (an upper bound) and from the
importance-weighted estimate ``log mean_k P(x, h_k) / Q(h_k | x)``, ``h_k ~ Q`` (Burda et
al. 2016; a tighter bound in expectation), labelled as such in the
:class:`~latentnlp.evaluation.perplexity.PerplexityReport`.

Sources: A. Mnih and K. Gregor, "Neural Variational Inference and Learning in Belief
Networks", ICML 2014 (Sec. 6.2 document modelling); K. Gregor, I. Danihelka, A. Mnih,
C. Blundell and D. Wierstra, "Deep AutoRegressive Networks", ICML 2014 (DARN);
R. M. Neal, "Connectionist learning of belief networks", Artificial Intelligence 56, 1992
(SBN); Y. Burda, R. Grosse and R. Salakhutdinov, "Importance Weighted Autoencoders",
ICLR 2016; Y. Miao, L. Yu and P. Blunsom, "Neural Variational Inference for Text
Processing", ICML 2016 (perplexity conventions).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...evaluation.perplexity import PerplexityReport
from ...inference.importance import iw_log_mean_exp
from ...inference.nvil import NVILConfig, NVILEstimator
from .nvdm import ELBOTerms

if TYPE_CHECKING:  # pragma: no cover
    from ...data.bow import BowCorpus
    from ...training.trainer import TrainConfig

__all__ = ["SBNConfig", "DocumentSBN", "PRIORS", "INPUT_TRANSFORMS"]

PRIORS = ("factorized", "darn")
INPUT_TRANSFORMS = ("log1p", "counts", "frequencies")
_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
_DECODER_BIAS_INIT = ("zero", "unigram")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass
class SBNConfig:
    """Architecture of the discrete-latent document model; paper values per field.

    Attributes:
        vocab_size: V, words in the vocabulary (2,000 for 20 Newsgroups).
        latent_dim: K, binary latent units (paper: 50 and 200).
        prior: ``"factorized"`` (SBN) or ``"darn"`` (fDARN, autoregressive prior).
        encoder_hidden: hidden units of the inference network; ``0`` (default) is the
            paper's linear inference network ``sigmoid(W t(x) + c)``.
        encoder_activation: nonlinearity of the hidden layer when ``encoder_hidden > 0``
            (tanh / relu / sigmoid).
        input_transform: ``t(x)`` fed to the inference network and the NVIL baseline:
            ``"log1p"`` (default), ``"counts"`` or ``"frequencies"`` (module docstring).
        decoder_bias_init: ``"unigram"`` starts ``b_w`` at the log unigram distribution of
            the training corpus (add-one smoothed; only shortens training) or ``"zero"``.
        baseline_word_weights: add to NVIL's input-dependent baseline a learnable term linear
            in the word counts, ``sum_v beta_v x_v`` (``beta`` starts at the log unigram
            distribution), so the baseline predicts the length-dependent bulk of the learning
            signal (hundreds to thousands of nats per document) from the first step and the
            MLP only models the rest. This toolkit's choice (default on); ``False`` is the
            paper's MLP-only baseline, whose residual stays near 10^6 nats^2 on 20 Newsgroups
            and shrinks the inference network's variance-normalised steps.
        train_samples: S, latent samples per document and training step (paper: 1).
        nvil: the estimator's variance reduction, an :class:`NVILConfig` or a dict of its
            fields (default: the paper's full method, ``centering="both"``, variance
            normalisation, ``alpha=0.8``, a 100-unit baseline).

    Raises:
        ValueError: a field out of range or of the wrong type (the message names it).
    """

    vocab_size: int
    latent_dim: int = 50
    prior: str = "factorized"
    encoder_hidden: int = 0
    encoder_activation: str = "tanh"
    input_transform: str = "log1p"
    decoder_bias_init: str = "unigram"
    baseline_word_weights: bool = True
    train_samples: int = 1
    nvil: NVILConfig = field(default_factory=NVILConfig)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "latent_dim", "train_samples"):
            if not _positive_int(getattr(self, name)):
                raise ValueError(f"SBNConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if isinstance(self.encoder_hidden, bool) or not isinstance(self.encoder_hidden, int) or self.encoder_hidden < 0:
            raise ValueError(f"SBNConfig.encoder_hidden must be an integer >= 0, got {self.encoder_hidden!r}")
        if not isinstance(self.baseline_word_weights, bool):
            raise ValueError(f"SBNConfig.baseline_word_weights must be a bool, got {self.baseline_word_weights!r}")
        if self.prior not in PRIORS:
            raise ValueError(f"SBNConfig.prior must be one of {PRIORS}, got {self.prior!r}")
        if self.encoder_activation not in _ACTIVATIONS:
            raise ValueError(
                f"SBNConfig.encoder_activation must be one of {sorted(_ACTIVATIONS)}, got {self.encoder_activation!r}"
            )
        if self.input_transform not in INPUT_TRANSFORMS:
            raise ValueError(f"SBNConfig.input_transform must be one of {INPUT_TRANSFORMS}, got {self.input_transform!r}")
        if self.decoder_bias_init not in _DECODER_BIAS_INIT:
            raise ValueError(
                f"SBNConfig.decoder_bias_init must be one of {_DECODER_BIAS_INIT}, got {self.decoder_bias_init!r}"
            )
        if isinstance(self.nvil, dict):
            known = {f.name for f in fields(NVILConfig)}
            unknown = sorted(set(self.nvil) - known)
            if unknown:
                raise ValueError(f"SBNConfig.nvil has unknown fields {unknown}; NVILConfig has {sorted(known)}")
            self.nvil = NVILConfig(**self.nvil)
        elif not isinstance(self.nvil, NVILConfig):
            raise ValueError(f"SBNConfig.nvil must be an NVILConfig or a dict of its fields, got {type(self.nvil).__name__}")

    def to_dict(self) -> dict:
        """Plain JSON-able fields (``nvil`` as a nested dict); ``SBNConfig(**to_dict())`` round-trips."""
        return asdict(self)


def _bernoulli_log_prob(h: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``sum_k log Bernoulli(h_k; sigmoid(logits_k))`` over the last dimension, stable in the logits."""
    return (h * logits - F.softplus(logits)).sum(-1)


class DocumentSBN(nn.Module):
    """Sigmoid belief net (SBN) or fDARN document model with a Bernoulli inference network.

    Args:
        config: an :class:`SBNConfig` (or the same fields as keywords).

    Parameters: ``prior_bias`` ``(K,)`` (``b``); with ``prior="darn"`` also ``prior_weight``
    ``(K, K)`` of which only the strictly lower triangle is used (:attr:`prior_matrix`);
    ``encoder`` (``t(x) -> (B, K)`` logits of ``Q``); ``decoder`` (weight ``R`` ``(V, K)``,
    bias ``b_w`` ``(V,)``); ``nvil`` (baseline MLP and running statistics, buffers).

    Shapes: ``x`` is ``(B, V)`` float counts; ``h`` is ``(B, K)`` or ``(S, B, K)`` with 0/1
    entries in the model's dtype. Log-probabilities are nats per document.

    Raises:
        TypeError: both a config and keyword fields given.
        ValueError: from :class:`SBNConfig`.
    """

    def __init__(self, config: SBNConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = SBNConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either an SBNConfig or keyword fields, not both")
        self.config = config
        V, K = config.vocab_size, config.latent_dim
        self.prior_bias = nn.Parameter(torch.zeros(K))  # b: P(h_k = 1) = 1/2 at the start
        if config.prior == "darn":
            self.prior_weight = nn.Parameter(torch.zeros(K, K))  # A; starts as the factorised prior
            self.register_buffer("prior_mask", torch.ones(K, K).tril(-1), persistent=False)
        else:
            self.prior_weight = None
            self.prior_mask = None
        if config.encoder_hidden == 0:
            self.encoder: nn.Module = nn.Linear(V, K)  # W t(x) + c
        else:
            self.encoder = nn.Sequential(
                nn.Linear(V, config.encoder_hidden), _ACTIVATIONS[config.encoder_activation](), nn.Linear(config.encoder_hidden, K)
            )
        self.decoder = nn.Linear(K, V)  # R h + b_w: (..., K) -> (..., V)
        nn.init.zeros_(self.decoder.bias)
        self.nvil = NVILEstimator(config.nvil, input_dim=V, n_layers=1)
        # beta of the baseline's linear term (config.baseline_word_weights; used only with an input baseline)
        self.baseline_word_weight = (
            nn.Parameter(torch.zeros(V)) if config.baseline_word_weights and config.nvil.uses_input else None
        )

    # ------------------------------------------------------------------ model
    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def _device(self) -> torch.device:
        return self.decoder.weight.device

    def _dtype(self) -> torch.dtype:
        return self.decoder.weight.dtype

    def init_decoder_bias(self, word_counts: torch.Tensor) -> None:
        """Set ``b_w`` to the log unigram distribution when ``decoder_bias_init == "unigram"``.

        The baseline's word weights ``beta`` (``baseline_word_weights``) start at the same
        log unigram distribution whatever ``decoder_bias_init`` is.

        Args:
            word_counts: ``(V,)`` training-corpus counts of each word (add-one smoothed here).

        Raises:
            ValueError: if ``word_counts`` does not have ``V`` entries.
        """
        from .common import set_unigram_bias

        if self.config.decoder_bias_init == "unigram":
            set_unigram_bias(self.decoder.bias, word_counts)
        if self.baseline_word_weight is not None:
            set_unigram_bias(self.baseline_word_weight, word_counts)

    def baseline_offset(self, x: torch.Tensor) -> torch.Tensor | None:
        """The baseline's linear term ``sum_v beta_v x_v``: ``(B, V) -> (B,)`` nats, or ``None`` without one."""
        if self.baseline_word_weight is None:
            return None
        return x.detach().to(self._dtype()) @ self.baseline_word_weight

    def _check_x(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.config.vocab_size:
            raise ValueError(f"x must have shape (B, {self.config.vocab_size}), got {tuple(x.shape)}")

    def _check_h(self, h: torch.Tensor) -> None:
        if h.dim() < 1 or h.shape[-1] != self.config.latent_dim:
            raise ValueError(f"h must have shape (..., {self.config.latent_dim}), got {tuple(h.shape)}")

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """``t(x)``: ``(B, V) -> (B, V)``, the input of ``Q`` and of the NVIL baseline."""
        self._check_x(x)
        x = x.to(self._dtype())
        if self.config.input_transform == "log1p":
            return torch.log1p(x)
        if self.config.input_transform == "frequencies":
            return x / x.sum(-1, keepdim=True).clamp(min=1.0)
        return x

    def posterior_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``Q(h_k = 1 | x)``: ``(B, V) -> (B, K)``.

        Raises:
            ValueError: if ``x`` is not ``(B, V)``.
        """
        return self.encoder(self.encoder_input(x))

    @property
    def prior_matrix(self) -> torch.Tensor | None:
        """The strictly lower-triangular ``A`` ``(K, K)`` of the fDARN prior (``None`` for SBN)."""
        if self.prior_weight is None:
            return None
        return self.prior_weight * self.prior_mask

    def prior_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Logits of ``P(h_k = 1 | h_<k)``: ``b_k + sum_{j<k} A_kj h_j``, ``(..., K) -> (..., K)``.

        For the factorised prior this is ``b`` broadcast to ``h``'s shape. Entry ``k`` of
        the result does not depend on ``h_j`` for ``j >= k``.
        """
        self._check_h(h)
        A = self.prior_matrix
        if A is None:
            return self.prior_bias.expand(h.shape)
        return h @ A.T + self.prior_bias

    def log_prior(self, h: torch.Tensor) -> torch.Tensor:
        """``log P(h)``: ``(..., K) -> (...)``, nats (the chain rule for fDARN)."""
        return _bernoulli_log_prob(h, self.prior_logits(h))

    def log_posterior(self, h: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``log Q(h | x)`` given ``logits = posterior_logits(x)`` ``(B, K)``: ``(..., B, K) -> (..., B)``."""
        return _bernoulli_log_prob(h, logits)

    def word_log_probs(self, h: torch.Tensor) -> torch.Tensor:
        """``log softmax(R h + b_w)``: ``(..., K) -> (..., V)``."""
        return torch.log_softmax(self.decoder(h), dim=-1)

    def log_likelihood_given_h(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``log P(x | h) = sum_v x_v log softmax(R h + b_w)_v`` (no multinomial coefficient), nats.

        Args:
            x: ``(B, V)`` counts.
            h: ``(B, K)`` or ``(S, B, K)`` binary latents.

        Returns:
            ``(B,)`` or ``(S, B)``.
        """
        self._check_x(x)
        self._check_h(h)
        return (self.word_log_probs(h) * x.to(self._dtype())).sum(-1)

    def log_joint(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``log P(x, h) = log P(h) + log P(x | h)``: ``(B, V), (..., B, K) -> (..., B)``, nats."""
        return self.log_prior(h) + self.log_likelihood_given_h(x, h)

    # ------------------------------------------------------------------ sampling
    def sample_noise(
        self, batch_size: int, generator: torch.Generator | None = None, n_samples: int | None = None
    ) -> torch.Tensor:
        """Uniforms in ``[0, 1)`` of shape ``(S, batch_size, K)`` that :meth:`sample_posterior` turns into ``h``.

        ``S = n_samples``, by default ``config.train_samples``. The Trainer draws the noise of
        a whole global batch here from its own generator and hands each process its slice
        (batch on dim 1), so one- and multi-process runs, and resumed ones, see the same numbers.
        """
        s = self.config.train_samples if n_samples is None else n_samples
        if not _positive_int(s):
            raise ValueError(f"n_samples must be a positive integer, got {s!r}")
        where = generator.device if generator is not None else self._device()
        u = torch.rand(s, batch_size, self.config.latent_dim, generator=generator, device=where, dtype=self._dtype())
        return u.to(self._device())

    def sample_posterior(self, logits: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``h = 1[u < sigmoid(logits)]``, a sample of ``Q``: ``(B, K), (S, B, K) -> (S, B, K)``, no gradient.

        Raises:
            ValueError: if ``noise`` is not ``(S, B, K)``.
        """
        if noise.dim() != 3 or noise.shape[1:] != logits.shape:
            raise ValueError(f"noise must have shape (S, {logits.shape[0]}, {logits.shape[1]}), got {tuple(noise.shape)}")
        return (noise.to(logits) < torch.sigmoid(logits.detach())).to(logits.dtype)

    # ------------------------------------------------------------------ training
    def loss_terms(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Training interface used by :class:`latentnlp.training.Trainer`, with NVIL.

        Args:
            x: ``(B, V)`` word counts.
            noise: ``(S, B, K)`` uniforms from :meth:`sample_noise`; drawn from torch's global
                generator if ``None``.

        Returns:
            ``(B,)`` per-document tensors, means over the ``S`` samples: ``"loss"``
            ``-(log P(x, h) - log Q(h|x))`` (nats, detached; its expectation is ``-ELBO``),
            ``"surrogate"`` (what to differentiate; NVIL's gradient), ``"reconstruction"``
            (``-log P(x|h)``), ``"kl"`` (the one-sample estimate ``log Q(h|x) - log P(h)``)
            and the estimator's diagnostics (``"centered_signal"``, ...). In training mode
            the estimator's running statistics advance.
        """
        logits = self.posterior_logits(x)  # (B, K)
        if noise is None:
            noise = self.sample_noise(x.shape[0])
        h = self.sample_posterior(logits, noise)  # (S, B, K)
        log_lik = self.log_likelihood_given_h(x, h)  # (S, B), graph over R, b_w
        log_prior = self.log_prior(h)  # (S, B), graph over b, A
        log_q = self.log_posterior(h, logits)  # (S, B), graph over the encoder
        out = self.nvil(log_lik + log_prior, log_q, self.encoder_input(x), self.baseline_offset(x))
        out["reconstruction"] = -log_lik.detach().mean(0)
        out["kl"] = (log_q - log_prior).detach().mean(0)
        return out

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Same as :meth:`loss_terms` (the training loop calls the module, as DDP requires)."""
        return self.loss_terms(x, noise)

    def optimization_phases(self, alternate: bool) -> dict[str, list[nn.Parameter]]:
        """Parameter groups the trainer steps in turn.

        ``alternate=False``: one joint phase. ``True``: ``"encoder"`` (the inference network
        and the NVIL baseline) and ``"decoder"`` (prior and word distribution), each updated
        with the other held fixed, as NVDM's alternating scheme.
        """
        if not alternate:
            return {"joint": list(self.parameters())}
        decoder = [self.prior_bias, *([self.prior_weight] if self.prior_weight is not None else []), *self.decoder.parameters()]
        baseline = [self.baseline_word_weight] if self.baseline_word_weight is not None else []
        return {"encoder": [*self.encoder.parameters(), *self.nvil.parameters(), *baseline], "decoder": decoder}

    # ------------------------------------------------------------------ bounds
    def _kl_factorized(self, logits: torch.Tensor) -> torch.Tensor:
        """``KL(Q(h|x) || P(h))`` in closed form for the factorised prior: ``(B, K) -> (B,)``, nats."""
        prior = self.prior_bias.to(logits)
        q = torch.sigmoid(logits)
        kl = q * (F.logsigmoid(logits) - F.logsigmoid(prior)) + (1 - q) * (F.logsigmoid(-logits) - F.logsigmoid(-prior))
        return kl.sum(-1)

    @torch.no_grad()
    def elbo(
        self,
        x: torch.Tensor,
        n_samples: int = 1,
        generator: torch.Generator | None = None,
        chunk_size: int = 25,
    ) -> ELBOTerms:
        """Per-document ELBO ``E_Q[log P(x, h) - log Q(h | x)]`` by Monte Carlo.

        ``reconstruction = E_Q[log P(x | h)]`` is averaged over ``n_samples`` samples of
        ``Q``; ``kl = KL(Q(h|x) || P(h))`` is exact (a sum of Bernoulli KLs) for the
        factorised prior and a Monte-Carlo estimate from the same samples for fDARN. Both
        are unbiased for the ELBO.

        Args:
            x: ``(B, V)`` word counts.
            n_samples: S >= 1.
            generator: random source of the samples.
            chunk_size: samples processed at once (memory ``chunk_size * B * V`` floats).

        Returns:
            :class:`~latentnlp.models.document.nvdm.ELBOTerms` of ``(B,)`` tensors, nats.

        Raises:
            ValueError: ``x`` not ``(B, V)`` or ``n_samples < 1``.
        """
        if not _positive_int(n_samples):
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        logits = self.posterior_logits(x)
        rec = torch.zeros(x.shape[0], dtype=logits.dtype, device=logits.device)
        kl = torch.zeros_like(rec)
        for start in range(0, n_samples, chunk_size):
            s = min(chunk_size, n_samples - start)
            h = self.sample_posterior(logits, self.sample_noise(x.shape[0], generator, s))
            rec += self.log_likelihood_given_h(x, h).sum(0)
            if self.config.prior == "darn":
                kl += (self.log_posterior(h, logits) - self.log_prior(h)).sum(0)
        rec = rec / n_samples
        kl = self._kl_factorized(logits) if self.config.prior == "factorized" else kl / n_samples
        return ELBOTerms(elbo=rec - kl, reconstruction=rec, kl=kl)

    @torch.no_grad()
    def iw_log_likelihood(
        self,
        x: torch.Tensor,
        n_samples: int,
        generator: torch.Generator | None = None,
        chunk_size: int = 25,
    ) -> torch.Tensor:
        """Importance-weighted estimate of ``log p(d)`` with ``Q(h|x)`` as proposal (Burda et al. 2016).

        ``log (1/S) sum_s P(x, h_s) / Q(h_s | x)``, ``h_s ~ Q``: its expectation is a lower
        bound on ``log p(d)`` that is at least the ELBO and tightens as ``S`` grows.

        Args:
            x: ``(B, V)`` counts.
            n_samples: S >= 1 importance samples per document.
            generator: random source.
            chunk_size: samples processed at once (memory ``chunk_size * B * V`` floats).

        Returns:
            ``(B,)`` estimates, nats.

        Raises:
            ValueError: ``x`` not ``(B, V)`` or ``n_samples < 1``.
        """
        if not _positive_int(n_samples):
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        logits = self.posterior_logits(x)
        log_w = []
        for start in range(0, n_samples, chunk_size):
            s = min(chunk_size, n_samples - start)
            h = self.sample_posterior(logits, self.sample_noise(x.shape[0], generator, s))  # (s, B, K)
            log_w.append(self.log_joint(x, h) - self.log_posterior(h, logits))  # (s, B)
        return iw_log_mean_exp(torch.cat(log_w, 0), dim=0)

    # --------------------------------------------------------- corpus-level API
    @torch.no_grad()
    def evaluate(
        self,
        corpus: "BowCorpus",
        elbo_samples: int = 20,
        iw_samples: int = 100,
        batch_size: int = 500,
        seed: int = 0,
    ) -> PerplexityReport:
        """Per-document and corpus perplexities of ``corpus`` from the ELBO bound and the IW estimate.

        Args:
            corpus: documents to score (no empty documents; V must match the model).
            elbo_samples: samples of ``Q`` averaged in each document's ELBO.
            iw_samples: S of the importance-weighted estimate; 0 skips it.
            batch_size: documents per forward pass.
            seed: seeds the samples, so the result is deterministic.

        Returns:
            A :class:`PerplexityReport` (``bound_*`` from the ELBO, an upper bound on
            perplexity; ``estimate_*`` from the IW estimate; ``kl_nats_per_doc`` as in
            :meth:`elbo`).

        Raises:
            ValueError: vocabulary size mismatch, empty documents (from the report).
        """
        if corpus.vocab_size != self.config.vocab_size:
            raise ValueError(f"corpus has V = {corpus.vocab_size}, the model has V = {self.config.vocab_size}")
        was_training = self.training
        self.eval()
        gen = torch.Generator(device=self._device()).manual_seed(seed)
        elbos, kls, iws = [], [], []
        try:
            for start in range(0, len(corpus), batch_size):
                idx = list(range(start, min(start + batch_size, len(corpus))))
                x = corpus.to_dense(idx, dtype=self._dtype()).to(self._device())
                terms = self.elbo(x, n_samples=elbo_samples, generator=gen)
                elbos.append(terms.elbo.double().cpu())
                kls.append(terms.kl.double().cpu())
                if iw_samples > 0:
                    iws.append(self.iw_log_likelihood(x, iw_samples, generator=gen).double().cpu())
        finally:
            self.train(was_training)
        lengths = torch.as_tensor(corpus.doc_lengths, dtype=torch.float64)
        return PerplexityReport.from_log_likelihoods(
            elbo=torch.cat(elbos) if elbos else torch.zeros(0, dtype=torch.float64),
            kl=torch.cat(kls) if kls else torch.zeros(0, dtype=torch.float64),
            lengths=lengths,
            elbo_samples=elbo_samples,
            iw_log_p=torch.cat(iws) if iws else None,
            iw_samples=iw_samples,
        )

    @torch.no_grad()
    def transform(self, corpus: "BowCorpus", batch_size: int = 1000) -> torch.Tensor:
        """Posterior probabilities ``Q(h_k = 1 | d)`` of every document: ``(D, K)``."""
        was_training = self.training
        self.eval()
        out = []
        for start in range(0, len(corpus), batch_size):
            idx = list(range(start, min(start + batch_size, len(corpus))))
            x = corpus.to_dense(idx, dtype=self._dtype()).to(self._device())
            out.append(torch.sigmoid(self.posterior_logits(x)).cpu())
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.latent_dim)

    def topic_words(self, vocab: Sequence[str], n_words: int = 10) -> list[list[str]]:
        """For each latent unit ``k``, the ``n_words`` words with the largest ``R[:, k]``.

        Switching ``h_k`` on adds column ``k`` of ``R`` to the word logits, so these are the
        words it makes most likely. Returns K lists of words.

        Raises:
            ValueError: if ``vocab`` does not have ``V`` words.
        """
        if len(vocab) != self.config.vocab_size:
            raise ValueError(f"vocab has {len(vocab)} words, the model has V = {self.config.vocab_size}")
        R = self.decoder.weight.detach().cpu()  # (V, K)
        top = R.topk(min(n_words, len(vocab)), dim=0).indices.T  # (K, n)
        return [[vocab[i] for i in row.tolist()] for row in top]

    def nearest_words(self, word: str, vocab: Sequence[str], n_words: int = 10) -> list[tuple[str, float]]:
        """Words nearest to ``word`` by cosine similarity of the decoder rows ``R[v, :]``.

        Raises:
            KeyError: if ``word`` is not in ``vocab``.
        """
        index = {w: i for i, w in enumerate(vocab)}
        if word not in index:
            raise KeyError(f"{word!r} is not in the model's vocabulary of {len(vocab)} words")
        R = F.normalize(self.decoder.weight.detach().cpu(), dim=1)  # (V, K)
        sims = R @ R[index[word]]  # (V,)
        sims[index[word]] = -math.inf
        top = sims.topk(min(n_words, len(vocab) - 1))
        return [(vocab[i], float(s)) for i, s in zip(top.indices.tolist(), top.values.tolist())]

    # ------------------------------------------------------------ estimator API
    def fit(
        self,
        train: "BowCorpus",
        valid: "BowCorpus | None" = None,
        config: "TrainConfig | None" = None,
        run_dir: str | None = None,
        valid_elbo_samples: int = 10,
    ) -> "DocumentSBN":
        """Train with NVIL on ``train`` with the shared :class:`~latentnlp.training.Trainer`.

        Args:
            train: training documents (V must match the model).
            valid: held-out documents for validation and early stopping (a part of the
                training set; never the test set). ``None``: no validation.
            config: optimisation settings (:class:`~latentnlp.training.TrainConfig`); its
                ``monitor`` defaults to ``"valid_perplexity_bound"``, which validation reports.
            run_dir: folder for checkpoints and the metrics log; training resumes from its
                checkpoint if one is there.
            valid_elbo_samples: samples per document in the validation ELBO (fixed seed).

        Returns:
            ``self``, with ``train_result_`` (a :class:`~latentnlp.training.TrainResult`).

        Raises:
            ValueError: if a corpus's vocabulary size differs from the model's.
        """
        from .common import fit_bow_model

        def validate(model: "DocumentSBN") -> dict[str, float]:
            report = model.evaluate(valid, elbo_samples=valid_elbo_samples, iw_samples=0, seed=12345)
            return {
                "valid_perplexity_bound": report.bound_per_document,
                "valid_corpus_perplexity_bound": report.bound_corpus,
                "valid_kl": report.kl_nats_per_doc,
            }

        return fit_bow_model(self, train, valid, config, run_dir, validate, dtype=self._dtype(), device=self._device())

    def extra_repr(self) -> str:
        c = self.config
        return f"prior={c.prior!r}, latent_dim={c.latent_dim}, vocab_size={c.vocab_size}, encoder_hidden={c.encoder_hidden}"
