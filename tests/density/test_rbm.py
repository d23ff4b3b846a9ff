"""The binary RBM: free energy, Gibbs sampling, the CD/PCD gradient, exact resume, input checks."""

import json

import pytest
import torch

from latentnlp.evaluation.density import DensityReport
from latentnlp.inference.ais import binary_configurations, rbm_exact_log_partition
from latentnlp.models.density import rbm as rbm_module
from latentnlp.models.density.rbm import BernoulliRBM, RBMConfig
from latentnlp.training.distributed import DistributedContext
from latentnlp.training.trainer import TrainConfig, Trainer
from tests.density.conftest import tiny_rbm
from tests.synthetic import assert_two_gloo_processes_match_one


def exact_log_p_all(rbm):
    """Every visible configuration and its exact log p(v): ((2^D, D), (2^D,))."""
    v = binary_configurations(rbm.n_dims)
    with torch.no_grad():
        return v, -rbm.free_energy(v) - rbm_exact_log_partition(rbm)


def test_free_energy_matches_closed_form_and_summing_out_h():
    rbm = tiny_rbm(5, 4, scale=1.3, seed=1)
    v = binary_configurations(5)
    W, b, c = rbm.weight.detach(), rbm.visible_bias.detach(), rbm.hidden_bias.detach()
    closed = -(v @ b) - torch.log1p(torch.exp(v @ W + c)).sum(1)
    h = binary_configurations(4)
    by_sum = -torch.logsumexp(-torch.stack([rbm.energy(v, hh.expand(32, 4)) for hh in h], 1), 1)
    with torch.no_grad():
        f = rbm.free_energy(v)
    torch.testing.assert_close(f, closed, rtol=0, atol=1e-12)
    torch.testing.assert_close(f, by_sum, rtol=0, atol=1e-12)
    # p(h | v) factorises into the sigmoids of hidden_probs
    post = torch.softmax(-torch.stack([rbm.energy(v, hh.expand(32, 4)) for hh in h], 1), 1)  # (32, 16)
    with torch.no_grad():
        torch.testing.assert_close(post @ h, rbm.hidden_probs(v), rtol=0, atol=1e-12)


def test_gibbs_sampling_reaches_the_model_marginals():
    rbm = tiny_rbm(6, 4, scale=1.0, seed=2)
    v, log_p = exact_log_p_all(rbm)
    marginals = log_p.exp() @ v
    samples = rbm.sample(4000, torch.Generator().manual_seed(0), n_steps=30)
    assert samples.shape == (4000, 6) and bool(((samples == 0) | (samples == 1)).all())
    torch.testing.assert_close(samples.mean(0), marginals, rtol=0, atol=0.03)


def _grads(rbm, objective):
    rbm.zero_grad()
    objective.backward()
    return torch.cat([p.grad.flatten().clone() for p in rbm.parameters()])


