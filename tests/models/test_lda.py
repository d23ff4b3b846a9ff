"""LDA baseline: the left-to-right estimator against exact enumeration, its unbiasedness and
determinism, configuration and I/O, and (with tomotopy installed) training on planted topics."""

import itertools
import math
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.special import gammaln

from latentnlp.data.bow import BowCorpus
from latentnlp.evaluation.perplexity import corpus_perplexity, per_document_perplexity
from latentnlp.models.document import lda as lda_module
from latentnlp.models.document.lda import (
    LDABaseline,
    LDAConfig,
    LDAPerplexityReport,
    left_to_right_log_likelihood,
)
from tests.synthetic import planted_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

# A tiny model: K = 3 topics over V = 4 words, an asymmetric alpha, documents of 3-4 words.
PHI = np.array([[0.70, 0.10, 0.10, 0.10], [0.05, 0.05, 0.45, 0.45], [0.25, 0.25, 0.25, 0.25]])
ALPHA = np.array([0.3, 0.5, 1.0])
DOCS = np.array([[2, 0, 1, 0], [0, 1, 1, 2], [1, 1, 1, 0], [0, 0, 0, 3], [3, 0, 0, 1]])


def exact_log_p(phi: np.ndarray, alpha: np.ndarray, counts: np.ndarray) -> float:
    """log p(w_1..w_N) = log sum_z prod_n phi[z_n, w_n] * DirMult(z | alpha), over all K^N assignments z.

    ``DirMult`` is the probability of the topic *sequence* z under theta ~ Dir(alpha):
    Gamma(A) / Gamma(A + N) * prod_k Gamma(alpha_k + n_k) / Gamma(alpha_k), A = sum(alpha).
    (Any word order gives the same value: the model is exchangeable.)
    """
    words = np.repeat(np.arange(len(counts)), counts)
    K, N, A = phi.shape[0], len(words), alpha.sum()
    terms = []
    for z in itertools.product(range(K), repeat=N):
        n_k = np.bincount(z, minlength=K)
        log_prior = gammaln(A) - gammaln(A + N) + (gammaln(alpha + n_k) - gammaln(alpha)).sum()
        terms.append(log_prior + sum(math.log(phi[k, w]) for k, w in zip(z, words)))
    terms = np.array(terms)
    top = terms.max()
    return float(top + math.log(np.exp(terms - top).sum()))


EXACT = np.array([exact_log_p(PHI, ALPHA, row) for row in DOCS])

# A longer document (N = 10, K = 2: 1,024 assignments), long enough for the weights to degenerate
# and the particles to be resampled, and for the "doubling" sweeps (before positions 1, 2, 4, 8).
PHI2 = np.array([[0.6, 0.3, 0.05, 0.05], [0.1, 0.1, 0.4, 0.4]])
ALPHA2 = np.array([0.2, 0.4])
LONG = np.array([[3, 2, 2, 3]])
EXACT_LONG = exact_log_p(PHI2, ALPHA2, LONG[0])


def _tomotopy():
    with warnings.catch_warnings():  # tomotopy 0.14 warns on import ("... has no __module__ attribute")
        warnings.simplefilter("ignore", DeprecationWarning)
        return pytest.importorskip("tomotopy")


# --------------------------------------------------------------------------- the estimator


def test_exact_enumeration_is_a_distribution_over_sequences():
    """Sanity check of the reference: p(w_1..w_3) summed over all V^3 sequences is 1."""
    total = 0.0
    for seq in itertools.product(range(4), repeat=3):
        total += math.exp(exact_log_p(PHI, ALPHA, np.bincount(seq, minlength=4)))
    assert total == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"rejuvenate": "none"}, {"rejuvenate": "every"}, {"word_order": "counts"},
     {"rejuvenate": "every", "word_order": "counts"}, {"ess_threshold": 1.0}],
)
def test_many_particles_match_exact_log_likelihood(kwargs):
    est = np.stack([left_to_right_log_likelihood(PHI, ALPHA, DOCS, n_particles=4000, seed=s, **kwargs).numpy()
                    for s in range(4)])
    assert est.shape == (4, len(DOCS))
    # Monte-Carlo sd of one estimate at R = 4000 is below 0.015 nats here; the mean of 4 is within 0.03.
    np.testing.assert_allclose(est.mean(0), EXACT, atol=0.03)


