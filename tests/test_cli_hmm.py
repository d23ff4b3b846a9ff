"""``latentnlp train hmm`` / ``tag`` / ``evaluate`` end to end on small slices of the real corpora."""

import io
import itertools
import json
import sys

import pytest
import torch

from latentnlp.cli import main
from latentnlp.commands.hmm import load_hmm
from latentnlp.data.tagged import read_treebank_zip, treebank_sample_path, ud_ewt_path
from latentnlp.runs import RunDirectory
from tests.synthetic import run_one_and_two_processes


def _head_conllu(src, dst, n):
    blocks = src.read_text(encoding="utf-8").split("\n\n")[:n]
    dst.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    return dst


@pytest.fixture(scope="module")
def slices(tmp_path_factory, shared_data_dir):
    d = tmp_path_factory.mktemp("hmm_data")
    train = _head_conllu(ud_ewt_path("train", shared_data_dir), d / "train.conllu", 400)
    test = _head_conllu(ud_ewt_path("test", shared_data_dir), d / "test.conllu", 100)
    return train, test


@pytest.fixture(scope="module")
def supervised_run(slices, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tagger"
    assert main(["train", "hmm", "--train", str(slices[0]), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def em_run(slices, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "em"
    rc = main(["train", "hmm", "--train", str(slices[0]), "--unsupervised", "--states", "12", "--iterations", "15",
               "--restarts", "2", "--tol", "-1", "--seed", "3", "--out", str(out)])
    assert rc == 0
    return out


def test_supervised_run_directory_and_accuracy(supervised_run, slices, capsys):
    names = {p.name for p in supervised_run.iterdir()}
    assert {"config.json", "model.safetensors", "vocab.txt", "tags.json"} <= names
    config = RunDirectory(supervised_run).read_config()
    assert config["model"] == "hmm" and config["mode"] == "supervised" and config["model_config"]["n_states"] == 17
    _, words, tags = load_hmm(RunDirectory(supervised_run))
    assert words.tokens[0] == "<unk>" and "NOUN" in tags.tokens
    assert main(["evaluate", str(supervised_run), "--test", str(slices[1])]) == 0
    assert "accuracy" in capsys.readouterr().out
    report = json.loads((supervised_run / "evaluation.json").read_text())[str(slices[1].resolve())]
    assert report["n_tokens"] == sum(1 for line in slices[1].read_text().splitlines()
                                     if line and not line.startswith("#") and line.split("\t")[0].isdigit())
    assert 0.7 < report["accuracy"] <= 1 and report["accuracy_known_words"] > report["accuracy_unknown_words"]


def test_tag_prints_conll_columns_and_empty_blocks(supervised_run, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("The dog barked .\n\nqwertyuiop\n"))
    assert main(["tag", str(supervised_run)]) == 0
    lines = capsys.readouterr().out.split("\n")
    # 4 word lines + blank, then the empty line's block (just the blank), then 1 word line + blank
    assert [line == "" for line in lines] == [False] * 4 + [True, True, False, True, True]
    first = [line.split("\t") for line in lines[:4]]
    assert [row[:2] for row in first] == [["1", "The"], ["2", "dog"], ["3", "barked"], ["4", "."]]
    assert first[0][2] == "DET" and first[3][2] == "PUNCT"
    assert lines[6].split("\t")[:2] == ["1", "qwertyuiop"]  # unknown word: tagged through <unk>


def test_em_run_history_curve_and_scores(em_run, slices, capsys):
    names = {p.name for p in em_run.iterdir()}
    assert {"metrics.jsonl", "learning_curve.png", "model.safetensors", "vocab.txt", "tags.json"} <= names
    history = [r["log_likelihood"] for r in RunDirectory(em_run).read_metrics()]
    assert len(history) == 16
    assert all(b >= a - 1e-9 * abs(a) for a, b in itertools.pairwise(history))
    assert len(RunDirectory(em_run).read_config()["train"]["restart_log_likelihoods"]) == 2
    assert main(["evaluate", str(em_run), "--test", str(slices[1])]) == 0
    report = json.loads((em_run / "evaluation.json").read_text())[str(slices[1].resolve())]
    assert 0 < report["one_to_one"] <= report["many_to_one"] <= 1 and 0 < report["v_measure"] < 1
    assert "many_to_one" in capsys.readouterr().out


def test_treebank_zip_and_wordtag_formats(tmp_path, shared_data_dir, capsys):
    corpus = read_treebank_zip(treebank_sample_path(shared_data_dir))
    test = tmp_path / "test.txt"
    test.write_text("".join(" ".join(f"{w}/{t}" for w, t in zip(ws, ts)) + "\n"
                            for ws, ts in zip(corpus.words[3800:], corpus.tags[3800:])))
    out = tmp_path / "ptb"
    assert main(["train", "hmm", "--train", str(treebank_sample_path(shared_data_dir)), "--max-sentences", "1500",
                 "--out", str(out)]) == 0
    assert RunDirectory(out).read_config()["model_config"]["n_states"] <= 45
    assert main(["evaluate", str(out), "--test", str(test)]) == 0
    report = json.loads((out / "evaluation.json").read_text())[str(test.resolve())]
    assert report["n_sentences"] == 114 and report["accuracy"] > 0.8




def test_torchrun_em_matches_single_process(slices, tmp_path):
    common = ["train", "hmm", "--train", str(slices[0]), "--unsupervised", "--states", "8", "--iterations", "6",
              "--tol", "-1", "--max-sentences", "150", "--seed", "1"]
    run_one_and_two_processes(common, tmp_path / "one", tmp_path / "two")
    assert RunDirectory(tmp_path / "two").read_config()["world_size"] == 2
    a = [r["log_likelihood"] for r in RunDirectory(tmp_path / "one").read_metrics()]
    b = [r["log_likelihood"] for r in RunDirectory(tmp_path / "two").read_metrics()]
    assert b == pytest.approx(a, rel=1e-10)
    ma, _, _ = load_hmm(RunDirectory(tmp_path / "one"))
    mb, _, _ = load_hmm(RunDirectory(tmp_path / "two"))
    for p, q in zip((ma.log_transition_, ma.log_emission_), (mb.log_transition_, mb.log_emission_)):
        assert (p.exp() - q.exp()).abs().max().item() < 1e-8


def test_bad_input_gives_clear_errors(tmp_path, supervised_run, slices, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("The/DT cat/NN\nsat VBD\n")
    assert main(["train", "hmm", "--train", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "bad.txt:2: token 'sat' is not word/TAG" in capsys.readouterr().err
    assert main(["evaluate", str(supervised_run)]) == 2
    assert "needs --test" in capsys.readouterr().err
    assert main(["evaluate", str(supervised_run), "--test", str(tmp_path / "missing.conllu")]) == 2
    assert "missing.conllu" in capsys.readouterr().err
    assert main(["train", "hmm", "--train", str(slices[0]), "--states", "5", "--out", str(tmp_path / "r")]) == 2
    assert "--states applies to --unsupervised" in capsys.readouterr().err
    assert main(["train", "hmm", "--train", str(slices[0]), "--unsupervised", "--restarts", "0",
                 "--out", str(tmp_path / "r")]) == 2
    assert "--restarts must be >= 1" in capsys.readouterr().err
    assert main(["tag", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_word_preprocessing_round_trips_through_the_run_directory(slices, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sig"
    assert main(["train", "hmm", "--train", str(slices[0]), "--unsupervised", "--states", "6", "--iterations", "5",
                 "--tol", "-1", "--max-sentences", "150", "--seed", "0", "--lowercase", "--map-digits",
                 "--rare-words", "signature", "--rare-threshold", "1", "--out", str(out)]) == 0
    run = RunDirectory(out)
    assert run.read_config()["data"]["word_preprocessing"] == {
        "lowercase": True, "digits": True, "rare_words": "signature", "rare_threshold": 1}
    model, words, _ = load_hmm(run)
    assert "the" in words and "The" not in words and "<sig-lower-ing>" in words and "<sig-cap>" in words
    capsys.readouterr()
    # unseen words with the same signature, and "The" / "THE" / "the", must be tagged identically
    monkeypatch.setattr(sys, "stdin", io.StringIO("The zorbling Qwxyz .\nTHE quarbling Zyxwq .\n"))
    assert main(["tag", str(out)]) == 0
    lines = capsys.readouterr().out.split("\n")
    first, second = [line.split("\t") for line in lines[:4]], [line.split("\t") for line in lines[5:9]]
    assert [row[1] for row in first] == ["The", "zorbling", "Qwxyz", "."]  # original words are printed
    assert [row[2] for row in first] == [row[2] for row in second]
    symbols = ["the", "<sig-lower-ing>", "<sig-cap>", "."]
    expected = model.viterbi([torch.tensor([words.id(s) for s in symbols])])[0].tolist()
    assert [int(row[2]) for row in first] == expected


def test_signatures_help_a_supervised_tagger_on_unknown_words(slices, supervised_run, tmp_path):
    out = tmp_path / "sig_tagger"
    assert main(["train", "hmm", "--train", str(slices[0]), "--rare-words", "signature", "--out", str(out)]) == 0
    assert main(["evaluate", str(out), "--test", str(slices[1])]) == 0
    assert main(["evaluate", str(supervised_run), "--test", str(slices[1])]) == 0
    key = str(slices[1].resolve())
    sig = json.loads((out / "evaluation.json").read_text())[key]
    unk = json.loads((supervised_run / "evaluation.json").read_text())[key]
    assert sig["unknown_word_rate"] == pytest.approx(unk["unknown_word_rate"])  # same words are out of vocabulary
    assert sig["accuracy_unknown_words"] > unk["accuracy_unknown_words"] + 0.05
    assert sig["accuracy"] > unk["accuracy"]


def test_word_preprocessing_flags_are_validated(slices, tmp_path, capsys):
    common = ["train", "hmm", "--train", str(slices[0]), "--out", str(tmp_path / "r")]
    assert main(common + ["--min-count", "3", "--rare-threshold", "1"]) == 2
    assert "--min-count 3 and --rare-threshold 1 disagree" in capsys.readouterr().err
    assert main(common + ["--rare-threshold", "-1"]) == 2
    assert "--rare-threshold must be >= 0" in capsys.readouterr().err
    assert main(common + ["--min-count", "0"]) == 2
    assert "--min-count must be >= 1" in capsys.readouterr().err


def test_vb_run_logs_the_elbo_not_a_likelihood(slices, tmp_path):
    out = tmp_path / "vb"
    rc = main(["train", "hmm", "--train", str(slices[0]), "--unsupervised", "--states", "6", "--iterations", "6",
               "--estimator", "vb", "--seed", "0", "--out", str(out)])
    assert rc == 0
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert records and all("elbo_per_token" in r and "log_likelihood" not in r for r in records)
    elbos = [r["elbo"] for r in records]
    assert all(b >= a - 1e-6 * abs(a) for a, b in zip(elbos, elbos[1:]))  # VB EM never lowers the ELBO
    assert all(r["elbo"] <= r["log_z_subnormalised"] + 1e-6 for r in records)  # ELBO = log Z - KL <= log Z
