"""The sentence variational autoencoder of Bowman, Vilnis, Vinyals, Dai, Jozefowicz & Bengio (2016).

"Generating Sentences from a Continuous Space" (CoNLL 2016). A sentence
``x = w_1 .. w_n`` gets a continuous code ``z`` of ``D = latent_dim`` dimensions
(Bowman: 13):

    z ~ N(0, I_D)                                              (prior p(z); or a fitted mixture, below)
    p(x | z) = prod_t p(w_t | w_<t, z)                          (an RNN language model, w_{n+1} = <eos>)
    q(z | x) = N(mu(x), diag(exp(logvar(x))))                   (the encoder)

* **encoder**: an embedding and an LSTM/GRU (optionally bidirectional) read the
  decoder's inputs ``<bos> w_1 .. w_n`` (packed by length); two linear maps of the
  top layer's final hidden state (both directions concatenated) give the mean and
  the log-variance of ``q(z|x)``.
* **decoder**: an :class:`~latentnlp.models.language.rnnlm.RNNLanguageModel` with
  ``context_dim = D``: ``z`` sets the initial hidden state of every layer through
  ``tanh(W z + b)`` (Bowman Sec. 3). ``feed_context`` also concatenates ``z`` to
  the input at every step (not in Bowman's model; a common remedy for posterior
  collapse). The decoder has its own embedding unless ``share_embedding``, in
  which case the encoder reads the decoder's embedding table.

Per sentence, in nats,

    ELBO(x) = E_q[log p(x | z)] - KL(q(z|x) || p(z))  <=  log p(x)

with the expectation estimated by reparameterised samples and the KL in closed
form, ``KL = 1/2 sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j)`` (Kingma & Welling
2014, App. B).

Training (:meth:`SentenceVAE.forward`, for the shared
:class:`~latentnlp.training.trainer.Trainer`) minimises

    loss(x) = -E_q[log p(x | z)] + beta_t * KL_objective(x)

with Bowman's two devices against posterior collapse and two later ones:

* **KL annealing** (Bowman Sec. 3.1): ``beta_t`` rises from 0 to 1 with the
  training step ``t``: ``"linear"``, ``"sigmoid"`` (Bowman's logistic curve),
  ``"cyclical"`` (Fu, Li, Liu, Gao, Celikyilmaz & Carin 2019: ``M`` cycles, each
  spending a fraction ``R`` rising linearly from 0 to 1 and the rest at 1) or
  ``"constant"`` (1). ``t`` is the ``kl_step`` buffer, saved with the weights, so a
  resumed run continues the schedule exactly;
* **word dropout** (Bowman Sec. 3.2): during training each decoder input word
  (never ``<bos>``) is replaced by ``<unk>`` with probability ``word_dropout``,
  so the decoder must rely on ``z``. Off in eval mode;
* **free bits** (Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling 2016,
  Eq. 15): ``KL_objective = sum_j max(lambda, KL_j)``, ``KL_j`` the batch mean of
  dimension ``j``'s KL, so dimensions below ``lambda`` nats get no pressure;
* the reported ``"elbo"`` is always the honest, unannealed one.

**Fitted mixture prior** (``prior_components = M > 0``): ``p(z) = sum_m pi_m N(z; mu_m,
diag(sigma_m^2))``. The prior that maximises the ELBO for a fixed encoder and decoder is the
aggregate posterior ``q(z) = E_x q(z|x)`` (Hoffman & Johnson 2016, "ELBO surgery"): with it the
average KL falls to the mutual information ``I(x; z)``, and ``KL(q(z) || N(0, I))`` nats stop
being wasted. :func:`fit_mixture_prior` fits the mixture to samples of ``q(z|x)`` over a corpus
by EM (scikit-learn's ``GaussianMixture``), as the "ex-post density estimation" of Ghosh,
Sajjadi, Vergari, Black & Schoelkopf (2020) and the second stage of Dai & Wipf (2019); the
mixture weights, means and log-variances are buffers saved with the weights. With a mixture
the KL has no closed form and is a Monte-Carlo estimate (``KL_SAMPLES`` draws per sentence in
evaluation, the training sample in :meth:`SentenceVAE.forward`, where free bits then apply to
the total, ``max(lambda * D, KL)``).

Evaluation: :meth:`SentenceVAE.elbo`, the importance-weighted estimate of
``log p(x)`` (:meth:`SentenceVAE.iw_log_likelihood`, Burda, Grosse &
Salakhutdinov 2016), active units (Burda et al. 2016, Sec. 5.2), the mutual
information ``I(x; z)`` under the encoder (Hoffman & Johnson 2016; He, Spokoyny,
Neubig & Berg-Kirkpatrick 2019) and :func:`evaluate_vae` for a corpus. Generation
(decoding with :mod:`latentnlp.models.language.decoding`): from the prior, from
the posterior (reconstruction) and along the line between two posterior means
(Bowman Table 8's homotopies). All of them return id lists; turn them into words
with :meth:`~latentnlp.data.sentences.SentenceVocabulary.decode`.

Shapes: ``B`` sentences, ``T`` padded steps, ``V`` vocabulary, ``H`` hidden units,
``L`` layers, ``D`` latent dimensions, ``S``/``K`` samples per sentence. Every
log-likelihood, ELBO and KL is in nats per sentence (``<eos>`` predicted).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ...data.sentences import BOS, EOS, SPECIAL, UNK, SentenceBatch, SentenceVocabulary, collate_sentences
from ...inference.importance import iw_log_mean_exp
from .rnnlm import CELLS, NETWORK_FIELDS, RNNLanguageModel, RNNLMConfig, check_cutoffs, perplexities, sentence_batches

__all__ = ["SentenceVAEConfig", "SentenceVAE", "evaluate_vae", "fit_mixture_prior", "posterior_samples", "KL_SCHEDULES", "KL_SAMPLES"]

KL_SCHEDULES = ("constant", "linear", "sigmoid", "cyclical")
BOS_ID, EOS_ID, UNK_ID = SPECIAL.index(BOS), SPECIAL.index(EOS), SPECIAL.index(UNK)
LOG_2PI = math.log(2 * math.pi)
KL_SAMPLES = 64  # Monte-Carlo draws per sentence of the KL under a mixture prior (evaluation)
_SEED_RANGE = 2**24  # word-dropout seeds travel in float noise; float32 holds these integers exactly


@dataclass
class SentenceVAEConfig:
    """Architecture and training devices of the sentence VAE (Bowman et al. 2016's values noted).

    Attributes:
        vocab_size: ``V``, the four special entries of
            :class:`~latentnlp.data.sentences.SentenceVocabulary` included.
        embedding_dim: word embedding size (Bowman: 353).
        hidden_dim: ``H``, units per layer of the encoder and of the decoder (Bowman: 191).
        latent_dim: ``D``, dimension of ``z`` (Bowman: 13).
        cell: ``"lstm"`` (Bowman), ``"gru"`` or ``"rnn"`` (Elman), for both RNNs.
        num_layers: ``L``, stacked layers of each RNN (Bowman: 1).
        dropout: dropout on the non-recurrent connections of both RNNs (embeddings,
            between layers, before the softmax and before the posterior's linear maps).
        encoder_bidirectional: read the sentence in both directions.
        feed_context: also feed ``z`` to the decoder at every step (Bowman: no).
        share_embedding: the encoder reads the decoder's embedding table.
        tie_weights: the decoder's softmax weights are its input embedding (Press &
            Wolf 2017; needs ``embedding_dim == hidden_dim``), as in the RNNLM.
        word_dropout: probability of replacing each decoder input word (not ``<bos>``)
            by ``<unk>`` during training; 1 gives Bowman's "inputless" decoder (their
            word keep rate is ``1 - word_dropout``).
        kl_schedule: ``"constant"``, ``"linear"``, ``"sigmoid"`` or ``"cyclical"`` (module docstring).
        kl_anneal_steps: ``"linear"``: steps from 0 to 1; ``"cyclical"``: steps of all
            ``kl_cycles`` cycles (1 after them); ``"sigmoid"``: twice the default centre.
        kl_sigmoid_rate: ``k`` of ``beta_t = 1 / (1 + exp(-k (t - t0)))``, per step.
        kl_sigmoid_center: ``t0``; ``None``: ``kl_anneal_steps / 2``.
        kl_cycles: ``M``, cycles of the cyclical schedule (Fu et al.: 4).
        kl_cycle_ratio: ``R``, the fraction of each cycle spent rising (Fu et al.: 0.5).
        free_bits: ``lambda``, nats per latent dimension; 0 turns free bits off.
        softmax_cutoffs: the decoder's adaptive-softmax clusters (see
            :class:`~latentnlp.models.language.rnnlm.RNNLMConfig`); ``()``: full softmax.
        init_range: every weight starts uniform in ``[-init_range, init_range]``.
        prior_components: ``M``; 0 (Bowman): ``p(z) = N(0, I)``; ``M > 0``: a mixture of ``M``
            diagonal Gaussians (module docstring), ``M`` copies of ``N(0, I)`` until fitted.
    """

    vocab_size: int
    embedding_dim: int = 353
    hidden_dim: int = 191
    latent_dim: int = 13
    cell: str = "lstm"
    num_layers: int = 1
    dropout: float = 0.0
    encoder_bidirectional: bool = False
    feed_context: bool = False
    share_embedding: bool = False
    tie_weights: bool = False
    word_dropout: float = 0.0
    kl_schedule: str = "sigmoid"
    kl_anneal_steps: int = 5000
    kl_sigmoid_rate: float = 0.0025
    kl_sigmoid_center: float | None = None
    kl_cycles: int = 4
    kl_cycle_ratio: float = 0.5
    free_bits: float = 0.0
    softmax_cutoffs: tuple[int, ...] = ()
    init_range: float = 0.1
    prior_components: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embedding_dim", "hidden_dim", "latent_dim", "num_layers", "kl_anneal_steps", "kl_cycles"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SentenceVAEConfig.{name} must be a positive integer, got {value!r}")
        if self.vocab_size <= len(SPECIAL):
            raise ValueError(f"SentenceVAEConfig.vocab_size must exceed the {len(SPECIAL)} special entries {SPECIAL}, "
                             f"got {self.vocab_size}")
        if self.cell not in CELLS:
            raise ValueError(f"SentenceVAEConfig.cell must be one of {sorted(CELLS)}, got {self.cell!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SentenceVAEConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.word_dropout <= 1.0:
            raise ValueError(f"SentenceVAEConfig.word_dropout must be in [0, 1], got {self.word_dropout!r}")
        if self.kl_schedule not in KL_SCHEDULES:
            raise ValueError(f"SentenceVAEConfig.kl_schedule must be one of {KL_SCHEDULES}, got {self.kl_schedule!r}")
        if not self.kl_sigmoid_rate > 0:
            raise ValueError(f"SentenceVAEConfig.kl_sigmoid_rate must be > 0, got {self.kl_sigmoid_rate!r}")
        if self.kl_sigmoid_center is not None and not math.isfinite(self.kl_sigmoid_center):
            raise ValueError(f"SentenceVAEConfig.kl_sigmoid_center must be finite or None, got {self.kl_sigmoid_center!r}")
        if not 0.0 < self.kl_cycle_ratio <= 1.0:
            raise ValueError(f"SentenceVAEConfig.kl_cycle_ratio must be in (0, 1], got {self.kl_cycle_ratio!r}")
        if not (self.free_bits >= 0.0 and math.isfinite(self.free_bits)):
            raise ValueError(f"SentenceVAEConfig.free_bits must be a finite number >= 0, got {self.free_bits!r}")
        if not isinstance(self.prior_components, int) or isinstance(self.prior_components, bool) or self.prior_components < 0:
            raise ValueError(f"SentenceVAEConfig.prior_components must be an integer >= 0, got {self.prior_components!r}")
        if not self.init_range > 0:
            raise ValueError(f"SentenceVAEConfig.init_range must be > 0, got {self.init_range!r}")
        for name in ("encoder_bidirectional", "feed_context", "share_embedding", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"SentenceVAEConfig.{name} must be True or False, got {getattr(self, name)!r}")
        self.softmax_cutoffs = check_cutoffs(self.softmax_cutoffs, self.vocab_size, "SentenceVAEConfig.softmax_cutoffs")
        if self.tie_weights and self.embedding_dim != self.hidden_dim:
            raise ValueError(f"SentenceVAEConfig.tie_weights needs embedding_dim == hidden_dim, "
                             f"got {self.embedding_dim} and {self.hidden_dim}")

    def to_dict(self) -> dict:
        return {**asdict(self), "softmax_cutoffs": list(self.softmax_cutoffs)}

    def decoder_config(self) -> RNNLMConfig:
        """The decoder's :class:`~latentnlp.models.language.rnnlm.RNNLMConfig` (``context_dim = latent_dim``)."""
        return RNNLMConfig(vocab_size=self.vocab_size, cell=self.cell, embedding_dim=self.embedding_dim,
                           hidden_dim=self.hidden_dim, num_layers=self.num_layers, dropout=self.dropout,
                           init_range=self.init_range, context_dim=self.latent_dim, feed_context=self.feed_context,
                           tie_weights=self.tie_weights, softmax_cutoffs=self.softmax_cutoffs)

    def kl_weight_at(self, step: int) -> float:
        """``beta_t``, the KL weight at training step ``step`` (0-based) under ``kl_schedule``, in [0, 1]."""
        if self.kl_schedule == "constant":
            return 1.0
        if self.kl_schedule == "linear":
            return min(step / self.kl_anneal_steps, 1.0)
        if self.kl_schedule == "sigmoid":
            center = self.kl_anneal_steps / 2 if self.kl_sigmoid_center is None else self.kl_sigmoid_center
            a = -self.kl_sigmoid_rate * (step - center)
            return 1.0 / (1.0 + math.exp(a)) if a < 700 else 0.0  # exp overflows past ~709
        # cyclical (Fu et al. 2019): position tau in [0, 1) within the current cycle
        if step >= self.kl_anneal_steps:
            return 1.0
        period = self.kl_anneal_steps / self.kl_cycles
        tau = (step % period) / period
        return min(tau / self.kl_cycle_ratio, 1.0)


