"""``latentnlp train memm|crf|bilstm-crf`` / ``tag`` / ``evaluate`` end to end on small slices of the real corpora."""

import io
import json
import sys

import pytest
import torch

from latentnlp.cli import main
from latentnlp.data.columns import read_columns
from latentnlp.runs import RunDirectory

UPOS = {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT", "SCONJ",
        "SYM", "VERB", "X"}
CHUNK_COLUMNS = ["--columns", "word", "pos", "chunk", "--token-column", "word", "--tag-column", "chunk"]
SMALL_LOGLINEAR = ["--max-iterations", "10", "--min-count", "2", "--window", "1", "--affix", "2"]
TINY_BILSTM = ["--epochs", "2", "--batch-size", "32", "--lr", "0.02", "--hidden", "16", "--word-dim", "16",
               "--char-dim", "8", "--char-hidden", "8", "--no-progress"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Intra-op threads spin on a loaded 2-core machine (a tiny BiLSTM epoch: 1 s with one thread, 20 s with two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _blocks(path, start, n):
    blocks = [b for b in path.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    return "\n\n".join(blocks[start:start + n]) + "\n\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_data_dir):
    d = tmp_path_factory.mktemp("tagger_data")
    conll, ewt = shared_data_dir / "conll2000", shared_data_dir / "ud-en-ewt"
    files = {
        "chunk_train": (conll / "train.txt", 0, 300), "chunk_dev": (conll / "train.txt", 300, 50),
        "chunk_test": (conll / "test.txt", 0, 100),
        "ewt_train": (ewt / "en_ewt-ud-train.conllu", 0, 300), "ewt_test": (ewt / "en_ewt-ud-test.conllu", 0, 60),
    }
    out = {}
    for name, (src, start, n) in files.items():
        out[name] = d / (name + (".conllu" if src.suffix == ".conllu" else ".txt"))
        out[name].write_text(_blocks(src, start, n), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def crf_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "crf"
    assert main(["train", "crf", "--train", str(data["chunk_train"]), *CHUNK_COLUMNS, "--feature-columns", "pos",
                 "--scheme", "iob2", *SMALL_LOGLINEAR, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def memm_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "memm"
    assert main(["train", "memm", "--train", str(data["chunk_train"]), "--dev", str(data["chunk_dev"]), *CHUNK_COLUMNS,
                 "--feature-columns", "pos", "--scheme", "iob2", *SMALL_LOGLINEAR, "--transitions", "observed",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def bilstm_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bilstm"
    assert main(["train", "bilstm-crf", "--train", str(data["ewt_train"]), "--columns", "form", "upos",
                 *TINY_BILSTM, "--out", str(out)]) == 0
    return out


def _tag(argv, stdin_text, monkeypatch, capsys):
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin_text))
    rc = main(["tag", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _sentences(out):
    return [[line.split() for line in block.splitlines() if line and not line.startswith("# nbest")]
            for block in out.rstrip("\n").split("\n\n")]


# --------------------------------------------------------------------------- memm / crf
def test_crf_run_directory_records_the_held_out_dev_set(crf_run):
    names = {p.name for p in crf_run.iterdir()}
    assert {"config.json", "tagger.json", "tagger.safetensors", "dev_metrics.json", "metrics.jsonl",
            "learning_curve.png"} <= names
    config = RunDirectory(crf_run).read_config()
    assert config["model"] == "crf"
    data = config["data"]
    assert data["columns"] == ["word", "pos", "chunk"] and data["feature_columns"] == ["pos"]
    assert data["token_column"] == "word" and data["tag_column"] == "chunk" and data["scheme"] == "iob2"
    assert data["dev"] == {"source": "held out of train", "fraction": 0.1, "split_seed": 0, "n_sentences": 30,
                           "n_tokens": data["dev"]["n_tokens"]}
    assert data["n_train_sentences"] == 270 and "B-NP" in data["tags"]
    assert config["model_config"]["c2"] == 1.0 and config["model_config"]["templates"]["columns"] == ["pos"]
    assert config["model_config"]["max_iterations"] == 10 and config["train"]["n_iter"] == 10
    assert len(RunDirectory(crf_run).read_metrics()) == 10
    dev = json.loads((crf_run / "dev_metrics.json").read_text())
    assert dev["scores"]["n_sentences"] == 30 and 0.6 < dev["scores"]["f1"] <= 1 and dev["scores"]["accuracy"] > 0.8


@pytest.mark.parametrize("run_name", ["crf_run", "memm_run"])
def test_evaluate_prints_conlleval_and_writes_json_and_confusion(run_name, request, data, capsys):
    run = request.getfixturevalue(run_name)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--test", str(data["chunk_test"])]) == 0
    out = capsys.readouterr().out
    assert "token accuracy" in out and "FB1" in out and "NP: precision" in out
    report = json.loads((run / "evaluation.json").read_text())[str(data["chunk_test"].resolve())]
    assert report["model"] == run_name.split("_")[0] and report["n_sentences"] == 100
    assert report["n_tokens"] == read_columns(data["chunk_test"]).n_tokens
    assert report["f1"] > 0.7 and report["accuracy"] > 0.85
    assert report["chunks"]["per_type"]["NP"]["f1"] > 0.7
    assert 0 < report["unknown_word_rate"] < 1
    assert (run / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_memm_uses_the_given_dev_file(memm_run, data):
    config = RunDirectory(memm_run).read_config()
    assert config["model"] == "memm" and config["model_config"]["transitions"] == "observed"
    assert config["data"]["dev"]["source"] == "file"
    assert config["data"]["dev"]["path"] == str(data["chunk_dev"].resolve()) and config["data"]["n_train_sentences"] == 300
    assert json.loads((memm_run / "dev_metrics.json").read_text())["scores"]["n_sentences"] == 50


def test_tag_conll_appends_the_predicted_tag(crf_run, data, monkeypatch, capsys):
    text = _blocks(data["chunk_test"], 0, 5)
    gold = [[line.split() for line in block.splitlines()] for block in text.strip().split("\n\n")]
    rc, out, _ = _tag([str(crf_run), "--input-format", "conll"], text, monkeypatch, capsys)
    assert rc == 0 and out.endswith("\n\n")
    tagged = _sentences(out)
    assert len(tagged) == 5 and [len(s) for s in tagged] == [len(s) for s in gold]
    assert all(row[:3] == g and len(row) == 4 for s, gs in zip(tagged, gold) for row, g in zip(s, gs))
    right = sum(row[2] == row[3] for s in tagged for row in s)
    assert right / sum(len(s) for s in tagged) > 0.8
    # without the tag column: word pos -> word pos PRED, the same predictions
    no_tag = "\n\n".join("\n".join(" ".join(g[:2]) for g in s) for s in gold) + "\n"
    rc, out2, _ = _tag([str(crf_run), "--input-format", "conll"], no_tag, monkeypatch, capsys)
    assert rc == 0
    assert [[row[:2] + row[3:] for row in s] for s in tagged] == _sentences(out2)


def test_tag_nbest_lists_ranked_sequences(crf_run, data, monkeypatch, capsys):
    text = "Confidence NN\nin IN\nthe DT\npound NN\n\nHe PRP\nsaid VBD\n.  .\n"
    rc, best, _ = _tag([str(crf_run), "--input-format", "conll"], text, monkeypatch, capsys)
    rc3, out, _ = _tag([str(crf_run), "--input-format", "conll", "--nbest", "3"], text, monkeypatch, capsys)
    assert rc == rc3 == 0
    comments = [line for line in out.splitlines() if line.startswith("# nbest")]
    assert len(comments) == 2
    for line in comments:
        probs = [float(p) for p in line.split(":")[1].split()]
        assert len(probs) == 3 and all(0 < p <= 1 for p in probs) and probs == sorted(probs, reverse=True)
        assert sum(probs) <= 1 + 1e-6
    ranked = _sentences(out)
    assert all(len(row) == 5 for s in ranked for row in s)
    assert [[row[:3] for row in s] for s in ranked] == _sentences(best)  # rank 1 is the Viterbi output
    assert all([row[2] for row in s] != [row[3] for row in s] for s in ranked)  # the sequences differ


# --------------------------------------------------------------------------- bilstm-crf
def test_bilstm_crf_trains_and_tags_plain_text(bilstm_run, monkeypatch, capsys):
    names = {p.name for p in bilstm_run.iterdir()}
    assert {"config.json", "model.safetensors", "checkpoint.safetensors", "bilstm_crf.json", "metrics.jsonl",
            "dev_metrics.json", "learning_curve.png"} <= names
    config = RunDirectory(bilstm_run).read_config()
    assert config["model"] == "bilstm-crf" and config["data"]["columns"] == ["form", "upos"]
    assert config["data"]["token_column"] == "form" and config["data"]["tag_column"] == "upos"  # first / last
    assert config["model_config"]["hidden"] == 16 and config["model_config"]["feature_dims"] == {}
    assert config["train"]["train_config"]["monitor"] == "valid_error" and config["train"]["epochs_completed"] == 2
    history = RunDirectory(bilstm_run).read_metrics()
    assert [r["epoch"] for r in history] == [1, 2] and all("valid_accuracy" in r for r in history)
    assert json.loads((bilstm_run / "dev_metrics.json").read_text())["scores"]["accuracy"] > 0.2
    rc, out, _ = _tag([str(bilstm_run)], "The dog barked .\n\nqwertyuiop zzzz\n", monkeypatch, capsys)
    assert rc == 0
    lines = out.split("\n")
    # 4 token lines + blank, the empty line's block (just the blank), 2 token lines + blank
    assert [line == "" for line in lines] == [False] * 4 + [True, True] + [False] * 2 + [True, True]
    rows = [line.split() for line in lines if line]
    assert [r[0] for r in rows] == ["The", "dog", "barked", ".", "qwertyuiop", "zzzz"]
    assert all(len(r) == 2 and r[1] in UPOS for r in rows)
    rc, out, _ = _tag([str(bilstm_run), "--nbest", "2"], "The dog barked .\n", monkeypatch, capsys)
    assert rc == 0 and all(len(r) == 3 for r in _sentences(out)[0])


def test_bilstm_crf_evaluate_without_scheme(bilstm_run, data, capsys):
    assert main(["evaluate", str(bilstm_run), "--test", str(data["ewt_test"])]) == 0
    out = capsys.readouterr().out
    assert "token accuracy" in out and "FB1" not in out
    report = json.loads((bilstm_run / "evaluation.json").read_text())[str(data["ewt_test"].resolve())]
    assert report["n_sentences"] == 60 and 0.2 < report["accuracy"] <= 1 and "f1" not in report
    assert (bilstm_run / "confusion.png").is_file()


def test_bilstm_crf_selects_on_chunk_f1_with_a_scheme(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "chunker"
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("3 16\n" + "".join(f"{w} " + " ".join(["0.25"] * 16) + "\n" for w in ("the", "Xylophone", "of")))
    assert main(["train", "bilstm-crf", "--train", str(data["chunk_train"]), *CHUNK_COLUMNS, "--feature-columns", "pos",
                 "--scheme", "iob2", "--train-scheme", "iobes", "--feature-dim", "8", *TINY_BILSTM, "--epochs", "1",
                 "--sparse-features", "--sparse-window", "1", "--sparse-min-count", "2", "--word-vectors", str(vectors),
                 "--out", str(out)]) == 0
    assert RunDirectory(out).read_config()["train"]["word_vectors"]["words"] == 3
    assert "Xylophone" in json.loads((out / "bilstm_crf.json").read_text())["words"]["tokens"]
    config = RunDirectory(out).read_config()
    assert config["train"]["train_config"]["monitor"] == "valid_neg_f1"
    assert config["model_config"]["feature_dims"] == {"pos": 8}
    sparse = config["model_config"]["sparse_templates"]
    assert sparse["columns"] == ["pos"] and sparse["window"] == 1 and config["model_config"]["sparse_min_count"] == 2
    assert 0 < config["model_config"]["sparse_l2"] < 1
    assert "pos[-1]|pos[+0]=DT|NN" in json.loads((out / "bilstm_crf.json").read_text())["attributes"]
    assert "valid_f1" in RunDirectory(out).read_metrics()[0]
    assert "f1" in json.loads((out / "dev_metrics.json").read_text())["scores"]
    rc, tagged, _ = _tag([str(out), "--input-format", "conll"], _blocks(data["chunk_test"], 0, 10), monkeypatch, capsys)
    assert rc == 0
    predicted = {row[3] for s in _sentences(tagged) for row in s}
    assert predicted and all(t == "O" or t[:2] in ("B-", "I-") for t in predicted)  # iobes converted back to iob2


# --------------------------------------------------------------------------- errors
def test_errors_are_reported_cleanly(crf_run, data, tmp_path, monkeypatch, capsys):
    rc, _, err = _tag([str(crf_run)], "Confidence in the pound\n", monkeypatch, capsys)
    assert rc == 2 and "use --input-format conll" in err and "pos" in err
    rc, _, err = _tag([str(crf_run), "--input-format", "conll"], "", monkeypatch, capsys)
    assert rc == 2 and "standard input is empty" in err
    rc, _, err = _tag([str(crf_run), "--input-format", "conll"], "  \n\n", monkeypatch, capsys)
    assert rc == 2 and "standard input is empty" in err
    rc, _, err = _tag([str(crf_run), "--input-format", "conll"], "a DT B-NP x\n", monkeypatch, capsys)
    assert rc == 2 and "<stdin>:1: 4 columns" in err
    rc, _, err = _tag([str(crf_run), "--input-format", "conll"], "a DT B-NP\nb NN\n", monkeypatch, capsys)
    assert rc == 2 and "<stdin>:2:" in err
    rc, _, err = _tag([str(crf_run), "--nbest", "0", "--input-format", "conll"], "a DT\n", monkeypatch, capsys)
    assert rc == 2 and "--nbest must be >= 1" in err

    common = ["train", "crf", "--train", str(data["chunk_train"]), "--out", str(tmp_path / "r")]
    assert main([*common, "--columns", "word", "pos", "chunk", "--tag-column", "ner"]) == 2
    assert "--tag-column 'ner' is not among the columns ('word', 'pos', 'chunk')" in capsys.readouterr().err
    assert main([*common, "--tag-column", "chunk"]) == 2  # no --columns: the file's columns are col0, col1, col2
    assert "--tag-column 'chunk' is not a column; the columns are ('col0', 'col1', 'col2')" in capsys.readouterr().err
    assert main([*common, "--columns", "word", "chunk"]) == 2
    assert "2 column names ('word', 'chunk') given but the file has 3 columns" in capsys.readouterr().err
    assert main([*common, "--columns", "word", "pos", "chunk", "--feature-columns", "chunk"]) == 2
    assert "cannot be a feature column" in capsys.readouterr().err
    assert main(["train", "crf", "--train", str(tmp_path / "missing.txt"), "--columns", "w", "t",
                 "--out", str(tmp_path / "r")]) == 2
    assert "missing.txt" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("The DT B-NP\ncat NN\n")
    assert main(["train", "crf", "--train", str(bad), "--columns", "w", "p", "c", "--out", str(tmp_path / "r")]) == 2
    assert "bad.txt:2: 2 columns, expected 3" in capsys.readouterr().err
    assert main(["train", "bilstm-crf", "--train", str(data["ewt_train"]), "--columns", "form", "ner",
                 "--out", str(tmp_path / "r")]) == 2
    assert "a CoNLL-U file's columns are form, lemma, upos, xpos" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()

    assert main(["evaluate", str(crf_run)]) == 2
    assert "needs --test" in capsys.readouterr().err
    assert main(["evaluate", str(crf_run), "--test", str(data["ewt_train"])]) == 2
    assert "ewt_train.conllu" in capsys.readouterr().err


def test_hmm_runs_refuse_the_new_tag_options(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "hmm"
    assert main(["train", "hmm", "--train", str(data["ewt_train"]), "--out", str(out)]) == 0
    rc, _, err = _tag([str(out), "--input-format", "conll"], "The dog\n", monkeypatch, capsys)
    assert rc == 2 and "HMM run tags plain text" in err
    rc, out_text, _ = _tag([str(out)], "The dog\n", monkeypatch, capsys)
    assert rc == 0 and out_text.split("\n")[0].split("\t")[:2] == ["1", "The"]
