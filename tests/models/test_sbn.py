"""Discrete-latent document models (SBN / fDARN, Mnih & Gregor 2014) against exact enumeration.

The toy models have K <= 5 binary latents, so every expectation under Q and the marginal
``log p(x) = log sum_h P(x, h)`` are computed exactly over the ``2^K`` configurations, by
a reference written here from the raw parameters (explicit loops for the fDARN chain
rule), independent of the model's own methods.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from latentnlp.inference.nvil import NVILConfig
from latentnlp.models.document.sbn import DocumentSBN, SBNConfig
from latentnlp.training.trainer import TrainConfig, Trainer
from tests.synthetic import planted_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

DT = torch.float64
V, K = 6, 4
DOCS = torch.tensor([[2, 0, 1, 0, 0, 0], [0, 3, 0, 1, 1, 0], [1, 1, 4, 0, 2, 2], [6, 0, 0, 5, 3, 6]], dtype=DT)


def _configs(k: int) -> torch.Tensor:
    """All ``2^k`` binary vectors, ``(2^k, k)``."""
    return ((torch.arange(2**k)[:, None] >> torch.arange(k)) & 1).to(DT)


def _model(prior: str = "factorized", k: int = K, seed: int = 0, **kw) -> DocumentSBN:
    """A float64 toy with random, fairly peaked parameters (the ELBO gap is visible)."""
    torch.manual_seed(seed)
    m = DocumentSBN(SBNConfig(vocab_size=V, latent_dim=k, prior=prior, decoder_bias_init="zero", **kw)).double()
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        m.prior_bias.copy_(torch.randn(k, generator=g, dtype=DT))
        if m.prior_weight is not None:  # the whole (K, K) parameter, upper triangle included: must be masked
            m.prior_weight.copy_(2.0 * torch.randn(k, k, generator=g, dtype=DT))
        m.decoder.weight.copy_(2.5 * torch.randn(V, k, generator=g, dtype=DT))
        m.decoder.bias.copy_(0.5 * torch.randn(V, generator=g, dtype=DT))
        if isinstance(m.encoder, torch.nn.Linear):
            m.encoder.weight.copy_(0.8 * torch.randn(k, V, generator=g, dtype=DT))
            m.encoder.bias.copy_(0.5 * torch.randn(k, generator=g, dtype=DT))
    return m


def _reference(m: DocumentSBN, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Exact quantities by enumeration, from the raw parameters (linear encoder, log1p input)."""
    k = m.config.latent_dim
    H = _configs(k)  # (C, K)
    b = m.prior_bias.detach()
    logits = b.expand(H.shape).clone()
    if m.config.prior == "darn":
        A = m.prior_weight.detach()
        for i in range(k):
            for j in range(i):  # only h_j, j < i, enters P(h_i | h_<i)
                logits[:, i] += A[i, j] * H[:, j]
    log_prior = (H * F.logsigmoid(logits) + (1 - H) * F.logsigmoid(-logits)).sum(-1)  # (C,)
    R, bw = m.decoder.weight.detach(), m.decoder.bias.detach()
    log_lik = (x[None] * torch.log_softmax(H @ R.T + bw, -1)[:, None, :]).sum(-1)  # (C, B)
    q_logits = torch.log1p(x) @ m.encoder.weight.detach().T + m.encoder.bias.detach()  # (B, K)
    q1 = torch.sigmoid(q_logits)
    log_q = (H[:, None, :] * q1.log() + (1 - H[:, None, :]) * (1 - q1).log()).sum(-1)  # (C, B)
    q = log_q.exp()
    log_joint = log_prior[:, None] + log_lik
    signal = log_joint - log_q
    elbo = (q * signal).sum(0)
    return {
        "log_prior": log_prior,
        "q": q,
        "elbo": elbo,
        "kl": (q * (log_q - log_prior[:, None])).sum(0),
        "signal_var": (q * (signal - elbo) ** 2).sum(0),
        "lik_var": (q * (log_lik - (q * log_lik).sum(0)) ** 2).sum(0),
        "log_p": torch.logsumexp(log_joint, 0),
    }


