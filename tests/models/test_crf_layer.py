"""CRFLayer against pytorch-crf and against brute-force enumeration of every tag sequence."""

import itertools
import math

import pytest
import torch

from latentnlp.models.sequence.crf_layer import CRFLayer, backpointer_viterbi
from latentnlp.structured.linear_chain import ChainPotentials, path_score, viterbi
from latentnlp.training.seeding import seeded

from ..structured.brute_force import brute_force


pytestmark = pytest.mark.usefixtures("one_thread")


def layer(C: int, seed: int, dtype=torch.float64) -> CRFLayer:
    with seeded(seed):
        return CRFLayer(C, init_scale=1.0).to(dtype)


def batch(seed: int, B: int, N: int, C: int, dtype=torch.float64):
    """Random unary ``(B, N, C)``, lengths with one full chain and one of length 1, tags; NaN at padding."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, N + 1, (B,), generator=g)
    lengths[0], lengths[-1] = N, 1
    unary = 2 * torch.randn(B, N, C, generator=g, dtype=dtype)
    tags = torch.randint(0, C, (B, N), generator=g)
    pad = torch.arange(N).unsqueeze(0) >= lengths.unsqueeze(1)
    return unary, lengths, tags, pad


def by_hand(crf: CRFLayer, unary, tags, L: int, b: int) -> float:
    """s(z) of chain b written out from the definition."""
    z = tags[b, :L].tolist()
    start, end, transition = (p.detach().tolist() for p in (crf.start, crf.end, crf.transition))
    u = unary[b].detach().tolist()
    s = start[z[0]] + end[z[-1]] + sum(u[n][z[n]] for n in range(L))
    return s + sum(transition[z[n]][z[n + 1]] for n in range(L - 1))


def enumerate_crf(crf: CRFLayer, unary, L: int, b: int) -> dict[tuple[int, ...], float]:
    scores = {}
    for z in itertools.product(range(crf.num_tags), repeat=L):
        t = torch.tensor([list(z) + [0] * (unary.shape[1] - L)])
        scores[z] = by_hand(crf, unary[b : b + 1], t, L, 0)
    return scores


# --------------------------------------------------------------------------- pytorch-crf
@pytest.mark.parametrize("seed", range(4))
def test_matches_pytorch_crf(seed):
    torchcrf = pytest.importorskip("torchcrf")
    B, N, C = 7, 6, 5
    ours = CRFLayer(C)
    theirs = torchcrf.CRF(C, batch_first=True)
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for p in (ours.transition, ours.start, ours.end):
            p.copy_(torch.randn(p.shape, generator=g))
        theirs.transitions.copy_(ours.transition)
        theirs.start_transitions.copy_(ours.start)
        theirs.end_transitions.copy_(ours.end)
    unary, lengths, tags, pad = batch(seed, B, N, C, dtype=torch.float32)
    mask = ~pad
    expected = theirs(unary, tags, mask, reduction="none")
    got = ours.log_likelihood(unary, tags, lengths)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert (got <= 0).all()
    ref = theirs.decode(unary, mask)
    for method in ("backpointer", "autograd"):
        scores, paths = ours.decode(unary, lengths, method=method)
        assert paths.dtype == torch.long and paths.shape == (B, N)
        for b in range(B):
            L = int(lengths[b])
            assert paths[b, :L].tolist() == ref[b], (method, b)
            assert (paths[b, L:] == -1).all()
        torch.testing.assert_close(scores, ours.score(unary, paths.clamp_min(0), lengths), atol=1e-5, rtol=0)


def test_gradients_match_pytorch_crf():
    torchcrf = pytest.importorskip("torchcrf")
    B, N, C = 5, 4, 3
    ours, theirs = CRFLayer(C).double(), torchcrf.CRF(C, batch_first=True).double()
    with torch.no_grad():
        theirs.transitions.copy_(ours.transition)
        theirs.start_transitions.copy_(ours.start)
        theirs.end_transitions.copy_(ours.end)
    unary, lengths, tags, pad = batch(7, B, N, C)
    u1, u2 = unary.clone().requires_grad_(True), unary.clone().requires_grad_(True)
    ours.log_likelihood(u1, tags, lengths).sum().backward()
    theirs(u2, tags, ~pad, reduction="sum").backward()
    torch.testing.assert_close(u1.grad, u2.grad)
    torch.testing.assert_close(ours.transition.grad, theirs.transitions.grad)
    torch.testing.assert_close(ours.start.grad, theirs.start_transitions.grad)
    torch.testing.assert_close(ours.end.grad, theirs.end_transitions.grad)


# --------------------------------------------------------------------------- brute force
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("N", [1, 2, 4])
def test_log_partition_and_viterbi_brute_force(seed, N):
    B, C = 4, 3
    crf = layer(C, seed)
    unary, lengths, tags, pad = batch(seed, B, N, C)
    unary = unary.masked_fill(pad.unsqueeze(-1), math.nan)  # padding must be ignored
    log_z = crf.log_partition(unary, lengths)
    scores, paths = crf.decode(unary, lengths)
    scores_ag, paths_ag = crf.decode(unary, lengths, method="autograd")
    ll = crf.log_likelihood(unary, tags, lengths)
    for b in range(B):
        L = int(lengths[b])
        table = enumerate_crf(crf, unary, L, b)
        values = torch.tensor(list(table.values()), dtype=torch.float64)
        assert log_z[b].item() == pytest.approx(torch.logsumexp(values, 0).item(), abs=1e-10)
        best = max(table, key=table.get)
        assert paths[b, :L].tolist() == list(best) == paths_ag[b, :L].tolist()
        assert (paths[b, L:] == -1).all()
        assert scores[b].item() == pytest.approx(table[best], abs=1e-10)
        assert scores_ag[b].item() == pytest.approx(table[best], abs=1e-10)
        assert crf.score(unary, tags, lengths)[b].item() == pytest.approx(by_hand(crf, unary, tags, L, b), abs=1e-10)
        assert ll[b].item() == pytest.approx(table[tuple(tags[b, :L].tolist())] - log_z[b].item(), abs=1e-10)
    assert torch.isfinite(ll).all()


@pytest.mark.parametrize("seed", range(4))
def test_gradient_of_log_z_is_node_marginals(seed):
    B, N, C = 4, 4, 3
    crf = layer(C, seed)
    unary, lengths, _, pad = batch(seed, B, N, C)
    u = unary.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(crf.log_partition(u, lengths).sum(), u)
    marg = crf.marginals(unary, lengths)
    assert marg.shape == (B, N, C)
    torch.testing.assert_close(grad, marg)
    assert (marg[pad] == 0).all()
    torch.testing.assert_close(marg[~pad].sum(-1), torch.ones(int((~pad).sum()), dtype=torch.float64))
    # and the brute-force node marginals
    for b in range(B):
        L = int(lengths[b])
        table = enumerate_crf(crf, unary, L, b)
        log_z = torch.logsumexp(torch.tensor(list(table.values()), dtype=torch.float64), 0).item()
        node = torch.zeros(L, C, dtype=torch.float64)
        for z, s in table.items():
            for n in range(L):
                node[n, z[n]] += math.exp(s - log_z)
        torch.testing.assert_close(marg[b, :L], node)


def test_score_equals_path_score_of_potentials():
    B, N, C = 5, 6, 4
    crf = layer(C, 3)
    unary, lengths, tags, _ = batch(3, B, N, C)
    pot = crf.potentials(unary, lengths)
    torch.testing.assert_close(crf.score(unary, tags, lengths), path_score(pot, lengths, tags))


@pytest.mark.parametrize("seed", range(8))
def test_backpointer_viterbi_matches_autograd_viterbi(seed):
    """Random ChainPotentials (with -inf and NaN at padding): the two exact decoders agree with brute force."""
    g = torch.Generator().manual_seed(seed)
    B, N, C = 5, 4, 3
    start = torch.randn(B, C, generator=g, dtype=torch.float64)
    edge = 2 * torch.randn(B, N - 1, C, C, generator=g, dtype=torch.float64)
    edge = edge.masked_fill(torch.rand(edge.shape, generator=g, dtype=torch.float64) < 0.3, -math.inf)
    lengths = torch.randint(1, N + 1, (B,), generator=g)
    lengths[0], lengths[-1] = N, 1
    real_edge = torch.arange(1, N).unsqueeze(0) < lengths.unsqueeze(1)
    edge = torch.where(real_edge[:, :, None, None], edge, torch.full_like(edge, math.nan))
    pot = ChainPotentials(start, edge)
    paths, scores = backpointer_viterbi(pot, lengths)
    ref_paths, ref_scores = viterbi(pot, lengths)
    bf = brute_force(ChainPotentials(start, edge.nan_to_num(0.0)), lengths)
    torch.testing.assert_close(scores, bf["score"])
    torch.testing.assert_close(scores, ref_scores)
    finite = torch.isfinite(scores)
    assert (paths[finite] == bf["path"][finite]).all()
    assert (paths[finite] == ref_paths[finite]).all()
    assert (paths[~(torch.arange(N).unsqueeze(0) < lengths.unsqueeze(1))] == -1).all()


def test_padding_values_are_ignored():
    B, N, C = 3, 5, 4
    crf = layer(C, 1)
    unary, lengths, tags, pad = batch(1, B, N, C)
    other = unary.masked_fill(pad.unsqueeze(-1), 1e6)
    tags2 = tags.masked_fill(pad, 99)
    torch.testing.assert_close(crf.log_likelihood(unary, tags, lengths), crf.log_likelihood(other, tags2, lengths))
    assert torch.equal(crf.decode(unary, lengths)[1], crf.decode(other, lengths)[1])
    # one sentence alone vs. in the padded batch
    b = 1
    L = int(lengths[b])
    alone = crf.log_likelihood(unary[b : b + 1, :L], tags[b : b + 1, :L], lengths[b : b + 1])
    torch.testing.assert_close(alone, crf.log_likelihood(unary, tags, lengths)[b : b + 1])


def test_errors_name_the_tensor():
    crf = CRFLayer(3)
    unary = torch.randn(2, 4, 3)
    lengths = torch.tensor([4, 2])
    with pytest.raises(ValueError, match=r"unary .*\(2, 4, 5\)"):
        crf.log_partition(torch.randn(2, 4, 5), lengths)
    with pytest.raises(ValueError, match=r"unary"):
        crf.decode(torch.randn(4, 3), lengths)
    with pytest.raises(ValueError, match=r"lengths has shape \(3,\)"):
        crf.log_partition(unary, torch.tensor([4, 2, 1]))
    with pytest.raises(ValueError, match=r"lengths\[1\] = 5"):
        crf.log_partition(unary, torch.tensor([4, 5]))
    with pytest.raises(ValueError, match=r"lengths\[0\] = 0"):
        crf.decode(unary, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"tags has shape \(2, 3\)"):
        crf.log_likelihood(unary, torch.zeros(2, 3, dtype=torch.long), lengths)
    with pytest.raises(ValueError, match=r"tags\[1, 1\] = 3"):
        crf.log_likelihood(unary, torch.tensor([[0, 1, 2, 0], [0, 3, 7, 7]]), lengths)
    with pytest.raises(ValueError, match=r"tags\[0, 2\] = -1"):
        crf.score(unary, torch.tensor([[0, 1, -1, 0], [0, 0, 0, 0]]), lengths)
    crf.score(unary, torch.tensor([[0, 1, 2, 0], [0, 1, -1, 9]]), lengths)  # padding is not checked
    with pytest.raises(ValueError, match="method"):
        crf.decode(unary, lengths, method="beam")
    with pytest.raises(ValueError, match="num_tags"):
        CRFLayer(0)


@pytest.mark.parametrize("seed", range(3))
def test_decoders_agree_on_larger_batches(seed):
    """Backpointer (length-sorted) and autograd Viterbi on a batch with many ties in length."""
    B, N, C = 24, 12, 6
    crf = layer(C, seed)
    unary, lengths, _, _ = batch(seed, B, N, C)
    lengths[3:6] = N
    s1, p1 = crf.decode(unary, lengths, method="backpointer")
    s2, p2 = crf.decode(unary, lengths, method="autograd")
    assert torch.equal(p1, p2)
    torch.testing.assert_close(s1, s2)
    torch.testing.assert_close(s1, crf.score(unary, p1.clamp_min(0), lengths))
