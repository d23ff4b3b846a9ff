import math

import pytest
import torch
from torch.distributions import Normal

from latentnlp.data.sentences import SentenceVocabulary, collate_sentences
from latentnlp.inference.importance import iw_log_mean_exp
from latentnlp.models.language.rnnlm import RNNLanguageModel, RNNLMConfig
from latentnlp.models.language.sentence_vae import SentenceVAE, SentenceVAEConfig, evaluate_vae
from latentnlp.training.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

SENTENCES = [s.split() for s in (
    "the cat sat on the mat",
    "a dog ran in the park",
    "the dog sat by a tree",
    "a cat ran to my house",
)]
VOCAB = SentenceVocabulary.build(SENTENCES)
IDS = VOCAB.encode_all(SENTENCES)[0]


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    fields = dict(vocab_size=len(VOCAB), embedding_dim=8, hidden_dim=16, latent_dim=3)
    fields.update(kw)
    return SentenceVAE(SentenceVAEConfig(**fields))


def _batch(ids=IDS):
    return collate_sentences(ids, VOCAB)


def _decoding():
    return pytest.importorskip("latentnlp.models.language.decoding")


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("field, value", [
    ("vocab_size", 4), ("latent_dim", 0), ("hidden_dim", -1), ("num_layers", 0), ("cell", "transformer"),
    ("dropout", 1.0), ("word_dropout", 1.5), ("word_dropout", -0.1), ("kl_schedule", "cosine"),
    ("kl_anneal_steps", 0), ("kl_sigmoid_rate", 0.0), ("kl_cycles", 0), ("kl_cycle_ratio", 0.0),
    ("kl_cycle_ratio", 1.5), ("free_bits", -1.0), ("init_range", 0.0), ("feed_context", 1),
    ("tie_weights", 1), ("tie_weights", True),  # True with the default 353 != 191 sizes
])
def test_bad_config_values_raise_naming_the_field(field, value):
    fields = {"vocab_size": 10, field: value}
    with pytest.raises(ValueError, match=f"SentenceVAEConfig.{field}"):
        SentenceVAEConfig(**fields)


def test_config_round_trips_and_decoder_is_conditioned_on_z():
    config = SentenceVAEConfig(vocab_size=10, latent_dim=5, feed_context=True, cell="gru")
    assert SentenceVAEConfig(**config.to_dict()) == config
    model = SentenceVAE(config)
    assert isinstance(model.decoder, RNNLanguageModel)
    assert model.decoder.config.context_dim == 5 and model.decoder.config.feed_context
    assert model.optimization_phases(True).keys() == {"all"}
    with pytest.raises(TypeError):
        SentenceVAE(config, latent_dim=3)


def test_shared_embedding_is_the_decoders():
    model = _model(share_embedding=True)
    assert model.encoder_embedding is None
    n_shared = sum(p.numel() for p in model.parameters())
    assert n_shared == sum(p.numel() for p in _model().parameters()) - len(VOCAB) * 8


def test_tied_decoder_softmax_is_its_input_embedding():
    model = _model(embedding_dim=16, tie_weights=True)
    assert model.decoder.output.weight is model.decoder.embedding.weight
    n_tied = sum(p.numel() for p in model.parameters())
    assert n_tied == sum(p.numel() for p in _model(embedding_dim=16).parameters()) - len(VOCAB) * 16
    assert SentenceVAEConfig(**model.config.to_dict()) == model.config
    # an old run's config (no tie_weights key) still loads, untied
    old = {k: v for k, v in model.config.to_dict().items() if k != "tie_weights"}
    assert SentenceVAEConfig(**old).tie_weights is False


def _language_model(seed=1, **kw):
    torch.manual_seed(seed)
    fields = dict(vocab_size=len(VOCAB), embedding_dim=8, hidden_dim=16, num_layers=1)
    fields.update(kw)
    return RNNLanguageModel(RNNLMConfig(**fields))