def test_surrogate_gradient_is_the_exact_nll_gradient():
    rbm = tiny_rbm(6, 4, scale=1.0, seed=4)
    x = (torch.rand(8, 6, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    exact = _grads(rbm, rbm.free_energy(x).mean() + rbm_exact_log_partition(rbm))
    v, log_p = exact_log_p_all(rbm)
    # The exact model expectation plugged in: equal.
    plugged = _grads(rbm, rbm.contrastive_surrogate(x, v, negative_weights=log_p.exp()).mean())
    torch.testing.assert_close(plugged, exact, rtol=0, atol=1e-10)
    # Negative samples drawn exactly from p(v): equal within Monte-Carlo error (sd <= 0.5/sqrt(N) = 0.0025).
    idx = torch.multinomial(log_p.exp(), 40000, replacement=True, generator=torch.Generator().manual_seed(2))
    sampled = _grads(rbm, rbm.contrastive_surrogate(x, v[idx]).mean())
    torch.testing.assert_close(sampled, exact, rtol=0, atol=0.015)
    # ... and samples from the wrong distribution do not pass the same check.
    wrong = (torch.rand(40000, 6, generator=torch.Generator().manual_seed(3)) < 0.5).double()
    assert (_grads(rbm, rbm.contrastive_surrogate(x, wrong).mean()) - exact).abs().max() > 0.05


def test_pseudo_nll_is_the_flipped_bit_conditional():
    rbm = tiny_rbm(5, 3, seed=5)
    x = torch.tensor([[1.0, 0, 1, 1, 0], [0, 0, 0, 1, 1]], dtype=torch.float64)
    u = torch.tensor([0.45, 0.99])  # flips bit 2 of row 0 and bit 4 of row 1
    flipped = x.clone()
    flipped[0, 2], flipped[1, 4] = 0.0, 0.0
    with torch.no_grad():
        f, f_flip = rbm.free_energy(x), rbm.free_energy(flipped)
        expected = -5 * torch.log(torch.exp(-f) / (torch.exp(-f) + torch.exp(-f_flip)))  # D * -log p(x_i | x_-i)
        torch.testing.assert_close(rbm.pseudo_nll(x, u.double()), expected, rtol=0, atol=1e-12)


def test_pcd_chains_persist_only_in_training_mode():
    rbm = tiny_rbm(6, 4, seed=6, persistent=True, n_chains=3)
    x = (torch.rand(5, 6, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    noise = rbm.sample_noise(5, torch.Generator().manual_seed(1))
    assert noise.shape == (1, 5, 4 + 6 + 1)
    before = rbm.chains.clone()
    expected = rbm._gibbs_from_uniforms(before, noise[:, :, :-1].reshape(1, -1, 10)[:, :3])
    rbm.eval()
    rbm(x, noise)
    assert torch.equal(rbm.chains, before)
    rbm.train()
    out = rbm(x, noise)
    assert torch.equal(rbm.chains, expected) and not torch.equal(expected, before)
    assert set(out) == {"loss", "surrogate", "free_energy"} and all(v.shape == (5,) for v in out.values())
    # more chains than examples: the noise spreads them over the batch slots
    big = tiny_rbm(6, 4, persistent=True, n_chains=7)
    assert big.sample_noise(3).shape == (1, 3, 3 * 10 + 1)
    big(x[:3], big.sample_noise(3))


class Interrupt(Exception):
    pass


def _train(run_dir, epochs=4, interrupt_at_step=None, lr=1.0):
    data = (torch.rand(60, 12, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    data[::2, :6] = 1.0  # some structure to learn
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = BernoulliRBM(RBMConfig(n_dims=12, hidden_dim=5, n_chains=7, weight_decay=1e-4))
    model.init_from_data(data[:50], torch.Generator().manual_seed(0))
    cfg = TrainConfig(epochs=epochs, batch_size=8, learning_rate=lr, optimizer="sgd", momentum=0.5, lr_schedule="linear",
                      seed=3, progress=False, patience=0, monitor=model.monitor)

    def on_step(trainer, epoch, step):
        if step == interrupt_at_step:
            raise Interrupt

    trainer = Trainer(model, cfg, 50, collate=lambda i: data[i], validate=lambda m: m.validation_metrics(data[50:]),
                      run_dir=run_dir, on_step=on_step)
    return model, trainer.fit(), data


def test_pcd_training_resumes_exactly_after_interruption(tmp_path):
    full_model, full, data = _train(tmp_path / "full")
    # 50 examples / batch 8 = 7 steps per epoch (the last holds 2, fewer than the 7 chains): step 10 is in epoch 2.
    with pytest.raises(Interrupt):
        _train(tmp_path / "cut", interrupt_at_step=10)
    assert json.loads((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 1
    resumed_model, resumed, _ = _train(tmp_path / "cut")
    assert resumed.steps == full.steps == 28
    for k, v in full_model.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k
    assert [r["valid_pseudo_nll"] for r in resumed.history] == [r["valid_pseudo_nll"] for r in full.history]
    # training moved the model towards the data: exact NLL on the training set went down
    init_model, _, _ = _train(tmp_path / "none", epochs=1, interrupt_at_step=None, lr=1e-12)
    nll = {name: float((m.free_energy(data[:50]).mean() + rbm_exact_log_partition(m)).detach()) for name, m in (("init", init_model), ("full", full_model))}
    assert nll["full"] < nll["init"] - 0.1, nll


def test_evaluate_reports_ais_nll_close_to_exact():
    rbm = tiny_rbm(10, 6, scale=0.8, seed=7).float()
    x = rbm.sample(300, torch.Generator().manual_seed(0), n_steps=20)
    rbm.init_from_data(x)
    report = rbm.evaluate(x, ais_chains=100, ais_betas=300, seed=0)
    assert isinstance(report, DensityReport) and report.estimator == "AIS" and report.n_examples == 300
    exact = float((rbm.free_energy(x).double().mean() + rbm_exact_log_partition(rbm)).detach())
    lo, hi = report.details["nll_interval_3sd"]
    assert lo <= exact <= hi and abs(report.nll - exact) < 0.1
    assert report.details["ais_chains"] == 100 and report.details["ais_temperatures"] == 300
    assert report.nll == pytest.approx(float(-rbm.log_prob(x, report.details["log_z"]).mean().detach()), abs=1e-4)


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.full((3, 6), 0.5), r"x of shape \(3, 6\) must hold only 0 and 1; x\[0, 0\] = 0.5"),
        (torch.zeros(3, 5), r"x must have shape \(B, 6\), got \(3, 5\)"),
        (torch.zeros(6), r"x must have shape \(B, 6\), got \(6,\)"),
    ],
)
def test_bad_input_raises_naming_tensor_and_shape(bad, match):
    rbm = BernoulliRBM(RBMConfig(n_dims=6, hidden_dim=3))
    with pytest.raises(ValueError, match=match):
        rbm(bad)
    with pytest.raises(ValueError, match=match.replace("x", "v", 1) if "must have" in match else r"v of shape"):
        rbm.free_energy(bad)


def test_config_validation_and_ddp_refusal(monkeypatch):
    with pytest.raises(ValueError, match="hidden_dim"):
        RBMConfig(n_dims=4, hidden_dim=0)
    with pytest.raises(ValueError, match="visible_bias_init"):
        RBMConfig(n_dims=4, visible_bias_init="random")
    rbm = BernoulliRBM(RBMConfig(n_dims=4, hidden_dim=3, n_chains=2))
    monkeypatch.setattr(rbm_module.DistributedContext, "current", classmethod(lambda cls: DistributedContext(0, 2)))
    with pytest.raises(RuntimeError, match="PCD"):
        rbm(torch.zeros(2, 4))
    cd = BernoulliRBM(RBMConfig(n_dims=4, hidden_dim=3, persistent=False))
    assert cd(torch.zeros(2, 4))["surrogate"].shape == (2,)  # CD-k is fine under torchrun


def _fit_cd(ctx):
    data = (torch.rand(45, 10, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = BernoulliRBM(RBMConfig(n_dims=10, hidden_dim=4, persistent=False, cd_k=2))
    model.init_from_data(data)
    cfg = TrainConfig(epochs=2, batch_size=8, learning_rate=0.1, optimizer="sgd", momentum=0.5, seed=7, progress=False, patience=0)
    Trainer(model, cfg, 45, collate=lambda i: data[i], ctx=ctx).fit()
    return model


def test_cd_k_on_two_gloo_processes_matches_one_process(tmp_path):
    assert_two_gloo_processes_match_one(_fit_cd, tmp_path)