"""``latentnlp train|evaluate|topics`` for sbn, fdarn, docnade and rsm, and ``reproduce doc-table``,
end to end on a slice of the real 20 Newsgroups corpus."""

import json
import math
import shutil
import sys

import pytest
import torch

from latentnlp.cli import main
from latentnlp.runs import RunDirectory
from latentnlp.training.checkpoint import load_tensors

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = ("sbn", "fdarn", "docnade", "rsm")
SIZE = {"sbn": ["--latent-dim", "6"], "fdarn": ["--latent-dim", "6"], "docnade": ["--hidden-dim", "6"], "rsm": ["--hidden-dim", "6"]}
EVAL_OPTIONS = ["--split", "valid", "--max-docs", "60", "--iw-samples", "5", "--elbo-samples", "2", "--orderings", "2",
                "--ais-chains", "2", "--ais-temperatures", "10"]


def _train_argv(name, data_dir, out, epochs=1):
    return ["train", name, "--data-dir", str(data_dir), *SIZE[name], "--epochs", str(epochs), "--max-train-docs", "200",
            "--seed", "1", "--out", str(out), "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_data_dir):
    """``trained(name)``: the run directory of a one-epoch run of ``name`` (trained once per module)."""
    runs = {}

    def get(name):
        if name not in runs:
            out = tmp_path_factory.mktemp(name) / name
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                assert main(_train_argv(name, shared_data_dir, out)) == 0
            finally:
                torch.set_num_threads(threads)
            runs[name] = out
        return runs[name]

    return get


@pytest.mark.parametrize("name", MODELS)
def test_train_writes_a_run_directory_that_reloads(trained, name):
    out = trained(name)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "vocab.txt", "model.safetensors", "checkpoint.safetensors", "metrics.jsonl", "learning_curve.png"} <= names
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == name
    assert config["data"]["n_train"] == 200 and config["data"]["n_valid"] == 1127  # 10% of train held out; test not read
    assert [r["epoch"] for r in RunDirectory(out).read_metrics()] == [1]
    model = RunDirectory(out).load_model()
    assert model.config.to_dict() == config["model_config"]  # the nested NVIL config of sbn/fdarn round-trips too
    assert config["model_config"]["vocab_size"] == 2000
    if name == "rsm":  # the defaults are the table's: PCD with 200 chains, Adam 3e-4 decayed linearly to 0
        assert config["model_config"]["persistent"] and config["model_config"]["n_chains"] == 200
        assert (config["train_config"]["learning_rate"], config["train_config"]["lr_schedule"]) == (3e-4, "linear")
        from latentnlp.cli import build_parser
        args = build_parser().parse_args(["train", "rsm", "--out", "x", "--no-pcd", "--cd-k", "5"])
        assert (args.pcd, args.cd_k) == (False, 5)
    if name in ("sbn", "fdarn"):
        assert model.config.prior == ("factorized" if name == "sbn" else "darn")
        assert (model.prior_weight is not None) == (name == "fdarn")
    tensors, meta = load_tensors(out / "model.safetensors")
    assert meta["model"] == name
    for key, value in model.state_dict().items():
        assert torch.equal(value, tensors[key]), key


@pytest.mark.parametrize("name", MODELS)
def test_evaluate_reports_labelled_perplexities(trained, name, capsys):
    out = trained(name)
    assert main(["evaluate", str(out), *EVAL_OPTIONS]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "evaluation.json").read_text())["valid[:60]"]
    assert result["n_docs"] == 60 and math.isfinite(result["estimate_per_document"])
    if name in ("sbn", "fdarn"):
        assert "ELBO bound" in printed and "IW estimate" in printed
        assert result["bound_estimator"] == "ELBO bound (2 samples)" and result["estimate_estimator"] == "IW estimate (K = 5)"
        assert result["estimate_per_document"] < result["bound_per_document"]
    elif name == "docnade":
        assert "exact, mean log p over 2 orderings" in printed and "ordering ensemble (K = 2)" in printed
        assert "ELBO" not in printed
        assert result["estimate_per_document"] <= result["bound_per_document"]  # log-mean-exp >= mean, always
    else:
        assert "AIS estimate" in printed and result["bound_estimator"] is None
        assert result["estimate_estimator"] == (
            "largest of AIS through all lengths (2 chains, mode jumps), mode importance sampling and the mode bound")
        assert result["ais_space"] == "length" and sum(result["log_z_methods"].values()) == result["n_lengths"]
        assert math.isnan(result["bound_per_document"])
        # the per-length chain is still there on request, and says so
        assert main(["evaluate", str(out), *EVAL_OPTIONS, "--ais-space", "joint"]) == 0
        joint = json.loads((out / "evaluation.json").read_text())["valid[:60]"]
        assert joint["estimate_estimator"] == "AIS (2 chains x 10 temperatures per length)" and joint["log_z_methods"] == {}


