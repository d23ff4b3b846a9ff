"""NVDM commands: ``train nvdm``, ``evaluate`` of an NVDM run, ``topics``, ``neighbors``, ``transform``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from ..data.bow import BowCorpus
from ..data.newsgroups import load_20news
from ..data.paths import resolve_data_dir
from ..models.document.nvdm import NVDM, NVDMConfig
from ..runs import RunDirectory
from ..training.distributed import run_distributed
from ..training.seeding import seeded
from ..training.trainer import TrainConfig

log = logging.getLogger("latentnlp.commands.nvdm")

# Settings of the toolkit's NVDM recipe; the paper's own values are in NVDMConfig / TrainConfig docs.
NVDM_DEFAULTS = dict(epochs=500, batch_size=64, lr=3e-4, patience=10, valid_fraction=0.1)


def load_splits(dataset: str, data_dir: str | None, valid_fraction: float, split_seed: int) -> dict[str, BowCorpus]:
    """``train`` (minus the held-out part), ``valid`` (held out of train) and ``test`` of a bag-of-words dataset."""
    corpora = load_20news(data_dir, folder=dataset)
    train, valid = corpora["train"].split(valid_fraction, seed=split_seed)
    return {"train": train, "valid": valid, "test": corpora["test"]}


def write_run_metadata(
    run: RunDirectory,
    model_config: NVDMConfig,
    train_config: TrainConfig,
    dataset: str,
    data_dir: str,
    valid_fraction: float,
    split_seed: int,
    train: BowCorpus,
    valid: BowCorpus,
    seed: int,
    world_size: int = 1,
) -> None:
    """``config.json`` and ``vocab.txt`` of an NVDM run, so ``evaluate``/``topics`` can find model and data."""
    run.write_config(
        {
            "model": "nvdm",
            "model_config": model_config.to_dict(),
            "train_config": train_config.to_dict(),
            "data": {
                "dataset": dataset,
                "data_dir": data_dir,
                "valid_fraction": valid_fraction,
                "split_seed": split_seed,
                "n_train": len(train),
                "n_valid": len(valid),
            },
            "seed": seed,
            "world_size": world_size,
        }
    )
    run.write_vocab(train.vocab)


# ------------------------------------------------------------------- train
def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nvdm", help="Neural Variational Document Model (Miao et al. 2016)")
    p.add_argument("--data-dir", help="folder holding DATASET/ (default: $LATENTNLP_DATA, then ~/.cache/latentnlp)")
    p.add_argument("--dataset", default="20news-nvdm", help="folder of train.feat/test.feat/vocab.new (default: %(default)s)")
    p.add_argument("--out", required=True, help="run directory to create or resume")
    p.add_argument("--latent-dim", type=int, default=50, help="K (paper: 50 and 200; default %(default)s)")
    p.add_argument("--hidden-dim", type=int, default=500, help="encoder width (paper: 500)")
    p.add_argument("--encoder-layers", type=int, default=1, help="encoder hidden layers (paper's code: 1)")
    p.add_argument("--activation", default="tanh", choices=["tanh", "relu", "sigmoid"], help="(paper's code: tanh)")
    p.add_argument("--decoder-bias-init", default="unigram", choices=["unigram", "zero"])
    p.add_argument("--epochs", type=int, default=NVDM_DEFAULTS["epochs"], help="max passes over train (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=NVDM_DEFAULTS["batch_size"], help="(paper: 64)")
    p.add_argument("--lr", type=float, default=NVDM_DEFAULTS["lr"], help="Adam step size (paper's code: 5e-5; default %(default)s)")
    p.add_argument("--alternate", action="store_true", help="paper's alternating encoder/decoder updates")
    p.add_argument("--alternate-every", type=int, default=10, help="epochs per phase with --alternate (paper's code: 10)")
    p.add_argument("--patience", type=int, default=NVDM_DEFAULTS["patience"], help="validations without improvement before stopping (0: never)")
    p.add_argument("--validate-every", type=int, default=1)
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    p.add_argument("--valid-fraction", type=float, default=NVDM_DEFAULTS["valid_fraction"], help="share of train held out for validation")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/valid split (fixed so runs compare)")
    p.add_argument("--seed", type=int, default=0, help="seeds initial weights, shuffling and noise")
    p.add_argument("--max-train-docs", type=int, default=None, help="train on the first N training documents only (quick runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    return run_distributed(_cmd_train_in_group, args)


def _cmd_train_in_group(args: argparse.Namespace, ctx) -> int:
    run = RunDirectory(args.out)
    data_dir = resolve_data_dir(args.data_dir).resolve()
    splits = load_splits(args.dataset, str(data_dir), args.valid_fraction, args.split_seed)
    train, valid = splits["train"], splits["valid"]
    if args.max_train_docs is not None:
        if args.max_train_docs < 1:
            raise ValueError(f"--max-train-docs must be >= 1, got {args.max_train_docs}")
        train = train.subset(list(range(min(args.max_train_docs, len(train)))))
    model_config = NVDMConfig(
        vocab_size=train.vocab_size,
        latent_dim=args.latent_dim,
        hidden_dim=args.hidden_dim,
        encoder_layers=args.encoder_layers,
        activation=args.activation,
        decoder_bias_init=args.decoder_bias_init,
    )
    train_config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        alternate=args.alternate,
        alternate_every=args.alternate_every,
        validate_every=args.validate_every,
        patience=args.patience,
        max_minutes=args.max_minutes,
        seed=args.seed,
        progress=not args.no_progress and sys.stderr.isatty(),
        resume=not args.no_resume,
    )
    if not args.no_resume and run.file("checkpoint.safetensors").is_file() and run.file(run.CONFIG).is_file():
        previous = run.read_config().get("model_config", {})
        changed = {k: (previous.get(k), v) for k, v in model_config.to_dict().items() if previous.get(k) != v}
        if changed:
            raise ValueError(
                f"{run.path} holds a checkpoint of a different model (field: (checkpoint, now) = {changed}); "
                "pass --no-resume to start over or choose another --out"
            )
    if ctx.is_main:
        write_run_metadata(
            run, model_config, train_config, args.dataset, str(data_dir), args.valid_fraction, args.split_seed,
            train, valid, args.seed, ctx.world_size,
        )
        log.info("train %d docs / %d tokens, valid %d docs (held out of train)", len(train), train.n_tokens, len(valid))
    with seeded(args.seed):
        model = NVDM(model_config)
    model.fit(train, valid, train_config, run_dir=str(run.path))
    result = model.train_result_
    if ctx.is_main:
        run.save_model("nvdm", model)
        run.plot_learning_curve("train_loss", "valid_perplexity_bound")
        log.info(
            "stopped after %d epochs (%s) in %.0f s; best validation per-document perplexity bound %.1f at epoch %s",
            result.epochs_completed, result.stop_reason, result.seconds, result.best_value or float("nan"), result.best_epoch,
        )
        print(f"run directory: {run.path}")
    return 0


# ---------------------------------------------------------------- evaluate
def _load_run_and_split(args: argparse.Namespace) -> tuple[RunDirectory, dict, NVDM, BowCorpus]:
    """The run directory, its config, its model and the ``--split`` of the data it was trained on."""
    run = RunDirectory(args.run_dir)
    config = run.read_config()
    model = run.load_model()
    data = config["data"]
    splits = load_splits(data["dataset"], args.data_dir or data["data_dir"], data["valid_fraction"], data["split_seed"])
    return run, config, model, splits[args.split]


def evaluate(args: argparse.Namespace) -> int:
    """``latentnlp evaluate RUN_DIR`` for an NVDM run: perplexities, bound and IW estimate."""
    run, config, model, corpus = _load_run_and_split(args)
    data = config["data"]
    report = model.evaluate(corpus, elbo_samples=args.elbo_samples, iw_samples=args.iw_samples, seed=args.seed)
    print(f"{config['model']} {run.path} on {data['dataset']} {args.split}")
    print(report.format())
    existing = {}
    if run.file(run.EVALUATION).is_file():
        existing = json.loads(run.file(run.EVALUATION).read_text())
    existing[args.split] = report.to_dict()
    run.write_evaluation(existing)
    return 0


# ----------------------------------------------------------- interpretation
def cmd_neighbors(args: argparse.Namespace) -> int:
    run = RunDirectory(args.run_dir)
    model = run.load_model()
    if not hasattr(model, "nearest_words"):
        raise ValueError(f"{run.path}: a {run.read_config().get('model')!r} model has no word embeddings to search")
    for word, sim in model.nearest_words(args.word, run.read_vocab(), n_words=args.n_words):
        print(f"{word}\t{sim:.3f}")
    return 0


def cmd_transform(args: argparse.Namespace) -> int:
    _, _, model, corpus = _load_run_and_split(args)
    means = model.transform(corpus).numpy()  # (D, K)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        header = "label," + ",".join(f"z{k}" for k in range(means.shape[1]))
        labels = corpus.labels if corpus.labels is not None else np.zeros(len(corpus), dtype=np.int64)
        np.savetxt(out, np.column_stack([labels, means]), delimiter=",", header=header, comments="", fmt="%.6g")
    else:
        np.save(out, means, allow_pickle=False)
    print(f"wrote posterior means of {means.shape[0]} documents ({means.shape[1]} dimensions) to {out}")
    return 0


def add_root_parsers(sub: argparse._SubParsersAction) -> None:
    """``topics``, ``neighbors`` and ``transform``."""
    tp = sub.add_parser("topics", help="top words of each latent dimension")
    tp.add_argument("run_dir")
    tp.add_argument("--n-words", type=int, default=10)
    tp.add_argument("--dims", type=int, nargs="*", help="only these dimensions")
    tp.add_argument("--npmi", action="store_true", help="NPMI coherence of each dimension's words (training split)")
    tp.add_argument("--data-dir", help="override the data directory recorded in the run (for --npmi)")

    nb = sub.add_parser("neighbors", help="nearest words in the decoder's embedding space")
    nb.add_argument("run_dir")
    nb.add_argument("word")
    nb.add_argument("--n-words", type=int, default=10)
    nb.set_defaults(func=cmd_neighbors)

    tf = sub.add_parser("transform", help="map documents to their posterior means")
    tf.add_argument("run_dir")
    tf.add_argument("--data-dir")
    tf.add_argument("--split", default="test", choices=["train", "valid", "test"])
    tf.add_argument("--out", required=True, help=".npy (numpy, no pickle) or .csv with the label first")
    tf.set_defaults(func=cmd_transform)