def _in_eval_mode(method):
    """Run ``method`` with the module in eval mode (no dropout, no word dropout), restoring its mode after."""

    @functools.wraps(method)
    def wrapper(self: nn.Module, *args, **kwargs):
        was_training = self.training
        self.eval()
        try:
            return method(self, *args, **kwargs)
        finally:
            self.train(was_training)

    return wrapper


def _gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``log N(z; mean, diag(exp(logvar)))``: ``(..., D)`` -> ``(...)``, nats (arguments broadcast)."""
    return -0.5 * (LOG_2PI + logvar + (z - mean) ** 2 * torch.exp(-logvar)).sum(-1)


def _kl_per_dimension(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, exp(logvar)) || N(0, 1))`` of each dimension, ``(..., D)``, nats (Kingma & Welling 2014, App. B)."""
    return 0.5 * (mean**2 + logvar.exp() - 1.0 - logvar)


def _tile(batch: SentenceBatch, times: int) -> SentenceBatch:
    """``batch`` repeated ``times`` times, sample-major: row ``s * B + b`` is sentence ``b``."""
    if times == 1:
        return batch
    return SentenceBatch(batch.inputs.repeat(times, 1), batch.targets.repeat(times, 1), batch.lengths.repeat(times))


def _batch_to(batch: SentenceBatch, device: torch.device) -> SentenceBatch:
    return SentenceBatch(batch.inputs.to(device), batch.targets.to(device), batch.lengths.to(device))


