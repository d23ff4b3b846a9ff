import math

import pytest
import torch

from latentnlp.models.document.nvdm import NVDM, NVDMConfig


def _model(V=6, K=2, H=8, seed=0, **kw):
    torch.manual_seed(seed)
    return NVDM(NVDMConfig(vocab_size=V, latent_dim=K, hidden_dim=H, decoder_bias_init="zero", **kw))


def test_config_validation():
    with pytest.raises(ValueError, match="latent_dim"):
        NVDMConfig(vocab_size=10, latent_dim=0)
    with pytest.raises(ValueError, match="activation"):
        NVDMConfig(vocab_size=10, activation="gelu")


def test_kl_matches_hand_computed_closed_form():
    m = _model()
    x = torch.tensor([[1.0, 0, 2, 0, 0, 3], [0, 1, 0, 0, 4, 0]])
    q = m.posterior(x)
    mu, sigma = q.base_dist.loc, q.base_dist.scale
    # KL(N(mu, s^2) || N(0, 1)) = 1/2 sum(mu^2 + s^2 - 1 - 2 log s)   (Kingma & Welling 2014, App. B)
    by_hand = 0.5 * (mu**2 + sigma**2 - 1 - 2 * sigma.log()).sum(-1)
    terms = m.elbo(x, noise=torch.zeros(1, 2, 2))
    torch.testing.assert_close(terms.kl, by_hand)


def test_kl_matches_monte_carlo():
    m = _model(seed=1)
    with torch.no_grad():  # make q far from the prior so the test can fail
        m.posterior_log_sigma.bias.fill_(-1.0)
        m.posterior_mean.bias.fill_(1.5)
    x = torch.tensor([[1.0, 0, 2, 0, 0, 3]])
    q = m.posterior(x)
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - m.prior(z).log_prob(z)).mean(0)
    closed = m.elbo(x, n_samples=1).kl
    torch.testing.assert_close(closed, mc, atol=0.02, rtol=0.0)


def test_elbo_with_zero_noise_is_loglik_at_mean_minus_kl():
    m = _model()
    x = torch.tensor([[1.0, 0, 2, 0, 0, 3]])
    terms = m.elbo(x, noise=torch.zeros(1, 1, 2))
    mu = m.posterior(x).base_dist.loc
    logp = torch.log_softmax(mu @ m.decoder.weight.T + m.decoder.bias, -1)
    torch.testing.assert_close(terms.reconstruction, (logp * x).sum(-1))
    torch.testing.assert_close(terms.elbo, terms.reconstruction - terms.kl)


def test_noise_shape_is_checked():
    m = _model()
    with pytest.raises(ValueError, match="noise must have shape"):
        m.elbo(torch.ones(3, 6), noise=torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 6\)"):
        m.elbo(torch.ones(3, 5))


def _exact_log_marginal_1d(m, x, grid=20001):
    """log p(d) = log int N(z; 0, 1) p(d|z) dz by quadrature, for a 1-dimensional latent."""
    z = torch.linspace(-12, 12, grid, dtype=torch.float64).unsqueeze(-1)  # (G, 1)
    m64 = m.double()
    logp = (torch.log_softmax(m64.decoder(z), -1) * x.double()).sum(-1) - 0.5 * z.squeeze(-1) ** 2 - 0.5 * math.log(2 * math.pi)
    dz = (z[1] - z[0]).item()
    return torch.logsumexp(logp, 0) + math.log(dz)


def test_iw_estimate_approaches_exact_marginal_and_bounds_hold():
    m = _model(V=5, K=1, H=4, seed=3)
    with torch.no_grad():
        m.decoder.weight.mul_(4.0)  # a peaked likelihood makes the ELBO gap visible
    x = torch.tensor([[3.0, 0, 1, 0, 5]])
    exact = _exact_log_marginal_1d(m, x).item()
    m = m.float()
    gen = torch.Generator().manual_seed(0)
    elbo = m.elbo(x, n_samples=20000, generator=gen).elbo.item()
    iw = m.iw_log_likelihood(x, 20000, generator=gen).item()
    assert elbo < exact - 0.05  # the bound is loose here, so the next check means something
    assert elbo <= iw + 1e-4
    assert iw == pytest.approx(exact, abs=0.02)


def test_iw_estimate_tightens_with_k():
    m = _model(V=20, K=4, H=16, seed=4)
    with torch.no_grad():
        m.decoder.weight.mul_(3.0)
    x = torch.poisson(torch.full((64, 20), 1.5), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    means = []
    for k in (1, 10, 100):
        reps = torch.stack([m.iw_log_likelihood(x, k, generator=gen) for _ in range(8)]).mean(1)  # (8,)
        means.append(reps.mean().item())
    # K = 1 is the ELBO in expectation: compare within 4 standard errors.
    single = torch.stack([m.iw_log_likelihood(x, 1, generator=gen) for _ in range(400)]).mean(1)  # (400,)
    elbo = m.elbo(x, n_samples=2000, generator=gen).elbo.mean().item()
    assert abs(single.mean().item() - elbo) < 4 * single.std().item() / math.sqrt(len(single)) + 1e-3
    assert means[0] < means[1] < means[2]


def test_topic_words_and_nearest_words_read_the_decoder():
    m = _model(V=4, K=2)
    vocab = ("space", "nasa", "god", "church")
    with torch.no_grad():
        m.decoder.weight.copy_(torch.tensor([[3.0, 0.0], [2.0, 0.1], [0.0, 3.0], [0.1, 2.0]]))
    assert m.topic_words(vocab, n_words=2) == [["space", "nasa"], ["god", "church"]]
    near = m.nearest_words("god", vocab, n_words=1)
    assert near[0][0] == "church" and near[0][1] > 0.99
    with pytest.raises(KeyError, match="hockey"):
        m.nearest_words("hockey", vocab)
    with pytest.raises(ValueError, match="vocab has 3 words"):
        m.topic_words(vocab[:3])


def test_alternating_phases_partition_parameters():
    m = _model()
    phases = m.optimization_phases(alternate=True)
    enc = {id(p) for p in phases["encoder"]}
    dec = {id(p) for p in phases["decoder"]}
    assert not enc & dec and enc | dec == {id(p) for p in m.parameters()}
    assert len(m.optimization_phases(alternate=False)["joint"]) == len(list(m.parameters()))