# ----------------------------------------------------------------------------- config
def test_bad_configs_raise_and_config_round_trips():
    for kwargs, field in [
        ({"latent_dim": 0}, "latent_dim"),
        ({"vocab_size": True}, "vocab_size"),
        ({"prior": "gaussian"}, "prior"),
        ({"encoder_hidden": -1}, "encoder_hidden"),
        ({"encoder_activation": "gelu"}, "encoder_activation"),
        ({"input_transform": "tfidf"}, "input_transform"),
        ({"decoder_bias_init": "random"}, "decoder_bias_init"),
        ({"train_samples": 0}, "train_samples"),
        ({"nvil": {"centring": "both"}}, "nvil"),
        ({"nvil": "both"}, "nvil"),
    ]:
        with pytest.raises(ValueError, match=f"SBNConfig.{field}"):
            SBNConfig(**{"vocab_size": 10, **kwargs})
    with pytest.raises(ValueError, match="NVILConfig.alpha"):
        SBNConfig(vocab_size=10, nvil={"alpha": 1.0})
    cfg = SBNConfig(vocab_size=10, latent_dim=3, prior="darn", encoder_hidden=5, nvil={"centering": "constant"})
    assert isinstance(cfg.nvil, NVILConfig) and cfg.nvil.centering == "constant"
    d = cfg.to_dict()
    assert d["nvil"] == NVILConfig(centering="constant").to_dict()
    assert json.loads(json.dumps(d)) == d and SBNConfig(**d) == cfg
    with pytest.raises(TypeError):
        DocumentSBN(cfg, latent_dim=4)
    m = DocumentSBN(cfg)
    assert not m.nvil.baselines  # "constant": no baseline MLP
    full = DocumentSBN(SBNConfig(vocab_size=10, latent_dim=3, prior="darn"))
    phases = full.optimization_phases(alternate=True)
    enc, dec = ({id(p) for p in phases[k]} for k in ("encoder", "decoder"))
    assert not enc & dec and enc | dec == {id(p) for p in full.parameters()}
    assert id(full.prior_weight) in dec and len(full.optimization_phases(False)["joint"]) == len(list(full.parameters()))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 10\)"):
        m(torch.ones(2, 9))
    with pytest.raises(ValueError, match="noise must have shape"):
        m(torch.ones(2, 10), torch.rand(1, 3, 3))
    with pytest.raises(ValueError, match="n_samples"):
        m.iw_log_likelihood(torch.ones(2, 10), 0)


# ----------------------------------------------------------------------------- prior
@pytest.mark.parametrize("k", [4, 5])
def test_darn_prior_is_normalised_and_autoregressive(k):
    m = _model("darn", k=k)
    H = _configs(k)
    total = m.log_prior(H).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=DT))
    torch.testing.assert_close(m.log_prior(H), _reference(m, DOCS)["log_prior"])  # the chain rule, by hand
    # d logit P(h_i | h_<i) / d h_j = A_ij for j < i and exactly 0 for j >= i, wherever h is
    for h in (torch.rand(k, dtype=DT), H[-1]):
        J = torch.autograd.functional.jacobian(m.prior_logits, h)  # (K, K): J[i, j]
        assert torch.equal(J.triu(), torch.zeros(k, k, dtype=DT))
        torch.testing.assert_close(J.tril(-1), m.prior_weight.detach().tril(-1))
        assert (J.tril(-1).abs() > 0).sum() == k * (k - 1) // 2
    # the masked entries of the parameter never receive a gradient
    m.log_prior(H).sum().backward()
    assert torch.equal(m.prior_weight.grad.triu(), torch.zeros(k, k, dtype=DT))
    assert m.prior_weight.grad.tril(-1).abs().sum() > 0
    # a factorised prior is normalised too, and reads no h at all
    f = _model("factorized", k=k)
    torch.testing.assert_close(f.log_prior(H).exp().sum(), torch.tensor(1.0, dtype=DT))
    assert torch.equal(torch.autograd.functional.jacobian(f.prior_logits, H[3]), torch.zeros(k, k, dtype=DT))


