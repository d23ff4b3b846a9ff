"""NVDM on 20 Newsgroups: test perplexity at 50 and 200 latent dimensions, beside the paper's.

    python benchmarks/nvdm_20news.py --data-dir ../shared/data --out benchmarks/results/nvdm_20news.json

For each latent dimension this trains the toolkit's NVDM recipe (``latentnlp train
nvdm`` defaults) on the NVDM release of 20 Newsgroups with 10% of the training
documents held out for validation and early stopping (the test set is never
looked at before the final evaluation), under a wall-clock budget, then reports on
the 7,505 test documents:

* per-document and corpus perplexity from the ELBO bound (upper bounds on perplexity);
* the same from the importance-weighted estimate of log p(d) with K samples;
* wall time, epochs, documents per second of training.

Printed beside Miao et al. (2016), Table 1: 836 (50 dimensions) and 852 (200), which
are per-document perplexities from the ELBO (their released evaluation code).
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

from latentnlp.commands.nvdm import NVDM_DEFAULTS, load_splits, write_run_metadata
from latentnlp.data.paths import resolve_data_dir
from latentnlp.models.document.nvdm import NVDM, NVDMConfig
from latentnlp.runs import RunDirectory
from latentnlp.training.trainer import TrainConfig

PAPER = {50: 836.0, 200: 852.0}  # Miao, Yu & Blunsom 2016, Table 1 (per-document perplexity, ELBO)
# Adam step size per latent size, chosen on the validation split (never the test set):
# K=50: 1e-3 levelled off near 805, 3e-4 reached 780; K=200: 3e-4 stopped early at 823
# (best epoch 81), 1e-4 reached 814 after 170 epochs and was still improving.
LR_BY_DIM = {50: 3e-4, 200: 1e-4}


def run_one(latent_dim: int, args: argparse.Namespace, splits) -> dict:
    run_dir = Path(args.run_root) / f"nvdm-{latent_dim}"
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        model = NVDM(NVDMConfig(vocab_size=splits["train"].vocab_size, latent_dim=latent_dim))
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=NVDM_DEFAULTS["batch_size"],
        learning_rate=args.lr if args.lr is not None else LR_BY_DIM.get(latent_dim, NVDM_DEFAULTS["lr"]),
        patience=args.patience,
        max_minutes=args.budget_minutes,
        seed=args.seed,
        progress=False,
        resume=False,
    )
    write_run_metadata(RunDirectory(run_dir), model.config, config, "20news-nvdm", args.resolved_data_dir,
                       NVDM_DEFAULTS["valid_fraction"], 0, splits["train"], splits["valid"], args.seed)
    t0 = time.perf_counter()
    model.fit(splits["train"], splits["valid"], config, run_dir=str(run_dir))
    train_seconds = time.perf_counter() - t0
    result = model.train_result_
    RunDirectory(run_dir).save_model("nvdm", model)
    RunDirectory(run_dir).plot_learning_curve("train_loss", "valid_perplexity_bound")
    t1 = time.perf_counter()
    report = model.evaluate(splits["test"], elbo_samples=args.elbo_samples, iw_samples=args.iw_samples, seed=0)
    eval_seconds = time.perf_counter() - t1
    docs_seen = result.epochs_completed * len(splits["train"])
    vocab = splits["train"].vocab
    return {
        "latent_dim": latent_dim,
        "learning_rate": config.learning_rate,
        "paper_per_document_perplexity": PAPER[latent_dim],
        "test": report.to_dict(),
        "epochs": result.epochs_completed,
        "best_epoch": result.best_epoch,
        "best_valid_perplexity_bound": result.best_value,
        "stop_reason": result.stop_reason,
        "train_seconds": train_seconds,
        "train_docs_per_second": docs_seen / train_seconds,
        "eval_seconds": eval_seconds,
        "topics_first_10": [" ".join(words) for words in model.topic_words(vocab, 10)[:10]],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="benchmarks/results/nvdm_20news.json")
    p.add_argument("--run-root", default="runs/benchmark")
    p.add_argument("--latent-dims", type=int, nargs="+", default=[50, 200])
    p.add_argument("--budget-minutes", type=float, default=25.0, help="training budget per model")
    p.add_argument("--epochs", type=int, default=NVDM_DEFAULTS["epochs"])
    p.add_argument("--lr", type=float, default=None, help="Adam step size for every K (default: LR_BY_DIM)")
    p.add_argument("--patience", type=int, default=NVDM_DEFAULTS["patience"])
    p.add_argument("--iw-samples", type=int, default=500)
    p.add_argument("--elbo-samples", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--merge", action="store_true", help="keep rows of other latent sizes already in --out")
    args = p.parse_args()

    args.resolved_data_dir = str(resolve_data_dir(args.data_dir).resolve())
    splits = load_splits("20news-nvdm", args.resolved_data_dir, NVDM_DEFAULTS["valid_fraction"], 0)
    rows = [run_one(k, args, splits) for k in args.latent_dims]
    if args.merge and Path(args.out).is_file():  # keep earlier rows for latent sizes not rerun now
        earlier = json.loads(Path(args.out).read_text()).get("results", [])
        rows = sorted([r for r in earlier if r["latent_dim"] not in args.latent_dims] + rows, key=lambda r: r["latent_dim"])
    out = {
        "benchmark": "nvdm_20news",
        "data": {k: {"docs": len(v), "tokens": v.n_tokens} for k, v in splits.items()},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__, "python": sys.version.split()[0]},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "resolved_data_dir")},
        "results": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")

    print(f"\nNVDM on 20 Newsgroups test ({len(splits['test'])} docs); perplexity, lower is better")
    print(f"{'K':>4} {'paper':>7} {'bound/doc':>10} {'IW/doc':>8} {'bound/corpus':>13} {'IW/corpus':>10} {'KL':>6} {'epochs':>7} {'min':>6} {'docs/s':>8}")
    for r in rows:
        t = r["test"]
        print(f"{r['latent_dim']:>4} {r['paper_per_document_perplexity']:>7.0f} {t['bound_per_document']:>10.1f} "
              f"{t['estimate_per_document']:>8.1f} {t['bound_corpus']:>13.1f} {t['estimate_corpus']:>10.1f} "
              f"{t['kl_nats_per_doc']:>6.1f} {r['epochs']:>7d} {r['train_seconds'] / 60:>6.1f} {r['train_docs_per_second']:>8.0f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
