"""``latentnlp align`` / ``evaluate`` end to end on a slice of the WPT-03 Hansards."""

import itertools
import json

import pytest

from latentnlp.cli import main
from latentnlp.data.parallel import Vocabulary, read_pharaoh
from latentnlp.models.alignment import IBMModel2
from latentnlp.runs import RunDirectory
from latentnlp.training.checkpoint import load_tensors


@pytest.fixture(scope="module")
def hansards(shared_data_dir):
    d = shared_data_dir / "hansards-wpt03"
    if not (d / "train.f.gz").is_file():
        pytest.skip(f"{d} not found")
    return d


@pytest.fixture(scope="module")
def ibm2_run(tmp_path_factory, hansards):
    out = tmp_path_factory.mktemp("align") / "ibm2"
    rc = main([
        "align", "--source", str(hansards / "train.f.gz"), "--target", str(hansards / "train.e.gz"),
        "--test-source", str(hansards / "test.f"), "--test-target", str(hansards / "test.e"),
        "--model", "ibm2", "--iterations", "4", "--model1-iterations", "4", "--max-sentences", "2000", "--out", str(out),
    ])
    assert rc == 0
    return out


def test_run_directory(ibm2_run):
    config = json.loads((ibm2_run / "config.json").read_text())
    assert config["model"] == "ibm2" and config["data"]["n_train"] == 2000 and config["data"]["n_test"] == 447
    assert config["model_config"]["n_iterations"] == 4
    assert len(read_pharaoh(ibm2_run / "train.align")) == 2000
    assert len(read_pharaoh(ibm2_run / "test.align")) == 447
    history = RunDirectory(ibm2_run).read_metrics()
    assert [(r["direction"], r["model"]) for r in history].count(("backward", "ibm2")) == 4
    lls = [r["log_likelihood"] for r in history if r["direction"] == "forward"]
    assert all(b >= a for a, b in itertools.pairwise(lls))
    # The t-table reloads from safetensors + vocabulary files (no pickle) and aligns as written.
    tensors, meta = load_tensors(ibm2_run / "forward.safetensors")
    model = IBMModel2.from_state(
        tensors, meta, Vocabulary.read(ibm2_run / "source_vocab.txt"), Vocabulary.read(ibm2_run / "target_vocab.txt")
    )
    assert model.translations("Orateur", 1)[0][0] == "Speaker"


def test_evaluate_prints_aer(ibm2_run, hansards, capsys):
    assert main(["evaluate", str(ibm2_run), "--gold", str(hansards / "test.wa.nonullalign")]) == 0
    out = capsys.readouterr().out
    assert "AER" in out and "grow-diag-final-and" in out
    ev = json.loads((ibm2_run / "evaluation.json").read_text())
    assert ev["final"]["n_sure"] == 4038 and ev["final"]["n_possible"] == 17438
    # 2,447 pairs are enough for a clearly-better-than-chance alignment.
    assert ev["final"]["aer"] < 0.4 and ev["final"]["aer"] <= ev["forward"]["aer"] + 0.05
    assert (ibm2_run / "alignment_example.png").stat().st_size > 1000
    # The nullalign gold gives the same scores (NULL links are not scored).
    assert main(["evaluate", str(ibm2_run), "--gold", str(hansards / "test.wa.nullalign")]) == 0
    assert json.loads((ibm2_run / "evaluation.json").read_text())["final"] == ev["final"]


def test_clear_errors(tmp_path, ibm2_run, capsys):
    (tmp_path / "a.f").write_text("le chat\nun chien\n")
    (tmp_path / "a.e").write_text("the cat\n")
    rc = main(["align", "--source", str(tmp_path / "a.f"), "--target", str(tmp_path / "a.e"), "--model", "ibm1",
               "--out", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "a.f has 2 lines" in err and "a.e has 1 lines" in err
    assert main(["evaluate", str(ibm2_run)]) == 2
    assert "--gold" in capsys.readouterr().err
    (tmp_path / "bad.wa").write_text("1 1 1 S\n1 x 1 S\n")
    assert main(["evaluate", str(ibm2_run), "--gold", str(tmp_path / "bad.wa")]) == 2
    assert "bad.wa:2" in capsys.readouterr().err


def test_ibm1_without_symmetrization(tmp_path):
    (tmp_path / "s").write_text("a b\nb c\na c\n\n")
    (tmp_path / "t").write_text("A B\nB C\nA C\nX\n")
    out = tmp_path / "run"
    assert main(["align", "--source", str(tmp_path / "s"), "--target", str(tmp_path / "t"), "--model", "ibm1",
                 "--iterations", "10", "--symmetrize", "none", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model"] == "ibm1"
    assert not (out / "backward.safetensors").exists()
    assert (out / "train.align").read_text().splitlines() == ["0-0 1-1", "0-0 1-1", "0-0 1-1", ""]


def test_posterior_symmetrisation_from_the_cli(tmp_path, hansards):
    out = tmp_path / "post"
    rc = main([
        "align", "--source", str(hansards / "train.f.gz"), "--target", str(hansards / "train.e.gz"),
        "--test-source", str(hansards / "test.f"), "--test-target", str(hansards / "test.e"),
        "--model", "ibm2", "--iterations", "3", "--model1-iterations", "3", "--max-sentences", "1500",
        "--symmetrize", "posterior", "--posterior-threshold", "0.2", "--out", str(out),
    ])
    assert rc == 0
    assert json.loads((out / "config.json").read_text())["posterior_threshold"] == 0.2
    final, fwd = read_pharaoh(out / "test.align"), read_pharaoh(out / "test.forward.align")
    assert len(final) == len(fwd) == 447
    assert main(["evaluate", str(out), "--gold", str(hansards / "test.wa.nonullalign")]) == 0
    ev = json.loads((out / "evaluation.json").read_text())
    # the product of two posteriors is a soft intersection: more precise than one direction alone
    assert ev["final"]["precision"] > ev["forward"]["precision"]
    assert ev["final"]["aer"] < 0.4
