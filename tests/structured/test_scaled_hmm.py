"""The scaled probability-space forward-backward equals the generic log-space core."""

import pytest
import torch

from latentnlp.models.sequence.hmm import (
    HiddenMarkovModel,
    expected_counts,
    fast_expected_counts,
)
from latentnlp.structured.scaled_hmm import pack_sentences, scaled_expected_counts


def _random_hmm(C: int, V: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    logs = [torch.log_softmax(2 * torch.randn(*shape, generator=g, dtype=torch.float64), -1) for shape in ((C,), (C, C), (C, V))]
    lengths = torch.randint(1, 30, (50,), generator=g)
    lengths[:3] = torch.tensor([1, 1, 45])  # single-word sentences and one much longer: ragged packing
    sentences = [torch.randint(0, V, (int(n),), generator=g) for n in lengths]
    return logs, sentences


@pytest.mark.parametrize("C,V,seed", [(1, 4, 0), (3, 5, 1), (7, 20, 2), (45, 300, 3)])
def test_scaled_counts_equal_log_space_counts(C, V, seed):
    logs, sentences = _random_hmm(C, V, seed)
    fast = fast_expected_counts(*logs, sentences)
    slow = expected_counts(*logs, sentences, max_batch_tokens=64)  # padded batches in the generic core
    for name, a, b in zip(("init", "transition", "emission", "ll", "D", "T"), fast.tensors(), slow.tensors()):
        torch.testing.assert_close(a.double(), b.double(), rtol=1e-8, atol=1e-8, msg=name)
    assert fast.n_tokens.item() == sum(len(s) for s in sentences)
    # packing once and reusing gives the same result
    packed = pack_sentences([s.long() for s in sentences])
    again = fast_expected_counts(*logs, packed)
    for a, b in zip(fast.tensors(), again.tensors()):
        assert torch.equal(a, b)


def test_single_sentence_of_one_word():
    logs, _ = _random_hmm(4, 6, 5)
    s = [torch.tensor([2])]
    fast, slow = fast_expected_counts(*logs, s), expected_counts(*logs, s)
    for a, b in zip(fast.tensors(), slow.tensors()):
        torch.testing.assert_close(a.double(), b.double(), rtol=1e-10, atol=1e-12)
    assert fast.transition.abs().sum().item() == 0.0


def test_zero_probability_sentence_falls_back_to_log_space():
    C = 2
    log_init = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))
    log_transition = torch.log(torch.full((C, C), 0.5, dtype=torch.float64))
    log_emission = torch.log(torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]], dtype=torch.float64))
    sentences = [torch.tensor([0, 1]), torch.tensor([0, 2])]  # word 2 is never emitted
    _, _, _, _, ok = scaled_expected_counts(log_init.exp(), log_transition.exp(), log_emission.exp(), pack_sentences(sentences))
    assert not ok
    fast = fast_expected_counts(log_init, log_transition, log_emission, sentences)
    assert fast.log_likelihood.item() == float("-inf")
    torch.testing.assert_close(fast.init, expected_counts(log_init, log_transition, log_emission, sentences).init)


def test_em_with_both_e_steps_agrees():
    logs, sentences = _random_hmm(5, 12, 7)
    a = HiddenMarkovModel(n_states=5, vocab_size=12, random_state=3, n_iter=10, tol=-1.0, e_step="scaled").fit_em(sentences)
    b = HiddenMarkovModel(n_states=5, vocab_size=12, random_state=3, n_iter=10, tol=-1.0, e_step="log").fit_em(sentences)
    torch.testing.assert_close(torch.tensor(a.log_likelihood_history_), torch.tensor(b.log_likelihood_history_), rtol=1e-10, atol=1e-8)
    for p, q in zip((a.log_init_, a.log_transition_, a.log_emission_), (b.log_init_, b.log_transition_, b.log_emission_)):
        torch.testing.assert_close(p.exp(), q.exp(), rtol=1e-8, atol=1e-10)


def test_shape_errors_are_named():
    with pytest.raises(ValueError, match=r"expected init \(C,\)"):
        scaled_expected_counts(torch.ones(3), torch.ones(2, 2), torch.ones(3, 4), pack_sentences([torch.tensor([0])]))
    with pytest.raises(ValueError, match="sentence 0 has word id 9"):
        fast_expected_counts(torch.zeros(2), torch.zeros(2, 2), torch.zeros(2, 4), [torch.tensor([9])])


def test_scaled_posteriors_equal_generic_node_marginals():
    from latentnlp.structured.linear_chain import hmm_potentials, posterior
    from latentnlp.structured.scaled_hmm import scaled_posteriors, unpack_rows

    logs, sentences = _random_hmm(6, 25, 9)
    packed = pack_sentences(sentences)
    gamma = unpack_rows(packed, scaled_posteriors(*(p.exp() for p in logs), packed))
    assert [g.shape for g in gamma] == [(len(s), 6) for s in sentences]
    for s, g in zip(sentences, gamma):
        node = posterior(hmm_potentials(*logs, s[None], torch.tensor([len(s)])), torch.tensor([len(s)])).node[0]
        torch.testing.assert_close(g, node, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_scaled_forward_backward_with_per_token_factors_equals_the_log_space_crf(seed):
    """The CRF's probability-space E-step: node marginals, transition counts and log Z of the generic core."""
    from latentnlp.structured.linear_chain import crf_potentials, posterior
    from latentnlp.structured.scaled_hmm import scaled_forward_backward

    g = torch.Generator().manual_seed(seed)
    C = 2 + seed
    lengths = [1, 5, 3, 7, 1, 4]
    unary = [3 * torch.randn(L, C, generator=g, dtype=torch.float64) for L in lengths]
    transition = 2 * torch.randn(C, C, generator=g, dtype=torch.float64)
    start = torch.randn(C, generator=g, dtype=torch.float64)
    offsets = [0]
    for L in lengths:
        offsets.append(offsets[-1] + L)
    packed = pack_sentences([torch.arange(offsets[d], offsets[d + 1]) for d in range(len(lengths))])
    rows = torch.cat(unary)[packed.data]
    gamma, counts, log_scale = scaled_forward_backward(start.exp(), transition.exp(), rows.exp(), packed)
    padded = torch.zeros(len(lengths), max(lengths), C, dtype=torch.float64)
    for d, u in enumerate(unary):
        padded[d, : len(u)] = u
    post = posterior(crf_potentials(padded, transition, torch.tensor(lengths), start=start), torch.tensor(lengths))
    torch.testing.assert_close(log_scale.sum(), post.log_partition.sum(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(counts, post.edge.sum((0, 1)), rtol=1e-9, atol=1e-10)
    node = torch.empty_like(gamma)
    node[packed.data] = gamma
    expected = torch.cat([post.node[d, :L] for d, L in enumerate(lengths)])
    torch.testing.assert_close(node, expected, rtol=1e-9, atol=1e-10)
    with pytest.raises(ValueError, match="rows"):
        scaled_forward_backward(start.exp(), transition.exp(), rows[:-1].exp(), packed)
