"""log Z_D of the Replicated Softmax through all lengths: the length path, mode jumps, the local maxima
of g, the mode bound, mode importance sampling and their combination, all against exact enumeration."""

import math

import pytest
import torch

from latentnlp.models.document.rsm import (
    ReplicatedSoftmax,
    RSMConfig,
    _ModeJumps,
    length_path_schedule,
    mode_log_partition_bound,
    rsm_hidden_modes,
    rsm_length_ais,
    rsm_log_partitions,
    rsm_mode_importance,
)
from latentnlp.evaluation.perplexity import per_document_perplexity

pytestmark = pytest.mark.usefixtures("one_thread")


def random_rsm(v=30, h=8, scale=1.0, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ReplicatedSoftmax(RSMConfig(vocab_size=v, hidden_dim=h, init_scale=scale)).double()
        with torch.no_grad():
            model.visible_bias.normal_(0.0, 1.0)
            model.hidden_bias.normal_(0.0, 0.3)
    return model


def all_states(h):
    k = torch.arange(2**h)
    return ((k.unsqueeze(1) >> torch.arange(h)) & 1).double()


def g_of(model, h):
    with torch.no_grad():
        return h @ model.hidden_bias + torch.logsumexp(h @ model.weight.T + model.visible_bias, -1)


def exact(model, lengths):
    with torch.no_grad():
        return dict(zip(lengths, model.exact_log_partition(list(lengths)).tolist()))


def assert_close_to_exact(model, results, lengths, tol):
    truth = exact(model, lengths)
    for d in lengths:
        r = results[d]
        assert r.log_z_lower - tol <= truth[d] <= r.log_z_upper + tol, (d, truth[d], r.log_z, r.log_z_lower, r.log_z_upper)
        assert abs(r.log_z - truth[d]) < tol + 0.1, (d, truth[d], r.log_z)


def test_length_path_schedule_passes_through_every_length():
    ts = length_path_schedule([5, 1, 40, 5, 3], n_unit=100, growth=0.05)
    assert float(ts[0]) == 0.0 and float(ts[-1]) == 40.0
    assert bool((ts[1:] > ts[:-1]).all())
    for d in (1, 3, 5, 40):
        assert d in ts.tolist()
    assert int((ts <= 1.0).sum()) == 101  # the [0, 1] part: n_unit steps
    # finer growth, more points; lengths of 1 only: just the [0, 1] part
    assert length_path_schedule([40], growth=0.01).numel() > length_path_schedule([40], growth=0.05).numel()
    assert length_path_schedule([1], n_unit=50).numel() == 51
    for bad in ([], [0, 3], [2.5]):
        with pytest.raises(ValueError, match="lengths"):
            length_path_schedule(bad)
    with pytest.raises(ValueError, match="growth"):
        length_path_schedule([3], growth=0.0)


@pytest.mark.parametrize("jumps", [False, True])
def test_length_ais_matches_exact_log_z_at_every_length(jumps):
    model = random_rsm(seed=1)
    lengths = [1, 2, 7, 30, 150]
    modes = rsm_hidden_modes(model, 100, torch.Generator().manual_seed(0))[0] if jumps else None
    res = rsm_length_ais(model, [30, 1, 7, 2, 150, 7], n_chains=100, generator=torch.Generator().manual_seed(1), modes=modes,
                         schedule=length_path_schedule(lengths, n_unit=300, growth=0.01))
    assert list(res) == lengths
    assert_close_to_exact(model, res, lengths, tol=0.05)
    steps = [res[d].n_temperatures for d in lengths]
    assert steps == sorted(steps) and steps[0] == 300  # length 1 sits at the end of the [0, 1] part
    for d in lengths:
        assert res[d].log_z_base == pytest.approx(8 * math.log(2.0))
        assert res[d].extra == {"length": d, "space": "hidden", "path": "length"}
    again, states = rsm_length_ais(model, lengths, n_chains=100, generator=torch.Generator().manual_seed(1), modes=modes,
                                   schedule=length_path_schedule(lengths, n_unit=300, growth=0.01), return_states=True)
    assert states.shape == (100, 8) and bool(((states == 0) | (states == 1)).all())
    assert again[150].log_z == res[150].log_z  # the same run, states returned besides
    with pytest.raises(ValueError, match="does not pass through the lengths \\[9\\]"):
        rsm_length_ais(model, [9], schedule=length_path_schedule([10]))
    with pytest.raises(ValueError, match="start at 0"):
        rsm_length_ais(model, [1], schedule=torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="n_chains"):
        rsm_length_ais(model, [1], n_chains=0)
    with pytest.raises(ValueError, match="modes must have shape"):
        rsm_length_ais(model, [1], modes=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="flip_prob"):
        rsm_length_ais(model, [1], modes=torch.zeros(2, 8), flip_prob=0.7)


def test_mode_jump_move_leaves_the_tempered_distribution_invariant():
    model = random_rsm(v=12, h=4, seed=3)
    states = all_states(4)
    t = 3.0
    target = torch.softmax(t * g_of(model, states), 0)  # (16,)
    W, b, a = (p.detach().double() for p in (model.weight, model.visible_bias, model.hidden_bias))
    jumps = _ModeJumps(W, b, a, states[[0, 5, 15]], flip_prob=0.2)
    gen = torch.Generator().manual_seed(0)
    n = 40000
    h = states[torch.multinomial(target, n, replacement=True, generator=gen)]
    pre = h @ W.T + b
    moved, pre_moved, lse_moved = jumps.move(h, pre, torch.logsumexp(pre, -1), t, gen)
    assert not torch.equal(moved, h)  # it does move
    torch.testing.assert_close(pre_moved, moved @ W.T + b)  # the cached terms follow the state
    torch.testing.assert_close(lse_moved, torch.logsumexp(moved @ W.T + b, -1))
    codes = (moved * (2 ** torch.arange(4))).sum(-1).long()
    empirical = torch.bincount(codes, minlength=16).double() / n
    assert float((empirical - target).abs().sum()) / 2 < 0.02  # total variation: sampling noise only
    # the proposal density is a normalised mixture over the whole cube
    assert float(torch.logsumexp(jumps.log_q(states), 0)) == pytest.approx(0.0, abs=1e-12)


def test_hidden_modes_are_the_local_maxima_and_include_the_global_one():
    model = random_rsm(v=30, h=10, seed=4)
    states = all_states(10)
    g = g_of(model, states)
    modes, g_modes = rsm_hidden_modes(model, 300, torch.Generator().manual_seed(0))
    assert float(g_modes[0]) == pytest.approx(float(g.max()), abs=1e-12)
    assert bool((g_modes[1:] <= g_modes[:-1]).all()) and torch.unique(modes, dim=0).shape[0] == modes.shape[0]
    torch.testing.assert_close(g_modes, g_of(model, modes))
    for m, gm in zip(modes, g_modes):  # no single flip gains
        flipped = m.expand(10, -1).clone()
        flipped[torch.arange(10), torch.arange(10)] = 1 - flipped[torch.arange(10), torch.arange(10)]
        assert bool((g_of(model, flipped) <= gm + 1e-12).all())
    # every true local maximum of the cube, found from all starts
    everything, _ = rsm_hidden_modes(model, states)
    local = [i for i in range(2**10) if all(g[i ^ (1 << j)] <= g[i] for j in range(10))]
    assert everything.shape[0] == len(local)
    with pytest.raises(ValueError, match="starts"):
        rsm_hidden_modes(model, torch.full((2, 10), 0.5))
    with pytest.raises(ValueError, match="starts"):
        rsm_hidden_modes(model, 0)


def test_mode_bound_is_below_exact_and_exact_for_very_long_documents():
    model = random_rsm(v=30, h=10, seed=5)
    modes, g = rsm_hidden_modes(model, 300, torch.Generator().manual_seed(0))
    lengths = [1, 10, 100, 1000, 20000]
    bound = mode_log_partition_bound(g, lengths)
    truth = exact(model, lengths)
    for d, lb in zip(lengths, bound.tolist()):
        assert lb <= truth[d] + 1e-9
    assert bound[-1].item() == pytest.approx(truth[20000], abs=1e-6)  # one state holds all the mass
    assert truth[1] - bound[0].item() > 1.0  # and short documents are far from it


def test_mode_importance_sampling_matches_exact_log_z():
    model = random_rsm(v=30, h=10, seed=6)
    modes, _ = rsm_hidden_modes(model, 300, torch.Generator().manual_seed(0))
    lengths = [1, 5, 40, 300, 3000]
    res = rsm_mode_importance(model, lengths, modes, n_samples=3000, generator=torch.Generator().manual_seed(1))
    assert_close_to_exact(model, res, lengths, tol=0.05)
    assert res[3000].effective_sample_size > 1000  # long documents: the basins are the distribution
    assert res[5].extra["method"] == "mode importance sampling" and res[5].n_temperatures == 0
    for kwargs, match in (({"n_samples": 1}, "n_samples"), ({"defensive": 0.0}, "defensive"), ({"defensive": 1.0}, "defensive")):
        with pytest.raises(ValueError, match=match):
            rsm_mode_importance(model, [3], modes, **kwargs)
    with pytest.raises(ValueError, match="modes must be 0/1"):
        rsm_mode_importance(model, [3], torch.zeros(2, 4))
    with pytest.raises(ValueError, match="lengths"):
        rsm_mode_importance(model, [0], modes)


def test_log_partitions_keep_the_largest_estimate_and_match_exact():
    model = random_rsm(v=30, h=10, scale=1.5, seed=7)
    lengths = [1, 3, 20, 80, 500]
    res = rsm_log_partitions(model, lengths, starts=200, n_chains=50, n_unit=300, n_samples=1000,
                             generator=torch.Generator().manual_seed(0))
    assert_close_to_exact(model, res, lengths, tol=0.05)
    for d in lengths:
        e = res[d].extra
        values = {"ais": e["ais_log_z"], "importance": e["importance_log_z"], "mode bound": e["mode_bound"]}
        assert e["method"] == max(values, key=values.get) and res[d].log_z == max(values.values())
        assert res[d].log_z_lower >= e["mode_bound"] and e["n_modes"] >= 1


def test_evaluate_with_the_length_estimator_matches_exact_perplexity():
    model = random_rsm(v=30, h=9, seed=8)
    gen = torch.Generator().manual_seed(0)
    x = torch.stack([torch.distributions.Multinomial(int(n), logits=torch.zeros(30)).sample() for n in
                     torch.randint(1, 120, (40,), generator=gen)]).double()
    report = model.evaluate(x, ais_chains=50, ais_betas=300, ais_space="length")
    with torch.no_grad():
        truth = per_document_perplexity(model.exact_log_prob(x), x.sum(-1))
    assert report.estimate_per_document == pytest.approx(truth, rel=2e-3)
    assert report.ais_space == "length" and report.ais_chains == 50 and report.ais_temperatures == 300
    assert sum(report.log_z_methods.values()) == report.n_lengths and 0.0 <= report.low_ess_document_share <= 1.0
    assert report.estimate_per_document_low_ess_plus_log2 >= report.estimate_per_document
    assert "largest of one AIS run through all lengths" in report.format()
    with pytest.raises(ValueError, match="ais_space"):
        model.evaluate(x, ais_space="lengths")
