import json

import pytest
import torch

from latentnlp.models.document.nvdm import NVDM, NVDMConfig
from latentnlp.runs import RunDirectory
from latentnlp.training.trainer import TrainConfig, Trainer
from tests.synthetic import planted_corpus


class Interrupt(Exception):
    pass


def _train(run_dir, epochs=4, interrupt_at_step=None, patience=0, max_minutes=None, lr=1e-2, alternate=False, validate=None):
    corpus = planted_corpus(n_docs=50)
    train, valid = corpus.split(0.2, seed=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = NVDM(NVDMConfig(vocab_size=corpus.vocab_size, latent_dim=3, hidden_dim=16))
    x = train.to_dense()
    model.init_decoder_bias(x.sum(0))
    cfg = TrainConfig(
        epochs=epochs, batch_size=8, learning_rate=lr, seed=5, progress=False, patience=patience,
        max_minutes=max_minutes, alternate=alternate, alternate_every=1,
    )

    def on_step(trainer, epoch, step):
        if step == interrupt_at_step:
            raise Interrupt

    def default_validate(m):
        return {"valid_perplexity_bound": m.evaluate(valid, elbo_samples=2, iw_samples=0, seed=1).bound_per_document}

    trainer = Trainer(model, cfg, len(train), collate=lambda i: x[i], validate=validate or default_validate, run_dir=run_dir, on_step=on_step)
    return model, trainer.fit()


def test_resume_after_interruption_reproduces_uninterrupted_run(tmp_path):
    full_model, full = _train(tmp_path / "full", epochs=4)
    # 40 training docs / batch 8 = 5 steps per epoch: step 13 is inside epoch 3.
    with pytest.raises(Interrupt):
        _train(tmp_path / "cut", epochs=4, interrupt_at_step=13)
    ck = json.loads((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()[-1])
    assert ck["epoch"] == 2
    resumed_model, resumed = _train(tmp_path / "cut", epochs=4)
    assert resumed.epochs_completed == 4 and resumed.steps == full.steps == 20
    for k, v in full_model.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k
    assert [r["valid_perplexity_bound"] for r in resumed.history] == [r["valid_perplexity_bound"] for r in full.history]
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2, 3, 4]


def test_alternating_phases_switch_and_resume(tmp_path):
    _, res = _train(tmp_path / "alt", epochs=3, alternate=True)
    assert [r["phase"] for r in res.history] == ["encoder", "decoder", "encoder"]


def test_training_lowers_validation_perplexity_and_keeps_best(tmp_path):
    model, res = _train(tmp_path / "r", epochs=6)
    vals = [r["valid_perplexity_bound"] for r in res.history]
    assert min(vals) < vals[0]
    assert res.best_value == min(vals) and res.history[res.best_epoch - 1]["valid_perplexity_bound"] == min(vals)


def test_early_stopping(tmp_path):
    # A validation metric that only gets worse after epoch 1: stop after 1 + patience epochs.
    calls = []

    def worsening(m):
        calls.append(1)
        return {"valid_perplexity_bound": float(len(calls))}

    _, res = _train(tmp_path / "es", epochs=50, patience=2, validate=worsening)
    assert res.stop_reason == "early stopping" and res.epochs_completed == 3 and res.best_epoch == 1


def test_time_budget_stops_training(tmp_path):
    _, res = _train(tmp_path / "tb", epochs=1000, max_minutes=1e-9)
    assert res.stop_reason == "time budget" and res.epochs_completed == 0


def test_nan_loss_raises_and_keeps_checkpoint(tmp_path):
    corpus = planted_corpus(n_docs=20)
    model = NVDM(NVDMConfig(vocab_size=corpus.vocab_size, latent_dim=2, hidden_dim=8))
    x = corpus.to_dense()
    bad = x.clone()
    bad[:, 0] = float("nan")
    calls = {"n": 0}

    def collate(i):
        calls["n"] += 1
        return bad[i] if calls["n"] > 3 else x[i]

    cfg = TrainConfig(epochs=5, batch_size=10, progress=False, patience=0)
    with pytest.raises(FloatingPointError, match=r"epoch 2, step 4.*checkpoint is intact"):
        Trainer(model, cfg, len(corpus), collate=collate, run_dir=tmp_path).fit()
    assert (tmp_path / "checkpoint.safetensors").is_file()


def test_run_directory_round_trip(tmp_path):
    model, _ = _train(tmp_path / "r", epochs=1)
    run = RunDirectory(tmp_path / "r")
    run.save_model("nvdm", model)
    loaded = run.load_model()
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    assert run.plot_learning_curve("train_loss", "valid_perplexity_bound").is_file()
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        RunDirectory(tmp_path / "nothing").read_config()


def test_console_line_keeps_a_small_step_size_readable(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="latentnlp.training"):
        _train(tmp_path / "log", epochs=1, lr=3e-4)
    line = next(r.getMessage() for r in caplog.records if "'epoch': 1" in r.getMessage())
    assert "'learning_rate': 0.0003" in line  # not rounded to 0.0
