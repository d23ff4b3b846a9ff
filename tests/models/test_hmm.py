import itertools
import math

import numpy as np
import pytest
import torch

from latentnlp.evaluation.tagging import accuracy
from latentnlp.models.sequence.hmm import (
    ExpectedCounts,
    HiddenMarkovModel,
    HMMConfig,
    expected_counts,
    fast_expected_counts,
)

C, V = 3, 5


def known_hmm() -> HiddenMarkovModel:
    """A well-separated 3-state HMM over 5 words."""
    init = torch.tensor([0.6, 0.3, 0.1])
    transition = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    emission = torch.tensor(
        [[0.6, 0.3, 0.05, 0.03, 0.02], [0.05, 0.05, 0.8, 0.05, 0.05], [0.02, 0.03, 0.05, 0.3, 0.6]]
    )
    return HiddenMarkovModel(n_states=C, vocab_size=V).set_probabilities(init, transition, emission)


def random_sentences(n: int, seed: int, max_len: int = 7) -> list[torch.Tensor]:
    """Sentences of varied length (1..max_len) sampled from :func:`known_hmm`."""
    g = torch.Generator().manual_seed(seed)
    _, words = known_hmm().sample(n, max_len, generator=g)
    lengths = torch.randint(1, max_len + 1, (n,), generator=g)
    return [words[i, : lengths[i]] for i in range(n)]


def random_model(seed: int) -> HiddenMarkovModel:
    """Parameters drawn from flat Dirichlets (what EM starts from; zero M-steps)."""
    return HiddenMarkovModel(n_states=C, vocab_size=V, random_state=seed).fit_em([torch.tensor([0])], n_iter=0)


