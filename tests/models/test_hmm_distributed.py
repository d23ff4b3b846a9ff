"""Distributed EM on two gloo processes equals single-process EM."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from latentnlp.models.sequence.hmm import HiddenMarkovModel
from latentnlp.training.checkpoint import atomic_save_tensors, load_tensors
from latentnlp.training.distributed import DistributedContext, shard_bounds

C, V = 4, 15


def _sentences():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 12, (41,), generator=g)  # 41: shards of 21 and 20 sentences
    return [torch.randint(0, V, (int(n),), generator=g) for n in lengths]


def _fit(ctx, sentences, random_state):
    model = HiddenMarkovModel(n_states=C, vocab_size=V, random_state=random_state, n_iter=12, tol=-1.0, n_restarts=2)
    return model.fit_em(sentences, ctx=ctx)


def _worker(rank, world, init_file, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        ctx = DistributedContext.current()
        sentences = _sentences()
        lo, hi = shard_bounds(len(sentences), ctx)
        model = _fit(None, sentences[lo:hi], random_state=5)  # ctx=None: taken from the process group
        # random_state=None: rank 0's fresh seed is broadcast, so the starting points agree
        start = HiddenMarkovModel(n_states=C, vocab_size=V).fit_em(sentences[lo:hi], n_iter=0).log_emission_
        starts = [torch.empty_like(start) for _ in range(world)]
        dist.all_gather(starts, start)
        if rank == 0:
            atomic_save_tensors(out, {
                "log_init": model.log_init_, "log_transition": model.log_transition_,
                "log_emission": model.log_emission_, "history": torch.tensor(model.log_likelihood_history_, dtype=torch.float64),
                "starts": torch.stack(starts),
            })
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_one_process(tmp_path):
    single = _fit(DistributedContext(), _sentences(), random_state=5)
    out = tmp_path / "em.safetensors"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    got, _ = load_tensors(out)
    torch.testing.assert_close(got["history"], torch.tensor(single.log_likelihood_history_, dtype=torch.float64), rtol=1e-10, atol=1e-8)
    assert torch.equal(got["starts"][0], got["starts"][1])
    for name in ("log_init", "log_transition", "log_emission"):
        torch.testing.assert_close(got[name].exp(), getattr(single, name + "_").exp(), rtol=1e-8, atol=1e-8)