@pytest.mark.parametrize("kwargs", [{}, {"rejuvenate": "none"}, {"rejuvenate": "every"}, {"ess_threshold": 1.0}])
def test_many_particles_match_exact_log_likelihood_of_a_ten_word_document(kwargs):
    est = left_to_right_log_likelihood(PHI2, ALPHA2, np.repeat(LONG, 4, axis=0), n_particles=3000, seed=0, **kwargs)
    assert abs(float(est.mean()) - EXACT_LONG) < 0.02, (est, EXACT_LONG)


@pytest.mark.parametrize(
    "n_particles, kwargs",
    [(1, {"rejuvenate": "none"}), (1, {}), (3, {"rejuvenate": "none", "ess_threshold": 1.0}), (3, {}),
     (3, {"rejuvenate": "every", "ess_threshold": 1.0}), (3, {"ess_threshold": 0.0})],
)
def test_estimate_is_unbiased_in_p(n_particles, kwargs):
    """exp(log p_hat) averages to p(w): 6,000 independent estimates per document (each replica
    has its own random stream), mean within 4.5 standard errors and 3% of the exact p; and
    2,000 of the ten-word document."""
    reps = 6000
    rows = np.repeat(DOCS, reps, axis=0)
    est = left_to_right_log_likelihood(PHI, ALPHA, rows, n_particles=n_particles, seed=7, **kwargs)
    p_hat = np.exp(est.numpy()).reshape(len(DOCS), reps)
    mean, se = p_hat.mean(1), p_hat.std(1) / math.sqrt(reps)
    z = (mean - np.exp(EXACT)) / se
    assert np.all(np.abs(z) < 4.5), z
    np.testing.assert_allclose(mean, np.exp(EXACT), rtol=0.03)
    p_long = np.exp(left_to_right_log_likelihood(PHI2, ALPHA2, np.repeat(LONG, 2000, axis=0), n_particles=n_particles,
                                                 seed=7, **kwargs).numpy())
    z_long = (p_long.mean() - math.exp(EXACT_LONG)) / (p_long.std() / math.sqrt(p_long.size))
    assert abs(z_long) < 4.5, z_long


def test_systematic_resampling_gives_each_particle_its_expected_offspring():
    w = np.array([[0.5, 0.05, 0.0, 0.3, 0.15]])
    u = np.linspace(0.0, 1.0, 1000, endpoint=False)
    offspring = np.stack([np.bincount(lda_module._systematic(w, u[i : i + 1])[0], minlength=5) for i in range(len(u))])
    assert (offspring.sum(1) == 5).all()
    assert ((offspring == np.floor(5 * w)) | (offspring == np.ceil(5 * w))).all()  # never more than one off
    np.testing.assert_allclose(offspring.mean(0), 5 * w[0], atol=1e-9)  # u on a fine grid: E[N_i] = R w_i


def test_particle_averages_without_resampling_are_biased_for_several_particles():
    """Why ``resample_particles=True`` is the default: the product over positions of plain
    particle averages, without weighting or resampling the particles (and no Gibbs sweeps, as
    MALLET's default), is off by many standard errors with R = 3."""
    reps = 6000
    rows = np.repeat(DOCS, reps, axis=0)
    est = left_to_right_log_likelihood(PHI, ALPHA, rows, n_particles=3, seed=7, rejuvenate="none",
                                       resample_particles=False)
    p_hat = np.exp(est.numpy()).reshape(len(DOCS), reps)
    z = (p_hat.mean(1) - np.exp(EXACT)) / (p_hat.std(1) / math.sqrt(reps))
    assert np.abs(z).max() > 5.0, z  # about 9 here (6.6 to 8.8 over seeds 7 to 9)
    p_long = np.exp(left_to_right_log_likelihood(PHI2, ALPHA2, np.repeat(LONG, 2000, axis=0), n_particles=3, seed=7,
                                                 rejuvenate="none", resample_particles=False).numpy())
    assert (p_long.mean() - math.exp(EXACT_LONG)) / (p_long.std() / math.sqrt(p_long.size)) > 10.0  # about 25