# ----------------------------------------------------------------------------- bounds
@pytest.mark.parametrize("prior", ["factorized", "darn"])
def test_elbo_and_training_loss_match_the_enumerated_elbo(prior):
    m = _model(prior)
    ref = _reference(m, DOCS)
    n = 100_000
    gen = torch.Generator().manual_seed(1)
    terms = m.elbo(DOCS, n_samples=n, generator=gen)
    tol = 5.0 * torch.sqrt(torch.maximum(ref["signal_var"], ref["lik_var"]) / n) + 1e-9
    assert ((terms.elbo - ref["elbo"]).abs() < tol).all(), (terms.elbo, ref["elbo"], tol)
    if prior == "factorized":  # closed-form Bernoulli KLs
        torch.testing.assert_close(terms.kl, ref["kl"])
    else:
        assert ((terms.kl - ref["kl"]).abs() < tol).all()
    torch.testing.assert_close(terms.elbo, terms.reconstruction - terms.kl)
    # the Trainer's honest loss is -(log P - log Q) of the sampled h: its mean is -ELBO
    m.eval()
    out = m(DOCS, m.sample_noise(DOCS.shape[0], gen, n_samples=n))
    tol = 5.0 * torch.sqrt(ref["signal_var"] / n)
    assert ((out["loss"] + ref["elbo"]).abs() < tol).all(), (out["loss"], ref["elbo"])
    assert not out["loss"].requires_grad and out["surrogate"].requires_grad
    assert int(m.nvil.num_updates) == 0  # eval mode: no statistics moved


@pytest.mark.parametrize("prior", ["factorized", "darn"])
def test_iw_estimate_tends_to_the_exact_marginal(prior):
    m = _model(prior, seed=2)
    ref = _reference(m, DOCS)
    exact, elbo = ref["log_p"], ref["elbo"]
    assert ((exact - elbo) > 0.3).all(), exact - elbo  # a visible gap, so the test can fail
    gen = torch.Generator().manual_seed(3)
    reps = 400
    x = DOCS.repeat(reps, 1)  # (reps * B, V): independent estimates side by side
    means, ses = [], []
    for s in (1, 10, 100):
        est = m.iw_log_likelihood(x, s, generator=gen).reshape(reps, -1)  # (reps, B)
        means.append(est.mean(0))
        ses.append(est.std(0) / math.sqrt(reps))
    # S = 1 is the ELBO in expectation; larger S is above it and never above log p(x)
    assert ((means[0] - elbo).abs() < 4 * ses[0] + 1e-9).all()
    assert (means[0] < means[1]).all() and (means[1] < means[2]).all()
    for mu, se in zip(means, ses):
        assert (mu < exact + 4 * se + 1e-9).all()
    # the gap to log p(x) closes: with S = 5000 only Monte-Carlo noise is left (bias ~ 1/S)
    big = m.iw_log_likelihood(DOCS.repeat(64, 1), 5000, generator=gen).reshape(64, -1)  # (64, B)
    se = big.std(0) / math.sqrt(64)
    assert ((big.mean(0) - exact).abs() < 4 * se + 2e-3).all(), (big.mean(0), exact, se)
    assert (4 * se < 0.1 * (exact - elbo)).all() and ((exact - means[2]).abs() < 0.25 * (exact - elbo)).all()


def test_evaluate_reports_labelled_per_document_perplexities():
    m = _model("darn", seed=4)
    corpus = planted_corpus(n_docs=9, vocab_size=V, n_topics=3, doc_len=12, seed=1)
    report = m.evaluate(corpus, elbo_samples=30, iw_samples=300, seed=7)
    x = corpus.to_dense(dtype=DT)
    gen = torch.Generator().manual_seed(7)  # evaluate's draws, in its order (one batch)
    elbo = m.elbo(x, n_samples=30, generator=gen).elbo
    iw = m.iw_log_likelihood(x, 300, generator=gen)
    lengths = torch.as_tensor(corpus.doc_lengths, dtype=DT)
    assert report.bound_per_document == pytest.approx(math.exp((-elbo / lengths).mean().item()))
    assert report.estimate_per_document == pytest.approx(math.exp((-iw / lengths).mean().item()))
    assert report.estimate_per_document < report.bound_per_document
    assert report.iw_samples == 300 and report.elbo_samples == 30 and report.n_docs == 9
    assert m.evaluate(corpus, iw_samples=0).estimate_per_document is None
    with pytest.raises(ValueError, match="corpus has V = 9"):
        m.evaluate(planted_corpus(n_docs=3, vocab_size=9))
    # fit() validates with the per-document bound (the Trainer's default monitor)
    m.fit(corpus, corpus, TrainConfig(epochs=1, batch_size=5, seed=0, progress=False), valid_elbo_samples=2)
    record = m.train_result_.history[0]
    assert {"valid_perplexity_bound", "valid_corpus_perplexity_bound", "valid_kl"} <= set(record)
    assert m.train_result_.best_epoch == 1


