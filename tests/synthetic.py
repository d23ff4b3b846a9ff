"""Small synthetic corpora for fast tests (planted topics, so training has something to learn)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from latentnlp.data.bow import BowCorpus


def planted_corpus(n_docs: int = 60, vocab_size: int = 30, n_topics: int = 3, doc_len: int = 40, seed: int = 0) -> BowCorpus:
    """Documents drawn from one of ``n_topics`` disjoint word blocks plus background noise."""
    rng = np.random.default_rng(seed)
    block = vocab_size // n_topics
    rows = []
    for d in range(n_docs):
        t = d % n_topics
        p = np.full(vocab_size, 0.1 / vocab_size)
        p[t * block : (t + 1) * block] += 0.9 / block
        rows.append(rng.multinomial(doc_len, p / p.sum()))
    counts = sp.csr_matrix(np.array(rows, dtype=np.int64))
    vocab = tuple(f"w{i}" for i in range(vocab_size))
    return BowCorpus(counts=counts, vocab=vocab, labels=np.arange(n_docs, dtype=np.int64) % n_topics + 1)


def free_port() -> int:
    """A TCP port on localhost that was free a moment ago (for torchrun's rendezvous in tests)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_one_and_two_processes(args: list[str], out_one, out_two) -> None:
    """Run ``latentnlp ARGS --out OUT`` once as one process and once under torchrun with 2 processes.

    Raises AssertionError with the process's stderr if either run fails.
    """
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-m", "latentnlp", *args, "--out", str(out_one)],
                         capture_output=True, text=True, env=env)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
         "-m", "latentnlp", *args, "--out", str(out_two)],
        capture_output=True, text=True, env=env,
    )
    assert two.returncode == 0, two.stderr


def _gloo_worker(rank: int, world: int, init_file: str, out: str, fit) -> None:
    import torch
    import torch.distributed as dist

    from latentnlp.training.checkpoint import atomic_save_tensors
    from latentnlp.training.distributed import DistributedContext

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        model = fit(DistributedContext.current())
        if rank == 0:
            atomic_save_tensors(out, model.state_dict())
        dist.barrier()  # no rank tears down gloo while another still uses it
    finally:
        dist.destroy_process_group()


def assert_two_gloo_processes_match_one(fit, tmp_path, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """``fit(ctx) -> model`` (a module-level function) run alone and in 2 gloo processes gives the same weights."""
    import torch
    import torch.multiprocessing as mp

    from latentnlp.training.checkpoint import load_tensors
    from latentnlp.training.distributed import DistributedContext

    single = fit(DistributedContext()).state_dict()
    out = tmp_path / "ddp.safetensors"
    mp.spawn(_gloo_worker, args=(2, str(tmp_path / "init"), str(out), fit), nprocs=2, join=True)
    ddp, _ = load_tensors(out)
    for k, v in single.items():
        torch.testing.assert_close(ddp[k], v, rtol=rtol, atol=atol)
