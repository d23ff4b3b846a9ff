import math

import pytest
import torch

from latentnlp.evaluation.perplexity import (
    PerplexityReport,
    corpus_perplexity,
    per_document_perplexity,
)


def test_per_document_and_corpus_perplexity_by_hand():
    log_p = torch.tensor([-10.0, -30.0])
    lengths = torch.tensor([5, 10])
    # per-document: exp(mean(10/5, 30/10)) = exp(2.5); corpus: exp(40/15)
    assert per_document_perplexity(log_p, lengths) == pytest.approx(math.exp(2.5))
    assert corpus_perplexity(log_p, lengths) == pytest.approx(math.exp(40 / 15))


def test_uniform_model_has_perplexity_vocab_size():
    # A model that gives every word probability 1/V has perplexity V under both definitions.
    V, lengths = 2000, torch.tensor([3, 50, 7])
    log_p = -lengths * math.log(V)
    assert per_document_perplexity(log_p, lengths) == pytest.approx(V)
    assert corpus_perplexity(log_p, lengths) == pytest.approx(V)


@pytest.mark.parametrize(
    "log_p, lengths, match",
    [
        (torch.tensor([-1.0]), torch.tensor([1, 2]), "shape"),
        (torch.tensor([]), torch.tensor([]), "empty"),
        (torch.tensor([float("nan")]), torch.tensor([1]), "non-finite"),
        (torch.tensor([-1.0]), torch.tensor([0]), "length <= 0"),
    ],
)
def test_errors(log_p, lengths, match):
    with pytest.raises(ValueError, match=match):
        per_document_perplexity(log_p, lengths)


def test_report_labels_bound_and_estimate():
    r = PerplexityReport.from_log_likelihoods(
        elbo=torch.tensor([-12.0, -30.0]),
        kl=torch.tensor([1.0, 2.0]),
        lengths=torch.tensor([5, 10]),
        elbo_samples=3,
        iw_log_p=torch.tensor([-10.0, -30.0]),
        iw_samples=7,
    )
    assert r.estimate_per_document == pytest.approx(math.exp(2.5))
    assert r.bound_per_document == pytest.approx(math.exp((12 / 5 + 3) / 2))
    assert r.kl_nats_per_doc == pytest.approx(1.5)
    text = r.format()
    assert "ELBO bound" in text and "IW estimate" in text and "K = 7" in text