@pytest.mark.parametrize("name", MODELS)
def test_topics_with_npmi(trained, name, capsys):
    out = trained(name)
    assert main(["topics", str(out), "--n-words", "5", "--dims", "0", "2", "--npmi"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:2] == ["0", "NPMI"] and -1 <= float(lines[0].split()[2]) <= 1
    assert len(lines[1].split()) == 3 + 5
    assert lines[-1].startswith("mean NPMI of top-5 words over 2 dimensions")
    assert main(["topics", str(out), "--n-words", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 6  # one line per latent dimension / hidden unit


@pytest.mark.parametrize("name", ["rsm"])
def test_resume_continues_and_refuses_another_model(trained, name, shared_data_dir, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(trained(name), run)
    assert main(_train_argv(name, shared_data_dir, run, epochs=2)) == 0
    assert [r["epoch"] for r in RunDirectory(run).read_metrics()] == [1, 2]
    capsys.readouterr()
    assert main(_train_argv("docnade", shared_data_dir, run, epochs=3)) == 2
    assert "different model" in capsys.readouterr().err


# ------------------------------------------------------------------ reproduce doc-table
def _table_argv(data_dir, out, *rows, budget="0.0001"):
    return ["reproduce", "doc-table", "--data-dir", str(data_dir), "--rows", *rows, "--budget-minutes", budget,
            "--max-train-docs", "150", "--max-eval-docs", "40", "--iw-samples", "5", "--elbo-samples", "2",
            "--particles", "4", "--out", str(out)]


def test_doc_table_trains_evaluates_and_resumes(shared_data_dir, tmp_path, capsys):
    out = tmp_path / "table"
    # A budget of 6 ms: every row trains exactly one epoch (the clock is read between epochs).
    assert main(_table_argv(shared_data_dir, out, "nvdm-50", "sbn-50")) == 0
    printed = capsys.readouterr().out
    markdown = (out / "table.md").read_text()
    assert printed.strip().endswith(f"wrote {out / 'table.md'} and {out / 'table.json'}")
    assert "| NVDM | 50 | 836 |" in markdown and "| SBN | 50 | 909 |" in markdown
    assert "ELBO bound (2 samples) / IW estimate (K = 5)" in markdown and "Quick run, not comparable" in markdown
    table = json.loads((out / "table.json").read_text())
    assert table["settings"]["split_minutes"] == pytest.approx({"nvdm-50": 0.0001 * 7 / 22, "sbn-50": 0.0001 * 15 / 22})
    assert [r["id"] for r in table["rows"]] == ["nvdm-50", "sbn-50"]
    for row in table["rows"]:
        assert row["status"] == "done" and row["published"] in (836.0, 909.0)
        assert math.isfinite(row["bound_per_document"]) and math.isfinite(row["estimate_per_document"])
        assert row["report"]["n_docs"] == 40
        assert len(row["top_words"]) == 50 and all(len(words) == 10 for words in row["top_words"])
        assert -1 <= row["npmi_mean"] <= 1 and len(row["npmi_per_dimension"]) == 50
        assert row["training"]["epochs"] == 1 and row["training"]["stop_reason"] == "time budget"
        assert "--max-minutes" in row["training"]["command"]
        assert RunDirectory(out / row["id"]).read_config()["model"] == row["model"]

    # Run again: finished rows are skipped, nothing is retrained.
    assert main(_table_argv(shared_data_dir, out, "nvdm-50", "sbn-50")) == 0
    printed = capsys.readouterr().out
    assert printed.count("finished before, skipped") == 2 and "training" not in printed.split("# Document")[0]
    assert json.loads((out / "table.json").read_text())["rows"] == table["rows"]

    # A row killed after its first checkpoint: its share is spent, so it finishes from the checkpoint (no new epoch).
    (out / "sbn-50" / "row.json").unlink()
    (out / "sbn-50" / "training.json").unlink()
    (out / "sbn-50" / "model.safetensors").unlink()
    assert main(_table_argv(shared_data_dir, out, "nvdm-50", "sbn-50")) == 0
    printed = capsys.readouterr().out
    assert "nvdm-50: finished before, skipped" in printed and "sbn-50: training" in printed
    assert [r["epoch"] for r in RunDirectory(out / "sbn-50").read_metrics()] == [1]
    assert (out / "sbn-50" / "model.safetensors").is_file() and (out / "sbn-50" / "row.json").is_file()

    # Other training settings in the same folder are refused rather than mixed.
    argv = _table_argv(shared_data_dir, out, "sbn-50")
    argv[argv.index("--max-train-docs") + 1] = "120"
    assert main(argv) == 2
    assert "trained with other settings" in capsys.readouterr().err


def test_doc_table_skips_lda_without_its_module(shared_data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "latentnlp.models.document.lda", None)  # import fails as if the file were missing
    out = tmp_path / "table"
    assert main(_table_argv(shared_data_dir, out, "lda-50", "lda-200")) == 0
    assert capsys.readouterr().err.count("skipped: the LDA baseline is unavailable") == 2
    table = json.loads((out / "table.json").read_text())
    assert [(r["id"], r["status"], r["published"]) for r in table["rows"]] == [("lda-50", "skipped", 1091.0),
                                                                              ("lda-200", "skipped", 1058.0)]
    markdown = (out / "table.md").read_text()
    assert "| LDA | 50 | 1091 | | | skipped: the LDA baseline is unavailable" in markdown
    assert not (out / "lda-50" / "config.json").exists()


def test_doc_table_skips_lda_without_its_library(shared_data_dir, tmp_path, monkeypatch, capsys):
    lda = pytest.importorskip("latentnlp.models.document.lda")

    def no_library():
        raise ImportError("LDABaseline.fit needs the tomotopy library, which is not installed")

    monkeypatch.setattr(lda, "_import_tomotopy", no_library)
    out = tmp_path / "table"
    assert main(_table_argv(shared_data_dir, out, "lda-50")) == 0
    assert "lda-50: skipped: the LDA baseline is unavailable (LDABaseline.fit needs the tomotopy" in capsys.readouterr().err
    assert json.loads((out / "table.json").read_text())["rows"][0]["status"] == "skipped"


def test_doc_table_lda_row_and_its_run_directory(shared_data_dir, tmp_path, capsys):
    lda = pytest.importorskip("latentnlp.models.document.lda")
    try:
        lda._import_tomotopy()
    except ImportError:
        pytest.skip("tomotopy is not installed")
    out = tmp_path / "table"
    argv = _table_argv(shared_data_dir, out, "lda-50")
    argv[argv.index("--max-train-docs") + 1] = "60"
    assert main(argv) == 0
    row = json.loads((out / "table.json").read_text())["rows"][0]
    assert row["status"] == "done" and row["published"] == 1091.0 and row["bound_per_document"] is None
    assert math.isfinite(row["estimate_per_document"]) and row["estimate_estimator"].startswith("left-to-right")
    assert len(row["top_words"]) == 50 and math.isfinite(row["npmi_mean"])
    capsys.readouterr()
    # The row's folder is an ordinary ``lda`` run: evaluate and topics dispatch to it.
    assert main(["evaluate", str(out / "lda-50"), "--split", "valid", "--max-docs", "10", "--particles", "3"]) == 0
    assert "left-to-right" in capsys.readouterr().out
    assert main(["topics", str(out / "lda-50"), "--n-words", "4", "--dims", "1"]) == 0
    assert len(capsys.readouterr().out.split()) == 1 + 4


def test_train_lda_with_a_fixed_symmetric_alpha(shared_data_dir, tmp_path):
    pytest.importorskip("tomotopy")
    from latentnlp.commands.documents import load_lda

    out = tmp_path / "lda"
    argv = ["train", "lda", "--data-dir", str(shared_data_dir), "--topics", "4", "--iterations", "20", "--max-train-docs", "100",
            "--alpha", "0.5", "--eta", "0.05", "--optimize-interval", "0", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())["model_config"]
    assert (config["alpha"], config["eta"], config["optimize_interval"]) == (0.5, 0.05, 0)
    model = load_lda(RunDirectory(out))
    assert model.alpha_.tolist() == pytest.approx([0.5] * 4)  # not re-estimated


def test_table_flags_an_ais_estimate_whose_chains_collapsed():
    from latentnlp.commands.documents import ais_warning

    assert ais_warning({"ais_min_effective_sample_size": 1.0, "ais_chains": 20}).startswith("AIS not converged (min ESS 1.0 of 20")
    assert ais_warning({"ais_min_effective_sample_size": 2.0, "ais_chains": 20}) is None  # 10% of the chains: fine
    assert ais_warning({"ais_min_effective_sample_size": None, "ais_chains": 20}) is None
    assert ais_warning({"kl_nats_per_doc": 3.0}) is None  # not an AIS row
    # the length estimator is judged by the share of documents resting on few effective samples
    length = {"ais_space": "length", "ais_min_effective_sample_size": 1.0, "ais_chains": 100, "low_ess_document_share": 0.5,
              "estimate_per_document": 800.0}
    assert ais_warning(length | {"estimate_per_document_low_ess_plus_log2": 815.0}) is None  # under 2% higher: no flag
    assert ais_warning(length | {"estimate_per_document_low_ess_plus_log2": 840.0}) == (
        "log Z_D on few effective samples for 50% of the documents; log Z_D + log 2 there gives 840.0")


def test_evaluate_rsm_with_hidden_space_ais(trained, capsys):
    out = trained("rsm")
    capsys.readouterr()
    assert main(["evaluate", str(out), *EVAL_OPTIONS, "--ais-space", "hidden"]) == 0
    assert "words summed out" in capsys.readouterr().out
    evaluation = json.loads((out / "evaluation.json").read_text())
    report = evaluation["valid[:60]"]
    assert report["ais_space"] == "hidden" and "words summed out" in report["estimate_estimator"]
