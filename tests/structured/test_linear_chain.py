import math

import pytest
import torch
from scipy.stats import chi2

from latentnlp.structured.linear_chain import (
    kbest,
    ChainPotentials,
    crf_potentials,
    hmm_potentials,
    log_partition,
    marginals,
    node_marginals,
    path_score,
    posterior,
    sample,
    viterbi,
)
from latentnlp.structured.linear_chain import _forward
from latentnlp.structured.semirings import LogSemiring, MaxSemiring

from .brute_force import brute_force, enumerate_chain

NEG_INF = -math.inf
SEEDS = range(12)


def random_instance(seed: int, B: int = 4, N: int = 4, C: int = 3, forbid: float = 0.0):
    """Random potentials with padding: lengths in [1, N], one chain of full length and one of length 1."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randn(B, C, generator=g, dtype=torch.float64)
    edge = 2 * torch.randn(B, N - 1, C, C, generator=g, dtype=torch.float64)
    if forbid:
        edge = edge.masked_fill(torch.rand(edge.shape, generator=g, dtype=torch.float64) < forbid, NEG_INF)
    lengths = torch.randint(1, N + 1, (B,), generator=g)
    lengths[0], lengths[-1] = N, 1
    return ChainPotentials(start, edge), lengths


def real_mask(lengths, N):
    return torch.arange(N).unsqueeze(0) < lengths.unsqueeze(1)


@pytest.mark.parametrize("seed", SEEDS)
def test_matches_brute_force_enumeration(seed):
    C = 2 + seed % 3
    pots, lengths = random_instance(seed, B=4, N=4, C=C)
    ref = brute_force(pots, lengths)
    post = posterior(pots, lengths)
    assert torch.allclose(log_partition(pots, lengths), ref["log_z"], atol=1e-10)
    assert torch.allclose(post.log_partition, ref["log_z"], atol=1e-10)
    assert torch.allclose(post.node, ref["node"], atol=1e-10)
    assert torch.allclose(post.edge, ref["edge"], atol=1e-10)
    assert torch.allclose(marginals(pots, lengths), ref["edge"], atol=1e-10)
    assert torch.allclose(node_marginals(pots, lengths), ref["node"], atol=1e-10)
    paths, scores = viterbi(pots, lengths)
    assert torch.equal(paths, ref["path"])
    assert torch.allclose(scores, ref["score"], atol=1e-10)
    assert torch.allclose(path_score(pots, lengths, paths), scores, atol=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_masked_batch_equals_each_chain_alone_and_padding_is_ignored(seed):
    pots, lengths = random_instance(seed, B=5, N=5, C=3)
    N = pots.max_length
    # Garbage in the padding must not matter.
    pad = ~real_mask(lengths - 1, N - 1)  # edges n >= L - 1 are padding
    noisy = ChainPotentials(pots.start, pots.edge.masked_fill(pad[:, :, None, None], float("nan")))
    post = posterior(noisy, lengths)
    paths, scores = viterbi(noisy, lengths)
    for b in range(pots.batch_size):
        L = int(lengths[b])
        alone = ChainPotentials(pots.start[b : b + 1], pots.edge[b : b + 1, : L - 1])
        one = torch.tensor([L])
        post_b = posterior(alone, one)
        assert torch.allclose(post.log_partition[b], post_b.log_partition[0], atol=1e-12)
        assert torch.allclose(post.node[b, :L], post_b.node[0], atol=1e-12)
        assert torch.allclose(post.edge[b, : L - 1], post_b.edge[0], atol=1e-12)
        assert torch.equal(post.node[b, L:], torch.zeros_like(post.node[b, L:]))
        assert torch.equal(post.edge[b, L - 1 :], torch.zeros_like(post.edge[b, L - 1 :]))
        path_b, score_b = viterbi(alone, one)
        assert torch.equal(paths[b, :L], path_b[0]) and (paths[b, L:] == -1).all()
        assert torch.allclose(scores[b], score_b[0], atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_gradient_of_log_partition_is_the_marginals(seed):
    pots, lengths = random_instance(seed, B=4, N=5, C=3)
    start = pots.start.clone().requires_grad_(True)
    edge = pots.edge.clone().requires_grad_(True)
    log_partition(ChainPotentials(start, edge), lengths).sum().backward()
    post = posterior(pots, lengths)
    assert torch.allclose(edge.grad, post.edge, atol=1e-12)
    assert torch.allclose(start.grad, post.node[:, 0], atol=1e-12)
    N = pots.max_length
    real = real_mask(lengths, N)
    assert torch.allclose(post.node.sum(-1), real.double(), atol=1e-12)  # 1 per real position, 0 at padding
    assert torch.allclose(post.edge.sum((-1, -2)), real[:, 1:].double(), atol=1e-12)
    assert (post.node >= 0).all() and (post.edge >= 0).all()


def test_length_one_chains_and_no_edges_at_all():
    g = torch.Generator().manual_seed(0)
    start = torch.randn(3, 4, generator=g, dtype=torch.float64)
    pots = ChainPotentials(start, torch.empty(3, 0, 4, 4, dtype=torch.float64))  # N == 1
    lengths = torch.ones(3, dtype=torch.long)
    assert torch.allclose(log_partition(pots, lengths), torch.logsumexp(start, -1))
    assert torch.allclose(node_marginals(pots, lengths)[:, 0], start.softmax(-1))
    assert marginals(pots, lengths).shape == (3, 0, 4, 4)
    paths, scores = viterbi(pots, lengths)
    assert torch.equal(paths[:, 0], start.argmax(-1)) and torch.allclose(scores, start.max(-1).values)
    draws = sample(pots, lengths, num_samples=5, generator=g)
    assert draws.shape == (5, 3, 1) and ((draws >= 0) & (draws < 4)).all()


def test_sampling_frequencies_match_exact_path_probabilities():
    pots, lengths = random_instance(3, B=2, N=3, C=2)
    lengths = torch.tensor([3, 2])
    S = 20000
    draws = sample(pots, lengths, num_samples=S, generator=torch.Generator().manual_seed(1))
    assert draws.shape == (S, 2, 3)
    log_z = log_partition(pots, lengths)
    for b in range(2):
        L = int(lengths[b])
        assert (draws[:, b, L:] == -1).all()
        scores = enumerate_chain(pots, L, b)
        counts = {path: 0 for path in scores}
        for row in draws[:, b, :L].tolist():
            counts[tuple(row)] += 1
        expected = torch.tensor([math.exp(scores[p] - log_z[b].item()) * S for p in scores])
        observed = torch.tensor([float(counts[p]) for p in scores])
        statistic = ((observed - expected) ** 2 / expected).sum().item()
        assert statistic < chi2.ppf(1 - 1e-4, df=len(scores) - 1), (statistic, observed, expected)


def test_sampling_is_reproducible_with_a_generator():
    pots, lengths = random_instance(0)
    a = sample(pots, lengths, 3, generator=torch.Generator().manual_seed(7))
    b = sample(pots, lengths, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


@pytest.mark.parametrize("seed", range(6))
def test_forbidden_transitions_give_no_nan(seed):
    pots, lengths = random_instance(seed, B=4, N=4, C=3, forbid=0.4)
    ref = brute_force(pots, lengths)
    post = posterior(pots, lengths)
    assert torch.equal(torch.isinf(post.log_partition), torch.isinf(ref["log_z"]))
    assert torch.allclose(post.log_partition, ref["log_z"], atol=1e-10)
    assert torch.isfinite(post.node).all() and torch.isfinite(post.edge).all()
    assert torch.allclose(post.node, ref["node"], atol=1e-10)
    assert torch.allclose(post.edge, ref["edge"], atol=1e-10)
    start = pots.start.clone().requires_grad_(True)
    edge = pots.edge.clone().requires_grad_(True)
    log_partition(ChainPotentials(start, edge), lengths).sum().backward()
    assert torch.isfinite(edge.grad).all() and torch.isfinite(start.grad).all()
    paths, scores = viterbi(pots, lengths)
    finite = torch.isfinite(ref["score"])
    assert torch.allclose(scores, ref["score"]) and torch.equal(paths[finite], ref["path"][finite])
    draws = sample(pots, lengths, 50, generator=torch.Generator().manual_seed(seed))
    for b in torch.nonzero(finite).flatten().tolist():  # every sample is an allowed path
        chain_b = ChainPotentials(pots.start[b].expand(50, -1), pots.edge[b].expand(50, -1, -1, -1))
        assert torch.isfinite(path_score(chain_b, lengths[b].expand(50), draws[:, b])).all()


def test_impossible_chain_has_minus_inf_log_partition_and_zero_marginals():
    start = torch.tensor([[0.0, NEG_INF], [0.0, 0.0]], dtype=torch.float64)
    edge = torch.tensor([[[NEG_INF, NEG_INF], [0.0, 0.0]]], dtype=torch.float64).expand(2, 1, 2, 2).clone()
    edge[1] = 0.0
    pots, lengths = ChainPotentials(start, edge), torch.tensor([2, 2])
    post = posterior(pots, lengths)
    assert post.log_partition[0].item() == NEG_INF
    assert post.log_partition[1].item() == pytest.approx(math.log(4))
    assert torch.equal(post.node[0], torch.zeros(2, 2, dtype=torch.float64))
    assert torch.isfinite(post.edge).all()
    assert viterbi(pots, lengths)[1][0].item() == NEG_INF


def test_hmm_potentials_give_joint_log_probabilities():
    g = torch.Generator().manual_seed(0)
    C, V = 2, 3
    log_init = torch.randn(C, generator=g, dtype=torch.float64).log_softmax(0)
    log_trans = torch.randn(C, C, generator=g, dtype=torch.float64).log_softmax(1)
    log_emit = torch.randn(C, V, generator=g, dtype=torch.float64).log_softmax(1)
    obs = torch.tensor([[0, 2, 1], [1, 0, -1]])
    lengths = torch.tensor([3, 2])
    pots = hmm_potentials(log_init, log_trans, log_emit, obs, lengths)
    paths = torch.tensor([[1, 0, 1], [0, 0, -1]])
    manual = [
        log_init[1] + log_emit[1, 0] + log_trans[1, 0] + log_emit[0, 2] + log_trans[0, 1] + log_emit[1, 1],
        log_init[0] + log_emit[0, 1] + log_trans[0, 0] + log_emit[0, 0],
    ]
    assert torch.allclose(path_score(pots, lengths, paths), torch.stack(manual))
    with pytest.raises(ValueError, match=r"observations\[1, 1\] = 3"):
        hmm_potentials(log_init, log_trans, log_emit, torch.tensor([[0, 1], [0, 3]]), torch.tensor([2, 2]))
    with pytest.raises(ValueError, match=r"log_transition has shape \(3, 3\)"):
        hmm_potentials(log_init, torch.zeros(3, 3), log_emit, obs, lengths)


def test_crf_potentials_score_with_start_and_end():
    g = torch.Generator().manual_seed(0)
    B, N, C = 2, 3, 3
    unary = torch.randn(B, N, C, generator=g, dtype=torch.float64)
    trans = torch.randn(C, C, generator=g, dtype=torch.float64)
    start = torch.randn(C, generator=g, dtype=torch.float64)
    end = torch.tensor([0.5, NEG_INF, -1.0], dtype=torch.float64)  # tag 1 may not end a sentence
    lengths = torch.tensor([3, 1])
    pots = crf_potentials(unary, trans, lengths, start=start, end=end)
    paths = torch.tensor([[2, 1, 0], [2, -1, -1]])
    manual = [
        start[2] + unary[0, 0, 2] + trans[2, 1] + unary[0, 1, 1] + trans[1, 0] + unary[0, 2, 0] + end[0],
        start[2] + unary[1, 0, 2] + end[2],
    ]
    assert torch.allclose(path_score(pots, lengths, paths), torch.stack(manual))
    post = posterior(pots, lengths)
    assert torch.isfinite(post.node).all()
    assert post.node[0, 2, 1].item() == 0.0 and post.node[1, 0, 1].item() == 0.0
    ref = brute_force(pots, lengths)
    assert torch.allclose(post.log_partition, ref["log_z"])


@pytest.mark.parametrize(
    "start_shape, edge_shape, lengths, match",
    [
        ((2, 3), (2, 2, 3, 4), [1, 1], r"edge has shape \(2, 2, 3, 4\)"),
        ((2, 3), (2, 2, 3), [1, 1], r"got start \(2, 3\) and edge \(2, 2, 3\)"),
        ((2, 3), (2, 2, 3, 3), [1, 2, 3], r"lengths has shape \(3,\)"),
        ((2, 3), (2, 2, 3, 3), [0, 2], r"lengths\[0\] = 0"),
        ((2, 3), (2, 2, 3, 3), [3, 4], r"lengths\[1\] = 4"),
    ],
)
def test_shape_and_length_errors(start_shape, edge_shape, lengths, match):
    with pytest.raises(ValueError, match=match):
        pots = ChainPotentials(torch.zeros(start_shape), torch.zeros(edge_shape))
        log_partition(pots, torch.tensor(lengths))


def test_float_lengths_are_rejected():
    pots = ChainPotentials(torch.zeros(1, 2), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="integer"):
        viterbi(pots, torch.tensor([2.0]))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("k", [1, 3, 10, 100])
def test_kbest_lists_the_top_paths_of_the_enumeration(seed, k):
    pots, lengths = random_instance(seed, B=4, N=4, C=2 + seed % 3, forbid=0.2 if seed % 2 else 0.0)
    paths, scores = kbest(pots, lengths, k)
    assert paths.shape == (4, k, 4) and scores.shape == (4, k)
    for b in range(4):
        L = int(lengths[b])
        enumerated = enumerate_chain(pots, L, b)
        allowed = sorted((s for s in enumerated.values() if s > NEG_INF), reverse=True)
        expected = allowed[:k] + [NEG_INF] * max(0, k - len(allowed))
        assert torch.allclose(scores[b], torch.tensor(expected, dtype=torch.float64), atol=1e-10)
        seen = set()
        for r in range(k):
            if scores[b, r] == NEG_INF:
                continue
            path = tuple(paths[b, r, :L].tolist())
            assert path not in seen  # distinct paths
            seen.add(path)
            assert enumerated[path] == pytest.approx(scores[b, r].item(), abs=1e-10)
            assert (paths[b, r, L:] == -1).all()
    best, best_scores = viterbi(pots, lengths)
    assert torch.allclose(scores[:, 0], best_scores, atol=1e-10)


def test_kbest_rejects_k_below_one():
    pots, lengths = random_instance(0)
    with pytest.raises(ValueError, match="k must be"):
        kbest(pots, lengths, 0)


# --------------------------------------------------------------------------- the packed recursion
def masked_reference_forward(semiring, start, edge, lengths, keep_all=False):
    """The forward recursion written plainly: every chain at every step, padding replaced by ``one``."""
    N = edge.shape[1] + 1
    mask = torch.arange(1, N).unsqueeze(0) < lengths.unsqueeze(1)  # (B, N-1) real edges
    edge = torch.where(mask[:, :, None, None], edge, torch.full_like(edge, semiring.one))
    alpha, steps = start, [start]
    for n in range(N - 1):
        new = semiring.sum(semiring.mul(alpha.unsqueeze(-1), edge[:, n]), dim=-2)
        alpha = torch.where(mask[:, n, None], new, alpha)
        steps.append(alpha)
    return torch.stack(steps, dim=1) if keep_all else alpha


PACKED_LENGTHS = {
    "unsorted": [3, 6, 1, 6, 2, 4],
    "sorted": [6, 6, 4, 3, 2, 1],
    "ascending": [1, 2, 3, 4, 5, 6],
    "full": [6] * 6,
    "all_one": [1] * 6,
    "shorter_than_n": [2, 4, 1, 4, 3, 2],
}


@pytest.mark.parametrize("semiring", [LogSemiring, MaxSemiring], ids=["log", "max"])
@pytest.mark.parametrize("keep_all", [False, True])
@pytest.mark.parametrize("case", sorted(PACKED_LENGTHS))
def test_packed_forward_matches_the_masked_recursion(semiring, keep_all, case):
    g = torch.Generator().manual_seed(len(case))
    lengths = torch.tensor(PACKED_LENGTHS[case])
    B, N, C = len(lengths), 6, 3
    start = torch.randn(B, C, generator=g, dtype=torch.float64)
    edge = 2 * torch.randn(B, N - 1, C, C, generator=g, dtype=torch.float64)
    edge = edge.masked_fill(torch.rand(edge.shape, generator=g, dtype=torch.float64) < 0.2, NEG_INF)
    padding = ~(torch.arange(1, N).unsqueeze(0) < lengths.unsqueeze(1))
    edge = edge.masked_fill(padding[:, :, None, None], float("nan"))  # must never be read
    weights = torch.randn((B, N, C) if keep_all else (B, C), generator=g, dtype=torch.float64)
    results = []
    for forward in (masked_reference_forward, _forward):
        s = start.clone().requires_grad_(True)
        e = edge.clone().requires_grad_(True)
        out = forward(semiring, s, e, lengths, keep_all=keep_all)
        # a linear functional of the alphas, -inf entries left out (their gradient is 0 either way)
        torch.where(torch.isfinite(out), out * weights, torch.zeros_like(out)).sum().backward()
        results.append((out.detach(), s.grad, e.grad))
    (ref, ref_gs, ref_ge), (out, gs, ge) = results
    with torch.no_grad():  # the no-grad path keeps no buffer
        assert torch.allclose(_forward(semiring, start, edge, lengths, keep_all=keep_all), ref, atol=1e-12)
    assert out.shape == ref.shape
    assert torch.equal(torch.isinf(out), torch.isinf(ref)) and not torch.isnan(out).any()
    assert torch.allclose(out, ref, atol=1e-12)
    assert torch.allclose(gs, ref_gs, atol=1e-12) and torch.allclose(ge, ref_ge, atol=1e-12)
    assert torch.equal(ge[padding], torch.zeros_like(ge[padding]))  # exactly 0, never NaN


def test_log_partition_gradient_survives_retain_graph_and_double_backward():
    pots, lengths = random_instance(5, B=4, N=4, C=3)
    lengths = torch.tensor([2, 4, 1, 3])  # unsorted: the packed recursion sorts and unsorts
    start = pots.start.clone().requires_grad_(True)
    edge = pots.edge.clone().requires_grad_(True)
    log_z = log_partition(ChainPotentials(start, edge), lengths).sum()
    first = torch.autograd.grad(log_z, (start, edge), retain_graph=True)
    second = torch.autograd.grad(log_z, (start, edge))  # the fast backward consumed its buffer
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(first, second))
    post = posterior(pots, lengths)
    assert torch.allclose(first[0], post.node[:, 0], atol=1e-12) and torch.allclose(first[1], post.edge, atol=1e-12)

    def f(s, e):
        return log_partition(ChainPotentials(s, e), lengths)

    small_start = pots.start[:, :2].clone().requires_grad_(True)
    small_edge = pots.edge[:, :, :2, :2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (small_start, small_edge))
    assert torch.autograd.gradgradcheck(f, (small_start, small_edge))


def test_max_semiring_gradient_breaks_ties_as_torch_max():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([4, 6, 1, 6, 3])
    start = torch.randint(0, 2, (5, 3), generator=g).double()  # many ties
    edge = torch.randint(0, 2, (5, 5, 3, 3), generator=g).double()
    grads = []
    for forward in (masked_reference_forward, _forward):
        s, e = start.clone().requires_grad_(True), edge.clone().requires_grad_(True)
        MaxSemiring.sum(forward(MaxSemiring, s, e, lengths), dim=-1).sum().backward()
        grads.append((s.grad, e.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
    paths, _ = viterbi(ChainPotentials(start, edge), lengths)
    assert ((paths >= 0).sum(1) == lengths).all()
