"""NADE and MADE on the fixed binarized MNIST: test NLL in nats, wall time per epoch, and compute efficiency.

    python benchmarks/density_mnist.py --data-dir DIR --model nade|made|made-ensemble
        [--epochs N] [--lr LR] [--max-minutes M] [--threads 2] [--out benchmarks/results/density_mnist.json]

Each ``--model`` is one row, merged into the JSON file (so rows can run as
separate processes):

* ``nade``: NADE with 500 hidden units (Larochelle & Murray 2011), natural pixel
  order, Adam with a cosine-decayed step size, early stopping on the validation
  NLL (the 10,000 ``valid`` images; the test split is scored once, at the end).
  Also reported: seconds per epoch, the machine's measured float32 matrix-multiply
  throughput (a 2048 x 2048 GEMM at the same thread count) and the share of it
  NADE training reaches, counting ``12 D H`` flops per training example (forward
  ``2DH`` for the running pre-activation + ``2DH`` for the output dot products,
  backward twice the forward; sigmoids not counted); and, side by side in the same
  process, the throughput of the same model through the pure-PyTorch autograd path.
* ``made``: MADE, one hidden layer of 500 ReLUs, one fixed mask (natural order).
* ``made-ensemble``: MADE, one hidden layer of 500, 32 mask sets with random
  orderings and connectivity (order- and connectivity-agnostic training); test NLL of
  the 32-mask ensemble ``log mean_k p_k(x)`` (and the mean single-mask NLL beside it).
  ``--natural-order`` keeps the natural pixel order in every mask set, so only the
  hidden units' connectivity is resampled (connectivity-agnostic training, Sec. 4.2).

Published (Germain et al. 2015, Table 6; Larochelle & Murray 2011): NADE 88.33-88.86,
MADE 1 hidden layer 1 mask 88.40, MADE 32 masks 86.64 (two hidden layers).
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

from latentnlp.data.binary import load_binarized_mnist
from latentnlp.models.density.made import MADE, MADEConfig
from latentnlp.models.density.nade import NADE, NADEConfig, kernel_available, nade_log_prob_reference
from latentnlp.training.trainer import TrainConfig

PUBLISHED = {"nade": 88.33, "made": 88.40, "made-ensemble": 86.64}
TARGETS = {"nade": 88.9, "made": 88.5, "made-ensemble": 87.0}


def gemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9


def nade_throughput(model: NADE, x: torch.Tensor, backend: str, repeats: int = 3) -> float:
    """Training examples per second (forward + backward) of ``model`` on batch ``x`` through ``backend``."""
    def step():
        if backend == "torch":
            lp = nade_log_prob_reference(x, model.WT, model.V, model.c, model.b)
        else:
            lp = model.log_prob(x)
        model.zero_grad()
        (-lp.mean()).backward()

    step()
    t = time.perf_counter()
    for _ in range(repeats):
        step()
    return repeats * x.shape[0] / (time.perf_counter() - t)


def compute_row(model: NADE, x: torch.Tensor) -> dict:
    """GEMM throughput and NADE training throughput (kernel, and the PyTorch autograd path) on batches of ``x``."""
    gflops = gemm_gflops()
    ours = nade_throughput(model, x, "auto")
    reference = nade_throughput(model, x[:100], "torch", repeats=2)
    flops_per_example = 12 * 784 * 500
    return {
        "kernel_used": kernel_available(),
        "gemm_gflops_measured": round(gflops, 1),
        "nade_train_examples_per_second": round(ours, 1),
        "nade_train_gflops": round(ours * flops_per_example / 1e9, 2),
        "share_of_gemm_throughput": round(ours * flops_per_example / 1e9 / gflops, 4),
        "pytorch_autograd_path_examples_per_second": round(reference, 1),
        "speedup_vs_pytorch_path": round(ours / reference, 1),
        "flops_per_example_counted": flops_per_example,
        "epoch_seconds_implied": round(50_000 / ours, 1),
    }


def speed_only(args, data, load_start) -> int:
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        model = build("nade")
    row = {"compute": compute_row(model, data["train"][:500]), "threads": args.threads,
           "load_average_at_start": load_start, "load_average_at_end": os.getloadavg()}
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["nade-speed"] = row
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(row, indent=2))
    return 0


def build(name: str, random_order: bool = False, hidden: list[int] | None = None, direct: bool = False,
          n_masks: int = 32, natural_order: bool = False):
    if name == "nade":
        return NADE(NADEConfig(n_dims=784, hidden_dim=500))
    hidden = hidden or [500]
    if name == "made":
        return MADE(MADEConfig(n_dims=784, hidden_sizes=hidden, n_masks=1, order_agnostic=random_order,
                               direct_connection=direct))
    return MADE(MADEConfig(n_dims=784, hidden_sizes=hidden, n_masks=n_masks, order_agnostic=not natural_order,
                           direct_connection=direct))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--model", required=True, choices=sorted(PUBLISHED))
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--lr-schedule", default=None, choices=["constant", "linear", "cosine"])
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty in the optimiser")
    ap.add_argument("--random-order", action="store_true", help="MADE one mask: a fixed random pixel ordering")
    ap.add_argument("--hidden", default="500", help="MADE: comma-separated hidden layer sizes, e.g. 500,500")
    ap.add_argument("--direct", action="store_true",
                    help="MADE: masked direct input-to-output connection (Germain et al.'s direct_input_connect)")
    ap.add_argument("--n-masks", type=int, default=32, help="made-ensemble: mask sets trained and averaged")
    ap.add_argument("--natural-order", action="store_true",
                    help="made-ensemble: every mask set keeps the natural pixel order (connectivity-agnostic only)")
    ap.add_argument("--validate-every", type=int, default=1, help="epochs between validations (patience counts these)")
    ap.add_argument("--no-test", action="store_true",
                    help="screening: score only the valid split; the test split is not touched")
    ap.add_argument("--tag", default=None, help="result key (default: the model name)")
    ap.add_argument("--speed-only", action="store_true",
                    help="nade: only measure GEMM throughput and NADE training throughput (fresh weights), into 'nade-speed'")
    ap.add_argument("--patience", type=int, default=30)
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-dir", default=None, help="checkpoints here (resumable); default runs/bench-<model>")
    ap.add_argument("--out", default="benchmarks/results/density_mnist.json")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    defaults = {"nade": (100, 1e-3, "cosine"), "made": (200, 1e-3, "cosine"), "made-ensemble": (300, 1e-3, "cosine")}
    epochs, lr, schedule = defaults[args.model]
    epochs = args.epochs or epochs
    lr = args.lr or lr
    schedule = args.lr_schedule or schedule
    data = load_binarized_mnist(args.data_dir)
    load_start = os.getloadavg()
    if args.speed_only:
        return speed_only(args, data, load_start)
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        model = build(args.model, args.random_order, [int(h) for h in args.hidden.split(",")], args.direct,
                      args.n_masks, args.natural_order)
    config = TrainConfig(epochs=epochs, batch_size=args.batch_size, learning_rate=lr, lr_schedule=schedule,
                         patience=args.patience, max_minutes=args.max_minutes, seed=args.seed, progress=False,
                         weight_decay=args.weight_decay, validate_every=args.validate_every)
    tag = args.tag or args.model
    run_dir = args.run_dir or f"runs/bench-{tag}"
    t0 = time.perf_counter()
    model.fit(data["train"], data["valid"], config, run_dir=run_dir)
    train_seconds = time.perf_counter() - t0
    res = model.train_result_
    history = res.history
    epoch_seconds = [r["epoch_seconds"] for r in history]
    report = None if args.no_test else model.evaluate(data["test"])
    valid_nll = model.validation_metrics(data["valid"])["valid_nll"]
    row = {
        "model": args.model,
        "test": None if report is None else report.to_dict(),
        "valid_nll_best": valid_nll,
        "published_nll": PUBLISHED[args.model],
        "target_nll": TARGETS[args.model],
        "target_met": None if report is None else report.nll <= TARGETS[args.model],
        "config": model.config.to_dict(),
        "train_config": config.to_dict(),
        "epochs_completed": res.epochs_completed,
        "best_epoch": res.best_epoch,
        "stop_reason": res.stop_reason,
        "train_seconds_this_call": round(train_seconds, 1),
        "median_seconds_per_epoch": sorted(epoch_seconds)[len(epoch_seconds) // 2] if epoch_seconds else None,
        "valid_curve": [(r["epoch"], round(r["valid_nll"], 3)) for r in history if "valid_nll" in r],
    }
    if args.model == "nade":
        row["compute"] = compute_row(model, data["train"][:500])
    row["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                      "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(),
                      "python": sys.version.split()[0], "torch": torch.__version__}
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    row["tag"] = tag
    results[tag] = row
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out)
    print(json.dumps({k: row[k] for k in ("model", "target_met", "epochs_completed", "best_epoch",
                                          "median_seconds_per_epoch", "valid_nll_best")}
                     | ({} if report is None else {"test_nll": report.nll, "estimator": report.estimator}), indent=2))
    if "compute" in row:
        print(json.dumps(row["compute"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
