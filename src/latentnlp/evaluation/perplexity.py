"""Perplexity of document models, the way the NVDM and NVIL papers report it.

Two figures are reported, and it matters which one a table quotes:

* **per-document perplexity** ``exp( (1/D) * sum_d  -log p(d) / N_d )`` — the
  figure of Mnih & Gregor (2014, Sec. 6.2) and Miao et al. (2016, Sec. 3.1 and
  their released evaluation code): each document's per-word negative
  log-likelihood is averaged over documents, so short documents weigh as much
  as long ones;
* **corpus perplexity** ``exp( -sum_d log p(d) / sum_d N_d )`` — the usual
  per-word figure of language modelling.

``log p(d)`` is in nats and is either a lower bound (the ELBO), which gives an
*upper bound* on perplexity, or an importance-weighted estimate (Burda et al.
2016), which is tighter. :class:`PerplexityReport` keeps both labelled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

__all__ = [
    "per_document_perplexity",
    "corpus_perplexity",
    "PerplexityReport",
]


def _check(log_p: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    log_p = torch.as_tensor(log_p, dtype=torch.float64)
    lengths = torch.as_tensor(lengths, dtype=torch.float64)
    if log_p.dim() != 1 or lengths.dim() != 1 or log_p.shape != lengths.shape:
        raise ValueError(
            f"log_p and lengths must both have shape (D,), got {tuple(log_p.shape)} and {tuple(lengths.shape)}"
        )
    if log_p.numel() == 0:
        raise ValueError("perplexity of an empty set of documents is undefined (D = 0)")
    if not torch.isfinite(log_p).all():
        bad = torch.nonzero(~torch.isfinite(log_p)).flatten()[:5].tolist()
        raise ValueError(f"log_p has non-finite values at documents {bad}")
    if (lengths <= 0).any():
        bad = torch.nonzero(lengths <= 0).flatten()[:5].tolist()
        raise ValueError(f"documents {bad} have length <= 0; drop empty documents first")
    return log_p, lengths


def per_document_perplexity(log_p: torch.Tensor, lengths: torch.Tensor) -> float:
    """``exp(mean_d(-log_p[d] / lengths[d]))``.

    Args:
        log_p: ``(D,)`` log-likelihood (or its bound/estimate) of each document, nats.
        lengths: ``(D,)`` number of tokens ``N_d`` of each document (> 0).

    Returns:
        The per-document perplexity (Mnih & Gregor 2014; Miao et al. 2016).

    Raises:
        ValueError: on shape mismatch, an empty set, non-finite ``log_p`` or a
        non-positive length.
    """
    log_p, lengths = _check(log_p, lengths)
    return math.exp((-log_p / lengths).mean().item())


def corpus_perplexity(log_p: torch.Tensor, lengths: torch.Tensor) -> float:
    """``exp(-sum_d log_p[d] / sum_d lengths[d])`` (per-word perplexity of the corpus).

    Shapes, units and errors as :func:`per_document_perplexity`.
    """
    log_p, lengths = _check(log_p, lengths)
    return math.exp((-log_p.sum() / lengths.sum()).item())


@dataclass(frozen=True)
class PerplexityReport:
    """Perplexities of one model on one set of documents, bound and estimate side by side.

    Attributes:
        n_docs: number of documents D.
        n_tokens: total tokens ``sum_d N_d``.
        bound_per_document / bound_corpus: from the ELBO, a lower bound on
            ``log p(d)``; these perplexities are upper bounds.
        estimate_per_document / estimate_corpus: from the importance-weighted
            estimate of ``log p(d)`` with ``iw_samples`` samples (Burda et al.
            2016); ``None`` if not computed.
        elbo_nats_per_doc: mean ELBO per document, nats.
        kl_nats_per_doc: mean KL(q(z|d) || p(z)) per document, nats.
        elbo_samples: Monte-Carlo samples used for each document's ELBO.
        iw_samples: importance samples K for the estimate (0 if not computed).
    """

    n_docs: int
    n_tokens: int
    bound_per_document: float
    bound_corpus: float
    elbo_nats_per_doc: float
    kl_nats_per_doc: float
    elbo_samples: int
    estimate_per_document: float | None = None
    estimate_corpus: float | None = None
    iw_samples: int = 0

    @classmethod
    def from_log_likelihoods(
        cls,
        elbo: torch.Tensor,
        kl: torch.Tensor,
        lengths: torch.Tensor,
        elbo_samples: int,
        iw_log_p: torch.Tensor | None = None,
        iw_samples: int = 0,
    ) -> "PerplexityReport":
        """Build a report from per-document ``(D,)`` ELBOs, KLs, lengths and optional IW estimates."""
        lengths = torch.as_tensor(lengths, dtype=torch.float64)
        return cls(
            n_docs=int(lengths.numel()),
            n_tokens=int(lengths.sum().item()),
            bound_per_document=per_document_perplexity(elbo, lengths),
            bound_corpus=corpus_perplexity(elbo, lengths),
            elbo_nats_per_doc=float(torch.as_tensor(elbo, dtype=torch.float64).mean()),
            kl_nats_per_doc=float(torch.as_tensor(kl, dtype=torch.float64).mean()),
            elbo_samples=elbo_samples,
            estimate_per_document=None if iw_log_p is None else per_document_perplexity(iw_log_p, lengths),
            estimate_corpus=None if iw_log_p is None else corpus_perplexity(iw_log_p, lengths),
            iw_samples=iw_samples if iw_log_p is not None else 0,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        """A small human-readable table, bound and estimate labelled."""
        lines = [
            f"documents: {self.n_docs}   tokens: {self.n_tokens}",
            f"{'':28s}{'per-document':>14s}{'corpus':>12s}",
            f"{'perplexity, ELBO bound':28s}{self.bound_per_document:14.1f}{self.bound_corpus:12.1f}"
            f"   (upper bound; ELBO averaged over {self.elbo_samples} sample(s))",
        ]
        if self.estimate_per_document is not None:
            lines.append(
                f"{'perplexity, IW estimate':28s}{self.estimate_per_document:14.1f}{self.estimate_corpus:12.1f}"
                f"   (importance-weighted, K = {self.iw_samples})"
            )
        lines.append(f"ELBO {self.elbo_nats_per_doc:.2f} nats/doc, KL {self.kl_nats_per_doc:.2f} nats/doc")
        return "\n".join(lines)
