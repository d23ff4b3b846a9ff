"""Two processes on the gloo backend give the same model as one process (DDP, common random numbers)."""


import torch

from latentnlp.models.document.nvdm import NVDM, NVDMConfig
from latentnlp.runs import RunDirectory
from latentnlp.training.distributed import DistributedContext, shard_bounds
from latentnlp.training.trainer import TrainConfig, Trainer
from tests.synthetic import assert_two_gloo_processes_match_one, planted_corpus, run_one_and_two_processes


def _fit(ctx):
    corpus = planted_corpus(n_docs=45)  # 45 / batch 8: the last batch (5) splits unevenly, 3 + 2
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = NVDM(NVDMConfig(vocab_size=corpus.vocab_size, latent_dim=3, hidden_dim=16))
    x = corpus.to_dense()
    model.init_decoder_bias(x.sum(0))
    cfg = TrainConfig(epochs=3, batch_size=8, learning_rate=1e-2, seed=7, progress=False, patience=0)
    Trainer(model, cfg, len(corpus), collate=lambda i: x[i], ctx=ctx).fit()
    return model


def test_shard_bounds_cover_batch():
    for n in range(0, 12):
        pieces = [shard_bounds(n, DistributedContext(r, 3)) for r in range(3)]
        assert pieces[0][0] == 0 and pieces[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))


def test_two_gloo_processes_match_one_process(tmp_path):
    assert_two_gloo_processes_match_one(_fit, tmp_path)


def test_torchrun_cli_matches_single_process_cli(tmp_path, shared_data_dir):
    common = [
        "train", "nvdm", "--data-dir", str(shared_data_dir), "--latent-dim", "8", "--hidden-dim", "32",
        "--epochs", "2", "--max-train-docs", "300", "--seed", "3", "--no-progress",
    ]
    run_one_and_two_processes(common, tmp_path / "one", tmp_path / "two")
    assert RunDirectory(tmp_path / "two").read_config()["world_size"] == 2
    a = RunDirectory(tmp_path / "one").load_model().state_dict()
    b = RunDirectory(tmp_path / "two").load_model().state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
