"""Neural Variational Document Model (Miao, Yu & Blunsom 2016, Sec. 3).

A document ``d`` is a bag of ``N_d`` words ``w_1..w_{N_d}`` over a vocabulary of
size ``V``; ``x`` is its ``(V,)`` count vector. The generative model is

    z ~ N(0, I_K)                              (K = latent_dim; paper: 50 and 200)
    w_i | z ~ Categorical(softmax(R z + b))    (R: V x K, b: V; paper Eq. 9-10)

and the inference network is an MLP ``pi = g(W x)`` (paper: 500 hidden units)
followed by two linear maps to the mean and log standard deviation of a
diagonal Gaussian ``q(z | d)``. The ELBO of a document (paper Eq. 11) is

    L(d) = E_q[ sum_i log p(w_i | z) ] - KL(q(z|d) || N(0, I))

with the expectation estimated by reparameterised samples and the KL in closed
form. ``log p(d|z)`` here is ``sum_v x_v log softmax(Rz+b)_v``: the multinomial
coefficient is left out, as in both papers, so perplexities are comparable with
theirs. All log-likelihoods are in nats per document.

Interpretation (paper Table 2): column ``k`` of ``R`` scores every word for
latent dimension ``k`` (:meth:`NVDM.topic_words`); row ``v`` of ``R`` is word
``v``'s embedding (:meth:`NVDM.nearest_words`); the posterior mean of ``q(z|d)``
is the document's representation (:meth:`NVDM.transform`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn
from torch.distributions import Independent, Normal, kl_divergence

from ...evaluation.perplexity import PerplexityReport
from ...inference.importance import iw_log_mean_exp

if TYPE_CHECKING:  # pragma: no cover
    from ...data.bow import BowCorpus
    from ...training.trainer import TrainConfig

__all__ = ["NVDMConfig", "NVDM", "ELBOTerms"]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
_DECODER_BIAS_INIT = ("zero", "unigram")


@dataclass
class NVDMConfig:
    """Architecture of the NVDM; every field names the paper's value.

    Attributes:
        vocab_size: V, words in the vocabulary (2,000 for 20 Newsgroups).
        latent_dim: K, dimension of z (paper: 50 and 200).
        hidden_dim: width of the encoder MLP (paper: 500).
        encoder_layers: hidden layers in the encoder MLP (paper: 1, the released code's default).
        activation: encoder nonlinearity, one of tanh / relu / sigmoid (released code: tanh).
        decoder_bias_init: ``"zero"`` or ``"unigram"``; ``"unigram"`` starts b at the log
            unigram distribution of the training corpus (not in the paper; it
            only shortens training, the optimum is unchanged).
    """

    vocab_size: int
    latent_dim: int = 50
    hidden_dim: int = 500
    encoder_layers: int = 1
    activation: str = "tanh"
    decoder_bias_init: str = "unigram"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "latent_dim", "hidden_dim", "encoder_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"NVDMConfig.{name} must be a positive integer, got {value!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"NVDMConfig.activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        if self.decoder_bias_init not in _DECODER_BIAS_INIT:
            raise ValueError(
                f"NVDMConfig.decoder_bias_init must be one of {_DECODER_BIAS_INIT}, got {self.decoder_bias_init!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ELBOTerms:
    """Per-document terms of the ELBO, each ``(B,)`` in nats.

    ``elbo = reconstruction - kl``; ``reconstruction`` is ``E_q[log p(d|z)]``
    estimated with the samples used.
    """

    elbo: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


class NVDM(nn.Module):
    """The Neural Variational Document Model (Miao et al. 2016).

    Args:
        config: an :class:`NVDMConfig` (or the same fields as keywords).

    Shapes: ``x`` is ``(B, V)`` float counts; ``z`` is ``(B, K)`` or ``(S, B, K)``.
    """

    def __init__(self, config: NVDMConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = NVDMConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either an NVDMConfig or keyword fields, not both")
        self.config = config
        act = _ACTIVATIONS[config.activation]
        layers: list[nn.Module] = []
        width = config.vocab_size
        for _ in range(config.encoder_layers):
            layers += [nn.Linear(width, config.hidden_dim), act()]
            width = config.hidden_dim
        self.encoder = nn.Sequential(*layers)  # pi = g(W x): (B, V) -> (B, H)
        self.posterior_mean = nn.Linear(width, config.latent_dim)  # mu(pi): (B, H) -> (B, K)
        self.posterior_log_sigma = nn.Linear(width, config.latent_dim)  # log sigma(pi)
        # As in the released code, log sigma starts at exactly 0 (q starts at unit variance).
        nn.init.zeros_(self.posterior_log_sigma.weight)
        nn.init.zeros_(self.posterior_log_sigma.bias)
        self.decoder = nn.Linear(config.latent_dim, config.vocab_size)  # R z + b: (B, K) -> (B, V)
        nn.init.zeros_(self.decoder.bias)

    # ------------------------------------------------------------------ model
    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def init_decoder_bias(self, word_counts: torch.Tensor) -> None:
        """Set ``b`` to the log unigram distribution when ``decoder_bias_init == "unigram"``.

        Args:
            word_counts: ``(V,)`` training-corpus counts of each word (add-one smoothed here).
        """
        from .common import set_unigram_bias

        if self.config.decoder_bias_init == "unigram":
            set_unigram_bias(self.decoder.bias, word_counts)

    def posterior(self, x: torch.Tensor) -> Independent:
        """``q(z | d)``: a diagonal Gaussian with batch_shape ``(B,)`` and event_shape ``(K,)``.

        Raises:
            ValueError: if ``x`` is not ``(B, V)``.
        """
        if x.dim() != 2 or x.shape[1] != self.config.vocab_size:
            raise ValueError(f"x must have shape (B, {self.config.vocab_size}), got {tuple(x.shape)}")
        h = self.encoder(x)  # (B, H)
        mu = self.posterior_mean(h)  # (B, K)
        log_sigma = self.posterior_log_sigma(h)  # (B, K)
        return Independent(Normal(mu, log_sigma.exp(), validate_args=False), 1, validate_args=False)

    def prior(self, like: torch.Tensor) -> Independent:
        """``p(z) = N(0, I_K)`` broadcast to the batch of ``like`` (``(..., K)``)."""
        zeros = torch.zeros_like(like)
        return Independent(Normal(zeros, torch.ones_like(like), validate_args=False), 1, validate_args=False)

    def word_log_probs(self, z: torch.Tensor) -> torch.Tensor:
        """``log softmax(R z + b)``: ``(..., K) -> (..., V)``."""
        return torch.log_softmax(self.decoder(z), dim=-1)

    def log_likelihood_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(d | z) = sum_v x_v log softmax(R z + b)_v``, nats.

        Args:
            x: ``(B, V)`` counts.
            z: ``(B, K)`` or ``(S, B, K)`` latent codes.

        Returns:
            ``(B,)`` or ``(S, B)``.
        """
        return (self.word_log_probs(z) * x).sum(-1)

    def sample_noise(self, batch_size: int, generator: torch.Generator | None = None, n_samples: int = 1) -> torch.Tensor:
        """Standard-normal noise ``eps`` of shape ``(n_samples, batch_size, K)`` for the reparameterisation.

        The training loop draws the noise of a whole global batch here and hands
        each process its slice, so one- and multi-process runs see the same numbers.
        """
        dev = self.decoder.weight.device
        return torch.randn(n_samples, batch_size, self.config.latent_dim, generator=generator, device=dev)

    def elbo(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None = None,
        n_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> ELBOTerms:
        """Per-document ELBO (paper Eq. 11) with reparameterised samples and the closed-form KL.

        Args:
            x: ``(B, V)`` word counts.
            noise: optional ``(S, B, K)`` standard-normal noise; drawn from
                ``generator`` with ``S = n_samples`` if omitted.
            n_samples: S, Monte-Carlo samples averaged for the reconstruction term.
            generator: random source for the noise.

        Returns:
            :class:`ELBOTerms` with ``(B,)`` tensors in nats.
        """
        q = self.posterior(x)
        if noise is None:
            noise = self.sample_noise(x.shape[0], generator, n_samples)
        if noise.dim() != 3 or noise.shape[1:] != (x.shape[0], self.config.latent_dim):
            raise ValueError(
                f"noise must have shape (S, {x.shape[0]}, {self.config.latent_dim}), got {tuple(noise.shape)}"
            )
        mu, sigma = q.base_dist.loc, q.base_dist.scale
        z = mu + sigma * noise  # (S, B, K), reparameterisation trick
        reconstruction = self.log_likelihood_given_z(x, z).mean(0)  # (B,)
        kl = kl_divergence(q, self.prior(mu))  # (B,), closed form: -1/2 sum(1 + 2 log s - mu^2 - s^2)
        return ELBOTerms(elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl)

    def loss_terms(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Training interface used by :class:`latentnlp.training.Trainer`.

        Returns ``{"loss": -ELBO, "kl": KL, "reconstruction": -E_q log p(d|z)}``, each ``(B,)`` nats.
        """
        terms = self.elbo(x, noise=noise)
        return {"loss": -terms.elbo, "kl": terms.kl, "reconstruction": -terms.reconstruction}

    @torch.no_grad()
    def iw_log_likelihood(
        self,
        x: torch.Tensor,
        n_samples: int,
        generator: torch.Generator | None = None,
        chunk_size: int = 100,
    ) -> torch.Tensor:
        """Importance-weighted estimate of ``log p(d)`` with ``q(z|d)`` as proposal (Burda et al. 2016).

        Args:
            x: ``(B, V)`` counts.
            n_samples: K >= 1 importance samples per document.
            generator: random source.
            chunk_size: samples processed at once (memory ``chunk_size * B * V`` floats).

        Returns:
            ``(B,)`` estimates in nats; their expectation is a bound at least as tight as the ELBO.
        """
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        q = self.posterior(x)
        log_w = []
        for start in range(0, n_samples, chunk_size):
            s = min(chunk_size, n_samples - start)
            z = q.base_dist.loc + q.base_dist.scale * self.sample_noise(x.shape[0], generator, s)  # (s, B, K)
            log_w.append(self.log_likelihood_given_z(x, z) + self.prior(z).log_prob(z) - q.log_prob(z))  # (s, B)
        return iw_log_mean_exp(torch.cat(log_w, 0), dim=0)

    # --------------------------------------------------------- corpus-level API
    def _device(self) -> torch.device:
        return self.decoder.weight.device

    @torch.no_grad()
    def evaluate(
        self,
        corpus: "BowCorpus",
        elbo_samples: int = 20,
        iw_samples: int = 100,
        batch_size: int = 500,
        seed: int = 0,
    ) -> PerplexityReport:
        """Perplexities of ``corpus`` from the ELBO bound and the IW estimate, labelled.

        Args:
            corpus: documents to score (empty documents must have been dropped).
            elbo_samples: S, samples averaged in each document's ELBO (the released
                code uses 1; more samples only reduce the estimate's variance).
            iw_samples: K for the importance-weighted estimate; 0 skips it.
            batch_size: documents per forward pass.
            seed: seeds the noise, so the result is deterministic.

        Returns:
            A :class:`PerplexityReport`.
        """
        was_training = self.training
        self.eval()
        gen = torch.Generator(device=self._device()).manual_seed(seed)
        elbos, kls, iws = [], [], []
        for start in range(0, len(corpus), batch_size):
            idx = range(start, min(start + batch_size, len(corpus)))
            x = corpus.to_dense(list(idx)).to(self._device())
            terms = self.elbo(x, n_samples=elbo_samples, generator=gen)
            elbos.append(terms.elbo.double().cpu())
            kls.append(terms.kl.double().cpu())
            if iw_samples > 0:
                iws.append(self.iw_log_likelihood(x, iw_samples, generator=gen).double().cpu())
        self.train(was_training)
        lengths = torch.as_tensor(corpus.doc_lengths, dtype=torch.float64)
        return PerplexityReport.from_log_likelihoods(
            elbo=torch.cat(elbos),
            kl=torch.cat(kls),
            lengths=lengths,
            elbo_samples=elbo_samples,
            iw_log_p=torch.cat(iws) if iws else None,
            iw_samples=iw_samples,
        )

    @torch.no_grad()
    def transform(self, corpus: "BowCorpus", batch_size: int = 1000) -> torch.Tensor:
        """Posterior means ``E_q[z | d]`` of every document: ``(D, K)``."""
        was_training = self.training
        self.eval()
        out = []
        for start in range(0, len(corpus), batch_size):
            x = corpus.to_dense(list(range(start, min(start + batch_size, len(corpus))))).to(self._device())
            out.append(self.posterior(x).base_dist.loc.cpu())
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.latent_dim)

    def topic_words(self, vocab: Sequence[str], n_words: int = 10) -> list[list[str]]:
        """For each latent dimension ``k``, the ``n_words`` words with the largest ``R[:, k]``.

        These are the words whose probability rises most as ``z_k`` grows (paper Table 2).
        Returns K lists of words.
        """
        if len(vocab) != self.config.vocab_size:
            raise ValueError(f"vocab has {len(vocab)} words, the model has V = {self.config.vocab_size}")
        R = self.decoder.weight.detach().cpu()  # (V, K)
        top = R.topk(min(n_words, len(vocab)), dim=0).indices.T  # (K, n)
        return [[vocab[i] for i in row.tolist()] for row in top]

    def nearest_words(self, word: str, vocab: Sequence[str], n_words: int = 10) -> list[tuple[str, float]]:
        """Words nearest to ``word`` by cosine similarity of the decoder rows ``R[v, :]`` (paper Table 3).

        Raises:
            KeyError: if ``word`` is not in ``vocab``.
        """
        index = {w: i for i, w in enumerate(vocab)}
        if word not in index:
            raise KeyError(f"{word!r} is not in the model's vocabulary of {len(vocab)} words")
        R = torch.nn.functional.normalize(self.decoder.weight.detach().cpu(), dim=1)  # (V, K)
        sims = R @ R[index[word]]  # (V,)
        sims[index[word]] = -math.inf
        top = sims.topk(min(n_words, len(vocab) - 1))
        return [(vocab[i], float(s)) for i, s in zip(top.indices.tolist(), top.values.tolist())]

    def optimization_phases(self, alternate: bool) -> dict[str, list[nn.Parameter]]:
        """Parameter groups the trainer steps in turn.

        ``alternate=True`` gives the paper's scheme (Algorithm 1): the encoder
        (inference network) and the decoder (generative model) are updated by
        separate optimisers, each with the other held fixed. ``False`` updates all
        parameters jointly.
        """
        if not alternate:
            return {"joint": list(self.parameters())}
        encoder = [*self.encoder.parameters(), *self.posterior_mean.parameters(), *self.posterior_log_sigma.parameters()]
        return {"encoder": encoder, "decoder": list(self.decoder.parameters())}

    # ------------------------------------------------------------ estimator API
    def fit(
        self,
        train: "BowCorpus",
        valid: "BowCorpus | None" = None,
        config: "TrainConfig | None" = None,
        run_dir: str | None = None,
        valid_elbo_samples: int = 10,
    ) -> "NVDM":
        """Train on ``train`` with the shared :class:`~latentnlp.training.Trainer`.

        Args:
            train: training documents (V must match the model).
            valid: held-out documents for validation and early stopping (a part of the
                training set; never the test set). ``None``: no validation.
            config: optimisation settings (:class:`~latentnlp.training.TrainConfig`).
            run_dir: folder for checkpoints and the metrics log; training resumes
                from its checkpoint if one is there.
            valid_elbo_samples: samples per document in the validation ELBO (fixed seed).

        Returns:
            ``self``, with ``train_result_`` (a :class:`~latentnlp.training.TrainResult`).

        Raises:
            ValueError: if a corpus's vocabulary size differs from the model's.
        """
        from .common import fit_bow_model

        def validate(model: "NVDM") -> dict[str, float]:
            report = model.evaluate(valid, elbo_samples=valid_elbo_samples, iw_samples=0, seed=12345)
            return {
                "valid_perplexity_bound": report.bound_per_document,
                "valid_corpus_perplexity_bound": report.bound_corpus,
                "valid_kl": report.kl_nats_per_doc,
            }

        return fit_bow_model(self, train, valid, config, run_dir, validate, device=self._device())

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Same as :meth:`loss_terms` (the training loop calls the module, as DDP requires)."""
        return self.loss_terms(x, noise)
