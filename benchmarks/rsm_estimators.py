"""How far is each estimate of the RSM's log Z_D from the truth? Exact enumeration on trained 20-unit models.

    python benchmarks/rsm_estimators.py --data-dir ../shared/data \
        --run-dirs benchmarks/runs/rsm/cd1-20 benchmarks/runs/rsm/pcd-20 --max-docs 300 \
        --out benchmarks/results/rsm_estimators.json

With ``H = 20`` hidden units, ``Z_D = sum_h exp(D g(h))`` is a sum over ``2^20`` states
(:meth:`~latentnlp.models.document.rsm.ReplicatedSoftmax.exact_log_partition`), so on models
trained on 20 Newsgroups (``latentnlp train rsm --hidden-dim 20``, CD-1 and PCD) every
estimator can be compared with the exact ``log Z_D`` of each distinct length of the first
``--max-docs`` validation documents, and with the exact per-document perplexity. Rows:

* per-length AIS over words and hidden units (``rsm_ais``; the table's estimator until now);
* per-length AIS over the hidden units (``rsm_hidden_ais``);
* one AIS run through all lengths (``rsm_length_ais``), without and with mode jumps;
* importance sampling from the basins of the local maxima of ``g`` (``rsm_mode_importance``);
* the mode bound (rigorous lower bound) and the combination ``rsm_log_partitions``
  (``latentnlp evaluate --ais-space length``, the default).

The test split is not read.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import torch

from latentnlp.commands.documents import _first_docs, _run_split, load_document_model
from latentnlp.models.document.rsm import (
    length_path_schedule,
    mode_log_partition_bound,
    rsm_hidden_ais,
    rsm_hidden_modes,
    rsm_length_ais,
    rsm_log_partitions,
    rsm_mode_importance,
)
from latentnlp.runs import RunDirectory


def score(run_dir: str, data_dir: str | None, max_docs: int, chains: int, temperatures: int, seed: int) -> dict:
    run = RunDirectory(run_dir)
    config, valid = _run_split(run, "valid", data_dir)
    if config["model"] != "rsm":
        raise SystemExit(f"{run.path} holds a {config['model']!r} run, not an rsm run")
    model = load_document_model(run)
    if model.config.hidden_dim > 22:
        raise SystemExit(f"{run.path}: {model.config.hidden_dim} hidden units; exact enumeration needs <= 22")
    x = _first_docs(valid, max_docs).to_dense().double()
    lengths = x.sum(-1).long()
    distinct = sorted(set(lengths.tolist()))
    with torch.no_grad():
        free_energy = model._free_energy(x.to(model.weight.dtype)).double()
        t0 = time.perf_counter()
        exact = dict(zip(distinct, model.exact_log_partition(distinct).double().tolist()))
        exact_seconds = time.perf_counter() - t0
        posterior = (model.hidden_probs(x.to(model.weight.dtype)) > 0.5).double()

    def perplexity(table: dict[int, float]) -> float:
        log_z = torch.tensor([table[int(d)] for d in lengths.tolist()], dtype=torch.float64)
        return math.exp(float(((free_energy + log_z) / lengths).mean()))

    gen = lambda: torch.Generator().manual_seed(seed)  # noqa: E731
    starts = torch.cat([(torch.rand(3000, model.config.hidden_dim, generator=gen()) < 0.5).double(), posterior])
    modes, g = rsm_hidden_modes(model, starts)
    bound = dict(zip(distinct, mode_log_partition_bound(g, distinct).tolist()))
    schedule = length_path_schedule(distinct, n_unit=temperatures, growth=3.0 / temperatures)
    estimators = {
        f"per-length AIS, words and hidden units ({chains} chains x {temperatures} temperatures)":
            lambda: model.estimate_log_partitions(distinct, chains, temperatures, seed=seed),
        f"per-length AIS, hidden units ({chains} chains x {temperatures} temperatures)":
            lambda: rsm_hidden_ais(model, distinct, n_chains=chains, betas=temperatures, generator=gen()),
        "one AIS run through all lengths (100 chains)":
            lambda: rsm_length_ais(model, distinct, n_chains=100, schedule=schedule, generator=gen()),
        "one AIS run through all lengths, mode jumps (100 chains)":
            lambda: rsm_length_ais(model, distinct, n_chains=100, schedule=schedule, generator=gen(), modes=modes[:200]),
        "mode importance sampling (1,000 draws per length)":
            lambda: rsm_mode_importance(model, distinct, modes[:200], n_samples=1000, generator=gen()),
        "largest of the three (rsm_log_partitions, evaluate's default)":
            lambda: rsm_log_partitions(model, distinct, starts=starts, n_chains=100, n_unit=temperatures, generator=gen()),
    }
    rows = [{"estimator": "exact enumeration of 2^H hidden states", "perplexity_per_document": perplexity(exact),
             "seconds": exact_seconds},
            {"estimator": "mode bound (rigorous lower bound on log Z_D)", "perplexity_per_document": perplexity(bound),
             "max_abs_log_z_error": max(exact[d] - bound[d] for d in distinct), "seconds": 0.0}]
    for name, run_estimator in estimators.items():
        t0 = time.perf_counter()
        result = run_estimator()
        seconds = time.perf_counter() - t0
        table = {d: result[d].log_z for d in distinct}
        errors = torch.tensor([table[d] - exact[d] for d in distinct])
        inside = sum(result[d].log_z_lower <= exact[d] <= result[d].log_z_upper for d in distinct)
        rows.append({
            "estimator": name, "perplexity_per_document": perplexity(table),
            "max_abs_log_z_error": float(errors.abs().max()), "mean_log_z_error": float(errors.mean()),
            "lengths_with_exact_inside_3sd": inside, "min_effective_sample_size": min(result[d].effective_sample_size for d in distinct),
            "seconds": seconds,
        })
        print(f"{run.path.name}: {name}: perplexity {rows[-1]['perplexity_per_document']:.1f} "
              f"(exact {rows[0]['perplexity_per_document']:.1f}); max |log Z error| {rows[-1]['max_abs_log_z_error']:.2f}; "
              f"{seconds:.0f} s", flush=True)
    return {"run_dir": str(run.path), "hidden_dim": model.config.hidden_dim, "model_config": config["model_config"],
            "train_config": config.get("train_config"), "documents": int(lengths.numel()), "distinct_lengths": len(distinct),
            "n_modes": int(modes.shape[0]), "g_max": float(g[0]), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dirs", nargs="+", required=True, help="trained rsm runs with <= 22 hidden units")
    p.add_argument("--data-dir", default=None, help="default: each run's data directory")
    p.add_argument("--max-docs", type=int, default=300, help="score the first N validation documents")
    p.add_argument("--chains", type=int, default=20, help="chains of the per-length AIS rows")
    p.add_argument("--temperatures", type=int, default=1000, help="temperatures per length / in [0, 1]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="JSON result")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = [score(r, args.data_dir, args.max_docs, args.chains, args.temperatures, args.seed) for r in args.run_dirs]
    out = {"command": "python benchmarks/rsm_estimators.py " + " ".join(argv if argv is not None else os.sys.argv[1:]),
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                       "torch": torch.__version__},
           "split": "valid", "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
