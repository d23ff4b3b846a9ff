"""Has AIS converged for a trained Replicated Softmax? Perplexity of the same documents at several schedules.

    python benchmarks/rsm_ais_check.py --run-dir benchmarks/runs/doc-table/rsm-50 --max-docs 20 \
        --temperatures 1000 3000 10000 30000 --out benchmarks/results/rsm_ais_check.json

AIS estimates ``log Z_D`` with a stochastic *lower* bound in expectation, so a schedule with
too few temperatures makes ``log p(d) = -F(v) - log Z_D`` too high and the perplexity too low
(optimistic). This script scores the first ``--max-docs`` test documents (every distinct
length among them gets its own AIS run, as ``latentnlp evaluate --ais-space joint|hidden`` does) with each number of
temperatures, same chains and seed (``--space hidden``: AIS over the hidden units with the
words summed out, :func:`~latentnlp.models.document.rsm.rsm_hidden_ais`), and writes the per-document perplexity, the mean
``log Z`` over the documents and the smallest effective sample size of each. If the
perplexity still rises with more temperatures, a per-length figure (the table's until
2026-12: 20 chains x 1,000 temperatures) is optimistic by at least the rise measured here.
The table now uses ``--ais-space length`` (``rsm_log_partitions``), checked against exact
enumeration in ``benchmarks/rsm_estimators.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from latentnlp.commands.documents import _first_docs, _run_split, load_document_model
from latentnlp.runs import RunDirectory


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", required=True, help="a trained rsm run directory")
    p.add_argument("--data-dir", default=None, help="default: the run's data directory")
    p.add_argument("--split", default="test")
    p.add_argument("--max-docs", type=int, default=20, help="score the first N documents of the split")
    p.add_argument("--chains", type=int, default=20, help="AIS chains per length")
    p.add_argument("--temperatures", type=int, nargs="+", default=[1000, 3000, 10000, 30000])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--space", choices=["joint", "hidden"], default="joint",
                   help="joint: the table's chain over words and hidden units (rsm_ais); hidden: over the hidden units "
                        "with the words summed out (rsm_hidden_ais)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="JSON result")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    run = RunDirectory(args.run_dir)
    config, corpus = _run_split(run, args.split, args.data_dir)
    if config["model"] != "rsm":
        raise SystemExit(f"{run.path} holds a {config['model']!r} run, not an rsm run")
    corpus = _first_docs(corpus, args.max_docs)
    model = load_document_model(run)
    rows = []
    for k in args.temperatures:
        t0 = time.perf_counter()
        report = model.evaluate(corpus, ais_chains=args.chains, ais_betas=k, seed=args.seed, ais_space=args.space)
        row = {"space": args.space, "temperatures": k, "chains": args.chains, "perplexity_per_document": report.estimate_per_document,
               "perplexity_corpus": report.estimate_corpus, "log_p_nats_per_doc": report.log_p_nats_per_doc,
               "min_effective_sample_size": report.ais_min_effective_sample_size, "n_lengths": report.n_lengths,
               "seconds": time.perf_counter() - t0}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"run_dir": str(run.path), "split": args.split, "n_docs": len(corpus), "seed": args.seed, "rows": rows,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                          "torch": torch.__version__}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
