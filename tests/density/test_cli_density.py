"""``latentnlp train nade|made``, ``evaluate`` and ``sample`` end to end on a user's small .npz."""

import json

import numpy as np
import pytest

from latentnlp.cli import main


@pytest.fixture()
def npz(tmp_path):
    rng = np.random.default_rng(0)
    proto = rng.random((3, 16)) < 0.5
    def draw(n):
        x = proto[rng.integers(0, 3, n)]
        flip = rng.random(x.shape) < 0.05
        return (x ^ flip).astype(np.uint8)
    path = tmp_path / "toy.npz"
    np.savez(path, train=draw(300), valid=draw(60), test=draw(60))
    return path


@pytest.mark.parametrize("model,extra", [("nade", ["--hidden-dim", "8"]), ("made", ["--hidden-sizes", "12", "--masks", "2", "--order-agnostic"])])
def test_train_evaluate_sample(tmp_path, npz, model, extra, capsys):
    run = tmp_path / model
    rc = main(["train", model, "--data", str(npz), "--out", str(run), "--epochs", "15", "--batch-size", "50",
               "--lr", "0.01", "--no-progress", *extra])
    assert rc == 0
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "nats per example" in out and "estimator: exact" in out
    report = json.loads((run / "evaluation.json").read_text())["test"]
    # 16 fair coins would cost 16 log 2 = 11.09 nats; three noisy prototypes much less.
    assert report["nll"] < 9.0
    metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["valid_nll"] < metrics[0]["valid_nll"]
    assert main(["sample", str(run), "--n", "9", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_bad_data_file_gives_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, train=np.full((4, 3), 2), valid=np.zeros((2, 3)), test=np.zeros((2, 3)))
    assert main(["train", "nade", "--data", str(bad), "--out", str(tmp_path / "r"), "--epochs", "1", "--no-progress"]) == 2
    assert "only 0 and 1" in capsys.readouterr().err


@pytest.mark.parametrize("model,extra", [
    ("made", ["--hidden-sizes", "10", "--masks", "3", "--order-agnostic"]),
    ("nade", ["--hidden-dim", "6", "--order-agnostic"]),
])
def test_two_processes_train_the_same_model_as_one(tmp_path, npz, model, extra):
    """torchrun with 2 gloo processes: DDP, the minibatch's mask/ordering shared across processes."""
    import torch

    from latentnlp.training.checkpoint import load_tensors
    from tests.synthetic import run_one_and_two_processes

    args = ["train", model, "--data", str(npz), "--epochs", "2", "--batch-size", "50", "--lr", "0.01",
            "--no-progress", "--backend", "torch", *extra] if model == "nade" else [
            "train", model, "--data", str(npz), "--epochs", "2", "--batch-size", "50", "--lr", "0.01", "--no-progress", *extra]
    run_one_and_two_processes(args, tmp_path / "one", tmp_path / "two")
    one, _ = load_tensors(tmp_path / "one" / "model.safetensors")
    two, _ = load_tensors(tmp_path / "two" / "model.safetensors")
    for k in one:
        torch.testing.assert_close(one[k], two[k], rtol=1e-4, atol=1e-5, msg=k)
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2
