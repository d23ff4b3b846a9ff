"""The Replicated Softmax: exact Z_D by enumeration, conditionals, sampler, AIS, CD/PCD training, resume, checks."""

import itertools
import json
import math

import numpy as np
import pytest
import torch

from latentnlp.data.bow import BowCorpus
from latentnlp.evaluation.perplexity import PerplexityReport, per_document_perplexity
from latentnlp.inference.ais import annealed_importance_sampling, betas_schedule
from latentnlp.models.document import rsm as rsm_module
from latentnlp.models.document.rsm import (
    ReplicatedSoftmax,
    RSMAnnealingPath,
    RSMConfig,
    RSMPerplexityReport,
    log_multinomial_coefficient,
    multinomial_counts,
    rsm_ais,
    rsm_hidden_ais,
)
from latentnlp.training.distributed import DistributedContext
from latentnlp.training.trainer import TrainConfig, Trainer
from tests.synthetic import planted_corpus

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_rsm(v=3, h=3, scale=1.0, seed=0, **kw):
    """A float64 RSM with random weights (std ``scale``) and standard-normal biases."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ReplicatedSoftmax(RSMConfig(vocab_size=v, hidden_dim=h, init_scale=scale, **kw)).double()
        with torch.no_grad():
            model.visible_bias.normal_(0.0, 1.0)
            model.hidden_bias.normal_(0.0, 0.5)
    return model


def count_vectors(v, d):
    """All count vectors of ``d`` words over ``v`` word types: ``(C(d+v-1, v-1), v)`` float64."""
    return torch.tensor([c for c in itertools.product(range(d + 1), repeat=v) if sum(c) == d], dtype=torch.float64)


def hidden_states(h):
    return torch.tensor(list(itertools.product([0, 1], repeat=h)), dtype=torch.float64)


def neg_energies(model, vs):
    """``-E(v, h)`` for every count vector and hidden state: ``(n_v, 2^H)``."""
    hs = hidden_states(model.config.hidden_dim)
    with torch.no_grad():
        return torch.stack([-model.energy(vs, hh.expand(len(vs), -1)) for hh in hs], 1)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_exact_log_z_and_normalisation_by_enumeration(d):
    model = tiny_rsm(seed=d)
    vs = count_vectors(3, d)
    # Z_D sums over the V^D word sequences: each count vector stands for C(v) of them.
    brute = torch.logsumexp((log_multinomial_coefficient(vs).unsqueeze(1) + neg_energies(model, vs)).flatten(), 0)
    with torch.no_grad():
        exact = model.exact_log_partition(d)
        assert float(exact) == pytest.approx(float(brute), abs=1e-12)
        torch.testing.assert_close(model.exact_log_partition([d, d]), exact.expand(2))
        # count-vector probabilities sum to 1; sequence probabilities sum to 1 over all V^D sequences
        assert float(model.exact_log_prob(vs, counts=True).exp().sum()) == pytest.approx(1.0, abs=1e-12)
        seqs = torch.tensor(list(itertools.product(range(3), repeat=d)))
        seq_counts = torch.nn.functional.one_hot(seqs, 3).sum(1).double()  # (3^d, 3)
        assert float(model.exact_log_prob(seq_counts).exp().sum()) == pytest.approx(1.0, abs=1e-12)
        # the two differ by exactly the multinomial coefficient
        torch.testing.assert_close(model.exact_log_prob(vs, counts=True) - model.exact_log_prob(vs), log_multinomial_coefficient(vs))


def test_free_energy_and_conditionals_match_the_joint():
    model = tiny_rsm(seed=4)
    d = 3
    vs = count_vectors(3, d)
    ne = neg_energies(model, vs)  # (10, 8)
    hs = hidden_states(3)
    with torch.no_grad():
        torch.testing.assert_close(model.free_energy(vs), -torch.logsumexp(ne, 1), rtol=0, atol=1e-12)
        # p(h | v): the joint's posterior marginals are the sigmoids
        torch.testing.assert_close(torch.softmax(ne, 1) @ hs, model.hidden_probs(vs), rtol=0, atol=1e-12)
        # p(v | h) over count vectors of length D: C(v) exp(-E) normalised, is Multinomial(D, softmax(b + W h))
        joint = log_multinomial_coefficient(vs).unsqueeze(1) + ne
        cond = torch.log_softmax(joint, 0)  # (10, 8): column h is log p(v | h, D)
        for j, hh in enumerate(hs):
            mult = torch.distributions.Multinomial(d, probs=model.word_probs(hh.unsqueeze(0))[0])
            torch.testing.assert_close(cond[:, j], mult.log_prob(vs), rtol=0, atol=1e-10)
            torch.testing.assert_close(cond[:, j], model.visible_log_prob_given_hidden(vs, hh.expand(len(vs), -1)), rtol=0, atol=1e-10)


def test_multinomial_counts_inverse_cdf_and_frequencies():
    logits = torch.log(torch.tensor([[0.2, 0.0, 0.8], [0.5, 0.25, 0.25]]))
    u = torch.tensor([[0.1, 0.2, 0.99, 0.5], [0.6, 0.74, 0.76, 0.0]])
    out = multinomial_counts(logits, torch.tensor([3, 4]), u)
    # row 0: 0.1 -> word 0, 0.2 -> word 2 (cdf 0.2 is not > 0.2; word 1 has probability 0), 0.99 -> word 2; u[0, 3] unused
    assert out.tolist() == [[1.0, 0.0, 2.0], [1.0, 2.0, 1.0]]  # row 1: cdf 0.5, 0.75, 1 -> words 1, 1, 2, 0
    big = multinomial_counts(logits, torch.tensor([20000, 50000]), generator=torch.Generator().manual_seed(0))
    assert big.sum(1).tolist() == [20000, 50000] and big[0, 1] == 0
    torch.testing.assert_close(big / big.sum(1, keepdim=True), logits.exp(), rtol=0, atol=0.01)
    with pytest.raises(ValueError, match=r"uniforms must have shape \(2, L\) with L >= the longest row's 4 words"):
        multinomial_counts(logits, torch.tensor([3, 4]), u[:, :3])


def test_gibbs_chains_of_mixed_lengths_reach_the_exact_count_distribution():
    model = tiny_rsm(seed=5)
    n = 3000
    lengths = torch.tensor([1, 2, 3]).repeat_interleave(n)
    samples = model.sample(3 * n, lengths, torch.Generator().manual_seed(0), n_steps=15)
    assert torch.equal(samples.sum(1).long(), lengths)  # each chain keeps its own D
    for i, d in enumerate((1, 2, 3)):
        vs = count_vectors(3, d)
        with torch.no_grad():
            p = model.exact_log_prob(vs, counts=True).exp()
        got = samples[i * n : (i + 1) * n]
        freq = torch.stack([(got == v).all(1).double().mean() for v in vs])
        torch.testing.assert_close(freq, p, rtol=0, atol=0.03)


def _assert_exact_within_interval(model, res, lengths, tol=None):
    """Every length's enumerated ``log Z_D`` lies in its AIS 3-sigma interval (and within ``tol`` nats of the estimate)."""
    with torch.no_grad():
        exact = model.exact_log_partition(list(lengths)).tolist()
    for d, e in zip(lengths, exact):
        r = res[d]
        assert r.log_z_lower <= e <= r.log_z_upper, (d, e, r.to_dict())
        if tol is not None:
            assert abs(r.log_z - e) < tol, (d, e, r.to_dict())


