"""DocNADE (Larochelle & Lauly 2012) against enumeration and a naive loop.

The toy models have V = 4 words, so every word sequence of length N <= 3 is enumerated
(``V^N <= 64``), and every ordering of a short document (``N! <= 24``). The reference
conditionals are computed here by an explicit loop over positions from the raw
parameters, independent of the model's cumulative-sum implementation.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from latentnlp.data.bow import BowCorpus
from latentnlp.evaluation.perplexity import per_document_perplexity
from latentnlp.models.document.docnade import DocNADE, DocNADEConfig
from latentnlp.training.trainer import TrainConfig, Trainer
from tests.synthetic import planted_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

DT = torch.float64
V, H = 4, 3
DOCS = torch.tensor([[1, 0, 2, 0], [0, 3, 0, 1], [2, 1, 1, 2], [0, 0, 1, 0]], dtype=DT)  # lengths 3, 4, 6, 1


def _model(seed: int = 0, **kw) -> DocNADE:
    """A float64 toy with random, fairly large parameters (order effects are visible)."""
    torch.manual_seed(seed)
    m = DocNADE(DocNADEConfig(vocab_size=kw.pop("vocab_size", V), hidden_size=H, decoder_bias_init="zero", **kw)).double()
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(1.5 * torch.randn(p.shape, generator=g, dtype=DT))
    return m


def _naive_conditionals(m: DocNADE, seq: list[int]) -> torch.Tensor:
    """``log p(v_i | v_<i)`` by an explicit loop: h_i = g(c + sum_{k<i} W[:, v_k]), p = softmax(b + U h_i)."""
    W = m.embedding.weight.detach().T  # (H, V), the paper's W
    c, U, b = m.hidden_bias.detach(), m.decoder.weight.detach(), m.decoder.bias.detach()
    acc, out = c.clone(), []
    for v in seq:
        p = torch.softmax(b + U @ torch.sigmoid(acc), 0)
        out.append(p[v].log())
        acc = acc + W[:, v]
    return torch.stack(out) if out else torch.zeros(0, dtype=DT)


def _corpus(x: torch.Tensor) -> BowCorpus:
    return BowCorpus(sp.csr_matrix(x.long().numpy()), tuple(f"w{i}" for i in range(x.shape[1])))


def _tokens(x_row: torch.Tensor) -> list[int]:
    return [v for v, n in enumerate(x_row.long().tolist()) for _ in range(n)]


# ----------------------------------------------------------------------------- config
def test_bad_configs_raise_and_config_round_trips():
    for kwargs, field in [
        ({"hidden_size": 0}, "hidden_size"),
        ({"vocab_size": True}, "vocab_size"),
        ({"vocab_size": 2.0}, "vocab_size"),
        ({"activation": "gelu"}, "activation"),
        ({"decoder_bias_init": "random"}, "decoder_bias_init"),
        ({"train_orderings": 0}, "train_orderings"),
        ({"chunk_tokens": -1}, "chunk_tokens"),
    ]:
        with pytest.raises(ValueError, match=f"DocNADEConfig.{field}"):
            DocNADEConfig(**{"vocab_size": 10, **kwargs})
    cfg = DocNADEConfig(vocab_size=10, hidden_size=5, activation="tanh", train_orderings=2)
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d and DocNADEConfig(**d) == cfg
    assert DocNADEConfig(vocab_size=10).hidden_size == 50 and DocNADEConfig(vocab_size=10).activation == "sigmoid"
    with pytest.raises(TypeError):
        DocNADE(cfg, hidden_size=4)
    m = DocNADE(cfg)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 10\)"):
        m(torch.ones(2, 9))
    with pytest.raises(ValueError, match="whole-number"):
        m(torch.full((2, 10), 0.5))
    with pytest.raises(ValueError, match="non-negative"):
        m(-torch.ones(2, 10))
    with pytest.raises(ValueError, match="noise must have shape"):
        m(torch.ones(2, 10), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer ordering seeds"):
        m(torch.ones(2, 10), torch.rand(1, 2))
    with pytest.raises(ValueError, match="word ids"):
        m.token_log_probs(torch.tensor([[3, 10]]))
    with pytest.raises(ValueError, match="lengths"):
        m.token_log_probs(torch.tensor([[3, 1]]), torch.tensor([3]))
    with pytest.raises(ValueError, match="n_samples"):
        m.sample_noise(2, n_samples=0)
    with pytest.raises(ValueError, match="no encoder/decoder phases"):
        m.optimization_phases(alternate=True)
    assert len(m.optimization_phases(False)["joint"]) == len(list(m.parameters()))
    corpus = planted_corpus(n_docs=3, vocab_size=10)
    with pytest.raises(ValueError, match="n_orderings"):
        m.evaluate(corpus, n_orderings=0)
    with pytest.raises(ValueError, match="seed=None"):
        m.evaluate(corpus, n_orderings=2, seed=None)
    with pytest.raises(ValueError, match="corpus has V = 9"):
        m.evaluate(planted_corpus(n_docs=3, vocab_size=9))
    with pytest.raises(ValueError, match="word_counts"):
        m.init_decoder_bias(torch.ones(9))


# ----------------------------------------------------------------------------- exactness
def test_all_sequences_of_a_length_sum_to_one_and_conditionals_match_a_loop():
    m = _model()
    for n in (1, 2, 3):
        seqs = torch.tensor(list(itertools.product(range(V), repeat=n)))  # (V^n, n), every sequence
        log_p = m.sequence_log_prob(seqs)
        torch.testing.assert_close(log_p.logsumexp(0), torch.tensor(0.0, dtype=DT))  # sum_v p(v) = 1
        cond = m.token_log_probs(seqs)
        ref = torch.stack([_naive_conditionals(m, s) for s in seqs.tolist()])
        torch.testing.assert_close(cond, ref)
    # padded, mixed lengths: the real positions match the loop, padding positions are 0
    tokens = torch.tensor([[2, 0, 3, 3], [1, 1, 0, 0], [3, 0, 0, 0]])
    lengths = torch.tensor([4, 2, 0])
    cond = m.token_log_probs(tokens, lengths)
    for j, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(cond[j, :n], _naive_conditionals(m, tokens[j, :n].tolist()))
        assert torch.equal(cond[j, n:], torch.zeros(4 - n, dtype=DT))
    # the canonical order of a bag is its expanded counts; log_likelihood scores that sequence
    tok, n = m.orderings(DOCS)
    assert tok[2].tolist() == [0, 0, 1, 2, 3, 3] and n.tolist() == [3, 4, 6, 1] and tok[3, 0] == 2
    for j in range(4):
        torch.testing.assert_close(m.log_likelihood(DOCS)[j], _naive_conditionals(m, _tokens(DOCS[j])).sum())


def test_conditionals_are_autoregressive():
    m = _model(seed=1)
    tokens = torch.tensor([[0, 3, 1, 1, 2], [2, 2, 0, 3, 0]])
    lengths = torch.tensor([5, 4])
    e = m.embed(tokens).detach()
    J = torch.autograd.functional.jacobian(lambda emb: m.token_log_probs(tokens, lengths, embeddings=emb), e)
    # J[b, i, b2, j, :] = d log p(v_i | v_<i) of sequence b / d (input embedding of position j of sequence b2)
    L = tokens.shape[1]
    for b in range(2):
        for i in range(int(lengths[b])):
            for j in range(L):
                block = J[b, i, b, j]
                if j >= i:
                    assert torch.equal(block, torch.zeros(H, dtype=DT)), (b, i, j)
                else:
                    assert block.abs().sum() > 0, (b, i, j)
            assert torch.equal(J[b, i, 1 - b], torch.zeros(L, H, dtype=DT))  # documents do not interact


def test_padding_batching_and_chunking_do_not_change_a_documents_log_likelihood():
    m = _model(seed=2)
    seeds = torch.tensor([11, 22, 33, 44])
    batch = m.log_likelihood(DOCS, seeds)
    for j in range(4):  # alone (no padding) vs in a batch padded to 6 tokens, same ordering seed
        torch.testing.assert_close(m.log_likelihood(DOCS[j : j + 1], seeds[j : j + 1]), batch[j : j + 1])
        torch.testing.assert_close(m.log_likelihood(DOCS[j : j + 1]), m.log_likelihood(DOCS)[j : j + 1])
    # the output layer in chunks of 3 tokens (checkpointed under autograd): same values and gradients
    small = _model(seed=2, chunk_tokens=3)
    noise = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    big_loss, small_loss = m(DOCS, noise)["loss"], small(DOCS, noise)["loss"]
    torch.testing.assert_close(small_loss, big_loss)
    big_loss.sum().backward()
    small_loss.sum().backward()
    for (name, p), q in zip(m.named_parameters(), small.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


# ----------------------------------------------------------------------------- orderings
def test_orderings_are_seeded_permutations_and_change_the_likelihood():
    m = _model(seed=3)
    canonical, lengths = m.orderings(DOCS)
    a, _ = m.orderings(DOCS, torch.tensor([1, 2, 3, 4]))
    b, _ = m.orderings(DOCS, torch.tensor([1, 2, 3, 5]))
    for j, n in enumerate(lengths.tolist()):  # a permutation of the document's own tokens, padding after
        assert sorted(a[j, :n].tolist()) == canonical[j, :n].tolist()
    assert torch.equal(a[:3], b[:3]) and a[2].tolist() != canonical[2].tolist()
    assert torch.equal(m.orderings(DOCS[2:3], torch.tensor([3]))[0][0], a[2])  # batch-independent
    # DocNADE is not order-invariant: two orderings of a document with distinct words differ
    x = torch.tensor([[1, 1, 1, 1]], dtype=DT)
    perms = list(itertools.permutations(range(V)))
    values = m.sequence_log_prob(torch.tensor(perms))
    assert values.max() - values.min() > 0.1
    seeded = m.log_likelihood(x, torch.arange(20)[:, None])  # (20, 1): each is one of the 24 orderings' values
    assert ((seeded - values[None, :]).abs().min(1).values < 1e-12).all() and seeded.unique().numel() > 1


def test_ordering_ensemble_is_a_log_mean_exp_and_evaluate_labels_it():
    m = _model(seed=4)
    corpus = _corpus(DOCS)
    K = 5
    log_p = m.corpus_log_likelihoods(corpus, n_orderings=K, seed=7)  # (K, D)
    assert log_p.shape == (K, 4) and log_p.dtype == DT
    for j in range(4):  # every entry is the exact log p of one ordering of document j
        perms = torch.tensor(sorted(set(itertools.permutations(_tokens(DOCS[j])))))
        exact = m.sequence_log_prob(perms)
        assert ((log_p[:, j, None] - exact[None]).abs().min(1).values < 1e-12).all(), j
    assert torch.equal(m.corpus_log_likelihoods(corpus, K, seed=7, batch_size=1), log_p)  # batching-free
    report = m.evaluate(corpus, n_orderings=K, seed=7)
    lengths = torch.tensor([3.0, 4.0, 6.0, 1.0], dtype=DT)
    ensemble = log_p.logsumexp(0) - math.log(K)
    assert report.bound_per_document == pytest.approx(per_document_perplexity(log_p.mean(0), lengths))
    assert report.estimate_per_document == pytest.approx(per_document_perplexity(ensemble, lengths))
    assert report.estimate_per_document <= report.bound_per_document  # Jensen
    assert report.elbo_samples == report.iw_samples == K and report.kl_nats_per_doc == 0.0
    assert report.elbo_nats_per_doc == pytest.approx(log_p.mean().item())
    one = m.evaluate(corpus, n_orderings=1, seed=7)  # one fixed ordering: both fields hold the exact value
    assert one.bound_per_document == one.estimate_per_document and one.iw_samples == 1
    assert one.elbo_nats_per_doc == pytest.approx(log_p[0].mean().item())
    canon = m.evaluate(corpus, seed=None)
    assert canon.elbo_nats_per_doc == pytest.approx(m.log_likelihood(DOCS).mean().item())
    # what the ensemble estimates: the mean of p over all N! orderings is p(bag) / multinomial coefficient
    x = torch.tensor([[2, 0, 1, 0]], dtype=DT)  # tokens 0, 0, 2: 6 permutations, 3 distinct sequences
    all_orders = m.sequence_log_prob(torch.tensor(list(itertools.permutations([0, 0, 2]))))
    distinct = m.sequence_log_prob(torch.tensor([[0, 0, 2], [0, 2, 0], [2, 0, 0]]))
    torch.testing.assert_close(all_orders.logsumexp(0) - math.log(6), distinct.logsumexp(0) - math.log(3))
    many = m.log_likelihood(x, torch.arange(4000)[:, None])[:, 0]
    assert abs((many.logsumexp(0) - math.log(4000)) - (distinct.logsumexp(0) - math.log(3))) < 0.05


def test_forward_loss_topic_words_and_transform():
    m = _model(seed=5, train_orderings=2)
    noise = m.sample_noise(4, torch.Generator().manual_seed(0))
    assert noise.shape == (2, 4) and noise.dtype == torch.long
    out = m(DOCS, noise)
    assert set(out) == {"loss"} and out["loss"].shape == (4,)
    torch.testing.assert_close(out["loss"], -m.log_likelihood(DOCS, noise).mean(0))
    torch.testing.assert_close(m.log_likelihood(DOCS, noise[1]), m.log_likelihood(DOCS, noise)[1])
    vocab = ("space", "nasa", "god", "church")
    with torch.no_grad():
        m.embedding.weight.copy_(torch.tensor([[3.0, 0, 0], [2.0, 0.1, 0], [0, 3.0, 1], [0.1, 2.0, 0]], dtype=DT))
    assert m.topic_words(vocab, n_words=2)[:2] == [["space", "nasa"], ["god", "church"]]
    with pytest.raises(ValueError, match="vocab has 3 words"):
        m.topic_words(vocab[:3])
    reps = m.transform(_corpus(DOCS))
    W, c = m.embedding.weight.detach(), m.hidden_bias.detach()
    torch.testing.assert_close(reps, torch.sigmoid(c + DOCS @ W))


# ----------------------------------------------------------------------------- training
def test_training_on_a_planted_corpus_beats_the_unigram_model():
    corpus = planted_corpus(n_docs=60, vocab_size=30, n_topics=3, doc_len=40, seed=0)
    x = corpus.to_dense(dtype=DT)
    unigram = torch.log((x.sum(0) + 1) / (x.sum() + 30))
    unigram_ppl = per_document_perplexity((x * unigram).sum(1), x.sum(1))  # ~ 29
    torch.manual_seed(0)
    m = DocNADE(DocNADEConfig(vocab_size=30, hidden_size=8))
    before = m.evaluate(corpus).bound_per_document
    m.fit(corpus, corpus, TrainConfig(epochs=25, batch_size=10, learning_rate=3e-2, seed=0, progress=False))
    after = m.evaluate(corpus).bound_per_document
    hist = m.train_result_.history
    assert {"valid_perplexity_bound", "valid_perplexity_ensemble", "valid_corpus_perplexity"} <= set(hist[0])
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 10.0
    # one topic of 10 words holds 90% of a document: ~ 13 is reachable once the topic is read
    assert after < 0.75 * unigram_ppl and after < before, (before, after, unigram_ppl)


class _Stop(Exception):
    pass


def _fit_through_trainer(run_dir, stop_at=None) -> DocNADE:
    corpus = planted_corpus(n_docs=12, vocab_size=9, n_topics=3, doc_len=15, seed=2)
    x = corpus.to_dense()
    torch.manual_seed(5)
    model = DocNADE(DocNADEConfig(vocab_size=9, hidden_size=4, train_orderings=2))
    model.init_decoder_bias(x.sum(0))

    def on_step(trainer, epoch, step):
        if step == stop_at:
            raise _Stop

    cfg = TrainConfig(epochs=3, batch_size=4, learning_rate=1e-2, seed=3, progress=False)
    Trainer(model, cfg, len(corpus), collate=lambda idx: x[idx], run_dir=run_dir, on_step=on_step).fit()
    return model


def test_resume_through_the_trainer_gives_the_uninterrupted_weights(tmp_path):
    full = _fit_through_trainer(tmp_path / "full")
    with pytest.raises(_Stop):
        _fit_through_trainer(tmp_path / "cut", stop_at=5)  # inside epoch 2; the checkpoint holds epoch 1
    resumed = _fit_through_trainer(tmp_path / "cut")
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    history = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 3 and history[0]["train_loss"] > 10.0  # -log p, nats per document
    np.testing.assert_array_equal(
        _fit_through_trainer(None).embedding.weight.detach().numpy(), full.embedding.weight.detach().numpy()
    )