def test_topic_words_read_the_columns_of_r():
    m = _model(k=2)
    vocab = ("space", "nasa", "orbit", "god", "church", "faith")
    with torch.no_grad():
        m.decoder.weight.copy_(torch.tensor([[3.0, 0], [2.0, 0.1], [1.0, 0], [0, 3.0], [0.1, 2.0], [0, 1.0]], dtype=DT))
    assert m.topic_words(vocab, n_words=2) == [["space", "nasa"], ["god", "church"]]
    with pytest.raises(ValueError, match="vocab has 5 words"):
        m.topic_words(vocab[:5])


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("prior", ["factorized", "darn"])
def test_nvil_training_improves_the_elbo_on_a_planted_corpus(prior):
    corpus = planted_corpus(n_docs=60, vocab_size=30, n_topics=3, doc_len=40, seed=0)
    torch.manual_seed(0)
    m = DocumentSBN(SBNConfig(vocab_size=30, latent_dim=4, prior=prior, nvil={"baseline_hidden": 16}))
    m.init_decoder_bias(corpus.to_dense().sum(0))  # fit() does this too: the gain is not the unigram bias
    before = m.evaluate(corpus, elbo_samples=20, iw_samples=0).elbo_nats_per_doc
    cfg = TrainConfig(epochs=40, batch_size=10, learning_rate=3e-2, seed=0, progress=False)
    m.fit(corpus, None, cfg)
    after = m.evaluate(corpus, elbo_samples=20, iw_samples=0)
    assert m.train_result_.epochs_completed == 40 and int(m.nvil.num_updates) == 240
    # unigram model ~ -136 nats/doc; the planted topics allow ~ -96 + KL (log 3 ~ 1.1 nats)
    assert after.elbo_nats_per_doc > before + 20.0, (before, after.elbo_nats_per_doc)
    hist = m.train_result_.history
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 15.0
    assert "train_surrogate" not in hist[0] and {"train_kl", "train_reconstruction", "train_centered_signal"} <= set(hist[0])


class _Stop(Exception):
    pass


def _fit_through_trainer(run_dir, stop_at=None) -> DocumentSBN:
    corpus = planted_corpus(n_docs=12, vocab_size=9, n_topics=3, doc_len=15, seed=2)
    x = corpus.to_dense()
    torch.manual_seed(5)
    model = DocumentSBN(SBNConfig(vocab_size=9, latent_dim=3, prior="darn", train_samples=2, nvil={"baseline_hidden": 8}))
    model.init_decoder_bias(x.sum(0))

    def on_step(trainer, epoch, step):
        if step == stop_at:
            raise _Stop

    cfg = TrainConfig(epochs=3, batch_size=4, learning_rate=1e-2, seed=3, progress=False)
    Trainer(model, cfg, len(corpus), collate=lambda idx: x[idx], run_dir=run_dir, on_step=on_step).fit()
    return model


def test_resume_through_the_trainer_gives_the_uninterrupted_weights(tmp_path):
    full = _fit_through_trainer(tmp_path / "full")
    assert int(full.nvil.num_updates) == 9
    with pytest.raises(_Stop):
        _fit_through_trainer(tmp_path / "cut", stop_at=5)  # inside epoch 2; the checkpoint holds epoch 1
    resumed = _fit_through_trainer(tmp_path / "cut")
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    history = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 3 and history[0]["train_loss"] > 10.0  # -ELBO, nats per document


def test_baseline_word_weights_start_at_the_unigram_log_likelihood_and_train_with_the_encoder():
    m = _model()
    counts = DOCS.sum(0)
    m.init_decoder_bias(counts)
    unigram = ((counts + 1) / (counts + 1).sum()).log()
    torch.testing.assert_close(m.baseline_offset(DOCS), DOCS @ unigram)  # the length-dependent bulk of log P(x|h)
    phases = m.optimization_phases(alternate=True)
    assert any(p is m.baseline_word_weight for p in phases["encoder"])
    assert not any(p is m.baseline_word_weight for p in phases["decoder"])
    m.train()
    out = m.loss_terms(DOCS, m.sample_noise(DOCS.shape[0], torch.Generator().manual_seed(0)))
    out["surrogate"].sum().backward()
    assert m.baseline_word_weight.grad is not None and m.baseline_word_weight.grad.abs().sum() > 0
    # the paper's MLP-only baseline, and no baseline at all, have no word weights
    assert _model(baseline_word_weights=False).baseline_offset(DOCS) is None
    assert _model(nvil=NVILConfig(centering="constant")).baseline_word_weight is None
    with pytest.raises(ValueError, match="baseline_word_weights"):
        SBNConfig(vocab_size=V, baseline_word_weights="yes")