def test_ais_matches_exact_log_z_within_its_reported_error():
    model = tiny_rsm(seed=6)
    res = rsm_ais(model, [3, 1, 2, 2], n_chains=100, betas=200, generator=torch.Generator().manual_seed(0))
    assert list(res) == [1, 2, 3]
    _assert_exact_within_interval(model, res, (1, 2, 3))
    for d, r in res.items():
        assert r.n_chains == 100 and r.n_temperatures == 200 and r.extra == {"length": d}
        assert r.log_z_base == pytest.approx(3 * math.log(2.0) + d * math.log(3.0))  # uniform base, free hidden units
    # a larger vocabulary and longer documents, from the unigram base of the model's own samples
    big = tiny_rsm(v=25, h=5, scale=0.5, seed=7)
    x = big.sample(200, 30, torch.Generator().manual_seed(1), n_steps=10)
    big.init_from_data(x)
    res = big.estimate_log_partitions([30, 60], n_chains=100, betas=300, seed=2)
    _assert_exact_within_interval(big, res, (30, 60), tol=0.2)
    # one length through the generic AIS loop: the same numbers as the batched runner
    path = RSMAnnealingPath(big.weight, big.visible_bias, big.hidden_bias, big.base_rate_bias, [30])
    generic = annealed_importance_sampling(path, betas_schedule(300), 100, torch.Generator().manual_seed(3))
    batched = rsm_ais(big, [30], n_chains=100, betas=300, generator=torch.Generator().manual_seed(3))[30]
    torch.testing.assert_close(generic.log_weights, batched.log_weights, rtol=0, atol=1e-9)
    assert generic.log_z == pytest.approx(batched.log_z, abs=1e-9)


