"""Linear-chain CRF throughput: our CRFLayer beside pytorch-crf, same process, same inputs.

    [OMP_WAIT_POLICY=PASSIVE] python benchmarks/crf_throughput.py [--batch 32] [--length 50]
        [--tags 9 23 45] [--lengths full varied] [--threads 1 0] [--repeats 20] [--quick]
        [--out benchmarks/results/crf_throughput.json]

For a batch of ``B`` sentences padded to ``N`` positions and ``C`` tags (float32,
CPU) it times, best of ``--repeats`` runs after a warm-up, with the two
implementations interleaved so that load from other processes hits both alike:

* ``forward``: the per-sentence log-likelihood ``log p(tags | x)`` (score of the
  gold path minus ``log Z``), with autograd recording as in training;
* ``forward_backward``: the same plus ``backward()`` of its sum (gradients for
  the unary scores and the CRF parameters);
* ``viterbi``: decoding the best tag sequences (no autograd).

Ours is :class:`latentnlp.models.sequence.crf_layer.CRFLayer` (forward algorithm
of :mod:`latentnlp.structured.linear_chain`; Viterbi by explicit backpointers,
``decode(method="backpointer")``, and by the gradient of the max-semiring score,
``method="autograd"``); the peer is ``torchcrf.CRF(C, batch_first=True)``
(pytorch-crf 0.7.2) with the same transition/start/end parameters copied in.
``ours_plain_*`` is the same log-likelihood written directly with
``crf_potentials(..., end=end)`` and ``path_score`` (the layer instead folds
``end`` into the unary scores and scores the path term by term). Each
configuration also checks that the two agree: the largest log-likelihood
difference and whether the Viterbi paths are identical.

Lengths: ``full`` (every sentence has ``N`` words) and ``varied`` (uniform in
``[1, N]``, the longest set to ``N``). Threads: ``--threads 1 0`` runs with one
intra-op thread and with torch's default (``0``). ``speedup_*`` is pytorch-crf's
time divided by ours (> 1: ours is faster). The load average before and after
is recorded: on a machine whose cores are busy with other jobs, runs with more
than one thread can be slowed by orders of magnitude (OpenMP workers waiting for
a core), for both implementations alike. Run with ``OMP_WAIT_POLICY=PASSIVE``
there (recorded in the JSON): idle OpenMP workers then sleep instead of
spinning, and the multi-thread rows are meaningful again.

Needs pytorch-crf (``pip install pytorch-crf``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from latentnlp.models.sequence.crf_layer import CRFLayer
from latentnlp.structured.linear_chain import crf_potentials, log_partition, path_score


def best_of(functions: dict, repeats: int) -> dict[str, float]:
    """Best wall time (seconds) of each function, calls interleaved round-robin after one warm-up each."""
    for f in functions.values():
        f()
    times = {name: float("inf") for name in functions}
    for _ in range(repeats):
        for name, f in functions.items():
            t0 = time.perf_counter()
            f()
            times[name] = min(times[name], time.perf_counter() - t0)
    return times


def run_config(C: int, B: int, N: int, lengths_kind: str, repeats: int, seed: int = 0) -> dict:
    from torchcrf import CRF

    g = torch.Generator().manual_seed(seed)
    ours = CRFLayer(C)
    theirs = CRF(C, batch_first=True)
    with torch.no_grad():
        theirs.transitions.copy_(ours.transition)
        theirs.start_transitions.copy_(ours.start)
        theirs.end_transitions.copy_(ours.end)
    if lengths_kind == "full":
        lengths = torch.full((B,), N, dtype=torch.long)
    else:
        lengths = torch.randint(1, N + 1, (B,), generator=g)
        lengths[0] = N
    unary = torch.randn(B, N, C, generator=g).requires_grad_(True)
    tags = torch.randint(0, C, (B, N), generator=g)
    mask = torch.arange(N).unsqueeze(0) < lengths.unsqueeze(1)  # torchcrf: (B, N) bool, mask[:, 0] all on

    def ours_ll():
        return ours.log_likelihood(unary, tags, lengths)

    def plain_ll():
        pot = crf_potentials(unary, ours.transition, lengths, ours.start, ours.end)
        return path_score(pot, lengths, tags) - log_partition(pot, lengths)

    def theirs_ll():
        return theirs(unary, tags, mask, reduction="none")

    def backward(f):
        def run():
            unary.grad = None
            f().sum().backward()

        return run

    def no_grad(f):
        def run():
            with torch.no_grad():
                return f()

        return run

    ll_diff = float((ours_ll() - theirs_ll()).abs().max())
    plain_diff = float((plain_ll() - theirs_ll()).abs().max())
    with torch.no_grad():
        _, paths_bp = ours.decode(unary, lengths, method="backpointer")
        _, paths_ag = ours.decode(unary, lengths, method="autograd")
        ref = theirs.decode(unary, mask)
    same = lambda paths: all(paths[b, : len(r)].tolist() == r for b, r in enumerate(ref))  # noqa: E731

    times = {}
    times.update(best_of({"ours_forward": ours_ll, "ours_plain_forward": plain_ll, "torchcrf_forward": theirs_ll}, repeats))
    times.update(
        best_of(
            {
                "ours_forward_backward": backward(ours_ll),
                "ours_plain_forward_backward": backward(plain_ll),
                "torchcrf_forward_backward": backward(theirs_ll),
            },
            repeats,
        )
    )
    times.update(
        best_of(
            {
                "ours_viterbi_backpointer": no_grad(lambda: ours.decode(unary, lengths, method="backpointer")),
                "ours_viterbi_autograd": no_grad(lambda: ours.decode(unary, lengths, method="autograd")),
                "torchcrf_viterbi": no_grad(lambda: theirs.decode(unary, mask)),
            },
            repeats,
        )
    )
    result = {"C": C, "B": B, "N": N, "lengths": lengths_kind, "tokens": int(lengths.sum())}
    result.update({f"{k}_ms": 1e3 * v for k, v in times.items()})
    result["speedup_forward"] = times["torchcrf_forward"] / times["ours_forward"]
    result["speedup_forward_backward"] = times["torchcrf_forward_backward"] / times["ours_forward_backward"]
    result["speedup_viterbi_backpointer"] = times["torchcrf_viterbi"] / times["ours_viterbi_backpointer"]
    result["speedup_viterbi_autograd"] = times["torchcrf_viterbi"] / times["ours_viterbi_autograd"]
    result["max_abs_log_likelihood_diff"] = ll_diff
    result["max_abs_log_likelihood_diff_plain"] = plain_diff
    result["viterbi_paths_identical_backpointer"] = same(paths_bp)
    result["viterbi_paths_identical_autograd"] = same(paths_ag)
    return result


def print_table(rows: list[dict]) -> None:
    head = (f"{'thr':>3} {'C':>3} {'lengths':>7} | {'fwd ours':>8} {'fwd tcrf':>8} {'x':>5} | {'f+b ours':>8} "
            f"{'f+b tcrf':>8} {'x':>5} | {'vit bp':>7} {'vit ag':>7} {'vit tcrf':>8} {'x bp':>5} {'x ag':>5}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['threads']:>3} {r['C']:>3} {r['lengths']:>7} | {r['ours_forward_ms']:8.2f} {r['torchcrf_forward_ms']:8.2f} "
            f"{r['speedup_forward']:5.2f} | {r['ours_forward_backward_ms']:8.2f} {r['torchcrf_forward_backward_ms']:8.2f} "
            f"{r['speedup_forward_backward']:5.2f} | {r['ours_viterbi_backpointer_ms']:7.2f} "
            f"{r['ours_viterbi_autograd_ms']:7.2f} {r['torchcrf_viterbi_ms']:8.2f} "
            f"{r['speedup_viterbi_backpointer']:5.2f} {r['speedup_viterbi_autograd']:5.2f}"
        )
    print("(times in ms, best of the repeats; x = pytorch-crf time / ours)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=32, help="B, sentences per batch")
    p.add_argument("--length", type=int, default=50, help="N, padded sentence length")
    p.add_argument("--tags", type=int, nargs="+", default=[9, 23, 45], help="C values")
    p.add_argument("--lengths", nargs="+", default=["full", "varied"], choices=["full", "varied"])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 0], help="intra-op threads; 0: torch's default")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per measurement (best is kept)")
    p.add_argument("--quick", action="store_true", help="5 repeats")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "crf_throughput.json"))
    args = p.parse_args(argv)
    repeats = 5 if args.quick else args.repeats
    default_threads = torch.get_num_threads()
    load_at_start = list(os.getloadavg())  # other jobs on the machine distort timings, most with > 1 thread
    import torchcrf

    rows = []
    for threads in args.threads:
        n_threads = default_threads if threads == 0 else threads
        torch.set_num_threads(n_threads)
        for C in args.tags:
            for kind in args.lengths:
                row = {"threads": n_threads, **run_config(C, args.batch, args.length, kind, repeats)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    torch.set_num_threads(default_threads)
    results = {
        "environment": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "pytorch_crf": getattr(torchcrf, "__version__", "unknown"),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "default_threads": default_threads,
            "dtype": "float32",
            "device": "cpu",
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "load_average_at_start": load_at_start,
            "load_average_at_end": list(os.getloadavg()),
        },
        "settings": {"batch": args.batch, "length": args.length, "repeats": repeats, "quick": args.quick},
        "runs": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
