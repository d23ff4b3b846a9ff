"""``latentnlp train rnnlm|sentence-vae`` / ``evaluate`` / ``sample`` / ``reconstruct`` / ``interpolate`` on a slice of PTB."""

import json

import pytest
import torch

from latentnlp.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--embedding-dim", "16", "--hidden-dim", "16", "--epochs", "2", "--batch-size", "16", "--no-progress"]


@pytest.fixture(scope="module")
def ptb_slice(tmp_path_factory, shared_data_dir):
    """The first 300 training, 60 validation and 60 test sentences of PTB as the user's own files."""
    d = tmp_path_factory.mktemp("ptb_slice")
    files = {}
    for split, n in (("train", 300), ("valid", 60), ("test", 60)):
        lines = (shared_data_dir / "ptb" / f"ptb.{split}.txt").read_text().splitlines()[:n]
        files[split] = d / f"{split}.txt"
        files[split].write_text("\n".join(lines) + "\n")
    return files


def _files(ptb_slice):
    return ["--train", str(ptb_slice["train"]), "--valid", str(ptb_slice["valid"]), "--test", str(ptb_slice["test"])]


@pytest.mark.parametrize("mode,cell", [("sentence", "lstm"), ("continuous", "gru"), ("sentence", "rnn")])
def test_rnnlm_train_evaluate_sample(tmp_path, ptb_slice, mode, cell, capsys):
    run = tmp_path / "lm"
    extra = ["--bptt", "10", "--optimizer", "sgd", "--lr", "1.0"] if mode == "continuous" else []
    assert main(["train", "rnnlm", *_files(ptb_slice), "--mode", mode, "--cell", cell, *TINY, *extra, "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    result = json.loads(capsys.readouterr().out)
    figures = result["sentence_level"]
    assert figures["n_sentences"] == 60
    n_words = sum(len(line.split()) for line in ptb_slice["test"].read_text().splitlines())
    assert figures["n_tokens"] == n_words + 60
    # the vocabulary has a few hundred words, so a model that learned anything beats uniform
    vocab_size = len((run / "vocab.txt").read_text().splitlines())
    assert 1 < figures["perplexity"] < vocab_size
    assert figures["perplexity_words"] > figures["perplexity"]
    if mode == "continuous":
        assert result["continuous"]["n_tokens"] == n_words + 60
    assert json.loads((run / "evaluation.json").read_text())["test.txt"]["model"] == "rnnlm"
    assert main(["sample", str(run), "--n", "3", "--max-length", "12"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(len(line.split()) <= 12 for line in lines)


def test_rnnlm_resume_continues(tmp_path, ptb_slice):
    run = tmp_path / "lm"
    assert main(["train", "rnnlm", *_files(ptb_slice), *TINY, "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    del config["model_config"]["softmax_cutoffs"]  # written before the field existed: still resumes
    (run / "config.json").write_text(json.dumps(config))
    longer = [a if a != "2" else "3" for a in TINY]  # --epochs 3
    assert main(["train", "rnnlm", *_files(ptb_slice), *longer, "--out", str(run)]) == 0
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_errors(tmp_path, ptb_slice, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["train", "rnnlm", "--train", str(empty), "--valid", str(ptb_slice["valid"]), *TINY,
                 "--out", str(tmp_path / "x")]) == 2
    assert "empty.txt" in capsys.readouterr().err
    assert main(["train", "rnnlm", "--train", str(ptb_slice["train"]), *TINY, "--out", str(tmp_path / "y")]) == 2
    assert "--valid" in capsys.readouterr().err
    run = tmp_path / "lm"
    assert main(["train", "rnnlm", *_files(ptb_slice), *TINY, "--epochs", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["reconstruct", str(run), "the company said"]) == 2
    assert "sentence-vae" in capsys.readouterr().err


def test_init_from_a_finished_language_model(tmp_path, ptb_slice, capsys):
    lm = tmp_path / "lm"
    assert main(["train", "rnnlm", *_files(ptb_slice), *TINY, "--tie-weights", "--out", str(lm)]) == 0
    # an rnnlm continued with a vanishing step size scores as its source
    same = tmp_path / "same"
    assert main(["train", "rnnlm", *_files(ptb_slice), *TINY, "--tie-weights", "--epochs", "1", "--lr", "1e-12",
                 "--dropout", "0.2", "--init-from", str(lm), "--out", str(same)]) == 0
    assert json.loads((same / "config.json").read_text())["init_from"] == str(lm)
    capsys.readouterr()
    scores = []
    for run in (lm, same):
        assert main(["evaluate", str(run)]) == 0
        scores.append(json.loads(capsys.readouterr().out)["sentence_level"]["nll_per_sentence"])
    assert scores[1] == pytest.approx(scores[0], abs=1e-3)
    # a VAE takes the LM as its decoder and encoder
    vae = tmp_path / "vae"
    assert main(["train", "sentence-vae", *_files(ptb_slice), *TINY, "--tie-weights", "--latent-dim", "4",
                 "--epochs", "1", "--lr", "1e-12", "--init-from", str(lm), "--out", str(vae)]) == 0
    from latentnlp.runs import RunDirectory

    source, model = RunDirectory(lm).load_model(), RunDirectory(vae).load_model()
    for name, value in source.rnn.named_parameters():
        torch.testing.assert_close(dict(model.decoder.rnn.named_parameters())[name], value, rtol=0, atol=1e-6)
        torch.testing.assert_close(dict(model.encoder_rnn.named_parameters())[name], value, rtol=0, atol=1e-6)
    capsys.readouterr()
    # what cannot start from it
    bad = [(["rnnlm", "--tie-weights", "--hidden-dim", "8", "--embedding-dim", "8"], "differs from this one in ['embedding_dim', 'hidden_dim']"),
           (["sentence-vae", "--hidden-dim", "8"], "hidden_dim"),
           (["rnnlm", "--tie-weights", "--min-count", "2"], "vocab.txt"),
           (["sentence-vae", "--init-from", str(vae)], "network differs from this one in ['latent_dim'"),
           (["rnnlm", "--init-from", str(tmp_path / "missing")], "not a run directory with weights")]
    for k, (options, message) in enumerate(bad):
        name, rest = options[0], options[1:]
        source_dir = [] if "--init-from" in rest else ["--init-from", str(lm)]
        assert main(["train", name, *_files(ptb_slice), *TINY, *rest, *source_dir, "--out", str(tmp_path / f"b{k}")]) == 2
        assert message in capsys.readouterr().err


def test_init_from_an_unfinished_run_takes_its_checkpoint(tmp_path, ptb_slice, capsys):
    lm = tmp_path / "lm"
    assert main(["train", "rnnlm", *_files(ptb_slice), *TINY, "--tie-weights", "--out", str(lm)]) == 0
    (lm / "model.safetensors").unlink()  # as if stopped after its last epoch, before the final save
    from latentnlp.runs import RunDirectory
    from latentnlp.training.checkpoint import load_tensors

    source, epoch = RunDirectory(lm).load_checkpoint_model()
    assert epoch == len((lm / "metrics.jsonl").read_text().splitlines())
    tensors, _ = load_tensors(lm / "checkpoint.safetensors")
    for name, value in source.state_dict().items():
        torch.testing.assert_close(value, tensors[f"model.{name}"], rtol=0, atol=0)
    capsys.readouterr()
    vae = tmp_path / "vae"
    assert main(["train", "sentence-vae", *_files(ptb_slice), *TINY, "--tie-weights", "--latent-dim", "4",
                 "--epochs", "1", "--lr", "1e-12", "--init-from", str(lm), "--out", str(vae)]) == 0
    assert f"after epoch {epoch}" in capsys.readouterr().out
    assert json.loads((vae / "config.json").read_text())["init_from_epoch"] == epoch
    model = RunDirectory(vae).load_model()
    for name, value in source.rnn.named_parameters():
        torch.testing.assert_close(dict(model.decoder.rnn.named_parameters())[name], value, rtol=0, atol=1e-6)
    # resuming the VAE keeps the record of where it started
    assert main(["train", "sentence-vae", *_files(ptb_slice), *TINY, "--tie-weights", "--latent-dim", "4",
                 "--epochs", "2", "--lr", "1e-12", "--init-from", str(lm), "--out", str(vae)]) == 0
    assert json.loads((vae / "config.json").read_text())["init_from_epoch"] == epoch
    (lm / "checkpoint.safetensors").unlink()
    assert main(["train", "rnnlm", *_files(ptb_slice), *TINY, "--tie-weights", "--init-from", str(lm), "--out",
                 str(tmp_path / "none")]) == 2
    assert "not a run directory with weights" in capsys.readouterr().err


def test_adaptive_softmax_runs_resume_and_start_a_vae(tmp_path, ptb_slice, capsys):
    lm = tmp_path / "lm"
    adaptive = ["--adaptive-softmax", "60,200", "--tie-weights"]
    assert main(["train", "rnnlm", *_files(ptb_slice), *TINY, *adaptive, "--out", str(lm)]) == 0
    assert json.loads((lm / "config.json").read_text())["model_config"]["softmax_cutoffs"] == [60, 200]
    longer = [a if a != "2" else "3" for a in TINY]  # resumes (the saved config compares equal)
    assert main(["train", "rnnlm", *_files(ptb_slice), *longer, *adaptive, "--out", str(lm)]) == 0
    assert len((lm / "metrics.jsonl").read_text().splitlines()) == 3
    capsys.readouterr()
    assert main(["evaluate", str(lm)]) == 0
    figures = json.loads(capsys.readouterr().out)["sentence_level"]
    assert 1 < figures["perplexity"] < len((lm / "vocab.txt").read_text().splitlines())
    assert main(["sample", str(lm), "--n", "2", "--max-length", "8"]) == 0
    capsys.readouterr()
    vae = tmp_path / "vae"
    assert main(["train", "sentence-vae", *_files(ptb_slice), *TINY, *adaptive, "--latent-dim", "4", "--epochs", "1",
                 "--init-from", str(lm), "--out", str(vae)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(vae), "--iw-samples", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["vae"]["iw_nll_per_sentence"] > 0
    assert main(["train", "sentence-vae", *_files(ptb_slice), *TINY, "--tie-weights", "--latent-dim", "4",
                 "--init-from", str(lm), "--out", str(tmp_path / "full")]) == 2
    assert "softmax_cutoffs" in capsys.readouterr().err
    assert main(["train", "rnnlm", *_files(ptb_slice), *TINY, "--adaptive-softmax", "2000x", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "--adaptive-softmax" in capsys.readouterr().err


@pytest.fixture(scope="module")
def vae_run(ptb_slice, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "vae"
    assert main(["train", "sentence-vae", *_files(ptb_slice), *TINY, "--latent-dim", "4", "--word-dropout", "0.3",
                 "--kl-schedule", "linear", "--kl-anneal-steps", "20", "--tie-weights", "--share-embedding",
                 "--out", str(run)]) == 0
    return run


def test_vae_evaluate(vae_run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(vae_run), "--iw-samples", "5"]) == 0
    figures = json.loads(capsys.readouterr().out)["vae"]
    assert figures["n_sentences"] == 60
    assert figures["iw_nll_per_sentence"] <= figures["bound_nll_per_sentence"] + 1e-6
    assert figures["kl_per_sentence"] >= 0
    assert 0 <= figures["active_units"] <= 4
    history = [json.loads(line) for line in (vae_run / "metrics.jsonl").read_text().splitlines()]
    assert {"valid_nll_per_sentence", "valid_kl_per_sentence", "train_kl_weight"} <= set(history[-1])
    config = json.loads((vae_run / "config.json").read_text())
    assert config["model_config"]["tie_weights"] is True and config["model_config"]["share_embedding"] is True


@pytest.mark.parametrize("method", ["greedy", "sample", "beam"])
def test_vae_generation(vae_run, method, capsys):
    capsys.readouterr()
    assert main(["sample", str(vae_run), "--n", "4", "--method", method, "--max-length", "10"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert main(["reconstruct", str(vae_run), "the company said it expects zyzzyva", "--samples", "2",
                 "--method", method]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "input:     the company said it expects <unk>"
    assert [line.split(":")[0] for line in lines] == ["input", "mean", "sample 1", "sample 2"]
    assert "'zyzzyva'" in captured.err
    assert main(["interpolate", str(vae_run), "the company said", "prices fell sharply", "--steps", "4",
                 "--method", method]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["0.00", "0.33", "0.67", "1.00"]


def test_vae_input_errors(vae_run, capsys):
    assert main(["reconstruct", str(vae_run), "   "]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["interpolate", str(vae_run), "a b", "c d", "--steps", "1"]) == 2
    assert "steps" in capsys.readouterr().err