def test_hidden_space_ais_matches_exact_log_z_within_its_reported_error():
    model = tiny_rsm(v=4, h=5, seed=6)
    res = rsm_hidden_ais(model, [3, 1, 2, 2], n_chains=100, betas=200, generator=torch.Generator().manual_seed(0))
    assert list(res) == [1, 2, 3]
    _assert_exact_within_interval(model, res, (1, 2, 3), tol=0.1)
    for r in res.values():
        assert r.n_chains == 100 and r.n_temperatures == 200 and r.log_z_base == 0.0
    # longer documents, where D sharpens f_D(h): still within the interval
    big = tiny_rsm(v=25, h=6, scale=0.5, seed=7)
    res = rsm_hidden_ais(big, [30, 200], n_chains=100, betas=500, generator=torch.Generator().manual_seed(2))
    _assert_exact_within_interval(big, res, (30, 200), tol=0.2)
    with pytest.raises(ValueError, match="lengths must be >= 1"):
        rsm_hidden_ais(big, [0, 3])
    with pytest.raises(ValueError, match="n_chains"):
        rsm_hidden_ais(big, [3], n_chains=0)


def _grads(model, objective):
    model.zero_grad()
    objective.backward()
    return torch.cat([p.grad.flatten().clone() for p in model.parameters()])


def test_surrogate_gradient_is_the_exact_nll_gradient_for_mixed_lengths():
    model = tiny_rsm(seed=8)
    x = torch.tensor([[1.0, 0, 1], [0, 3, 0], [2, 0, 1], [0, 0, 1]], dtype=torch.float64)  # lengths 2, 3, 3, 1
    d = x.sum(1)
    exact = _grads(model, (model.free_energy(x) + model.exact_log_partition(d)).mean())
    # negatives: every count vector of each length, weighted by (n_D / B) p_D(v)
    neg, w = [], []
    for length, n_d in ((1, 1), (2, 1), (3, 2)):
        vs = count_vectors(3, length)
        with torch.no_grad():
            p = model.exact_log_prob(vs, counts=True).exp()
        neg.append(vs)
        w.append(p * n_d / 4)
    plugged = _grads(model, model.contrastive_surrogate(x, torch.cat(neg), torch.cat(w)).mean())
    torch.testing.assert_close(plugged, exact, rtol=0, atol=1e-10)


def test_pseudo_nll_is_the_word_position_conditional():
    model = tiny_rsm(seed=9)
    x = torch.tensor([[2.0, 0, 1], [0, 1, 3]], dtype=torch.float64)
    u = torch.tensor([0.7, 0.1], dtype=torch.float64)  # position 2 of 3 -> word 2; position 0 of 4 -> word 1
    with torch.no_grad():
        expected = []
        for row, word in ((x[0], 2), (x[1], 1)):
            alts = (row - torch.nn.functional.one_hot(torch.tensor(word), 3)).unsqueeze(0) + torch.eye(3, dtype=torch.float64)
            f = model.free_energy(alts)  # the V sequences that differ at that position
            expected.append(-row.sum() * torch.log_softmax(-f, 0)[word])
        torch.testing.assert_close(model.pseudo_nll(x, u), torch.stack(expected), rtol=0, atol=1e-12)