def test_one_particle_runs_and_resampling_is_then_a_no_op():
    one = left_to_right_log_likelihood(PHI, ALPHA, DOCS, n_particles=1, seed=3)
    assert one.shape == (len(DOCS),) and one.dtype == torch.float64
    assert torch.isfinite(one).all() and (one <= 0).all()  # every factor p_n is a probability
    printed = left_to_right_log_likelihood(PHI, ALPHA, DOCS, n_particles=1, seed=3, resample_particles=False)
    torch.testing.assert_close(one, printed, rtol=0, atol=0)
    assert not torch.equal(one, left_to_right_log_likelihood(PHI, ALPHA, DOCS, n_particles=1, seed=4))


def test_one_word_documents_are_exact():
    """p(w_1) = sum_k alpha_k / A * phi_kw, whatever the particles do."""
    rows = np.eye(4, dtype=np.int64)
    est = left_to_right_log_likelihood(PHI, ALPHA, rows, n_particles=2, seed=0)
    np.testing.assert_allclose(est.numpy(), np.log(ALPHA @ PHI / ALPHA.sum()), rtol=1e-12)


@pytest.mark.parametrize("rejuvenate", ["none", "doubling", "every"])
def test_estimate_does_not_depend_on_batch_composition(rejuvenate):
    rng = np.random.default_rng(0)
    phi = rng.dirichlet(np.ones(12), size=5)
    alpha = rng.uniform(0.1, 1.0, size=5)
    rows = rng.poisson(0.6, size=(9, 12))
    rows[3] = 0  # an empty document in the middle: exactly 0
    kw = dict(n_particles=4, seed=11, rejuvenate=rejuvenate, ess_threshold=0.9)
    whole = left_to_right_log_likelihood(phi, alpha, rows, **kw).numpy()
    one_at_a_time = left_to_right_log_likelihood(phi, alpha, rows, max_batch_elements=1, **kw).numpy()
    prefix = left_to_right_log_likelihood(phi, alpha, rows[:5], **kw).numpy()
    np.testing.assert_allclose(one_at_a_time, whole, rtol=1e-12, atol=0)
    np.testing.assert_allclose(prefix, whole[:5], rtol=1e-12, atol=0)
    assert whole[3] == 0.0 and np.all(whole[rows.sum(1) > 0] < 0)
    # every input type gives the same numbers
    corpus = BowCorpus(sp.csr_matrix(rows), tuple(f"w{i}" for i in range(12)))
    for docs in (torch.as_tensor(rows), sp.coo_matrix(rows), corpus, rows.astype(np.float32)):
        np.testing.assert_array_equal(left_to_right_log_likelihood(phi, alpha, docs, **kw).numpy(), whole)


def test_seed_changes_the_draws_but_not_the_target():
    a = left_to_right_log_likelihood(PHI, ALPHA, DOCS, n_particles=50, seed=0)
    b = left_to_right_log_likelihood(PHI, ALPHA, DOCS, n_particles=50, seed=1)
    assert not torch.equal(a, b)
    torch.testing.assert_close(a, left_to_right_log_likelihood(PHI, ALPHA, DOCS, n_particles=50, seed=0), rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_particles": 0}, "n_particles"),
        ({"n_particles": 2.0}, "n_particles"),
        ({"n_particles": True}, "n_particles"),
        ({"seed": -1}, "seed"),
        ({"word_order": "sorted"}, "word_order"),
        ({"rejuvenate": True}, "rejuvenate"),
        ({"rejuvenate": "sometimes"}, "rejuvenate"),
        ({"ess_threshold": 1.5}, "ess_threshold"),
        ({"ess_threshold": -0.1}, "ess_threshold"),
        ({"docs": np.ones((2, 5), dtype=np.int64)}, "shape"),
        ({"docs": np.ones(4, dtype=np.int64)}, "shape"),
        ({"docs": -np.ones((2, 4), dtype=np.int64)}, "non-negative"),
        ({"docs": np.full((2, 4), 0.5)}, "integer"),
        ({"topic_word": PHI * 2}, "sum to 1"),
        ({"topic_word": PHI[0]}, "shape"),
        ({"alpha": ALPHA[:2]}, "alpha"),
        ({"alpha": -ALPHA}, "alpha"),
    ],
)
def test_bad_estimator_arguments_raise(kwargs, match):
    args = {"topic_word": PHI, "alpha": ALPHA, "docs": DOCS, **kwargs}
    with pytest.raises(ValueError, match=match):
        left_to_right_log_likelihood(**args)