@pytest.mark.parametrize("cell, tie, share", [("lstm", False, False), ("gru", True, True), ("lstm", True, False)])
def test_vae_started_from_a_language_model_decodes_as_that_model(cell, tie, share):
    size = 16 if tie else 8
    lm = _language_model(cell=cell, embedding_dim=size, tie_weights=tie).eval()
    model = _model(cell=cell, embedding_dim=size, tie_weights=tie, share_embedding=share).eval()
    copied = model.load_language_model(lm)
    assert "decoder.embedding.weight" in copied and "decoder.output.bias" in copied
    # with W = 0 and b = 0 in h_0 = tanh(W z + b) the decoder ignores z and is the LM exactly
    torch.nn.init.zeros_(model.decoder.context_to_state.weight)
    torch.nn.init.zeros_(model.decoder.context_to_state.bias)
    batch = _batch()
    z = torch.randn(2, len(IDS), 3)
    with torch.no_grad():
        expected = lm.sentence_log_likelihood(batch)
        got = model._log_likelihood_given_z(batch, z)
    torch.testing.assert_close(got, expected.expand(2, -1), rtol=0, atol=1e-5)
    # the encoder reads with the LM's recurrent weights (and its embedding table)
    for name, value in lm.rnn.named_parameters():
        assert torch.equal(dict(model.encoder_rnn.named_parameters())[name], value)
    if not share:
        assert torch.equal(model.encoder_embedding.weight, lm.embedding.weight)
    if tie:
        assert model.decoder.output.weight is model.decoder.embedding.weight
    # encoder=False leaves the encoder as it was
    fresh = _model(cell=cell, embedding_dim=size, tie_weights=tie, share_embedding=share)
    before = {k: v.clone() for k, v in fresh.encoder_rnn.state_dict().items()}
    fresh.load_language_model(lm, encoder=False)
    assert all(torch.equal(v, fresh.encoder_rnn.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("lm_fields, vae_fields, match", [
    ({"hidden_dim": 12}, {}, "hidden_dim"),
    ({"cell": "gru"}, {}, "cell"),
    ({"num_layers": 2}, {}, "num_layers"),
    ({"vocab_size": len(VOCAB) + 1}, {}, "vocab_size"),
    ({}, {"feed_context": True}, "feed_context"),
])
def test_load_language_model_rejects_a_different_network(lm_fields, vae_fields, match):
    with pytest.raises(ValueError, match=match):
        _model(**vae_fields).load_language_model(_language_model(**lm_fields))


# ---------------------------------------------------------------------- bounds and KL
def test_closed_form_kl_matches_monte_carlo():
    model = _model(seed=1, encoder_bidirectional=True)
    with torch.no_grad():  # q far from the prior, so a wrong formula shows
        model.to_mean.bias.fill_(1.2)
        model.to_logvar.bias.fill_(-1.5)
    batch = _batch()
    mean, logvar = model.encode(batch)
    q = Normal(mean, (0.5 * logvar).exp())
    z = q.sample((100_000,))  # (S, B, D)
    mc = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1).mean(0)
    closed = model.kl(batch)
    assert closed.min() > 2.0
    torch.testing.assert_close(closed, mc, atol=0.03, rtol=0.0)


def test_iw_estimate_reduces_to_elbo_and_bounds_it_on_the_same_samples():
    model = _model(init_range=0.5)
    with torch.no_grad():
        model.to_logvar.bias.fill_(1.0)  # a poor proposal: the gap between the bounds is large
    batch = _batch()
    noise = torch.randn(2000, len(batch), 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        log_w = model.log_importance_weights(batch, noise)  # (K, B)
        elbo = model.elbo(batch, noise=noise)
    # K = 1: the estimate is the single log weight
    torch.testing.assert_close(model.iw_log_likelihood(batch, 1, noise=noise[:1]), log_w[0])
    # chunking does not change the estimate; Jensen: it is >= the mean log weight (a Monte-Carlo ELBO)
    iw = model.iw_log_likelihood(batch, 2000, noise=noise, chunk_size=300)
    torch.testing.assert_close(iw, iw_log_mean_exp(log_w), rtol=0.0, atol=1e-4)
    assert (iw > log_w.mean(0) + 0.1).all()
    # the mean log weight and the closed-form-KL ELBO estimate the same quantity
    torch.testing.assert_close(log_w.mean(0), elbo, rtol=0.0, atol=0.1)


def test_iw_estimate_tightens_with_k_on_average():
    model = _model(init_range=0.5)
    with torch.no_grad():
        model.to_logvar.bias.fill_(1.0)
    batch = _batch()
    noise = torch.randn(4000, len(batch), 3, generator=torch.Generator().manual_seed(1))
    log_w = model.log_importance_weights(batch, noise).detach()
    means = [iw_log_mean_exp(log_w.view(-1, k, len(batch)), dim=1).mean() for k in (1, 5, 50)]
    assert means[0] + 0.2 < means[1] and means[1] + 0.02 < means[2]


# ------------------------------------------------------------------------ word dropout
def test_word_dropout_is_off_in_eval_mode():
    model = _model(word_dropout=0.5, dropout=0.3)
    batch = _batch()
    model.eval()
    assert model.drop_words(batch) is batch
    noise = model.sample_noise(len(batch), torch.Generator().manual_seed(0))
    first, second = model(batch, noise), model(batch, noise)
    for key in first:
        torch.testing.assert_close(first[key], second[key])
    assert int(model.kl_step) == 0  # eval forwards do not advance the annealing clock


def test_word_dropout_rate_in_training_and_only_on_words():
    rate = 0.3
    model = _model(word_dropout=rate).train()
    gen = torch.Generator().manual_seed(0)
    ids = [torch.randint(4, len(VOCAB), (int(n),), generator=gen) for n in torch.randint(1, 30, (400,), generator=gen)]
    batch = _batch(ids)
    for seeds in (None, model.sample_noise(len(batch), gen)[0, :, -1]):
        dropped = model.drop_words(batch, seeds)
        words = batch.mask.clone()
        words[:, 0] = False
        changed = dropped.inputs != batch.inputs
        assert not changed[~words].any()  # <bos> and padding untouched
        assert (dropped.inputs[changed] == VOCAB.unk_id).all()
        assert torch.equal(dropped.targets, batch.targets)
        assert abs(changed.sum().item() / words.sum().item() - rate) < 0.02  # ~6000 words: sd 0.006


def test_word_dropout_masks_follow_the_noise_not_the_batch():
    model = _model(word_dropout=0.5).train()
    noise = model.sample_noise(4, torch.Generator().manual_seed(3))
    assert noise.shape == (1, 4, 4)
    seeds = noise[0, :, -1]
    together = model.drop_words(_batch(), seeds).inputs
    alone = model.drop_words(_batch(IDS[2:3]), seeds[2:3]).inputs
    assert torch.equal(together[2, : alone.shape[1]], alone[0])
    # same noise, same training outputs (the loss is reproducible on resume)
    model = _model(word_dropout=0.5, kl_schedule="constant").train()
    first, second = model(_batch(), noise), model(_batch(), noise)
    torch.testing.assert_close(first["loss"], second["loss"])


# --------------------------------------------------------------------- KL annealing
def test_kl_schedules():
    def weight(schedule, step, **kw):
        return SentenceVAEConfig(vocab_size=10, kl_schedule=schedule, kl_anneal_steps=400, **kw).kl_weight_at(step)

    assert [weight("constant", s) for s in (0, 10**6)] == [1.0, 1.0]
    assert [weight("linear", s) for s in (0, 100, 200, 400, 10**6)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert weight("sigmoid", 0, kl_sigmoid_rate=0.05) < 1e-4
    assert weight("sigmoid", 200, kl_sigmoid_rate=0.05) == 0.5
    assert weight("sigmoid", 400, kl_sigmoid_rate=0.05) > 1 - 1e-4
    assert weight("sigmoid", 10**9) == 1.0 and weight("sigmoid", -(10**9)) == 0.0
    assert weight("sigmoid", 30, kl_sigmoid_center=30.0) == 0.5
    # Fu et al. 2019: M = 4 cycles of 100 steps, rising over the first half of each
    cyc = [weight("cyclical", s, kl_cycles=4, kl_cycle_ratio=0.5) for s in range(500)]
    assert cyc[0] == 0.0 and cyc[25] == 0.5 and cyc[50] == 1.0 and cyc[99] == 1.0 and cyc[100] == 0.0
    assert cyc[:300] == cyc[100:400]  # periodic
    assert all(w == 1.0 for w in cyc[400:])  # after the M cycles
    assert all(0.0 <= w <= 1.0 for w in cyc)


def test_training_forward_advances_the_saved_step_and_uses_the_schedule():
    model = _model(kl_schedule="linear", kl_anneal_steps=4).train()
    batch = _batch()
    weights = [model(batch)["kl_weight"] for _ in range(6)]
    assert [float(w[0]) for w in weights] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert weights[0].shape == (len(batch),)
    state = model.state_dict()
    assert state["kl_step"].dtype == torch.long and int(state["kl_step"]) == 6
    fresh = _model(kl_schedule="linear", kl_anneal_steps=4)
    fresh.load_state_dict(state)
    assert int(fresh.kl_step) == 6 and fresh.kl_weight == 1.0


def test_forward_terms_are_consistent():
    model = _model(kl_schedule="linear", kl_anneal_steps=2).train()
    batch = _batch()
    noise = model.sample_noise(len(batch), torch.Generator().manual_seed(0), n_samples=3)
    model(batch, noise)  # step 0 -> weight 0.5 on the next call
    out = model(batch, noise)
    torch.testing.assert_close(out["elbo"], -(out["reconstruction"] + out["kl"]))
    torch.testing.assert_close(out["loss"], out["reconstruction"] + 0.5 * out["kl"])
    torch.testing.assert_close(out["kl"], model.kl(batch))
    model.eval()
    torch.testing.assert_close(model(batch, noise)["elbo"], model.elbo(batch, noise=noise))
    with pytest.raises(ValueError, match="noise must have shape"):
        model(batch, torch.zeros(1, len(batch), 7))


def test_free_bits_objective_is_sum_of_clamped_batch_mean_kls():
    lam = 0.4
    model = _model(seed=2, free_bits=lam, kl_schedule="constant", latent_dim=4).train()
    with torch.no_grad():  # dimensions 0-1 well above lambda, 2-3 below it
        model.to_mean.bias.copy_(torch.tensor([1.5, -1.0, 0.05, 0.0]))
    batch = _batch()
    out = model(batch)
    mean, logvar = model.encode(batch)
    kl_j = (0.5 * (mean**2 + logvar.exp() - 1 - logvar)).mean(0)  # (D,) batch means
    assert (kl_j[:2] > lam).all() and (kl_j[2:] < lam).all()
    objective_kl = (out["loss"] - out["reconstruction"]).mean()
    torch.testing.assert_close(objective_kl, kl_j.clamp(min=lam).sum())
    torch.testing.assert_close(out["kl"].mean(), kl_j.sum())  # the reported KL is the honest one
    # the clamped dimensions get no gradient from the KL term
    model.zero_grad()
    (out["loss"] - out["reconstruction"]).mean().backward()
    assert model.to_mean.bias.grad[2:].abs().max() == 0 and model.to_mean.bias.grad[:2].abs().min() > 0


# -------------------------------------------------------------- posterior diagnostics
def test_active_units_and_mutual_information():
    model = _model(latent_dim=4, init_range=0.5)
    batch = _batch()
    with torch.no_grad():  # q(z|x) the same for every x: nothing is encoded
        model.to_mean.weight.zero_()
        model.to_logvar.weight.zero_()
    assert model.active_units(batch) == 0
    assert abs(model.mutual_information(batch)) < 1e-5
    with torch.no_grad():  # dimensions 0 and 1 vary strongly across sentences, with small variance
        model.to_mean.weight[:2].normal_(0.0, 10.0, generator=torch.Generator().manual_seed(0))
        model.to_logvar.bias.fill_(-6.0)
    assert model.active_units([batch]) == 2
    assert model.active_units(batch, threshold=1e9) == 0
    mi = model.mutual_information([_batch(IDS[:2]), _batch(IDS[2:])])
    assert 0.5 < mi <= math.log(2) + 1e-4  # each batch of two sentences: at most log 2 nats
    # pooled over the four sentences the same draws reach log 4: every code is told apart from the other three
    pooled = model.mutual_information([_batch(IDS[:2]), _batch(IDS[2:])], pooled=True, chunk_size=3)
    assert math.log(4) - 0.05 < pooled <= math.log(4) + 1e-4
    assert abs(_model(latent_dim=4).mutual_information(batch, pooled=True)) < 0.05  # weights in +-0.1: nearly nothing
    g = torch.Generator().manual_seed(5)  # one batch: pooled and per-batch are the same estimate
    torch.testing.assert_close(model.mutual_information(batch, torch.Generator().manual_seed(5), pooled=True),
                               model.mutual_information(batch, g))


def test_evaluate_vae_figures():
    model = _model(seed=3)
    ids = IDS * 3
    result = evaluate_vae(model, ids, VOCAB, batch_size=5, iw_samples=20, elbo_samples=2)
    n_tokens = sum(len(s) + 1 for s in ids)
    assert result["n_sentences"] == len(ids) and result["n_tokens"] == n_tokens
    elbo = torch.cat([model.elbo(_batch(ids[i : i + 4]), 50) for i in range(0, len(ids), 4)]).detach()
    assert result["bound_nll_per_sentence"] == pytest.approx(-float(elbo.mean()), abs=0.05)
    assert result["iw_nll_per_sentence"] <= result["bound_nll_per_sentence"] + 0.01
    assert result["bound_perplexity"] == pytest.approx(math.exp(result["bound_nll_per_sentence"] * len(ids) / n_tokens))
    assert result["bound_perplexity_words"] > result["bound_perplexity"]
    assert result["kl_per_sentence"] == pytest.approx(float(model.kl(_batch(ids)).detach().mean()), rel=1e-5)
    assert {"active_units", "mutual_information", "mutual_information_pooled", "iw_perplexity",
            "iw_perplexity_words"} <= result.keys()
    assert result["mutual_information_pooled"] >= result["mutual_information"] - 0.1
    assert "iw_nll_per_sentence" not in evaluate_vae(model, ids, VOCAB, iw_samples=0)
    assert model.training  # the caller's mode is restored


# ----------------------------------------------------------------- training, decoding
def test_trainer_resume_is_exact(tmp_path):
    config = dict(word_dropout=0.3, kl_schedule="linear", kl_anneal_steps=5)

    def run(epochs, run_dir, model):
        train = TrainConfig(epochs=epochs, batch_size=2, learning_rate=0.01, progress=False, seed=4)
        Trainer(model, train, len(IDS), lambda idx: _batch([IDS[i] for i in idx]), run_dir=run_dir).fit()
        return model

    straight = run(3, tmp_path / "a", _model(**config))
    run(1, tmp_path / "b", _model(**config))
    torch.manual_seed(123)  # the global RNG plays no part
    resumed = run(3, tmp_path / "b", _model(**config))
    assert int(straight.kl_step) == int(resumed.kl_step) == 6
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


def test_tiny_model_overfits_and_reconstructs_from_the_posterior_mean():
    _decoding()
    # KL weight ~0 (an autoencoder), so z carries which of the four sentences it is.
    model = _model(seed=0, embedding_dim=16, hidden_dim=32, latent_dim=4, kl_schedule="linear",
                   kl_anneal_steps=100_000)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    batch, gen = _batch(), torch.Generator().manual_seed(0)
    losses = []
    for _ in range(200):
        loss = model(batch, model.sample_noise(len(batch), gen))["loss"].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    decoded = [VOCAB.decode(ids) for ids in model.reconstruct(batch)]
    assert sum(d == s for d, s in zip(decoded, SENTENCES)) >= 3, decoded
    beam = [VOCAB.decode(ids) for ids in model.reconstruct(batch, method="beam", beam_size=3)]
    assert sum(d == s for d, s in zip(beam, SENTENCES)) >= 3, beam
    # the homotopy starts and ends at the two sentences' reconstructions
    path = model.interpolate(_batch(IDS[:2]), steps=4)
    assert len(path) == 4 and path[0] == model.reconstruct(batch)[0] and path[-1] == model.reconstruct(batch)[1]
    assert model.training


@pytest.mark.parametrize("cell, feed_context", [("lstm", False), ("gru", True)])
def test_generation_helpers(cell, feed_context):
    _decoding()
    model = _model(cell=cell, feed_context=feed_context, num_layers=2)
    batch = _batch()
    for method in ("greedy", "sample", "beam"):
        out = model.sample_prior(3, torch.Generator().manual_seed(0), method=method, beam_size=2, max_length=7)
        assert len(out) == 3 and all(len(s) <= 7 and all(4 <= t < len(VOCAB) or t == 3 for t in s) for s in out)
    first = model.sample_prior(3, torch.Generator().manual_seed(5), method="sample", max_length=7)
    assert first == model.sample_prior(3, torch.Generator().manual_seed(5), method="sample", max_length=7)
    assert len(model.reconstruct(batch, use_mean=False, generator=torch.Generator().manual_seed(0))) == len(batch)
    assert len(model.interpolate(_batch(IDS[:2]), steps=5, method="beam", beam_size=2)) == 5
    with pytest.raises(ValueError, match="exactly 2"):
        model.interpolate(batch)
    with pytest.raises(ValueError, match="method"):
        model.sample_prior(2, method="nucleus")
