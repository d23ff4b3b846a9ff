"""DocNADE, the neural autoregressive topic model (Larochelle & Lauly 2012).

A document ``d`` is a bag of ``N_d`` words over a vocabulary of size ``V``; ``x`` is its
``(V,)`` count vector. DocNADE writes the bag as a word sequence ``v_1..v_N`` (an
*ordering* of its tokens, below) and models the sequence autoregressively:

    h_i = g(c + sum_{k<i} W[:, v_k])                 (W: H x V, c: H; g = sigmoid in the paper)
    p(v_i = w | v_<i) = softmax(b + U h_i)_w         (U: V x H, b: V)
    log p(v) = sum_i log p(v_i | v_<i)               (nats; exact, no bound)

``H`` is ``hidden_size`` (paper and issue: 50). Every ``h_i`` reads only the words before
position ``i``, so ``p(v)`` is normalised over all ``V^N`` sequences of length ``N`` by
the chain rule; the hidden pre-activations of all positions are one cumulative sum over
the positions, ``O(N H)`` per document, and the output costs ``O(N H V)`` with the full
softmax. The paper computes ``p(v_i | v_<i)`` with a binary tree over the vocabulary
(a hierarchical softmax, ``O(N H log V)``); with ``V = 2000`` the full softmax is cheap
enough and exact, and the tree is not implemented. ``log p(v)`` carries no multinomial
coefficient, the convention of the NVDM / NVIL perplexities
(:mod:`~latentnlp.models.document.nvdm`), so the figures are comparable with theirs.

Orderings. A bag of words fixes no order, and the probability DocNADE gives a sequence
depends on the order (only the hidden state of the whole document, ``g(c + W x)``, is
order-free). This module uses three kinds of ordering:

* *random* (training): a fresh uniformly random permutation of each document's tokens at
  every training step, from per-document integer seeds that the Trainer draws with
  :meth:`DocNADE.sample_noise` from its own generator, so a resumed run sees the same
  orderings as an uninterrupted one. Training on random orderings trains, with shared
  parameters, the ensemble of the models of all orderings (the view of Lauly et al.
  2017); redrawing them at every step is this module's choice;
* *seeded* (evaluation): ordering ``k`` of document ``j`` is a random permutation drawn
  from a seed fixed by ``(seed, k, j)``, the same whatever the batching;
* *canonical*: the expanded counts, word ids ascending with repeats adjacent (no
  randomness; ``seed=None`` in :meth:`DocNADE.evaluate`).

What is reported. For one ordering ``s`` of a document, ``log p(v_s)`` is exact.
Averaging over uniformly random orderings ``s`` gives ``q(d) = E_s[p(v_s)]``, which is
the probability of the *bag* with its multinomial coefficient removed (each distinct
sequence of the bag is reached by ``prod_v x_v!`` of the ``N!`` permutations). The mean
of ``log p(v_s)`` over ``K`` orderings is, in expectation, a lower bound on ``log q(d)``
(Jensen); the log-mean-exp over the ``K`` orderings (the *ensemble*) is a tighter estimate
of ``log q(d)`` that converges to it as ``K`` grows, the importance-sampling estimate
with the uniform distribution over orderings as proposal. :meth:`DocNADE.evaluate`
fills the :class:`~latentnlp.evaluation.perplexity.PerplexityReport` so:

* ``bound_*``, ``elbo_nats_per_doc``: the exact log-likelihood under each ordering,
  averaged over the ``elbo_samples = K`` orderings (``K = 1``: the exact value under the
  one fixed ordering; no variational bound is involved);
* ``estimate_*``: the log-mean-exp ensemble over the same ``K`` orderings,
  ``iw_samples = K``; with ``K = 1`` it equals ``bound_*``;
* ``kl_nats_per_doc``: ``0.0`` (DocNADE has no latent variables).

The papers' protocol. Larochelle & Lauly (2012) report DocNADE's test perplexity from
this exact, tractable log-likelihood (the Replicated Softmax they compare with needs an
AIS estimate). The material at hand did not let us confirm how their orderings were
drawn (afresh at every update or once per document) nor whether their test figures
average over several orderings per document; reporting the single-ordering value and
the labelled ensemble, as here, covers either reading.

Batching: documents are expanded into token sequences padded to the longest document in
the batch (20news-nvdm: mean 100 tokens, median 58, at most 4,741); the padding comes
after each document's last token, so it never enters a real position's hidden state,
and only real tokens reach the output layer, at most ``chunk_tokens`` of them at once
(with activation checkpointing when gradients are needed), so memory stays bounded.

Sources: H. Larochelle and S. Lauly, "A Neural Autoregressive Topic Model", NIPS 2012;
S. Lauly, Y. Zheng, A. Allauzen and H. Larochelle, "Document Neural
Autoregressive Distribution Estimation", JMLR 18, 2017 (training on random orderings as
an ensemble); H. Larochelle and I. Murray, "The Neural Autoregressive Distribution
Estimator", AISTATS 2011 (NADE); Y. Miao, L. Yu and P. Blunsom, "Neural Variational
Inference for Text Processing", ICML 2016 (perplexity conventions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ...evaluation.perplexity import PerplexityReport
from ...inference.importance import iw_log_mean_exp

if TYPE_CHECKING:  # pragma: no cover
    from ...data.bow import BowCorpus
    from ...training.trainer import TrainConfig

__all__ = ["DocNADEConfig", "DocNADE"]

_ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}
_DECODER_BIAS_INIT = ("zero", "unigram")
_SEED_HIGH = 2**62  # per-ordering seeds are drawn from [0, 2^62)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass
class DocNADEConfig:
    """Architecture of DocNADE; paper values per field.

    Attributes:
        vocab_size: V, words in the vocabulary (2,000 for 20 Newsgroups).
        hidden_size: H, hidden units (paper and issue: 50).
        activation: ``g``: ``"sigmoid"`` (paper), ``"tanh"`` or ``"relu"``.
        decoder_bias_init: ``"unigram"`` starts ``b`` at the log unigram distribution of
            the training corpus (add-one smoothed; only shortens training) or ``"zero"``.
        train_orderings: S, random orderings per document and training step; the loss is
            the mean of ``-log p`` over them (paper: 1).
        chunk_tokens: tokens whose ``(tokens, V)`` output logits are materialised at once
            (memory only; results are the same up to rounding).

    Raises:
        ValueError: a field out of range or of the wrong type (the message names it).
    """

    vocab_size: int
    hidden_size: int = 50
    activation: str = "sigmoid"
    decoder_bias_init: str = "unigram"
    train_orderings: int = 1
    chunk_tokens: int = 16384

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "train_orderings", "chunk_tokens"):
            if not _positive_int(getattr(self, name)):
                raise ValueError(f"DocNADEConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"DocNADEConfig.activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        if self.decoder_bias_init not in _DECODER_BIAS_INIT:
            raise ValueError(
                f"DocNADEConfig.decoder_bias_init must be one of {_DECODER_BIAS_INIT}, got {self.decoder_bias_init!r}"
            )

    def to_dict(self) -> dict:
        """Plain JSON-able fields; ``DocNADEConfig(**to_dict())`` round-trips."""
        return asdict(self)


class DocNADE(nn.Module):
    """DocNADE with a full softmax output layer.

    Args:
        config: a :class:`DocNADEConfig` (or the same fields as keywords).

    Parameters: ``embedding.weight`` ``(V, H)``, whose row ``v`` is the paper's column
    ``W[:, v]``; ``hidden_bias`` ``(H,)`` (``c``); ``decoder`` (weight ``U`` ``(V, H)``,
    bias ``b`` ``(V,)``).

    Shapes: ``x`` is ``(B, V)`` counts (float or integer, whole non-negative numbers);
    ``tokens`` is ``(B, L)`` int64 word ids, sequence ``b`` in ``tokens[b, :lengths[b]]``
    and anything after it ignored; ``noise`` is ``(S, B)`` int64 ordering seeds.
    Log-probabilities are nats (per document unless stated).

    Raises:
        TypeError: both a config and keyword fields given.
        ValueError: from :class:`DocNADEConfig`.
    """

    def __init__(self, config: DocNADEConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = DocNADEConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a DocNADEConfig or keyword fields, not both")
        self.config = config
        V, H = config.vocab_size, config.hidden_size
        self.embedding = nn.Embedding(V, H)  # W^T
        nn.init.normal_(self.embedding.weight, std=0.01)  # small: a document sums hundreds of columns
        self.hidden_bias = nn.Parameter(torch.zeros(H))  # c
        self.decoder = nn.Linear(H, V)  # U h + b
        nn.init.zeros_(self.decoder.bias)
        self._g = _ACTIVATIONS[config.activation]

    # ------------------------------------------------------------------ basics
    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def _device(self) -> torch.device:
        return self.decoder.weight.device

    def _dtype(self) -> torch.dtype:
        return self.decoder.weight.dtype

    def init_decoder_bias(self, word_counts: torch.Tensor) -> None:
        """Set ``b`` to the log unigram distribution when ``decoder_bias_init == "unigram"``.

        Args:
            word_counts: ``(V,)`` training-corpus counts of each word (add-one smoothed here).

        Raises:
            ValueError: if ``word_counts`` does not have ``V`` entries.
        """
        from .common import set_unigram_bias

        if self.config.decoder_bias_init == "unigram":
            set_unigram_bias(self.decoder.bias, word_counts)

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        """Validate ``(B, V)`` counts and return them as int64."""
        if x.dim() != 2 or x.shape[1] != self.config.vocab_size:
            raise ValueError(f"x must have shape (B, {self.config.vocab_size}), got {tuple(x.shape)}")
        if x.is_floating_point():
            if not torch.isfinite(x).all() or (x != x.round()).any():
                raise ValueError("x must hold whole-number word counts")
            x = x.round()
        counts = x.long()
        if (counts < 0).any():
            raise ValueError("x must hold non-negative word counts")
        return counts

    def _check_noise(self, noise: torch.Tensor, batch_size: int) -> torch.Tensor:
        if noise.dim() == 1:
            noise = noise[None]
        if noise.dim() != 2 or noise.shape[1] != batch_size or noise.shape[0] < 1:
            raise ValueError(f"noise must have shape (S, {batch_size}) or ({batch_size},), got {tuple(noise.shape)}")
        if noise.is_floating_point() or noise.is_complex() or noise.dtype == torch.bool:
            raise ValueError(f"noise must hold integer ordering seeds (from sample_noise), got dtype {noise.dtype}")
        return noise

    # ------------------------------------------------------------------ orderings
    def sample_noise(
        self, batch_size: int, generator: torch.Generator | None = None, n_samples: int | None = None
    ) -> torch.Tensor:
        """Ordering seeds: ``(S, batch_size)`` int64 in ``[0, 2^62)``, ``S = train_orderings`` by default.

        Seed ``noise[s, j]`` fixes the random ordering ``s`` of document ``j`` of the batch
        (:meth:`orderings`). The Trainer draws them from its own generator and hands each
        process its slice (batch on dim 1), so resumed and multi-process runs see the
        same orderings as a single uninterrupted one. The seeds stay on the CPU.

        Raises:
            ValueError: ``n_samples`` not a positive integer.
        """
        s = self.config.train_orderings if n_samples is None else n_samples
        if not _positive_int(s):
            raise ValueError(f"n_samples must be a positive integer, got {s!r}")
        where = generator.device if generator is not None else torch.device("cpu")
        return torch.randint(0, _SEED_HIGH, (s, batch_size), generator=generator, device=where).cpu()

    def orderings(self, x: torch.Tensor, seeds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Expand counts into padded token sequences, in canonical or seeded random order.

        Args:
            x: ``(B, V)`` word counts.
            seeds: ``(B,)`` integer seeds, one random ordering per document: document
                ``j``'s tokens are permuted by ``torch.randperm(N_j)`` drawn from a CPU
                generator seeded with ``seeds[j]`` (independent of the batch it is in).
                ``None``: the canonical order, word ids ascending, repeats adjacent.

        Returns:
            ``(tokens, lengths)``: ``(B, L)`` int64 word ids (``L = max_j N_j``; padding
            positions hold word 0 and are ignored) and ``(B,)`` int64 lengths ``N_j``.

        Raises:
            ValueError: bad counts or seeds.
        """
        counts = self._check_x(x)
        B = counts.shape[0]
        lengths = counts.sum(1)
        L = int(lengths.max()) if B else 0
        rows, words = counts.nonzero(as_tuple=True)  # row-major: by document, then word id
        reps = counts[rows, words]
        tok = torch.repeat_interleave(words, reps)
        doc = torch.repeat_interleave(rows, reps)
        starts = torch.cumsum(lengths, 0) - lengths
        pos = torch.arange(tok.numel(), device=counts.device) - starts[doc]
        tokens = torch.zeros(B, L, dtype=torch.long, device=counts.device)
        tokens[doc, pos] = tok
        if seeds is None:
            return tokens, lengths
        seeds = torch.as_tensor(seeds)
        if seeds.shape != (B,) or seeds.is_floating_point() or seeds.dtype == torch.bool:
            raise ValueError(f"seeds must be ({B},) integers, got {tuple(seeds.shape)} of {seeds.dtype}")
        perm = torch.arange(L).repeat(B, 1)  # (B, L); padding keeps its place, after the tokens
        gen = torch.Generator()
        for j, (n, seed) in enumerate(zip(lengths.tolist(), seeds.tolist())):
            if n > 1:
                gen.manual_seed(int(seed))
                perm[j, :n] = torch.randperm(n, generator=gen)
        return tokens.gather(1, perm.to(tokens.device)), lengths

    # ------------------------------------------------------------------ model
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """``W[:, v_i]`` for every position: ``(B, L) -> (B, L, H)``."""
        return self.embedding(tokens)

    def hidden(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``h_i = g(c + sum_{k<i} e_k)``: ``(B, L, H) -> (B, L, H)`` (an exclusive cumulative sum).

        Position ``i`` reads only ``e_k`` for ``k < i``; ``h_1 = g(c)``.
        """
        prefix = F.pad(torch.cumsum(embeddings[:, :-1], dim=1), (0, 0, 1, 0))  # (B, L, H), prefix[:, 0] = 0
        return self._g(self.hidden_bias + prefix)

    def _output_log_probs(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``log softmax(b + U h)_target`` row by row: ``(T, H), (T,) -> (T,)``, in chunks of ``chunk_tokens`` rows."""

        def log_prob(hc: torch.Tensor, tc: torch.Tensor) -> torch.Tensor:
            return -F.cross_entropy(self.decoder(hc), tc, reduction="none")  # fused log-softmax and pick

        chunk = self.config.chunk_tokens
        if h.shape[0] <= chunk:
            return log_prob(h, targets)
        parts = []
        for start in range(0, h.shape[0], chunk):
            hc, tc = h[start : start + chunk], targets[start : start + chunk]
            parts.append(checkpoint(log_prob, hc, tc, use_reentrant=False) if torch.is_grad_enabled() else log_prob(hc, tc))
        return torch.cat(parts)

    def token_log_probs(
        self, tokens: torch.Tensor, lengths: torch.Tensor | None = None, embeddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The conditionals ``log p(v_i | v_<i)`` of every position.

        Args:
            tokens: ``(B, L)`` int64 word ids in ``0..V-1``.
            lengths: ``(B,)`` sequence lengths (``None``: all ``L``); positions
                ``i >= lengths[b]`` are padding.
            embeddings: ``(B, L, H)`` used in place of :meth:`embed` ``(tokens)`` as the
                hidden layer's input (the inputs whose gradients show the autoregressive
                property); ``None``: the model's own.

        Returns:
            ``(B, L)`` nats; ``0`` at padding positions.

        Raises:
            ValueError: shapes disagree, a word id outside ``0..V-1`` or a length outside ``0..L``.
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape (B, L), got {tuple(tokens.shape)}")
        B, L = tokens.shape
        if lengths is None:
            lengths = torch.full((B,), L, dtype=torch.long, device=tokens.device)
        lengths = torch.as_tensor(lengths, device=tokens.device)
        if lengths.shape != (B,) or (lengths < 0).any() or (lengths > L).any():
            raise ValueError(f"lengths must be ({B},) integers in 0..{L}, got {tuple(lengths.shape)}")
        if L == 0:
            return torch.zeros(B, 0, dtype=self._dtype(), device=tokens.device)
        mask = torch.arange(L, device=tokens.device) < lengths[:, None]  # (B, L)
        real = tokens[mask]
        if real.numel() and (real.min() < 0 or real.max() >= self.config.vocab_size):
            raise ValueError(f"word ids must lie in 0..{self.config.vocab_size - 1}")
        if embeddings is None:
            embeddings = self.embed(tokens.masked_fill(~mask, 0))
        elif embeddings.shape != (B, L, self.config.hidden_size):
            raise ValueError(f"embeddings must have shape ({B}, {L}, {self.config.hidden_size}), got {tuple(embeddings.shape)}")
        h = self.hidden(embeddings)[mask]  # (T, H): real positions only
        out = torch.zeros(B, L, dtype=h.dtype, device=h.device)
        return out.masked_scatter(mask, self._output_log_probs(h, real))

    def sequence_log_prob(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(v) = sum_i log p(v_i | v_<i)`` of word sequences: ``(B, L) -> (B,)``, nats (exact)."""
        return self.token_log_probs(tokens, lengths).sum(-1)

    def log_likelihood(
        self, x: torch.Tensor, noise: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Exact ``log p`` of each document under an ordering of its tokens, nats per document.

        Args:
            x: ``(B, V)`` word counts.
            noise: ordering seeds from :meth:`sample_noise`, ``(S, B)`` (``S`` orderings
                per document) or ``(B,)``.
            generator: with ``noise=None``, draws one random ordering per document.
            Neither: the canonical order (word ids ascending, repeats adjacent).

        Returns:
            ``(S, B)`` if ``noise`` is ``(S, B)``, else ``(B,)``.

        Raises:
            ValueError: bad counts or noise.
        """
        self._check_x(x)
        B = x.shape[0]
        if noise is None and generator is None:
            tokens, lengths = self.orderings(x)
            return self.sequence_log_prob(tokens.to(self._device()), lengths.to(self._device()))
        squeeze = noise is None or noise.dim() == 1
        noise = self.sample_noise(B, generator, 1) if noise is None else self._check_noise(noise, B)
        S = noise.shape[0]
        seqs = [self.orderings(x, noise[s]) for s in range(S)]
        L = max((t.shape[1] for t, _ in seqs), default=0)
        tokens = torch.cat([F.pad(t, (0, L - t.shape[1])) for t, _ in seqs]).to(self._device())  # (S*B, L)
        lengths = torch.cat([n for _, n in seqs]).to(self._device())
        out = self.sequence_log_prob(tokens, lengths).view(S, B)
        return out[0] if squeeze else out

    # ------------------------------------------------------------------ training
    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Training interface used by :class:`latentnlp.training.Trainer`.

        Args:
            x: ``(B, V)`` word counts.
            noise: ``(S, B)`` ordering seeds from :meth:`sample_noise`; drawn from torch's
                global generator if ``None``.

        Returns:
            ``{"loss": -mean_s log p(v_s)}``, ``(B,)`` nats per document, exact for each of
            the ``S`` random orderings.
        """
        if noise is None:
            noise = self.sample_noise(x.shape[0])
        if noise.dim() == 1:
            noise = noise[None]
        return {"loss": -self.log_likelihood(x, noise).mean(0)}

    def optimization_phases(self, alternate: bool) -> dict[str, list[nn.Parameter]]:
        """One joint phase: DocNADE has no encoder/decoder pair to alternate.

        Raises:
            ValueError: ``alternate=True``.
        """
        if alternate:
            raise ValueError("DocNADE has no encoder/decoder phases; use TrainConfig(alternate=False)")
        return {"joint": list(self.parameters())}

    # --------------------------------------------------------- corpus-level API
    @torch.no_grad()
    def corpus_log_likelihoods(
        self, corpus: "BowCorpus", n_orderings: int = 1, seed: int | None = 0, batch_size: int = 500
    ) -> torch.Tensor:
        """Exact log-likelihood of every document under ``n_orderings`` orderings: ``(K, D)`` float64, nats.

        Args:
            corpus: documents to score (V must match the model).
            n_orderings: K >= 1 orderings per document.
            seed: seeds the orderings (row ``k`` of a document does not depend on
                ``batch_size``); ``None``: the canonical order (``K`` must be 1).
            batch_size: documents per forward pass (sorted by length, so the padding is small).

        Raises:
            ValueError: vocabulary size mismatch, ``n_orderings < 1``, ``seed=None`` with ``K > 1``.
        """
        if corpus.vocab_size != self.config.vocab_size:
            raise ValueError(f"corpus has V = {corpus.vocab_size}, the model has V = {self.config.vocab_size}")
        if not _positive_int(n_orderings):
            raise ValueError(f"n_orderings must be a positive integer, got {n_orderings!r}")
        if seed is None and n_orderings != 1:
            raise ValueError(f"seed=None (the canonical order) allows n_orderings=1 only, got {n_orderings}")
        if not _positive_int(batch_size):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        D = len(corpus)
        seeds = None
        if seed is not None:
            seeds = torch.randint(0, _SEED_HIGH, (n_orderings, D), generator=torch.Generator().manual_seed(seed))
        order = torch.as_tensor(corpus.doc_lengths).argsort(stable=True)  # similar lengths share a batch
        out = torch.zeros(n_orderings, D, dtype=torch.float64)
        was_training = self.training
        self.eval()
        try:
            for start in range(0, D, batch_size):
                idx = order[start : start + batch_size]
                x = corpus.to_dense(idx.numpy(), dtype=self._dtype())
                if seeds is None:
                    out[0, idx] = self.log_likelihood(x).double().cpu()
                else:
                    out[:, idx] = self.log_likelihood(x, seeds[:, idx]).double().cpu()
        finally:
            self.train(was_training)
        return out

    def evaluate(
        self, corpus: "BowCorpus", n_orderings: int = 1, seed: int | None = 0, batch_size: int = 500
    ) -> PerplexityReport:
        """Per-document and corpus perplexities of ``corpus`` from exact log-likelihoods.

        Args:
            corpus: documents to score (no empty documents; V must match the model).
            n_orderings: K seeded random orderings per document.
            seed: seeds the orderings (deterministic result); ``None``: the canonical order.
            batch_size: documents per forward pass.

        Returns:
            A :class:`PerplexityReport` filled as the module docstring says:
            ``bound_*`` and ``elbo_nats_per_doc`` from the mean over the K orderings of the
            exact ``log p`` (K = 1: the exact value under the one ordering),
            ``estimate_*`` from their log-mean-exp ensemble (equal to ``bound_*`` for
            K = 1), ``elbo_samples = iw_samples = K``, ``kl_nats_per_doc = 0``. The
            report's :meth:`~PerplexityReport.format` prints its generic row names ("ELBO
            bound", "IW estimate"); for DocNADE they are the exact mean over orderings and
            the ordering ensemble.

        Raises:
            ValueError: as :meth:`corpus_log_likelihoods`; empty documents (from the report).
        """
        log_p = self.corpus_log_likelihoods(corpus, n_orderings, seed, batch_size)  # (K, D)
        return PerplexityReport.from_log_likelihoods(
            elbo=log_p.mean(0),
            kl=torch.zeros(log_p.shape[1], dtype=torch.float64),
            lengths=torch.as_tensor(corpus.doc_lengths, dtype=torch.float64),
            elbo_samples=n_orderings,
            iw_log_p=iw_log_mean_exp(log_p, dim=0),
            iw_samples=n_orderings,
        )

    @torch.no_grad()
    def transform(self, corpus: "BowCorpus", batch_size: int = 1000) -> torch.Tensor:
        """The hidden state after the whole document, ``g(c + W x)``: ``(D, H)`` (order-free)."""
        out = []
        W = self.embedding.weight  # (V, H)
        for start in range(0, len(corpus), batch_size):
            idx = list(range(start, min(start + batch_size, len(corpus))))
            x = corpus.to_dense(idx, dtype=self._dtype()).to(self._device())
            out.append(self._g(self.hidden_bias + x @ W).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.hidden_size)

    def topic_words(self, vocab: Sequence[str], n_words: int = 10) -> list[list[str]]:
        """For each hidden unit ``j``, the ``n_words`` words with the largest input weight ``W[j, v]``.

        Reading a word ``v`` adds column ``W[:, v]`` to every later hidden pre-activation, so
        these are the words that switch unit ``j`` on most (the paper's Sec. 4 reading of
        the rows of ``W``). Returns H lists of words.

        Raises:
            ValueError: if ``vocab`` does not have ``V`` words.
        """
        if len(vocab) != self.config.vocab_size:
            raise ValueError(f"vocab has {len(vocab)} words, the model has V = {self.config.vocab_size}")
        W = self.embedding.weight.detach().cpu()  # (V, H): column j is row j of the paper's W
        top = W.topk(min(n_words, len(vocab)), dim=0).indices.T  # (H, n)
        return [[vocab[i] for i in row.tolist()] for row in top]

    # ------------------------------------------------------------ estimator API
    def fit(
        self,
        train: "BowCorpus",
        valid: "BowCorpus | None" = None,
        config: "TrainConfig | None" = None,
        run_dir: str | None = None,
        valid_orderings: int = 1,
    ) -> "DocNADE":
        """Train on ``train`` (random orderings every step) with the shared :class:`~latentnlp.training.Trainer`.

        Args:
            train: training documents (V must match the model).
            valid: held-out documents for validation and early stopping (a part of the
                training set; never the test set). ``None``: no validation.
            config: optimisation settings (:class:`~latentnlp.training.TrainConfig`); its
                ``monitor`` defaults to ``"valid_perplexity_bound"``, which validation
                reports (here the exact per-document perplexity under the fixed seeded
                orderings, as :meth:`evaluate`'s ``bound_per_document``).
            run_dir: folder for checkpoints and the metrics log; training resumes from its
                checkpoint if one is there.
            valid_orderings: orderings per validation document (fixed seed).

        Returns:
            ``self``, with ``train_result_`` (a :class:`~latentnlp.training.TrainResult`).

        Raises:
            ValueError: if a corpus's vocabulary size differs from the model's.
        """
        from .common import fit_bow_model

        def validate(model: "DocNADE") -> dict[str, float]:
            report = model.evaluate(valid, n_orderings=valid_orderings, seed=12345)
            return {
                "valid_perplexity_bound": report.bound_per_document,
                "valid_perplexity_ensemble": report.estimate_per_document,
                "valid_corpus_perplexity": report.bound_corpus,
            }

        # (D, V) stays on the CPU; batches move to the model's device in log_likelihood.
        return fit_bow_model(self, train, valid, config, run_dir, validate, dtype=self._dtype())

    def extra_repr(self) -> str:
        c = self.config
        return f"vocab_size={c.vocab_size}, hidden_size={c.hidden_size}, activation={c.activation!r}"
