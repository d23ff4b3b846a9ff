"""Density-estimator commands: ``train nade|made|rbm``, ``evaluate`` of such a run, ``sample``.

Data: by default the fixed binarized MNIST of Larochelle & Murray (2011) under
``--data-dir`` (``binarized-mnist/binarized_mnist_uint8.npz``); ``--dynamic-binarization``
uses ``mnist-raw/`` instead (train images 0..49,999 redrawn every batch, valid =
images 50,000..59,999 and test binarized once with a fixed seed); ``--data FILE.npz``
takes a user's own 0/1 data with ``train``/``valid``/``test`` arrays.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import torch

from ..data.binary import DynamicBinarizer, load_binarized_mnist, load_mnist_raw, read_binary_splits
from ..data.paths import resolve_data_dir
from ..models.density.made import MADE, MADEConfig
from ..models.density.nade import NADE, NADEConfig
from ..models.density.rbm import BernoulliRBM, RBMConfig
from ..runs import RunDirectory
from ..training.distributed import run_distributed
from ..training.seeding import seeded
from ..training.trainer import TrainConfig

log = logging.getLogger("latentnlp.commands.density")

MODELS = ("nade", "made", "rbm")
MNIST_VALID_START = 50_000  # mnist-raw: train = 0..49,999, valid = 50,000..59,999 (as the fixed binarization)


def load_data(spec: dict, data_dir: str | None = None) -> dict[str, torch.Tensor]:
    """``train``/``valid``/``test`` tensors for the data ``spec`` recorded in a run's config.

    With dynamic binarization, ``train`` holds grey levels (binarized per batch) and
    ``valid``/``test`` are binarized once with ``spec["binarize_seed"]``.
    """
    source = spec["source"]
    if source == "binarized-mnist":
        return load_binarized_mnist(data_dir or spec["data_dir"], folder=spec.get("folder", "binarized-mnist"))
    if source == "file":
        return read_binary_splits(spec["path"])
    if source == "mnist-dynamic":
        raw = load_mnist_raw(data_dir or spec["data_dir"])
        g = torch.Generator().manual_seed(spec["binarize_seed"])
        return {
            "train": raw["train"][:MNIST_VALID_START],
            "valid": torch.bernoulli(raw["train"][MNIST_VALID_START:], generator=g),
            "test": torch.bernoulli(raw["test"], generator=g),
        }
    raise ValueError(f"unknown data source {source!r} in the run's config")


# ------------------------------------------------------------------- train
def _common_options(p: argparse.ArgumentParser, epochs: int, lr: float, batch: int, optimizer: str, schedule: str) -> None:
    p.add_argument("--data-dir", help="folder holding binarized-mnist/ or mnist-raw/ (default: $LATENTNLP_DATA)")
    p.add_argument("--data", help="your own .npz with 0/1 arrays train, valid, test (instead of MNIST)")
    p.add_argument("--dynamic-binarization", action="store_true", help="binarize mnist-raw anew every batch")
    p.add_argument("--out", required=True, help="run directory to create or resume")
    p.add_argument("--epochs", type=int, default=epochs, help="max passes over train (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=batch, help="(default %(default)s)")
    p.add_argument("--lr", type=float, default=lr, help="(initial) step size (default %(default)s)")
    p.add_argument("--optimizer", default=optimizer, choices=["adam", "sgd"])
    p.add_argument("--momentum", type=float, default=0.0 if optimizer == "adam" else 0.5, help="SGD momentum")
    p.add_argument("--lr-schedule", default=schedule, choices=["constant", "linear", "cosine"])
    p.add_argument("--patience", type=int, default=20, help="validations without improvement before stopping (0: never)")
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    p.add_argument("--seed", type=int, default=0, help="seeds initial weights, shuffling and noise")
    p.add_argument("--max-train", type=int, default=None, help="train on the first N training examples only")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nade", help="NADE (Larochelle & Murray 2011) on binary vectors")
    _common_options(p, epochs=300, lr=1e-3, batch=100, optimizer="adam", schedule="cosine")
    p.add_argument("--hidden-dim", type=int, default=500, help="H (paper: 500)")
    p.add_argument("--order-agnostic", action="store_true", help="a random ordering per minibatch (Uria et al. 2014)")
    p.add_argument("--eval-orderings", type=int, default=0, help="orderings in the test ensemble (0: natural only)")
    p.add_argument("--backend", default="auto", choices=["auto", "kernel", "torch"])
    p.set_defaults(func=cmd_train, model_name="nade")

    p = sub.add_parser("made", help="MADE (Germain et al. 2015): masked autoencoder density estimator")
    _common_options(p, epochs=500, lr=1e-3, batch=100, optimizer="adam", schedule="constant")
    p.add_argument("--hidden-sizes", type=int, nargs="+", default=[500], help="units per hidden layer (the official code's MNIST command: 8000 8000)")
    p.add_argument("--masks", type=int, default=1, help="mask sets trained (paper: 1 or 32)")
    p.add_argument("--order-agnostic", action="store_true", help="each mask set gets its own random ordering")
    p.add_argument("--eval-masks", type=int, default=None, help="mask sets in the test ensemble (default: all)")
    p.add_argument("--direct-connection", action="store_true", help="masked direct input-output weights")
    p.add_argument("--mask-seed", type=int, default=0)
    p.set_defaults(func=cmd_train, model_name="made")

    p = sub.add_parser("rbm", help="binary RBM trained by CD-k or persistent CD; log Z by AIS")
    _common_options(p, epochs=100, lr=0.05, batch=100, optimizer="sgd", schedule="linear")
    p.add_argument("--hidden-dim", type=int, default=500)
    p.add_argument("--cd-k", type=int, default=1, help="Gibbs sweeps per update")
    p.add_argument("--cd", action="store_true", help="plain CD-k (chains restart at the data) instead of PCD")
    p.add_argument("--chains", type=int, default=100, help="persistent chains (PCD)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.set_defaults(func=cmd_train, model_name="rbm")


def _build(args: argparse.Namespace, n_dims: int):
    name = args.model_name
    if name == "nade":
        return NADE(NADEConfig(n_dims=n_dims, hidden_dim=args.hidden_dim, order_agnostic=args.order_agnostic,
                               eval_orderings=args.eval_orderings, backend=args.backend))
    if name == "made":
        return MADE(MADEConfig(n_dims=n_dims, hidden_sizes=args.hidden_sizes, n_masks=args.masks,
                               order_agnostic=args.order_agnostic, eval_masks=args.eval_masks,
                               direct_connection=args.direct_connection, mask_seed=args.mask_seed))
    return BernoulliRBM(RBMConfig(n_dims=n_dims, hidden_dim=args.hidden_dim, cd_k=args.cd_k, persistent=not args.cd,
                                  n_chains=args.chains, weight_decay=args.weight_decay))


def cmd_train(args: argparse.Namespace) -> int:
    return run_distributed(_cmd_train_in_group, args)


def _cmd_train_in_group(args: argparse.Namespace, ctx) -> int:
    run = RunDirectory(args.out)
    if args.data and args.dynamic_binarization:
        raise ValueError("--data and --dynamic-binarization exclude each other")
    if args.data:
        spec = {"source": "file", "path": str(Path(args.data).resolve())}
    else:
        data_dir = str(resolve_data_dir(args.data_dir).resolve())
        spec = {"source": "mnist-dynamic", "data_dir": data_dir, "binarize_seed": 1234} if args.dynamic_binarization else {
            "source": "binarized-mnist", "data_dir": data_dir}
    data = load_data(spec)
    train, valid = data["train"], data["valid"]
    if args.max_train is not None:
        if args.max_train < 1:
            raise ValueError(f"--max-train must be >= 1, got {args.max_train}")
        train = train[: args.max_train]
    batch_transform = None
    fit_train = train
    if args.dynamic_binarization:
        batch_transform = DynamicBinarizer(train, seed=args.seed)
    with seeded(args.seed):
        model = _build(args, train.shape[1])
    train_config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, optimizer=args.optimizer,
        momentum=args.momentum, lr_schedule=args.lr_schedule, patience=args.patience, max_minutes=args.max_minutes,
        seed=args.seed, monitor=model.monitor, progress=not args.no_progress and sys.stderr.isatty(),
        resume=not args.no_resume,
    )
    if not args.no_resume and run.file("checkpoint.safetensors").is_file() and run.file(run.CONFIG).is_file():
        previous = run.read_config()
        changed = {k: (previous.get("model_config", {}).get(k), v) for k, v in model.config.to_dict().items()
                   if previous.get("model_config", {}).get(k) != v}
        if previous.get("model") != args.model_name or changed:
            raise ValueError(f"{run.path} holds a checkpoint of a different model ({previous.get('model')}, changed "
                             f"fields (checkpoint, now): {changed}); pass --no-resume or choose another --out")
    if ctx.is_main:
        _write_config(run, args, model, train_config, spec, train, valid, ctx.world_size)
    log.info("%s: train %d x %d, valid %d (held out; the test split is not touched)", args.model_name, *train.shape, valid.shape[0])
    if args.model_name == "rbm":
        if args.dynamic_binarization:
            raise ValueError("the RBM command trains on fixed binary data; drop --dynamic-binarization")
        model.fit(fit_train, valid, train_config, run_dir=str(run.path))
    else:
        model.fit(fit_train, valid, train_config, run_dir=str(run.path), batch_transform=batch_transform)
    if not ctx.is_main:
        return 0
    result = model.train_result_
    run.save_model(args.model_name, model)
    run.plot_learning_curve("train_loss", model.monitor)
    log.info("stopped after %d epochs (%s) in %.0f s; best %s %.2f at epoch %s", result.epochs_completed,
             result.stop_reason, result.seconds, model.monitor, result.best_value or float("nan"), result.best_epoch)
    print(f"run directory: {run.path}")
    return 0


def _write_config(run, args, model, train_config, spec, train, valid, world_size) -> None:
    run.write_config({
        "model": args.model_name, "model_config": model.config.to_dict(), "train_config": train_config.to_dict(),
        "data": spec | {"n_train": int(train.shape[0]), "n_valid": int(valid.shape[0]),
                        "dynamic_binarization": bool(args.dynamic_binarization)},
        "seed": args.seed,
        "world_size": world_size,
    })


# ---------------------------------------------------------------- evaluate
def evaluate(args: argparse.Namespace) -> int:
    """``latentnlp evaluate RUN_DIR`` for nade/made/rbm: NLL in nats per example, estimator named."""
    run = RunDirectory(args.run_dir)
    config = run.read_config()
    model = run.load_model()
    x = load_data(config["data"], args.data_dir)[args.split]
    name = config["model"]
    if name == "rbm":
        chains = 100 if args.ais_chains is None else args.ais_chains
        temperatures = 14500 if args.ais_temperatures is None else args.ais_temperatures
        report = model.evaluate(x, ais_chains=chains, ais_betas=temperatures, seed=args.seed)
    elif name == "made":
        report = model.evaluate(x, n_masks=args.masks)
    else:
        report = model.evaluate(x, n_orderings=args.orderings, seed=args.seed)
    print(f"{name} {run.path} on the {args.split} split")
    print(report.format())
    existing = json.loads(run.file(run.EVALUATION).read_text()) if run.file(run.EVALUATION).is_file() else {}
    existing[args.split] = report.to_dict()
    run.write_evaluation(existing)
    return 0


def add_evaluate_options(ev: argparse.ArgumentParser) -> None:
    """Options of ``latentnlp evaluate`` that only density runs read."""
    ev.add_argument("--ais-chains", type=int, default=None, help="RBM: AIS runs (default and paper: 100); RSM: chains (default 100)")
    ev.add_argument("--ais-temperatures", type=int, default=None,
                    help="RBM: AIS temperatures (default and paper: 14,500); RSM: temperatures in [0, 1] (default 1,000)")
    ev.add_argument("--masks", type=int, default=None, help="MADE: mask sets in the ensemble (default: the run's)")
    ev.add_argument("--orderings", type=int, default=None, help="NADE: random orderings in the ensemble")


# ------------------------------------------------------------------ sample
def save_image_grid(samples: torch.Tensor, path: str | Path, title: str | None = None) -> Path:
    """Write ``(n, D)`` samples as a PNG grid (square images when ``D`` is a square, else one strip per sample)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, D = samples.shape
    side = math.isqrt(D)
    shape = (side, side) if side * side == D else (1, D)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(samples[i].reshape(shape).numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    if title:
        fig.suptitle(title, fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def cmd_sample(args: argparse.Namespace) -> int:
    run = RunDirectory(args.run_dir)
    config = run.read_config()
    if config.get("model") not in MODELS:
        raise ValueError(f"{args.run_dir}: cannot sample a {config.get('model')!r} run; sample knows {list(MODELS)}")
    n = 64 if args.n is None else args.n
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    model = run.load_model()
    samples = model.sample(n, torch.Generator().manual_seed(args.seed))
    out = Path(args.out) if args.out else run.file("samples.png")
    save_image_grid(samples, out, title=f"{config['model']} samples (seed {args.seed})")
    print(f"wrote {out}")
    return 0