def _as_batches(batches: SentenceBatch | Iterable[SentenceBatch]) -> list[SentenceBatch]:
    return [batches] if isinstance(batches, SentenceBatch) else list(batches)


class SentenceVAE(nn.Module):
    """Bowman et al. (2016)'s sentence VAE (see the module docstring).

    Args:
        config: a :class:`SentenceVAEConfig` (or the same fields as keywords).

    Attributes:
        decoder: the :class:`~latentnlp.models.language.rnnlm.RNNLanguageModel` ``p(x | z)``.
        kl_step: ``()`` int64 buffer, training forwards run so far (the annealing clock; saved
            in the ``state_dict``).
        prior_logits, prior_means, prior_logvars: ``(M,)``, ``(M, D)``, ``(M, D)`` buffers of the
            mixture prior (only when ``prior_components = M > 0``): unnormalised log weights, means
            and log-variances.
    """

    def __init__(self, config: SentenceVAEConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = SentenceVAEConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a SentenceVAEConfig or keyword fields, not both")
        self.config = c = config
        self.decoder = RNNLanguageModel(c.decoder_config())  # initialises its own weights
        self.encoder_embedding = None if c.share_embedding else nn.Embedding(c.vocab_size, c.embedding_dim)
        directions = 2 if c.encoder_bidirectional else 1
        cell_options = {"nonlinearity": "tanh"} if c.cell == "rnn" else {}
        self.encoder_rnn = CELLS[c.cell](c.embedding_dim, c.hidden_dim, c.num_layers, batch_first=True,
                                         bidirectional=c.encoder_bidirectional,
                                         dropout=c.dropout if c.num_layers > 1 else 0.0, **cell_options)
        self.encoder_drop = nn.Dropout(c.dropout)
        self.to_mean = nn.Linear(directions * c.hidden_dim, c.latent_dim)
        self.to_logvar = nn.Linear(directions * c.hidden_dim, c.latent_dim)
        for module in (self.encoder_embedding, self.encoder_rnn, self.to_mean, self.to_logvar):
            for p in module.parameters() if module is not None else ():
                nn.init.uniform_(p, -c.init_range, c.init_range)
        self.register_buffer("kl_step", torch.zeros((), dtype=torch.long))
        if c.prior_components:
            M, D = c.prior_components, c.latent_dim
            self.register_buffer("prior_logits", torch.zeros(M))
            self.register_buffer("prior_means", torch.zeros(M, D))
            self.register_buffer("prior_logvars", torch.zeros(M, D))

    # ------------------------------------------------------------------ helpers
    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def _device(self) -> torch.device:
        return self.to_mean.weight.device

    @property
    def kl_weight(self) -> float:
        """``beta_t`` at the current ``kl_step`` (the weight the next training forward uses)."""
        return self.config.kl_weight_at(int(self.kl_step))

    def _standard_normal(self, *shape: int, generator: torch.Generator | None) -> torch.Tensor:
        """Standard normals drawn on ``generator``'s device (CPU by default), moved to the model's."""
        device = generator.device if generator is not None else self._device()
        return torch.randn(*shape, generator=generator, device=device).to(self._device())

    # -------------------------------------------------------------------- prior
    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z)``: ``(..., D) -> (...)``, nats (``N(0, I)`` or the mixture)."""
        if not self.config.prior_components:
            return _gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        log_components = _gaussian_log_density(z.unsqueeze(-2), self.prior_means, self.prior_logvars)  # (..., M)
        return torch.logsumexp(log_components + torch.log_softmax(self.prior_logits, -1), dim=-1)

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws from the prior ``p(z)``: ``(n, D)`` (on ``generator``'s device, moved to the model's)."""
        eps = self._standard_normal(n, self.latent_dim, generator=generator)
        if not self.config.prior_components:
            return eps
        device = generator.device if generator is not None else self._device()
        weights = torch.softmax(self.prior_logits, -1).to(device)
        m = torch.multinomial(weights, n, replacement=True, generator=generator).to(self._device())  # (n,)
        return self.prior_means[m] + torch.exp(0.5 * self.prior_logvars[m]) * eps

    def _kl(self, mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
            n_samples: int = KL_SAMPLES) -> torch.Tensor:
        """``KL(q(z|x) || p(z))`` of posteriors ``(B, D)``: ``(B,)``, nats; closed form under ``N(0, I)``,
        the mean of ``log q(z|x) - log p(z)`` over ``n_samples`` draws of ``q`` under a mixture."""
        if not self.config.prior_components:
            return _kl_per_dimension(mean, logvar).sum(-1)
        z = mean + torch.exp(0.5 * logvar) * self._standard_normal(n_samples, *mean.shape, generator=generator)
        return self._log_posterior_over_prior(z, mean, logvar).mean(0)

    def _log_posterior_over_prior(self, z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``log q(z|x) - log p(z)`` at codes ``z`` ``(S, B, D)`` of posteriors ``(B, D)``: ``(S, B)``, nats."""
        return _gaussian_log_density(z, mean, logvar) - self.log_prior(z)

    # ------------------------------------------------------------------ encoder
    def _posterior(self, batch: SentenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, logvar)`` of ``q(z|x)``, each ``(B, D)``, in the module's current mode."""
        c = self.config
        embedding = self.decoder.embedding if self.encoder_embedding is None else self.encoder_embedding
        emb = self.encoder_drop(embedding(batch.inputs))  # (B, T, E): <bos> w_1 .. w_n, then padding
        packed = pack_padded_sequence(emb, batch.lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, state = self.encoder_rnn(packed)
        h = state[0] if c.cell == "lstm" else state  # (L * directions, B, H), in the batch's order
        top = h.view(c.num_layers, -1, h.shape[1], c.hidden_dim)[-1]  # (directions, B, H)
        summary = self.encoder_drop(top.transpose(0, 1).reshape(h.shape[1], -1))  # (B, directions * H)
        return self.to_mean(summary), self.to_logvar(summary)

    @_in_eval_mode
    def encode(self, batch: SentenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``q(z | x)`` in eval mode: ``(mean, logvar)``, each ``(B, D)``; the mean is the sentence's code."""
        return self._posterior(batch)

    # ------------------------------------------------------------------ decoder
    def _log_likelihood_given_z(self, batch: SentenceBatch, z: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)`` for ``z`` ``(S, B, D)``: ``(S, B)``, nats (the ``S`` samples decoded as one batch)."""
        S, B, D = z.shape
        return self.decoder.sentence_log_likelihood(_tile(batch, S), z.reshape(S * B, D)).view(S, B)

    def drop_words(self, batch: SentenceBatch, seeds: torch.Tensor | None = None) -> SentenceBatch:
        """Bowman's word dropout: the batch with decoder input words replaced by ``<unk>`` (training mode only).

        Each of a sentence's ``n`` input words (positions ``1..n``; ``<bos>`` and padding are
        kept) is replaced independently with probability ``word_dropout``. Returns ``batch``
        itself in eval mode or when ``word_dropout == 0``.

        Args:
            batch: the sentences.
            seeds: ``(B,)`` integer-valued seeds, one per sentence (from :meth:`sample_noise`): sentence
                ``b``'s mask is ``torch.rand(n_b) < word_dropout`` on a CPU generator seeded with
                ``seeds[b]``, so it depends on nothing else (batch composition, sharding,
                device). ``None``: drawn from the global torch RNG, like ``nn.Dropout``.
        """
        rate = self.config.word_dropout
        if not self.training or rate == 0.0:
            return batch
        B, T = batch.inputs.shape
        words = batch.mask & (torch.arange(T, device=batch.inputs.device) >= 1)  # (B, T): w_1 .. w_n
        if seeds is None:
            drop = (torch.rand(B, T, device=batch.inputs.device) < rate) & words
        else:
            drop = torch.zeros(B, T, dtype=torch.bool)
            for b, (seed, n) in enumerate(zip(seeds.tolist(), (batch.lengths - 1).tolist())):
                g = torch.Generator().manual_seed(int(seed))
                drop[b, 1 : n + 1] = torch.rand(n, generator=g) < rate
            drop = drop.to(batch.inputs.device)
        return SentenceBatch(batch.inputs.masked_fill(drop, UNK_ID), batch.targets, batch.lengths)

    # ----------------------------------------------------------------- training
    def sample_noise(self, batch_size: int, generator: torch.Generator | None = None, n_samples: int = 1) -> torch.Tensor:
        """The randomness of :meth:`forward`: ``(n_samples, batch_size, D)`` standard normals for
        ``z = mean + exp(logvar / 2) * eps``, plus, when ``word_dropout > 0``, a last column of
        per-sentence word-dropout seeds (integers below 2**24 stored as floats; the same in every
        sample), so the shape is ``(n_samples, batch_size, D + 1)``.

        The Trainer draws the noise of the global batch here and slices it by sentence, so
        training is reproducible on resume and identical on one or several processes.
        """
        eps = self._standard_normal(n_samples, batch_size, self.latent_dim, generator=generator)
        if self.config.word_dropout == 0.0:
            return eps
        device = generator.device if generator is not None else self._device()
        seeds = torch.randint(0, _SEED_RANGE, (1, batch_size, 1), generator=generator, device=device)
        return torch.cat([eps, seeds.to(eps).expand(n_samples, -1, -1)], dim=-1)

    @staticmethod
    def _kl_objective(kl_dims: torch.Tensor, lam: float) -> torch.Tensor:
        """The KL term the training loss weights, ``(B, G) -> (B,)`` over ``G`` groups of latent dimensions.

        Free bits (Kingma et al. 2016): group ``j`` contributes ``KL_bj`` where its batch mean
        exceeds ``lambda`` and the constant ``lambda`` elsewhere, so the batch mean of the result is
        ``sum_j max(lambda, mean_b KL_bj)`` and its gradient that of the max. The groups are the
        ``D`` dimensions under ``N(0, I)`` and one group of all of them under a mixture prior.
        """
        if lam == 0.0:
            return kl_dims.sum(-1)
        above = kl_dims.mean(0) > lam  # (D,)
        return torch.where(above, kl_dims, torch.full_like(kl_dims, lam)).sum(-1)

    def forward(self, x: SentenceBatch, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The Trainer's per-sentence terms, each ``(B,)`` nats (``kl_weight``: the ``beta_t`` used).

        ``loss = reconstruction + beta_t * KL_objective`` (annealed, free bits, word dropout);
        ``elbo = -(reconstruction + kl)`` (unannealed; with the training-mode network, so dropout
        and word dropout apply when training: use :meth:`elbo` for evaluation); ``reconstruction``
        ``= -E_q log p(x|z)`` averaged over the ``S`` samples; ``kl`` closed form (under a mixture
        prior: ``log q(z|x) - log p(z)`` averaged over the same samples). A training-mode
        call advances ``kl_step`` by one.

        Args:
            x: the sentences.
            noise: from :meth:`sample_noise`, ``(S, B, D)`` or ``(S, B, D + 1)`` (last column:
                word-dropout seeds; without it word dropout uses the global RNG). ``None``: drawn
                from the global RNG with ``S = 1``.

        Raises:
            ValueError: if ``noise`` has the wrong shape.
        """
        B, D = len(x), self.latent_dim
        if noise is None:
            noise = self._standard_normal(1, B, D, generator=None)
        if noise.dim() != 3 or noise.shape[1] != B or noise.shape[2] not in (D, D + 1):
            raise ValueError(f"noise must have shape (S, {B}, {D}) or (S, {B}, {D + 1}), got {tuple(noise.shape)}")
        eps, seeds = noise[..., :D], (noise[0, :, D] if noise.shape[2] == D + 1 else None)
        mean, logvar = self._posterior(x)  # (B, D) each
        z = mean + torch.exp(0.5 * logvar) * eps  # (S, B, D), reparameterised
        reconstruction = -self._log_likelihood_given_z(self.drop_words(x, seeds), z).mean(0)  # (B,)
        if self.config.prior_components:  # Monte-Carlo KL at the training samples; free bits on the total
            kl = self._log_posterior_over_prior(z, mean, logvar).mean(0)  # (B,)
            kl_objective = self._kl_objective(kl.unsqueeze(-1), self.config.free_bits * self.latent_dim)
        else:
            kl_dims = _kl_per_dimension(mean, logvar)  # (B, D)
            kl, kl_objective = kl_dims.sum(-1), self._kl_objective(kl_dims, self.config.free_bits)
        weight = self.kl_weight
        if self.training:
            self.kl_step += 1
        return {
            "loss": reconstruction + weight * kl_objective,
            "elbo": -(reconstruction + kl),
            "reconstruction": reconstruction,
            "kl": kl,
            "kl_weight": torch.full_like(kl, weight),
        }

    @torch.no_grad()
    def load_language_model(self, lm: RNNLanguageModel, encoder: bool = True) -> list[str]:
        """Start from a trained RNN language model: its weights become the decoder's (and the encoder's).

        The decoder takes the LM's embedding, recurrent layers and softmax; only the map
        ``z -> h_0`` keeps its fresh initialisation, so with ``z`` ignored the decoder is the LM
        (up to the small ``tanh(W z + b)`` start state). With ``encoder`` the encoder's LSTM/GRU
        (when it has the LM's shapes: same cell, layers and sizes, one direction) and its own
        embedding table (unless ``share_embedding``) start as the LM's too. A pretrained decoder
        is a known start for text VAEs (Li, He, Sun, Chen, Chen & Gao 2019 initialise from an
        autoencoder; Li et al. 2020, Optimus, from a pretrained LM).

        Args:
            lm: an :class:`~latentnlp.models.language.rnnlm.RNNLanguageModel` with this model's
                ``vocab_size``, ``cell``, ``embedding_dim``, ``hidden_dim``, ``num_layers``,
                ``tie_weights`` and ``softmax_cutoffs``, and no context input of its own.
            encoder: also initialise the encoder from the LM.

        Returns:
            The names of this model's parameters that were copied.

        Raises:
            ValueError: naming the first field on which the LM and this model's decoder differ,
                or if ``feed_context`` (the decoder's input layer then has extra columns for ``z``).
        """
        c, lc = self.config, lm.config
        for field in NETWORK_FIELDS:
            if getattr(c, field) != getattr(lc, field):
                raise ValueError(f"language model's {field} is {getattr(lc, field)!r}, this VAE's decoder needs "
                                 f"{getattr(c, field)!r}")
        if c.feed_context or lc.context_dim:
            raise ValueError("load_language_model needs feed_context=False and a language model without a context input")
        copied = []
        own = dict(self.named_parameters())
        for name, value in lm.named_parameters():  # tied weights appear once, as embedding.weight
            own[f"decoder.{name}"].copy_(value)
            copied.append(f"decoder.{name}")
        if encoder:
            if self.encoder_embedding is not None:
                self.encoder_embedding.weight.copy_(lm.embedding.weight)
                copied.append("encoder_embedding.weight")
            if not c.encoder_bidirectional:
                for name, value in lm.rnn.named_parameters():
                    own[f"encoder_rnn.{name}"].copy_(value)
                    copied.append(f"encoder_rnn.{name}")
        return copied

    def optimization_phases(self, alternate: bool = False) -> dict[str, list[nn.Parameter]]:
        """One joint phase (``alternate`` is ignored: encoder and decoder are always trained together)."""
        return {"all": list(self.parameters())}

    # --------------------------------------------------------------- evaluation
    @_in_eval_mode
    def kl(self, batch: SentenceBatch, generator: torch.Generator | None = None) -> torch.Tensor:
        """``KL(q(z|x) || p(z))`` per sentence: ``(B,)``, nats; closed form under ``N(0, I)``, a
        ``KL_SAMPLES``-draw Monte-Carlo estimate (from ``generator``) under a mixture prior."""
        return self._kl(*self._posterior(batch), generator)

    @_in_eval_mode
    def elbo(self, batch: SentenceBatch, n_samples: int = 1, generator: torch.Generator | None = None,
             noise: torch.Tensor | None = None) -> torch.Tensor:
        """The ELBO per sentence in eval mode: ``(B,)``, nats, a lower bound on ``log p(x)``.

        ``E_q[log p(x|z)]`` is averaged over ``S`` reparameterised samples; the KL is closed form
        (a ``KL_SAMPLES``-draw estimate under a mixture prior).

        Args:
            batch: the sentences.
            n_samples: ``S``, used when ``noise`` is not given.
            generator: random source of the samples.
            noise: ``(S, B, D)`` standard normals (overrides ``n_samples``).
        """
        mean, logvar = self._posterior(batch)
        if noise is None:
            if n_samples < 1:
                raise ValueError(f"n_samples must be >= 1, got {n_samples}")
            noise = self._standard_normal(n_samples, len(batch), self.latent_dim, generator=generator)
        z = mean + torch.exp(0.5 * logvar) * noise  # (S, B, D)
        return self._log_likelihood_given_z(batch, z).mean(0) - self._kl(mean, logvar, generator)

    @_in_eval_mode
    def log_importance_weights(self, batch: SentenceBatch, noise: torch.Tensor) -> torch.Tensor:
        """``log p(x, z_k) - log q(z_k | x)`` with ``z_k = mean + exp(logvar / 2) * noise_k``.

        Args:
            noise: ``(K, B, D)`` standard normals.

        Returns:
            ``(K, B)``, nats; their mean over ``k`` is a Monte-Carlo ELBO, their
            :func:`~latentnlp.inference.importance.iw_log_mean_exp` the IW estimate.
        """
        mean, logvar = self._posterior(batch)
        z = mean + torch.exp(0.5 * logvar) * noise  # (K, B, D)
        return self._log_likelihood_given_z(batch, z) - self._log_posterior_over_prior(z, mean, logvar)

    @torch.no_grad()
    def iw_log_likelihood(self, batch: SentenceBatch, n_samples: int, generator: torch.Generator | None = None,
                          chunk_size: int = 10, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Importance-weighted estimate of ``log p(x)`` with ``q(z|x)`` as proposal (Burda et al. 2016, Eq. 8).

        Args:
            batch: the sentences (scored in eval mode).
            n_samples: ``K >= 1``; ``K = 1`` is a one-sample ELBO with a Monte-Carlo KL.
            generator: random source.
            chunk_size: samples decoded at once; memory grows as ``chunk_size * tokens(batch) * V``.
            noise: ``(K, B, D)`` standard normals (overrides ``n_samples`` and ``generator``).

        Returns:
            ``(B,)``, nats; in expectation a lower bound on ``log p(x)``, never looser than the
            ELBO and tightening as ``K`` grows.
        """
        if noise is not None:
            n_samples = noise.shape[0]
        if n_samples < 1 or chunk_size < 1:
            raise ValueError(f"n_samples and chunk_size must be >= 1, got {n_samples} and {chunk_size}")
        log_w = []
        for start in range(0, n_samples, chunk_size):
            k = min(chunk_size, n_samples - start)
            eps = (noise[start : start + k] if noise is not None
                   else self._standard_normal(k, len(batch), self.latent_dim, generator=generator))
            log_w.append(self.log_importance_weights(batch, eps))  # (k, B)
        return iw_log_mean_exp(torch.cat(log_w), dim=0)

    @torch.no_grad()
    @_in_eval_mode
    def active_units(self, batches: SentenceBatch | Iterable[SentenceBatch], threshold: float = 0.01) -> int:
        """Number of latent dimensions ``j`` with ``Cov_x(E_q[z_j | x]) > threshold`` (Burda et al. 2016, Sec. 5.2).

        The variance of the posterior means is taken over all sentences of ``batches``
        (a :class:`~latentnlp.data.sentences.SentenceBatch` or an iterable of them; at least 2 sentences).
        """
        means = torch.cat([self._posterior(b)[0] for b in _as_batches(batches)])  # (N, D)
        if means.shape[0] < 2:
            raise ValueError(f"active units need at least 2 sentences, got {means.shape[0]}")
        return int((means.var(dim=0, unbiased=False) > threshold).sum())

    @torch.no_grad()
    @_in_eval_mode
    def mutual_information(self, batches: SentenceBatch | Iterable[SentenceBatch],
                           generator: torch.Generator | None = None, pooled: bool = False,
                           chunk_size: int = 1024) -> float:
        """``I(x; z)`` under ``q(x, z) = p_data(x) q(z|x)``, nats (Hoffman & Johnson 2016; He et al. 2019).

        ``I = E_x[KL(q(z|x) || p(z))] - KL(q(z) || p(z)) = E_x E_q(z|x)[log q(z|x) - log q(z)]``,
        with ``q(z) = (1/B) sum_m q(z | x_m)`` the aggregate posterior of a batch. As in He et
        al.'s code, each sentence draws one ``z_n ~ q(z|x_n)`` and ``log q(z_n)`` is the mixture over
        the batch; unlike it, ``log q(z_n | x_n)`` is also evaluated at the sample rather than
        replaced by the closed-form negative entropy (the same expectation, less variance, and
        exactly 0 when every sentence has the same posterior). Batch estimates are averaged,
        weighted by batch size. The estimate is biased and at most ``log B``; compare models on
        the same batches.

        ``pooled=True``: ``q(z)`` is the mixture over all ``N`` sentences of ``batches`` instead
        (the same draws ``z_n``), so the estimate can reach ``log N`` rather than ``log B``; the
        ``(N, N)`` densities are computed ``chunk_size`` rows at a time.
        """
        posteriors = [self._posterior(batch) for batch in _as_batches(batches)]  # (B, D) pairs
        if not posteriors:
            raise ValueError("mutual information of no sentences is undefined")
        draws = [m + torch.exp(0.5 * lv) * self._standard_normal(*m.shape, generator=generator) for m, lv in posteriors]
        groups = [tuple(torch.cat(t) for t in zip(*posteriors)) + (torch.cat(draws),)] if pooled else \
            [(m, lv, z) for (m, lv), z in zip(posteriors, draws)]
        total = 0.0
        for mean, logvar, z in groups:  # one group: all sentences (pooled); else one per batch
            log_q_z = torch.cat([  # log q(z_n) = log mean_m q(z_n | x_m), chunk_size rows at a time
                torch.logsumexp(_gaussian_log_density(z[i : i + chunk_size].unsqueeze(1), mean, logvar), dim=1)
                for i in range(0, len(z), chunk_size)]) - math.log(len(z))  # (n,)
            total += float((_gaussian_log_density(z, mean, logvar) - log_q_z).sum())
        return total / sum(len(m) for m, _ in posteriors)

    # --------------------------------------------------------------- generation
    @torch.no_grad()
    @_in_eval_mode
    def decode(self, z: torch.Tensor, method: str = "greedy", generator: torch.Generator | None = None,
               beam_size: int = 5, max_length: int = 50, temperature: float = 1.0) -> list[list[int]]:
        """Sentences decoded from codes ``z`` ``(N, D)``: ``N`` id lists without ``<bos>``/``<eos>``.

        Args:
            method: ``"greedy"`` (argmax at each step), ``"sample"`` (ancestral, at ``temperature``,
                from ``generator``, which must live on the model's device) or ``"beam"`` (``beam_size``
                hypotheses, ranked by log-probability).
            max_length: words generated at most per sentence.
        """
        from .decoding import decode

        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (N, {self.latent_dim}), got {tuple(z.shape)}")
        # z rides in the decoding state, so beam search keeps it with its hypotheses.
        return decode(self.decoder, z.shape[0], z, method, BOS_ID, EOS_ID, max_length, generator, beam_size, temperature)

    def sample_prior(self, n: int, generator: torch.Generator | None = None, method: str = "greedy",
                     beam_size: int = 5, max_length: int = 50, temperature: float = 1.0) -> list[list[int]]:
        """``n`` sentences decoded from ``z ~ p(z)`` (drawn from ``generator``, which also drives sampling)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        z = self.sample_z(n, generator)
        return self.decode(z, method, generator, beam_size, max_length, temperature)

    def reconstruct(self, batch: SentenceBatch, use_mean: bool = True, method: str = "greedy",
                    generator: torch.Generator | None = None, beam_size: int = 5, max_length: int = 50,
                    temperature: float = 1.0) -> list[list[int]]:
        """Each sentence decoded from its posterior mean (``use_mean``) or from one ``z ~ q(z|x)``."""
        mean, logvar = self.encode(batch)
        z = mean if use_mean else mean + torch.exp(0.5 * logvar) * self._standard_normal(*mean.shape, generator=generator)
        return self.decode(z, method, generator, beam_size, max_length, temperature)

    def interpolate(self, batch: SentenceBatch, steps: int = 5, method: str = "greedy",
                    generator: torch.Generator | None = None, beam_size: int = 5, max_length: int = 50,
                    temperature: float = 1.0) -> list[list[int]]:
        """A homotopy (Bowman Table 8): ``steps`` sentences decoded from ``(1 - t) mu_1 + t mu_2``, ``t`` evenly in [0, 1].

        Args:
            batch: exactly two sentences; ``mu_1``, ``mu_2`` are their posterior means.
            steps: points on the line, both ends included (>= 2).
        """
        if len(batch) != 2:
            raise ValueError(f"interpolate needs a batch of exactly 2 sentences, got {len(batch)}")
        if steps < 2:
            raise ValueError(f"steps must be >= 2, got {steps}")
        mean, _ = self.encode(batch)  # (2, D)
        t = torch.linspace(0.0, 1.0, steps, device=mean.device).unsqueeze(1)  # (steps, 1)
        return self.decode((1 - t) * mean[0] + t * mean[1], method, generator, beam_size, max_length, temperature)


@torch.no_grad()
def posterior_samples(model: SentenceVAE, batches: SentenceBatch | Iterable[SentenceBatch], samples_per_sentence: int = 1,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Draws ``z ~ q(z|x)`` (eval mode) for every sentence of ``batches``: ``(N * S, D)``, a sample of the
    aggregate posterior ``q(z) = E_x q(z|x)`` (``S = samples_per_sentence``)."""
    if samples_per_sentence < 1:
        raise ValueError(f"samples_per_sentence must be >= 1, got {samples_per_sentence}")
    draws = []
    for batch in _as_batches(batches):
        mean, logvar = model.encode(batch)  # (B, D)
        eps = model._standard_normal(samples_per_sentence, *mean.shape, generator=generator)
        draws.append((mean + torch.exp(0.5 * logvar) * eps).reshape(-1, mean.shape[1]))
    if not draws:
        raise ValueError("posterior samples of no sentences are undefined")
    return torch.cat(draws)


@torch.no_grad()
def fit_mixture_prior(model: SentenceVAE, z: torch.Tensor, n_components: int, random_state: int = 0,
                      max_iter: int = 200) -> SentenceVAE:
    """A copy of ``model`` whose prior is a mixture of ``n_components`` diagonal Gaussians fitted to ``z``.

    The encoder and decoder are unchanged; only ``p(z)`` is replaced (module docstring: the
    ELBO-optimal prior is the aggregate posterior, Hoffman & Johnson 2016). The mixture is fitted by
    EM with scikit-learn's ``GaussianMixture(covariance_type="diag")`` (k-means initialisation,
    ``random_state``), in float64.

    Args:
        model: a trained sentence VAE (any prior).
        z: ``(N, D)`` draws of the aggregate posterior on training sentences (:func:`posterior_samples`).
        n_components: ``M >= 1``.
        random_state: seed of the initialisation.
        max_iter: EM iterations at most.

    Returns:
        A new :class:`SentenceVAE` in eval mode with ``prior_components = M``.

    Raises:
        ValueError: if ``z`` is not ``(N, D)`` with ``N >= M`` finite rows.
    """
    from sklearn.mixture import GaussianMixture

    if z.dim() != 2 or z.shape[1] != model.latent_dim:
        raise ValueError(f"z must have shape (N, {model.latent_dim}), got {tuple(z.shape)}")
    if not n_components >= 1 or z.shape[0] < n_components:
        raise ValueError(f"need 1 <= n_components <= N samples, got {n_components} components and {z.shape[0]} samples")
    if not torch.isfinite(z).all():
        raise ValueError("z has NaN or infinite entries")
    gmm = GaussianMixture(n_components, covariance_type="diag", random_state=random_state, max_iter=max_iter,
                          reg_covar=1e-6).fit(z.double().cpu().numpy())
    config = SentenceVAEConfig(**{**asdict(model.config), "prior_components": n_components})
    fitted = SentenceVAE(config).to(model._device())
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("prior_")}
    as_tensor = functools.partial(torch.as_tensor, dtype=torch.float32, device=model._device())
    state |= {"prior_logits": as_tensor(gmm.weights_).log(), "prior_means": as_tensor(gmm.means_),
              "prior_logvars": as_tensor(gmm.covariances_).log()}
    fitted.load_state_dict(state)
    return fitted.eval()


@torch.no_grad()
def evaluate_vae(model: SentenceVAE, ids: Sequence[torch.Tensor], vocab: SentenceVocabulary, batch_size: int = 64,
                 iw_samples: int = 100, elbo_samples: int = 1, generator: torch.Generator | None = None,
                 chunk_size: int = 10) -> dict[str, float]:
    """Corpus figures of a sentence VAE in eval mode, the bound and the estimate labelled.

    Args:
        model: the VAE.
        ids: encoded sentences (without ``<bos>``/``<eos>``).
        vocab: gives the special ids.
        batch_size: sentences per batch (batches are formed by length; the mutual information is
            estimated per batch, so it depends on this).
        iw_samples: ``K`` of the importance-weighted estimate; 0 skips it.
        elbo_samples: samples averaged in each sentence's ELBO.
        generator: random source (default: a CPU generator seeded with 0, so results are repeatable).
        chunk_size: importance samples decoded at once.

    Returns:
        ``bound_*`` from the ELBO (an upper bound on the NLL and the perplexities) and ``iw_*`` from
        the IW estimate (when ``iw_samples > 0``), each with ``nll_per_sentence`` (nats),
        ``nll_per_token``, ``perplexity`` (``<eos>`` counted) and ``perplexity_words`` (see
        :func:`~latentnlp.models.language.rnnlm.perplexities`); ``kl_per_sentence`` (nats),
        ``active_units``, ``mutual_information`` (nats, aggregate posterior per batch: at most
        ``log batch_size``), ``mutual_information_pooled`` (nats, over all the sentences: at most
        ``log N``), ``n_sentences``, ``n_tokens``,
        ``elbo_samples``, ``iw_samples``.
    """
    if len(ids) == 0:
        raise ValueError("cannot evaluate on an empty set of sentences")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    device = model._device()
    groups = sentence_batches(len(ids), (len(s) for s in ids), batch_size)
    batches = [_batch_to(collate_sentences([ids[i] for i in idx], vocab), device) for idx in groups]
    elbo = torch.zeros(len(ids), dtype=torch.float64)
    kl = torch.zeros(len(ids), dtype=torch.float64)
    iw = torch.zeros(len(ids), dtype=torch.float64)
    for idx, batch in zip(groups, batches):
        elbo[idx] = model.elbo(batch, elbo_samples, generator).double().cpu()
        kl[idx] = model.kl(batch, generator).double().cpu()
        if iw_samples > 0:
            iw[idx] = model.iw_log_likelihood(batch, iw_samples, generator, chunk_size).double().cpu()
    n_words = torch.tensor([len(s) for s in ids])
    result: dict = {f"bound_{k}": v for k, v in perplexities(elbo, n_words).items() if k not in ("n_sentences", "n_tokens")}
    if iw_samples > 0:
        result |= {f"iw_{k}": v for k, v in perplexities(iw, n_words).items() if k not in ("n_sentences", "n_tokens")}
    result |= {
        "kl_per_sentence": float(kl.mean()),
        "active_units": model.active_units(batches) if len(ids) > 1 else 0,
        "mutual_information": model.mutual_information(batches, generator),
        "mutual_information_pooled": model.mutual_information(batches, generator, pooled=True),
        "n_sentences": len(ids),
        "n_tokens": int(n_words.sum()) + len(ids),
        "elbo_samples": elbo_samples,
        "iw_samples": iw_samples,
    }
    return result