def _mixed_planted(n_docs, seed):
    """Planted topics with documents of 10 and 20 words (two lengths, so Z_D matters per length)."""
    a = planted_corpus(n_docs // 2, vocab_size=12, n_topics=3, doc_len=10, seed=seed)
    b = planted_corpus(n_docs - n_docs // 2, vocab_size=12, n_topics=3, doc_len=20, seed=seed + 100)
    counts = np.vstack([a.counts.toarray(), b.counts.toarray()])
    import scipy.sparse as sp

    return BowCorpus(counts=sp.csr_matrix(counts), vocab=a.vocab)


def test_cd_training_on_planted_topics_raises_the_exact_log_likelihood():
    train, valid = _mixed_planted(60, 0), _mixed_planted(30, 1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = ReplicatedSoftmax(RSMConfig(vocab_size=12, hidden_dim=4, cd_k=1, init_scale=0.01)).double()
    model.init_from_data(train.to_dense(dtype=torch.float64))
    xv = valid.to_dense(dtype=torch.float64)
    with torch.no_grad():
        before = float(model.exact_log_prob(xv).mean())
    cfg = TrainConfig(epochs=15, batch_size=10, learning_rate=0.05, optimizer="sgd", momentum=0.5, seed=0, progress=False,
                      patience=0, monitor=model.monitor)
    model.fit(train, valid, cfg)
    with torch.no_grad():
        after = float(model.exact_log_prob(xv).mean())
    assert after > before + 1.0, (before, after)  # about -37.3 -> -32.4 nats per document
    hist = model.train_result_.history
    assert hist[-1]["valid_pseudo_nll"] < hist[0]["valid_pseudo_nll"]
    # the AIS perplexity of the trained model agrees with the exact one
    report = model.evaluate(valid, ais_chains=50, ais_betas=200, seed=0)
    with torch.no_grad():
        exact_ppl = per_document_perplexity(model.exact_log_prob(xv), torch.as_tensor(valid.doc_lengths, dtype=torch.float64))
    assert isinstance(report, RSMPerplexityReport) and isinstance(report, PerplexityReport)
    assert report.n_lengths == 2 and report.n_docs == 30 and report.ais_chains == 50 and report.ais_temperatures == 200
    lo, hi = report.estimate_per_document_3sd
    assert lo <= exact_ppl <= hi and report.estimate_per_document == pytest.approx(exact_ppl, rel=0.01)
    assert math.isnan(report.bound_per_document) and "AIS" in report.format()
    hidden = model.evaluate(valid, ais_chains=50, ais_betas=200, seed=0, ais_space="hidden")  # the other chain agrees too
    assert hidden.ais_space == "hidden" and "hidden units" in hidden.ais_base
    assert hidden.estimate_per_document == pytest.approx(exact_ppl, rel=0.01)
    with pytest.raises(ValueError, match="ais_space"):
        model.evaluate(valid, ais_chains=2, ais_betas=3, ais_space="visible")
    assert model.transform(valid).shape == (30, 4) and [len(t) for t in model.topic_words(valid.vocab, 3)] == [3] * 4


class Interrupt(Exception):
    pass


def _train_pcd(run_dir, data, interrupt_at_step=None):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = ReplicatedSoftmax(RSMConfig(vocab_size=12, hidden_dim=3, persistent=True, n_chains=7, cd_k=2, weight_decay=1e-4))
    x = data.to_dense()
    model.init_from_data(x[:40], torch.Generator().manual_seed(0))
    cfg = TrainConfig(epochs=3, batch_size=8, learning_rate=0.05, optimizer="sgd", momentum=0.5, lr_schedule="linear",
                      seed=3, progress=False, patience=0, monitor=model.monitor)

    def on_step(trainer, epoch, step):
        if step == interrupt_at_step:
            raise Interrupt

    trainer = Trainer(model, cfg, 40, collate=lambda i: x[i], validate=lambda m: m.validation_metrics(x[40:]),
                      run_dir=run_dir, on_step=on_step)
    return model, trainer.fit()


def test_pcd_training_resumes_exactly_after_interruption(tmp_path):
    data = _mixed_planted(50, 2)
    full_model, full = _train_pcd(tmp_path / "full", data)
    with pytest.raises(Interrupt):  # 40 documents / batch 8 = 5 steps per epoch: step 7 is in epoch 2
        _train_pcd(tmp_path / "cut", data, interrupt_at_step=7)
    assert json.loads((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 1
    resumed_model, resumed = _train_pcd(tmp_path / "cut", data)
    assert resumed.steps == full.steps == 15
    for k, v in full_model.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k
    assert [r["valid_pseudo_nll"] for r in resumed.history] == [r["valid_pseudo_nll"] for r in full.history]
    assert torch.equal(full_model.chains.sum(1), resumed_model.chains.sum(1))  # chains keep their lengths
    assert int(full_model.max_length) == 20


def test_noise_layout_and_pcd_chains_persist_only_in_training_mode():
    model = tiny_rsm(v=4, h=3, seed=10, persistent=True, n_chains=3)
    x = torch.tensor([[1.0, 2, 0, 0], [0, 0, 1, 4], [1, 1, 1, 1]], dtype=torch.float64)
    model.init_from_data(x, torch.Generator().manual_seed(0))
    noise = model.sample_noise(2, torch.Generator().manual_seed(1))
    assert noise.shape == (1, 2, 2 * (3 + 5))  # m = ceil(3 / 2) chains per batch slot, H + max_length uniforms each
    before = model.chains.clone()
    model.eval()
    model(x[:2], noise)
    assert torch.equal(model.chains, before)
    model.train()
    out = model(x[:2], noise)
    assert set(out) == {"loss", "surrogate", "free_energy"} and all(t.shape == (2,) for t in out.values())
    assert torch.equal(model.chains.sum(1), before.sum(1)) and not torch.equal(model.chains, before)


def test_bad_configs_and_inputs_raise():
    with pytest.raises(ValueError, match="hidden_dim"):
        RSMConfig(vocab_size=4, hidden_dim=0)
    with pytest.raises(ValueError, match="vocab_size"):
        RSMConfig(vocab_size=True)
    with pytest.raises(ValueError, match="visible_bias_init"):
        RSMConfig(vocab_size=4, visible_bias_init="random")
    with pytest.raises(TypeError, match="persistent"):
        RSMConfig(vocab_size=4, persistent=1)
    with pytest.raises(ValueError, match="init_scale"):
        RSMConfig(vocab_size=4, init_scale=0.0)
    with pytest.raises(ValueError, match="weight_decay"):
        RSMConfig(vocab_size=4, weight_decay=-1.0)
    with pytest.raises(TypeError, match="not both"):
        ReplicatedSoftmax(RSMConfig(vocab_size=4), hidden_dim=3)
    model = ReplicatedSoftmax(RSMConfig(vocab_size=4, hidden_dim=3))
    with pytest.raises(ValueError, match=r"x of shape \(1, 4\) must hold non-negative integer word counts; x\[0, 1\] = 0.5"):
        model(torch.tensor([[1.0, 0.5, 0, 0]]))
    with pytest.raises(ValueError, match=r"v must have shape \(B, 4\), got \(2, 3\)"):
        model.free_energy(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"x\[0, 2\] = -1.0"):
        model.pseudo_nll(model.check_input(torch.tensor([[1.0, 0, -1, 0]])))
    with pytest.raises(RuntimeError, match="init_from_data"):
        model.sample_noise(2)
    model.init_from_data(torch.tensor([[1.0, 2, 0, 0]]))
    with pytest.raises(ValueError, match=r"noise holds 3 word draws per chain, but a document has 5 words"):
        model(torch.tensor([[1.0, 2, 2, 0]]), model.sample_noise(1))
    with pytest.raises(ValueError, match=r"2\^3 hidden states; refusing above 2"):
        model.exact_log_partition(3, max_hidden=2)
    with pytest.raises(ValueError, match=r"lacks log Z_D for the document lengths \[3\]"):
        model.evaluate(torch.tensor([[1.0, 2, 0, 0]]), ais={})
    with pytest.raises(ValueError, match=r"documents \[1\] are empty"):
        model.evaluate(torch.tensor([[1.0, 2, 0, 0], [0, 0, 0, 0]]), ais_chains=2, ais_betas=3)
    with pytest.raises(ValueError, match="lengths must be >= 1"):
        rsm_ais(model, [0, 2], n_chains=2, betas=3)
    with pytest.raises(ValueError, match="monitor"):
        model.fit(torch.tensor([[1.0, 2, 0, 0]]), torch.tensor([[1.0, 0, 0, 0]]), TrainConfig(epochs=1, progress=False))


def test_pcd_refuses_multi_process_training_and_needs_initialised_chains(monkeypatch):
    pcd = ReplicatedSoftmax(RSMConfig(vocab_size=4, hidden_dim=3, persistent=True, n_chains=2))
    x = torch.tensor([[1.0, 1, 0, 0]])
    with pytest.raises(ValueError, match="PCD chains hold empty documents"):
        pcd(x)
    pcd.init_from_data(x)
    monkeypatch.setattr(rsm_module.DistributedContext, "current", classmethod(lambda cls: DistributedContext(0, 2)))
    with pytest.raises(RuntimeError, match="PCD"):
        pcd(x)
    cd = ReplicatedSoftmax(RSMConfig(vocab_size=4, hidden_dim=3))
    cd.init_from_data(x)
    assert cd(x)["surrogate"].shape == (1,)  # CD-k is fine under torchrun
