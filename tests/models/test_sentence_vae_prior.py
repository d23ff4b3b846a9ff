"""The sentence VAE's fitted Gaussian-mixture prior: density, KL, sampling, fitting and the CLI."""

import json
import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from latentnlp.data.sentences import SentenceVocabulary, collate_sentences
from latentnlp.models.language.sentence_vae import (
    SentenceVAE,
    SentenceVAEConfig,
    evaluate_vae,
    fit_mixture_prior,
    posterior_samples,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SENTENCES = [s.split() for s in (
    "the cat sat on the mat",
    "a dog ran in the park",
    "the dog sat by a tree",
    "a cat ran to my house",
    "my house is by the park",
    "the tree is tall",
)]
VOCAB = SentenceVocabulary.build(SENTENCES)
IDS = VOCAB.encode_all(SENTENCES)[0]
BATCH = collate_sentences(IDS, VOCAB)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    fields = dict(vocab_size=len(VOCAB), embedding_dim=8, hidden_dim=16, latent_dim=3, init_range=0.5) | kw
    return SentenceVAE(SentenceVAEConfig(**fields)).eval()


def _set_mixture(model, logits, means, logvars):
    with torch.no_grad():
        model.prior_logits.copy_(torch.tensor(logits))
        model.prior_means.copy_(torch.tensor(means))
        model.prior_logvars.copy_(torch.tensor(logvars))


def _torch_mixture(model):
    return MixtureSameFamily(Categorical(logits=model.prior_logits),
                             Independent(Normal(model.prior_means, (0.5 * model.prior_logvars).exp()), 1))


def test_prior_components_is_validated_and_saved_with_the_weights():
    with pytest.raises(ValueError, match="SentenceVAEConfig.prior_components"):
        SentenceVAEConfig(vocab_size=10, prior_components=-1)
    assert "prior_logits" not in _model().state_dict()
    assert set(_model(prior_components=4).state_dict()) >= {"prior_logits", "prior_means", "prior_logvars"}


def test_an_unfitted_mixture_is_the_standard_normal():
    standard, mixture = _model(seed=3), _model(seed=3, prior_components=5)
    z = torch.randn(7, 2, 3)
    torch.testing.assert_close(mixture.log_prior(z), standard.log_prior(z))
    torch.testing.assert_close(standard.log_prior(z), Normal(0.0, 1.0).log_prob(z).sum(-1))
    noise = torch.randn(30, len(BATCH), 3)
    torch.testing.assert_close(mixture.iw_log_likelihood(BATCH, 30, noise=noise),
                               standard.iw_log_likelihood(BATCH, 30, noise=noise))


def test_mixture_log_density_matches_torch_distributions():
    model = _model(prior_components=3)
    _set_mixture(model, [0.0, 1.0, -2.0], [[0, 0, 0], [2, -1, 0.5], [-3, 1, 1]],
                 [[0, 0, 0], [-1, 0.5, 0], [1, -2, 0.3]])
    z = torch.randn(50, 4, 3) * 2
    torch.testing.assert_close(model.log_prior(z), _torch_mixture(model).log_prob(z))


def test_monte_carlo_kl_matches_quadrature_in_one_dimension():
    """KL(q(z|x) || mixture) against a fine trapezoid rule over z, for every sentence."""
    model = _model(prior_components=2, latent_dim=1)
    _set_mixture(model, [0.3, -0.3], [[-1.5], [2.0]], [[-1.0], [0.2]])
    mean, logvar = model.encode(BATCH)  # (B, 1)
    grid = torch.linspace(-12, 12, 200_001, dtype=torch.float64).unsqueeze(-1)  # (G, 1)
    q = Normal(mean.double().T, (0.5 * logvar.double().T).exp())  # batch (1, B)
    log_q = q.log_prob(grid)  # (G, B)
    log_p = model.log_prior(grid.float()).double().unsqueeze(-1)  # (G, 1)
    exact = torch.trapezoid(log_q.exp() * (log_q - log_p), grid, dim=0)  # (B,)
    with torch.no_grad():
        mc = model._kl(mean, logvar, torch.Generator().manual_seed(0), n_samples=200_000)
    torch.testing.assert_close(mc.double(), exact, atol=0.02, rtol=0.0)
    assert exact.min() > 0.3  # far enough from 0 that a wrong estimate shows
    # the evaluation estimate (KL_SAMPLES draws) is the same quantity, noisier
    torch.testing.assert_close(model.kl(BATCH, torch.Generator().manual_seed(1)).double(), exact, atol=0.3, rtol=0.0)


def test_samples_from_the_prior_follow_the_mixture():
    model = _model(prior_components=2)
    _set_mixture(model, [math.log(0.25), math.log(0.75)], [[-4, 0, 1], [4, 2, 1]], [[0, 0, 0], [-2, 0, 0]])
    z = model.sample_z(40_000, torch.Generator().manual_seed(0))
    mixture = _torch_mixture(model)
    torch.testing.assert_close(z.mean(0), mixture.mean, atol=0.06, rtol=0.0)
    torch.testing.assert_close(z.var(0), mixture.variance, atol=0.15, rtol=0.05)
    assert ((z[:, 0] > 0).float().mean() - 0.75).abs() < 0.01
    assert len(model.sample_prior(3, torch.Generator().manual_seed(0), max_length=5)) == 3


def test_iw_estimate_bounds_the_elbo_under_a_mixture_prior():
    model = _model(prior_components=3)
    _set_mixture(model, [0.0, 0.5, -0.5], [[1, 0, 0], [-1, 1, 0], [0, -1, 1]], [[-1, 0, 0], [0, -1, 0], [0, 0, -1]])
    noise = torch.randn(500, len(BATCH), 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        log_w = model.log_importance_weights(BATCH, noise)  # (K, B)
        elbo = model.elbo(BATCH, noise=noise, generator=torch.Generator().manual_seed(1))  # KL: 64 other draws
    iw = model.iw_log_likelihood(BATCH, 500, noise=noise)
    assert (iw > log_w.mean(0)).all()
    torch.testing.assert_close(log_w.mean(0), elbo, rtol=0.0, atol=0.3)


def test_fitted_prior_is_sklearns_mixture_and_raises_the_elbo_on_its_own_data():
    model = _model(seed=4)
    with torch.no_grad():  # posteriors far from N(0, I): a mismatch a fitted prior can remove
        model.to_mean.bias.copy_(torch.tensor([3.0, -2.0, 1.0]))
        model.to_logvar.bias.fill_(-3.0)
    z = posterior_samples(model, BATCH, samples_per_sentence=200, generator=torch.Generator().manual_seed(0))
    assert z.shape == (200 * len(IDS), 3)
    fitted = fit_mixture_prior(model, z, n_components=4, random_state=0)
    assert fitted.config.prior_components == 4 and not fitted.training
    for name, value in model.state_dict().items():  # encoder and decoder unchanged
        torch.testing.assert_close(fitted.state_dict()[name], value)
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(4, covariance_type="diag", random_state=0, reg_covar=1e-6).fit(z.double().numpy())
    torch.testing.assert_close(fitted.log_prior(z[:50]), torch.as_tensor(gmm.score_samples(z[:50].double().numpy())).float(),
                               atol=1e-3, rtol=1e-4)
    g = torch.Generator().manual_seed(1)
    kl_before, kl_after = model.kl(BATCH).mean(), fitted.kl(BATCH, g).mean()
    assert kl_after < kl_before - 2.0  # the aggregate posterior is far from N(0, I)
    assert kl_after > -0.1  # a KL stays >= 0 up to Monte-Carlo error
    with pytest.raises(ValueError, match="shape"):
        fit_mixture_prior(model, z[:, :2], 2)
    with pytest.raises(ValueError, match="n_components"):
        fit_mixture_prior(model, z[:3], 4)
    with pytest.raises(ValueError, match="NaN"):
        fit_mixture_prior(model, torch.full((10, 3), float("nan")), 2)


def test_free_bits_under_a_mixture_prior_clamp_the_total_kl():
    lam = 0.5
    model = _model(seed=5, prior_components=2, free_bits=lam, kl_schedule="constant").train()
    _set_mixture(model, [0.0, 0.0], [[1, 1, 1], [-1, -1, -1]], [[0, 0, 0], [0, 0, 0]])
    noise = torch.randn(1, len(BATCH), 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.to_mean.bias.fill_(0.0)
        model.to_logvar.bias.fill_(0.0)
    out = model(BATCH, noise)
    objective = (out["loss"] - out["reconstruction"]).mean()
    # kl is log q(z|x) - log p(z) at the training sample, and the objective its max with lambda * D
    torch.testing.assert_close(objective, out["kl"].mean().clamp(min=lam * 3))
    with torch.no_grad():
        model.to_mean.bias.fill_(6.0)  # far from both components: the total KL is above lambda * D
    out = model(BATCH, noise)
    assert out["kl"].mean() > lam * 3
    torch.testing.assert_close((out["loss"] - out["reconstruction"]).mean(), out["kl"].mean())


def test_evaluate_vae_under_a_mixture_prior_is_repeatable():
    model = _model(prior_components=2)
    _set_mixture(model, [0.0, 0.0], [[1, 0, 0], [-1, 0, 0]], [[0, 0, 0], [0, 0, 0]])
    a = evaluate_vae(model, IDS, VOCAB, iw_samples=5, generator=torch.Generator().manual_seed(0))
    b = evaluate_vae(model, IDS, VOCAB, iw_samples=5, generator=torch.Generator().manual_seed(0))
    assert a == b and a["kl_per_sentence"] > 0
    assert a["iw_nll_per_sentence"] <= a["bound_nll_per_sentence"] + 0.5


def _ptb_slice(folder, shared_data_dir, n_train, n_eval):
    """The first sentences of PTB's three files as the user's own files: the CLI options that name them."""
    options = []
    for split, n in (("train", n_train), ("valid", n_eval), ("test", n_eval)):
        lines = (shared_data_dir / "ptb" / f"ptb.{split}.txt").read_text().splitlines()[:n]
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
        options += [f"--{split}", str(folder / f"{split}.txt")]
    return options


def test_fit_prior_command(tmp_path, shared_data_dir, capsys):
    from latentnlp.cli import main

    data = _ptb_slice(tmp_path, shared_data_dir, 200, 40)
    run, fitted = tmp_path / "vae", tmp_path / "vae-mog"
    assert main(["train", "sentence-vae", *data, "--embedding-dim", "16", "--hidden-dim", "16", "--latent-dim", "3",
                 "--epochs", "1", "--batch-size", "16", "--no-progress", "--kl-schedule", "constant",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["fit-prior", str(run), "--out", str(fitted), "--components", "1", "3"]) == 0
    config = json.loads((fitted / "config.json").read_text())
    prior = config["prior"]
    assert [row["components"] for row in prior["selection"]] == [0, 1, 3]
    best = min(prior["selection"][1:], key=lambda row: row["valid_kl_per_sentence"])
    assert config["model_config"]["prior_components"] == prior["chosen_components"] == best["components"]
    assert prior["n_samples"] == 200
    assert "components" in capsys.readouterr().out
    assert main(["evaluate", str(fitted), "--iw-samples", "3"]) == 0
    figures = json.loads(capsys.readouterr().out)["vae"]
    assert figures["n_sentences"] == 40 and figures["kl_per_sentence"] > -0.1
    assert main(["sample", str(fitted), "--n", "2", "--max-length", "5"]) == 0
    assert main(["fit-prior", str(run), "--out", str(run)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["fit-prior", str(run), "--out", str(tmp_path / "x"), "--components", "0"]) == 2
    assert "--components" in capsys.readouterr().err


def test_a_sentence_vae_continues_from_a_fitted_prior_run(tmp_path, shared_data_dir, capsys):
    """--init-from a fit-prior run: every weight and the mixture carried over, the KL clock restarted."""
    from latentnlp.cli import main
    from latentnlp.runs import RunDirectory

    data = _ptb_slice(tmp_path, shared_data_dir, 120, 30)
    sizes = ["--embedding-dim", "16", "--hidden-dim", "16", "--latent-dim", "3", "--batch-size", "16", "--no-progress"]
    run, fitted, tuned = tmp_path / "vae", tmp_path / "vae-mog", tmp_path / "vae-mog-ft"
    assert main(["train", "sentence-vae", *data, *sizes, "--epochs", "1", "--out", str(run)]) == 0
    assert main(["fit-prior", str(run), "--out", str(fitted), "--components", "2"]) == 0
    capsys.readouterr()
    # the prior must be declared: a network that differs is refused, naming the field
    assert main(["train", "sentence-vae", *data, *sizes, "--epochs", "1", "--init-from", str(fitted),
                 "--out", str(tmp_path / "bad")]) == 2
    assert "prior_components" in capsys.readouterr().err
    assert main(["train", "sentence-vae", *data, *sizes, "--epochs", "1", "--lr", "1e-3", "--prior-components", "2",
                 "--free-bits", "0.5", "--kl-schedule", "constant", "--init-from", str(fitted), "--out", str(tuned),
                 "--seed", "7"]) == 0  # another seed: ignoring --init-from would give other random weights
    before, after = RunDirectory(fitted).load_model(), RunDirectory(tuned).load_model()
    for name in ("prior_logits", "prior_means", "prior_logvars"):  # buffers: the prior stays as fitted
        torch.testing.assert_close(after.state_dict()[name], before.state_dict()[name])
    # the weights started from the fitted run's (seed 7's uniform(-0.1, 0.1) draws would differ by up to ~0.2):
    # one epoch of Adam 1e-3 moves each by at most ~8 steps of 1e-3
    for name in ("to_mean.weight", "decoder.embedding.weight", "encoder_rnn.weight_hh_l0"):
        assert (after.state_dict()[name] - before.state_dict()[name]).abs().max() < 0.02
    assert int(after.kl_step) == 8  # 120 sentences in batches of 16, counted from 0
    assert main(["train", "rnnlm", *data, "--embedding-dim", "16", "--hidden-dim", "16", "--epochs", "1",
                 "--no-progress", "--init-from", str(fitted), "--out", str(tmp_path / "lm")]) == 2
    assert "sentence-vae" in capsys.readouterr().err