def params(model: HiddenMarkovModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return model.log_init_, model.log_transition_, model.log_emission_


def brute_force(model: HiddenMarkovModel, sentence: torch.Tensor):
    """log p(x), best path, its log p(x, z) and the node posteriors, by enumerating all C^L paths."""
    pi, a, b = (p.exp() for p in params(model))
    x = sentence.tolist()
    joint = {}
    for z in itertools.product(range(C), repeat=len(x)):
        p = pi[z[0]] * b[z[0], x[0]]
        for n in range(1, len(x)):
            p = p * a[z[n - 1], z[n]] * b[z[n], x[n]]
        joint[z] = p.item()
    total = sum(joint.values())
    best = max(joint, key=joint.get)
    node = torch.zeros(len(x), C, dtype=torch.float64)
    for z, p in joint.items():
        for n, i in enumerate(z):
            node[n, i] += p / total
    return math.log(total), best, math.log(joint[best]), node


def test_log_likelihood_viterbi_and_posteriors_match_brute_force():
    model = random_model(0)
    sentences = random_sentences(12, seed=1, max_len=5)
    log_p = model.log_likelihood(sentences)
    paths = model.viterbi(sentences)
    decoded = model.posterior_decode(sentences)
    counts = model.expected_counts(sentences)
    emission = torch.zeros(C, V, dtype=torch.float64)
    init = torch.zeros(C, dtype=torch.float64)
    for d, s in enumerate(sentences):
        ref_log_p, best, _, node = brute_force(model, s)
        assert log_p[d].item() == pytest.approx(ref_log_p, rel=1e-12)
        assert tuple(paths[d].tolist()) == best
        assert torch.equal(decoded[d], node.argmax(-1))
        init += node[0]
        for n, w in enumerate(s.tolist()):
            emission[:, w] += node[n]
    assert torch.allclose(counts.init, init, atol=1e-12)
    assert torch.allclose(counts.emission, emission, atol=1e-12)
    assert counts.log_likelihood.item() == pytest.approx(log_p.sum().item(), rel=1e-12)
    n_tokens = sum(len(s) for s in sentences)
    assert counts.n_tokens.item() == n_tokens and counts.n_sentences.item() == len(sentences)
    assert counts.transition.sum().item() == pytest.approx(n_tokens - len(sentences))


def test_expected_counts_add_over_shards_and_ignore_batching():
    model = random_model(1)
    sentences = random_sentences(30, seed=2)
    theta = params(model)
    whole = expected_counts(*theta, sentences, max_batch_tokens=4096)
    one_by_one = expected_counts(*theta, sentences, max_batch_tokens=1)
    shards = expected_counts(*theta, sentences[:11]) + expected_counts(*theta, sentences[11:])
    for other in (one_by_one, shards):
        assert isinstance(other, ExpectedCounts)
        for a, b in zip(whole.tensors(), other.tensors()):
            assert torch.allclose(a.double(), b.double(), rtol=1e-12, atol=1e-12)


def test_em_log_likelihood_never_decreases_and_restarts_pick_the_best():
    sentences = random_sentences(60, seed=3)
    model = HiddenMarkovModel(n_states=C, vocab_size=V, random_state=0, n_restarts=3, n_iter=25, tol=-math.inf)
    model.fit_em(sentences)
    history = np.array(model.log_likelihood_history_)
    assert len(history) == model.n_iter_ + 1 == 26 and not model.converged_
    assert (np.diff(history) >= -1e-9 * np.abs(history[:-1])).all()
    assert history[-1] > history[0]
    assert model.objective_history_ == model.log_likelihood_history_  # no smoothing: no prior term
    assert len(model.restart_log_likelihoods_) == 3
    assert history[-1] == max(model.restart_log_likelihoods_)
    assert model.score(sentences) == pytest.approx(history[-1], rel=1e-12)
    for p in params(model):
        assert torch.allclose(p.exp().sum(-1), torch.ones(()).double())


def test_em_with_smoothing_increases_the_map_objective_and_stops_on_tol():
    sentences = random_sentences(40, seed=4)
    model = HiddenMarkovModel(n_states=C, vocab_size=V, random_state=1, smoothing=0.5, n_iter=200, tol=1e-6)
    model.fit_em(sentences)
    objective = np.array(model.objective_history_)
    assert (np.diff(objective[:-1]) >= -1e-9 * np.abs(objective[:-2])).all()
    assert model.converged_ and model.n_iter_ < 200
    assert all(torch.isfinite(p).all() for p in params(model))  # smoothing: no zero probabilities


def test_fit_em_is_reproducible_with_random_state():
    sentences = random_sentences(20, seed=5)
    a = HiddenMarkovModel(n_states=C, vocab_size=V, random_state=7, n_iter=5).fit_em(sentences)
    b = HiddenMarkovModel(n_states=C, vocab_size=V, random_state=7, n_iter=5).fit_em(sentences)
    assert a.log_likelihood_history_ == b.log_likelihood_history_


def test_supervised_fit_recovers_known_parameters_and_tags_well():
    truth = known_hmm()
    g = torch.Generator().manual_seed(0)
    states, words = truth.sample(1500, 20, generator=g)
    model = HiddenMarkovModel(n_states=C, vocab_size=V).fit_supervised(list(words), list(states), smoothing=0.0)
    for learned, true in zip(params(model), params(truth)):
        assert torch.allclose(learned.exp(), true.exp(), atol=0.03)
    # add-k smoothing: every probability positive
    smoothed = HiddenMarkovModel(n_states=C, vocab_size=V).fit_supervised(list(words[:3]), list(states[:3]))
    assert all(torch.isfinite(p).all() for p in params(smoothed))
    test_states, test_words = truth.sample(200, 20, generator=g)
    pred = torch.cat(model.viterbi(list(test_words)))
    assert accuracy(pred, test_states.flatten()) > 0.75
    mbr = torch.cat(model.posterior_decode(list(test_words)))
    assert accuracy(mbr, test_states.flatten()) >= accuracy(pred, test_states.flatten()) - 0.02


def test_sample_shapes_and_reproducibility():
    model = known_hmm()
    s1, w1 = model.sample(4, 6, generator=torch.Generator().manual_seed(3))
    s2, w2 = model.sample(4, 6, generator=torch.Generator().manual_seed(3))
    assert s1.shape == w1.shape == (4, 6) and s1.dtype == torch.long
    assert torch.equal(s1, s2) and torch.equal(w1, w2)
    assert ((w1 >= 0) & (w1 < V)).all() and ((s1 >= 0) & (s1 < C)).all()


def test_errors_name_the_sentence():
    model = known_hmm()
    with pytest.raises(ValueError, match=r"sentence 1 has word id 5 at position 2"):
        model.log_likelihood([torch.tensor([0, 1]), torch.tensor([0, 1, 5])])
    with pytest.raises(ValueError, match=r"sentence 0 has word id -1"):
        model.fit_em([torch.tensor([-1])], n_iter=1)
    with pytest.raises(ValueError, match="sentence 1 is empty"):
        model.viterbi([torch.tensor([0]), torch.tensor([], dtype=torch.long)])
    with pytest.raises(ValueError, match=r"tags of sentence 0 have shape \(1,\), expected \(2,\)"):
        model.fit_supervised([torch.tensor([0, 1])], [torch.tensor([0])])
    with pytest.raises(ValueError, match=r"sentence 0 has tag 3 at position 1"):
        model.fit_supervised([torch.tensor([0, 1])], [torch.tensor([0, 3])])
    with pytest.raises(ValueError, match="n_restarts must be 1"):
        model.fit_em([torch.tensor([0])], init="current", n_restarts=2)
    with pytest.raises(ValueError, match=r"transition has shape \(2, 2\)"):
        model.set_probabilities(torch.ones(3) / 3, torch.eye(2), torch.ones(3, 5) / 5)
    with pytest.raises(RuntimeError, match="no parameters"):
        HiddenMarkovModel(n_states=2, vocab_size=3).log_likelihood([torch.tensor([0])])
    with pytest.raises(ValueError, match="n_states"):
        HMMConfig(n_states=0, vocab_size=3)
    with pytest.raises(ValueError, match="init"):
        HMMConfig(n_states=2, vocab_size=3, init="kmeans")


def test_matches_hmmlearn_after_the_same_number_of_em_iterations():
    hmm = pytest.importorskip("hmmlearn.hmm")
    sentences = random_sentences(40, seed=6)
    start = random_model(11)
    init, transition, emission = (p.exp() for p in params(start))
    n_iter = 8
    ours = HiddenMarkovModel(n_states=C, vocab_size=V).set_probabilities(init, transition, emission)
    ours.fit_em(sentences, n_iter=n_iter, tol=-math.inf, init="current")
    theirs = hmm.CategoricalHMM(
        n_components=C, n_features=V, n_iter=n_iter, tol=-np.inf, init_params="", params="ste", random_state=0
    )
    theirs.startprob_, theirs.transmat_, theirs.emissionprob_ = init.numpy(), transition.numpy(), emission.numpy()
    X = np.concatenate([s.numpy() for s in sentences])[:, None]
    lengths = [len(s) for s in sentences]
    assert theirs.score(X, lengths) == pytest.approx(ours.log_likelihood_history_[0], rel=1e-10)
    theirs.fit(X, lengths)
    # hmmlearn's monitor records the log-likelihood *before* each M-step; score() is after the last one.
    assert ours.n_iter_ == n_iter
    assert theirs.score(X, lengths) == pytest.approx(ours.score(sentences), rel=1e-6)
    assert ours.log_likelihood_history_[-1] == pytest.approx(theirs.score(X, lengths), rel=1e-6)
    assert np.allclose(list(theirs.monitor_.history), ours.log_likelihood_history_[:-1], rtol=1e-6)
    assert np.allclose(theirs.transmat_, ours.log_transition_.exp().numpy(), atol=1e-8)
    assert np.allclose(theirs.emissionprob_, ours.log_emission_.exp().numpy(), atol=1e-8)
    assert np.allclose(theirs.startprob_, ours.log_init_.exp().numpy(), atol=1e-8)


def test_float32_agrees_with_float64_and_lists_are_accepted():
    sentences = random_sentences(15, seed=8)
    model64 = random_model(2)
    model32 = HiddenMarkovModel(n_states=C, vocab_size=V, dtype="float32")
    model32.set_probabilities(*(p.exp() for p in params(model64)))
    ll64, ll32 = model64.log_likelihood(sentences), model32.log_likelihood(sentences)
    assert ll32.dtype == torch.float32 and torch.allclose(ll32.double(), ll64, rtol=1e-5)
    as_lists = [s.tolist() for s in sentences]
    assert torch.equal(model64.log_likelihood(as_lists), ll64)
    assert [p.tolist() for p in model32.viterbi(sentences)] == [p.tolist() for p in model64.viterbi(sentences)]


# --------------------------------------------------------------------------- variational Bayes EM
from latentnlp.models.sequence.hmm import _dirichlet_kl, _dirichlet_log_weights  # noqa: E402


def vb_model(**kwargs) -> HiddenMarkovModel:
    fields = dict(n_states=C, vocab_size=V, estimator="vb", alpha_transition=0.3, alpha_emission=0.2, tol=-math.inf)
    return HiddenMarkovModel(**{**fields, **kwargs})


@pytest.mark.parametrize("e_step", ["scaled", "log"])
def test_vb_elbo_never_decreases_and_restarts_pick_the_highest_elbo(e_step):
    sentences = random_sentences(50, seed=11)
    model = vb_model(random_state=2, n_restarts=3, n_iter=40, e_step=e_step).fit_em(sentences)
    elbo = np.array(model.objective_history_)
    assert len(elbo) == 41 and elbo[0] == -math.inf  # a random point estimate has no q(theta), so no bound
    assert np.isfinite(elbo[1:]).all()
    assert (np.diff(elbo[1:]) >= -1e-9 * np.abs(elbo[1:-1])).all()
    assert elbo[-1] > elbo[1]
    assert len(model.restart_log_likelihoods_) == 3 and elbo[-1] == max(model.restart_log_likelihoods_)
    # the ELBO is log Z of the sub-normalised weights minus KL(q || prior) <= log Z, and a lower bound
    assert (elbo[1:] < np.array(model.log_likelihood_history_[1:])).all()


def test_vb_m_step_weights_kl_and_posterior_mean_parameters():
    sentences = random_sentences(30, seed=12)
    model = vb_model(random_state=3, n_iter=5).fit_em(sentences)
    init_d, trans_d, emis_d = model.vb_dirichlet_
    # q(theta) = Dirichlet(expected counts under the last weights + alpha)
    weights = tuple(_dirichlet_log_weights(d) for d in model.vb_dirichlet_)
    # weights: exp(digamma(count + alpha) - digamma(total + K alpha)), rows sum to < 1 (sub-normalised)
    expected = torch.digamma(emis_d) - torch.digamma(emis_d.sum(-1, keepdim=True))
    assert torch.allclose(weights[2], expected)
    assert all((w.exp().sum(-1) < 1).all() for w in weights)
    # the decoding parameters are the posterior means (rows sum to 1)
    for p, d in zip(params(model), model.vb_dirichlet_):
        assert torch.allclose(p.exp(), d / d.sum(-1, keepdim=True))
    # the counts behind q(theta) are a proper E-step: totals = sentences, transitions, tokens
    n_tokens = sum(len(s) for s in sentences)
    assert (init_d - 0.3).sum().item() == pytest.approx(len(sentences))
    assert (trans_d - 0.3).sum().item() == pytest.approx(n_tokens - len(sentences))
    assert (emis_d - 0.2).sum().item() == pytest.approx(n_tokens)
    # KL of Dirichlets against torch.distributions
    prior = torch.distributions.Dirichlet(torch.full_like(trans_d, 0.3))
    reference = torch.distributions.kl_divergence(torch.distributions.Dirichlet(trans_d), prior).sum()
    assert _dirichlet_kl(trans_d, 0.3).item() == pytest.approx(reference.item(), rel=1e-10)


def test_scaled_e_step_handles_sub_normalised_weights_like_the_log_space_core():
    sentences = random_sentences(25, seed=13)
    model = vb_model(random_state=4, n_iter=3).fit_em(sentences)
    weights = tuple(_dirichlet_log_weights(d) for d in model.vb_dirichlet_)
    fast = fast_expected_counts(*weights, sentences)
    slow = expected_counts(*weights, sentences, max_batch_tokens=16)
    for a, b in zip(fast.tensors(), slow.tensors()):
        assert torch.allclose(a.double(), b.double(), rtol=1e-10, atol=1e-10)
    # and log Z agrees with brute-force enumeration over all paths for one sentence
    pi, a, b = (w.exp() for w in weights)
    x = sentences[0].tolist()
    total = 0.0
    for z in itertools.product(range(C), repeat=len(x)):
        p = pi[z[0]] * b[z[0], x[0]]
        for n in range(1, len(x)):
            p = p * a[z[n - 1], z[n]] * b[z[n], x[n]]
        total += p.item()
    single = fast_expected_counts(*weights, [sentences[0]])
    assert single.log_likelihood.item() == pytest.approx(math.log(total), rel=1e-10)


def test_vb_in_chunks_with_init_current_continues_the_same_run():
    sentences = random_sentences(30, seed=14)
    whole = vb_model(random_state=5, n_iter=12).fit_em(sentences)
    chunked = vb_model(random_state=5, n_iter=12).fit_em(sentences, n_iter=5)
    elbo = list(chunked.objective_history_)
    chunked.fit_em(sentences, n_iter=7, init="current")
    assert chunked.objective_history_[0] == pytest.approx(elbo[-1], rel=1e-12)  # re-scored start = same bound
    elbo += chunked.objective_history_[1:]
    assert elbo[1:] == pytest.approx(whole.objective_history_[1:], rel=1e-10)
    for p, q in zip(params(whole), params(chunked)):
        assert torch.allclose(p, q)
    # new point parameters drop the stale posterior
    chunked.set_probabilities(*(p.exp() for p in params(whole)))
    assert not hasattr(chunked, "vb_dirichlet_")


def test_vb_config_is_validated():
    for bad in (dict(estimator="map"), dict(alpha_transition=0), dict(alpha_emission=-0.1),
                dict(alpha_emission=math.inf), dict(alpha_transition=True),
                dict(estimator="vb", smoothing=0.5)):
        with pytest.raises(ValueError):
            HMMConfig(n_states=C, vocab_size=V, **bad)
    config = HMMConfig(n_states=C, vocab_size=V, estimator="vb")
    assert (config.alpha_transition, config.alpha_emission) == (0.1, 0.1)
    assert HMMConfig(n_states=C, vocab_size=V).estimator == "mle"