# --------------------------------------------------------------------------- config and model


@pytest.mark.parametrize(
    "field, value",
    [("n_topics", 0), ("n_topics", 2.5), ("n_topics", True), ("n_topics", 40000), ("alpha", 0.0), ("alpha", -1.0),
     ("alpha", math.nan), ("alpha", math.inf), ("alpha", "0.1"), ("eta", 0.0), ("iterations", 0), ("workers", 0),
     ("burn_in", -1), ("optimize_interval", -1), ("seed", -1), ("log_interval", 0)],
)
def test_bad_config_raises(field, value):
    with pytest.raises(ValueError, match=f"LDAConfig.{field}"):
        LDAConfig(**{field: value})


def test_config_to_dict_and_constructor_forms():
    cfg = LDAConfig(n_topics=7, alpha=1, iterations=5)
    assert cfg.to_dict()["n_topics"] == 7 and isinstance(cfg.alpha, float)
    assert LDAConfig(**cfg.to_dict()) == cfg
    assert LDABaseline(n_topics=7).config.n_topics == 7
    with pytest.raises(TypeError):
        LDABaseline(cfg, n_topics=3)


def test_unfitted_model_raises():
    model = LDABaseline(LDAConfig(n_topics=3))
    with pytest.raises(ValueError, match="not fitted"):
        model.evaluate(DOCS)
    with pytest.raises(ValueError, match="not fitted"):
        model.save("unused")


def test_evaluate_report_labels_the_estimator():
    model = LDABaseline.from_parameters(PHI, ALPHA)
    report = model.evaluate(DOCS, n_particles=10, seed=2)
    log_p = model.left_to_right_log_likelihood(DOCS, n_particles=10, seed=2)
    lengths = torch.as_tensor(DOCS.sum(1), dtype=torch.float64)
    assert isinstance(report, LDAPerplexityReport)
    assert report.estimate_per_document == pytest.approx(per_document_perplexity(log_p, lengths))
    assert report.estimate_corpus == pytest.approx(corpus_perplexity(log_p, lengths))
    assert math.isnan(report.bound_per_document) and math.isnan(report.bound_corpus) and report.elbo_samples == 0
    assert report.iw_samples == report.particles == 10 and report.n_docs == 5 and report.n_tokens == int(DOCS.sum())
    assert "left-to-right" in report.estimator and "left-to-right" in report.format()
    assert report.to_dict()["log_p_nats_per_doc"] == pytest.approx(float(log_p.mean()))
    with pytest.raises(ValueError, match="empty"):
        model.evaluate(np.vstack([DOCS, np.zeros((1, 4), dtype=np.int64)]))


def test_topic_words_and_save_load_roundtrip(tmp_path):
    model = LDABaseline.from_parameters(torch.as_tensor(PHI), ALPHA)
    vocab = ["apple", "bank", "car", "dog"]
    assert model.topic_words(vocab, n_words=2) == [["apple", "bank"], ["car", "dog"], ["apple", "bank"]]
    with pytest.raises(ValueError, match="vocab"):
        model.topic_words(vocab[:3])
    model.history_ = [{"iteration": 10, "ll_per_word": -1.5}]
    model.save(tmp_path / "lda")
    loaded = LDABaseline.load(tmp_path / "lda")
    np.testing.assert_array_equal(loaded.topic_word_, PHI)
    np.testing.assert_array_equal(loaded.alpha_, ALPHA)
    assert loaded.config == model.config and loaded.history_ == model.history_ and loaded.library_model_ is None
    torch.testing.assert_close(loaded.left_to_right_log_likelihood(DOCS, 5, seed=1),
                               model.left_to_right_log_likelihood(DOCS, 5, seed=1), rtol=0, atol=0)
    with pytest.raises(FileNotFoundError):
        LDABaseline.load(tmp_path / "nothing")


def test_fit_without_the_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tomotopy", None)  # makes ``import tomotopy`` fail
    with pytest.raises(ImportError, match=r"latentnlp\[bench\]"):
        LDABaseline(LDAConfig(n_topics=2, iterations=1)).fit(planted_corpus(n_docs=6))


# --------------------------------------------------------------------------- training (tomotopy)


def _with_unused_word(corpus: BowCorpus) -> BowCorpus:
    counts = sp.hstack([corpus.counts, sp.csr_matrix((corpus.n_docs, 1), dtype=np.int64)]).tocsr()
    return BowCorpus(counts, corpus.vocab + ("unused",), corpus.labels)


def test_fit_on_planted_topics_beats_a_unigram_model():
    tp = _tomotopy()
    corpus = _with_unused_word(planted_corpus(n_docs=90, vocab_size=30, n_topics=3, doc_len=40, seed=0))
    train, held_out = corpus.split(1 / 3, seed=0)
    cfg = LDAConfig(n_topics=3, iterations=150, seed=1, workers=1, log_interval=50)
    model = LDABaseline(cfg).fit(train)
    phi, alpha = model.topic_word_, model.alpha_
    assert phi.shape == (3, 31) and alpha.shape == (3,) and (alpha > 0).all()
    np.testing.assert_allclose(phi.sum(1), 1.0, rtol=1e-12)
    assert [h["iteration"] for h in model.history_] == [50, 100, 150]
    assert model.n_train_docs_ == train.n_docs and model.n_train_tokens_ == train.n_tokens
    # the word never seen in training keeps its column, with phi = eta / (n_k + V eta)
    n_k = np.bincount(np.concatenate([d.topics for d in model.library_model_.docs]), minlength=3)
    np.testing.assert_allclose(phi[:, 30], cfg.eta / (n_k + 31 * cfg.eta), rtol=1e-12)
    # phi agrees with the library's own (float32, over the words it saw) after mapping the vocabulary
    lib = model.library_model_
    cols = [int(w) for w in lib.used_vocabs]
    for k in range(3):
        ours = phi[k, cols] / phi[k, cols].sum()
        np.testing.assert_allclose(np.asarray(lib.get_topic_word_dist(k), dtype=np.float64), ours, rtol=1e-4, atol=1e-6)
    # each topic's 10 most probable words are one planted block
    blocks = sorted(sorted({int(w[1:]) // 10 for w in words}) for words in model.topic_words(corpus.vocab, 10))
    assert blocks == [[0], [1], [2]]
    # held-out perplexity: LDA well below a (smoothed) unigram model of the training counts
    lda = model.evaluate(held_out, n_particles=20, seed=0)
    unigram = np.asarray(train.counts.sum(0)).ravel() + 1.0
    log_p_unigram = torch.as_tensor(held_out.counts @ np.log(unigram / unigram.sum()))
    lengths = torch.as_tensor(held_out.doc_lengths, dtype=torch.float64)
    assert lda.estimate_per_document < 0.6 * per_document_perplexity(log_p_unigram, lengths)
    # one worker and a fixed seed: the fit is reproducible
    again = LDABaseline(cfg).fit(train)
    np.testing.assert_array_equal(again.topic_word_, phi)
    np.testing.assert_array_equal(again.alpha_, alpha)
    assert tp.__version__ == "0.14.0"
