"""Supervised sequence taggers on column files: ``train memm|crf|bilstm-crf``, ``tag`` and ``evaluate``.

    latentnlp train crf|memm --train FILE [--dev FILE | --dev-fraction 0.1 --split-seed 0]
                             --columns NAME... --token-column NAME --tag-column NAME
                             [--feature-columns NAME...] [--scheme iob1|iob2|iobes [--train-scheme S]]
                             [--c2 1.0] [--max-iterations 200] [--window 2] [--affix 4]
                             [--transitions all|observed] [--min-count 1] --out RUN_DIR [--seed S]
    latentnlp train bilstm-crf ... (same data options)
                             [--epochs 30] [--batch-size 32] [--lr 1e-3] [--hidden 100] [--word-dim 100]
                             [--char-dim 25] [--char-hidden 25] [--feature-dim 25] [--dropout 0.5]
                             [--word-dropout 0] [--patience 5] [--max-minutes M] [--grad-clip 5]
                             [--lowercase-words] [--device auto|cpu|cuda] [--no-progress] [--no-resume]
    latentnlp tag RUN_DIR [--input-format text|conll] [--nbest K] < input
    latentnlp evaluate RUN_DIR --test FILE

Data. ``--train`` (and ``--dev``, ``--test``) are column files read by
:func:`latentnlp.data.columns.read_columns`: CoNLL whitespace columns, one token
per line and a blank line between sentences (CoNLL-2000: ``--columns word pos
chunk``), or CoNLL-U for a ``.conllu`` file, whose columns are named ``form``,
``lemma``, ``upos`` and ``xpos`` (``--columns form upos`` keeps two of them;
default all four). ``--token-column`` (default: the first column) holds the
tokens, ``--tag-column`` (default: the last column) the gold tags, and
``--feature-columns`` extra discrete inputs (CoNLL-2000's POS tags): feature
templates of the MEMM / CRF (:class:`~latentnlp.models.sequence.features.FeatureTemplates`),
embeddings of the BiLSTM-CRF (whose ``--sparse-features`` also feed them, with the
words, to the CRF's templates connected to its output scores). The tag column can be neither the token column nor
a feature column.

Development set. Without ``--dev``, ``round(--dev-fraction * D)`` training
sentences (default 10%) are held out at random, seeded by ``--split-seed``
(:meth:`~latentnlp.data.columns.ColumnCorpus.split`); the model is trained on
the rest. The dev set is scored after training (a log line and
``dev_metrics.json``) and is what the BiLSTM-CRF's early stopping selects on:
conlleval chunk F1 when ``--scheme`` is given, else token accuracy. The test
file is never read by ``train``.

Chunk schemes. ``--scheme`` names the scheme of the tag column (``iob1``,
``iob2``, ``iobes``; :mod:`latentnlp.evaluation.chunking`): the training tags
are checked against it, and dev / test sets are scored with conlleval's chunk
precision, recall and F1. ``--train-scheme`` trains the model on the tags
converted to another scheme (e.g. ``iobes``); its predictions are converted back
to ``--scheme`` for output and scoring.

``tag`` reads standard input:

* ``--input-format text`` (default): one sentence per line, whitespace-separated
  tokens; only for a model without feature columns. Output: ``token TAG`` lines.
  An empty input line gives an empty block (just the blank line), so output
  blocks stay aligned with input lines.
* ``--input-format conll``: the training file's format and columns, the tag
  column optional (CoNLL-U for a run trained on a ``.conllu`` file). Output: the
  input columns (space-separated; for CoNLL-U the run's kept columns,
  tab-separated) with the predicted tag appended as the last column, so
  ``latentnlp tag RUN --input-format conll < test.txt | conlleval`` scores a file
  that has gold tags.

A blank line follows every sentence. With ``--nbest K`` the last ``K`` columns
are the ``K`` most probable tag sequences, best first (``_`` where the sentence
has fewer allowed sequences), and each sentence is preceded by a comment line
``# nbest p(z | x): p_1 ... p_K``. Unknown words are fine (unseen features are
dropped; the BiLSTM-CRF maps them to ``<unk>``). Input without a sentence is an
error.

``evaluate RUN_DIR --test FILE`` reads the test file with the run's column names
and prints the token accuracy (overall and on words known / unknown to the
model) and, with a scheme, conlleval's chunk report
(:meth:`~latentnlp.evaluation.chunking.ChunkScores.format`); it writes
``evaluation.json`` (keyed by the test file) and ``confusion.png`` (the tag
confusion matrix, rows gold, row-normalised).

Run directory (see :mod:`latentnlp.runs`)::

    config.json          {"model": "memm" | "crf" | "bilstm-crf", "model_config", "train", "data", "seed", "world_size"}
                         data: train / dev sources (dev: a file, or held out of train: fraction and split seed),
                         format, columns, token / tag / feature columns, scheme, train_scheme, tags, sizes
    dev_metrics.json     dev-set scores of the final model (token accuracy; chunk P / R / F1 with a scheme)
    metrics.jsonl        memm / crf: the L-BFGS objective per iteration; bilstm-crf: one line per epoch
    learning_curve.png   the same, plotted
    tagger.json          memm / crf: config, labels, feature attributes (JSON)
    tagger.safetensors   memm / crf: weights
    model.safetensors    bilstm-crf: the best-on-dev weights; the architecture and vocabularies in the header
    bilstm_crf.json      bilstm-crf: architecture and vocabularies (BiLSTMCRF.to_metadata)
    checkpoint.safetensors  bilstm-crf: full training state (resumed unless --no-resume)
    evaluation.json, confusion.png   written by ``evaluate``

Weights are only read through safetensors, everything else through JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..atomic import atomic_write_text
from ..data.columns import CONLLU_COLUMNS, ColumnCorpus, ColumnFormatError, read_columns
from ..evaluation.chunking import SCHEMES, chunk_scores, confusion_matrix_png, convert_scheme
from ..evaluation.tagging import token_accuracy
from ..runs import RunDirectory
from ..training.checkpoint import atomic_save_tensors, load_tensors
from ..training.distributed import run_distributed

__all__ = ["MODELS", "LoadedTagger", "add_tag_options", "add_train_parsers", "cmd_train", "evaluate", "load_tagger", "tag"]

log = logging.getLogger("latentnlp.commands.tagger")

MODELS = ("memm", "crf", "bilstm-crf")
INPUT_FORMATS = ("text", "conll")
DEV_METRICS = "dev_metrics.json"
CONFUSION = "confusion.png"
BILSTM_METADATA = "bilstm_crf.json"
CHECKPOINT = "checkpoint.safetensors"

Sentences = list[list[str]]


# ------------------------------------------------------------------- parsers
def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", required=True, help="training file: CoNLL columns, or CoNLL-U (.conllu)")
    dev = p.add_mutually_exclusive_group()
    dev.add_argument("--dev", help="development file (same columns); default: hold out --dev-fraction of --train")
    dev.add_argument("--dev-fraction", type=float, default=None,
                     help="share of --train held out as the development set when there is no --dev (default 0.1)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the held-out development split (default %(default)s)")
    p.add_argument("--columns", nargs="+", metavar="NAME",
                   help="names of the file's columns, in order (CoNLL-2000: word pos chunk); for .conllu files "
                        f"the columns to keep among {', '.join(CONLLU_COLUMNS)} (default: all four)")
    p.add_argument("--token-column", help="the column of the tokens (default: the first column)")
    p.add_argument("--tag-column", help="the column of the gold tags (default: the last column)")
    p.add_argument("--feature-columns", nargs="+", default=[], metavar="NAME",
                   help="extra discrete input columns used as features (e.g. pos)")
    p.add_argument("--scheme", choices=SCHEMES,
                   help="chunk scheme of the tag column: score chunks with conlleval (precision / recall / F1)")
    p.add_argument("--train-scheme", choices=SCHEMES,
                   help="train on the tags converted to this scheme; predictions are converted back to --scheme")
    p.add_argument("--seed", type=int, default=0, help="random seed (bilstm-crf: initial weights and shuffling)")
    p.add_argument("--out", required=True, help="run directory to write")


def add_train_parsers(sub: argparse._SubParsersAction) -> None:
    """``train memm``, ``train crf`` and ``train bilstm-crf``."""
    helps = {"memm": "maximum-entropy Markov model tagger (feature templates, L-BFGS)",
             "crf": "linear-chain CRF tagger (feature templates, L-BFGS)"}
    for name in ("memm", "crf"):
        p = sub.add_parser(name, help=helps[name])
        _add_data_options(p)
        p.add_argument("--c2", type=float, default=1.0, help="L2 penalty c2 * ||theta||^2 (CRFsuite's c2; default %(default)s)")
        p.add_argument("--max-iterations", type=int, default=200, help="L-BFGS iterations at most (default %(default)s)")
        p.add_argument("--window", type=int, default=2, help="token window w[-k]..w[k] of the features (default %(default)s)")
        p.add_argument("--affix", type=int, default=4, help="prefixes / suffixes up to this length (default %(default)s)")
        p.add_argument("--transitions", choices=("all", "observed"), default="all",
                       help="observed: tag bigrams never seen in training are forbidden (default %(default)s)")
        p.add_argument("--min-count", type=int, default=1,
                       help="features seen fewer times in training are dropped (default %(default)s)")
        p.set_defaults(func=cmd_train, tagger=name)

    p = sub.add_parser("bilstm-crf", help="character + word BiLSTM with a CRF layer (Lample et al. 2016)")
    _add_data_options(p)
    p.add_argument("--epochs", type=int, default=30, help="maximum passes over the training set (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per batch (default %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam step size (default %(default)s)")
    p.add_argument("--hidden", type=int, default=100, help="word BiLSTM units per direction (paper: 100)")
    p.add_argument("--word-dim", type=int, default=100, help="word embedding size (paper: 100)")
    p.add_argument("--char-dim", type=int, default=25, help="character embedding size (paper: 25)")
    p.add_argument("--char-hidden", type=int, default=25,
                   help="character BiLSTM units per direction (paper: 25; 0: no character encoder)")
    p.add_argument("--feature-dim", type=int, default=25, help="embedding size of each feature column (default %(default)s)")
    p.add_argument("--dropout", type=float, default=0.5, help="dropout around the word BiLSTM (paper: 0.5)")
    p.add_argument("--word-dropout", type=float, default=0.0,
                   help="probability of replacing a singleton training word by <unk> (paper: 0.5; default off)")
    p.add_argument("--lowercase-words", action="store_true", help="look words up lower-cased (characters keep case)")
    p.add_argument("--word-vectors", metavar="FILE",
                   help="pretrained word vectors (word2vec/GloVe text format, dimension --word-dim): their words join "
                        "the vocabulary and start from them (e.g. benchmarks/word_vectors.py)")
    p.add_argument("--max-word-vectors", type=int, default=None, metavar="N",
                   help="read only the first N vectors of --word-vectors (word2vec files are sorted by frequency)")
    p.add_argument("--sparse-features", action="store_true",
                   help="add the feature CRF's indicator attributes (words, affixes, shapes, feature-column n-grams) "
                        "as weights connected to the output scores (Huang et al. 2015)")
    p.add_argument("--sparse-window", type=int, default=2, help="token window of the sparse features (default %(default)s)")
    p.add_argument("--sparse-affix", type=int, default=4, help="affix length of the sparse features (default %(default)s)")
    p.add_argument("--sparse-min-count", type=int, default=1,
                   help="sparse attributes seen fewer times in training are dropped (default %(default)s)")
    p.add_argument("--sparse-c2", type=float, default=1.0,
                   help="L2 penalty c2 * ||U||^2 on the sparse weights over the training corpus, as the CRF's c2 "
                        "(default %(default)s)")
    p.add_argument("--patience", type=int, default=5,
                   help="epochs without dev improvement before stopping (0: never; default %(default)s)")
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    p.add_argument("--grad-clip", type=float, default=5.0, help="clip the gradient norm to this (default %(default)s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to train (auto: cuda when available; default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    p.set_defaults(func=cmd_train, tagger="bilstm-crf")


def add_tag_options(p: argparse.ArgumentParser) -> None:
    """``--input-format`` and ``--nbest`` of ``latentnlp tag`` (memm, crf and bilstm-crf runs)."""
    p.add_argument("--input-format", choices=INPUT_FORMATS, default=None,
                   help="text: one whitespace-tokenised sentence per line (the default); conll: the training "
                        "file's columns, blank line between sentences, tag column optional (memm/crf/bilstm-crf)")
    p.add_argument("--nbest", type=int, default=None, metavar="K",
                   help="print the K most probable tag sequences as K tag columns (memm/crf/bilstm-crf)")


# ------------------------------------------------------------------- data
def _file_format(path: str | os.PathLike) -> str:
    return "conllu" if Path(path).suffix.lower() == ".conllu" else "conll"


def _read(path: str, names: Sequence[str] | None, needed: Sequence[str], what: str) -> ColumnCorpus:
    """Read a column file and check that it has the ``needed`` columns."""
    corpus = read_columns(path, names)
    missing = [n for n in needed if n not in corpus.names]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r} (needed as {what}); the columns are {corpus.names}"
                         + ("" if names is not None else "; name them with --columns"))
    return corpus


def _data_spec(args: argparse.Namespace) -> dict[str, Any]:
    """Column roles from the flags, checked against ``--columns`` where it is given (before reading any file)."""
    names = list(args.columns) if args.columns else None
    fmt = _file_format(args.train)
    if names is not None:
        if fmt == "conllu":
            unknown = [n for n in names if n not in CONLLU_COLUMNS]
            if unknown:
                raise ValueError(f"--columns {unknown[0]!r}: a CoNLL-U file's columns are {', '.join(CONLLU_COLUMNS)}")
            names = [n for n in CONLLU_COLUMNS if n in names]  # read_columns keeps the file order
        if len(set(names)) != len(names):
            raise ValueError(f"--columns names a column twice: {names}")
    for flag, value in (("--token-column", args.token_column), ("--tag-column", args.tag_column),
                        *(("--feature-columns", f) for f in args.feature_columns)):
        if value is not None and names is not None and value not in names:
            raise ValueError(f"{flag} {value!r} is not among the columns {tuple(names)} (--columns)")
    if len(set(args.feature_columns)) != len(args.feature_columns):
        raise ValueError(f"--feature-columns names a column twice: {args.feature_columns}")
    if args.train_scheme is not None and args.scheme is None:
        raise ValueError("--train-scheme needs --scheme (the scheme of the tag column)")
    if args.dev_fraction is not None and not 0.0 < args.dev_fraction < 1.0:
        raise ValueError(f"--dev-fraction must be in (0, 1), got {args.dev_fraction}")
    return {"names": names, "format": fmt}


def _roles(args: argparse.Namespace, names: Sequence[str]) -> tuple[str, str, list[str]]:
    token = args.token_column or names[0]
    tag_col = args.tag_column or names[-1]
    features = list(args.feature_columns)
    for flag, value in (("--token-column", token), ("--tag-column", tag_col), *(("--feature-columns", f) for f in features)):
        if value not in names:
            raise ValueError(f"{args.train}: {flag} {value!r} is not a column; the columns are {tuple(names)}")
    if tag_col == token:
        raise ValueError(f"the tag column and the token column are both {token!r}")
    if tag_col in features:
        raise ValueError(f"the tag column {tag_col!r} cannot be a feature column")
    if token in features:
        raise ValueError(f"the token column {token!r} is already an input; leave it out of --feature-columns")
    return token, tag_col, features


def _check_scheme(tags: Sentences, scheme: str, source: str) -> None:
    try:
        chunk_scores(tags, tags, scheme)
    except ValueError as exc:
        raise ValueError(f"{source}: the tag column does not fit --scheme {scheme}: {exc}") from None


def _to_scheme(tags: Sentences, source: str | None, target: str | None) -> Sentences:
    if source is None or target is None or source == target:
        return [list(t) for t in tags]
    return [convert_scheme(t, source, target) for t in tags]


def _scores(pred: Sentences, gold: Sentences, scheme: str | None) -> dict[str, Any]:
    """Token accuracy and, with a scheme, conlleval chunk scores (JSON-ready)."""
    out: dict[str, Any] = {"n_sentences": len(gold), "n_tokens": sum(len(g) for g in gold),
                           "accuracy": token_accuracy(pred, gold)}
    if scheme is not None:
        cs = chunk_scores(pred, gold, scheme)
        out.update(precision=cs.precision, recall=cs.recall, f1=cs.f1, chunks=cs.to_dict())
    return out


# ------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    """``latentnlp train memm|crf|bilstm-crf``: fit and write a run directory (rank 0 writes under torchrun)."""
    return run_distributed(_train, args)


def _train(args: argparse.Namespace, ctx) -> int:
    name = args.tagger
    if name in ("memm", "crf") and ctx.enabled:
        raise ValueError(f"train {name} runs in one process (its L-BFGS is not distributed); run it without torchrun")
    spec = _data_spec(args)
    corpus = read_columns(args.train, spec["names"])
    names = list(corpus.names)
    token, tag_col, features = _roles(args, names)
    needed = [token, tag_col, *features]
    if args.dev is not None:
        train_part = corpus
        dev_part = _read(args.dev, names, needed, "a column of the training file")
        dev_record: dict[str, Any] = {"source": "file", "path": str(Path(args.dev).resolve())}
    else:
        fraction = 0.1 if args.dev_fraction is None else args.dev_fraction
        try:
            train_part, dev_part = corpus.split(fraction, args.split_seed)
        except ValueError as exc:
            raise ValueError(f"{args.train}: cannot hold out a development set: {exc}; pass --dev FILE") from None
        dev_record = {"source": "held out of train", "fraction": fraction, "split_seed": args.split_seed}
    dev_record.update(n_sentences=len(dev_part), n_tokens=dev_part.n_tokens)

    train_tags = [list(t) for t in train_part.column(tag_col)]
    dev_gold = [list(t) for t in dev_part.column(tag_col)]
    if args.scheme is not None:
        _check_scheme(train_tags, args.scheme, args.train)
        _check_scheme(dev_gold, args.scheme, args.dev or f"{args.train} (held-out dev)")
    model_tags = _to_scheme(train_tags, args.scheme, args.train_scheme)
    train_words = train_part.column(token)
    train_feats = {f: train_part.column(f) for f in features}
    dev_words = dev_part.column(token)
    dev_feats = {f: dev_part.column(f) for f in features}

    run = RunDirectory(args.out)
    data = {
        "train": str(Path(args.train).resolve()), "format": spec["format"], "columns": names,
        "token_column": token, "tag_column": tag_col, "feature_columns": features,
        "scheme": args.scheme, "train_scheme": args.train_scheme,
        "n_train_sentences": len(train_part), "n_train_tokens": train_part.n_tokens, "dev": dev_record,
        "tags": sorted({t for s in train_tags for t in s}),
    }
    log.info("%s: train %d sentences / %d tokens, dev %d sentences (%s)", name, len(train_part), train_part.n_tokens,
             len(dev_part), dev_record["source"])
    if name in ("memm", "crf"):
        model_config, train_record = _train_loglinear(args, run, train_words, model_tags, train_feats, features)
    else:
        model_config, train_record = _train_bilstm(args, run, ctx, data, (train_words, train_feats, model_tags),
                                                   (dev_words, dev_feats, _to_scheme(dev_gold, args.scheme, args.train_scheme)))
    if not ctx.is_main:
        return 0
    config = {"model": name, "model_config": model_config, "train": train_record, "data": data,
              "seed": args.seed, "world_size": ctx.world_size}
    run.write_config(config)
    tagger = load_tagger(run)
    pred = tagger.predict(dev_words, dev_feats)
    dev_scores = _scores(pred, dev_gold, args.scheme)
    atomic_write_text(run.file(DEV_METRICS), json.dumps({"dev": dev_record, "scores": dev_scores}, indent=2) + "\n")
    log.info("dev: %d sentences / %d tokens, token accuracy %.2f%%%s", dev_scores["n_sentences"], dev_scores["n_tokens"],
             100 * dev_scores["accuracy"],
             f", chunk precision {100 * dev_scores['precision']:.2f}%, recall {100 * dev_scores['recall']:.2f}%, "
             f"F1 {100 * dev_scores['f1']:.2f}" if args.scheme else "")
    print(f"run directory: {run.path}")
    return 0


def _train_loglinear(args, run: RunDirectory, words, tags, feats, features) -> tuple[dict, dict]:
    from ..models.sequence.crf import FeatureCRF
    from ..models.sequence.features import FeatureTemplates
    from ..models.sequence.loglinear import LogLinearConfig
    from ..models.sequence.memm import MEMM

    config = LogLinearConfig(
        templates=FeatureTemplates(window=args.window, affix=args.affix, columns=tuple(features)),
        min_count=args.min_count, c2=args.c2, max_iterations=args.max_iterations, transitions=args.transitions,
    )
    model = (FeatureCRF if args.tagger == "crf" else MEMM)(config)
    records: list[dict] = []
    model.fit(words, tags, feats, callback=lambda it, f: records.append({"iteration": it, "objective": f}))
    run.path.mkdir(parents=True, exist_ok=True)
    model.save(run.path)
    atomic_write_text(run.file(run.METRICS), "".join(json.dumps(r) + "\n" for r in records))
    run.plot_learning_curve("objective", x_key="iteration", train_label="penalised negative log-likelihood (nats)")
    log.info("%s: %d features x %d tags, %d L-BFGS iterations in %.1f s", args.tagger, len(model.index_),
             model.num_labels, model.n_iter_, model.fit_seconds_)
    return config.to_dict(), {"n_iter": model.n_iter_, "final_objective": records[-1]["objective"] if records else None,
                              "fit_seconds": model.fit_seconds_, "n_features": len(model.index_)}


def _train_bilstm(args, run: RunDirectory, ctx, data: dict, train, dev) -> tuple[dict, dict]:
    from ..models.sequence.features import FeatureTemplates
    from ..models.sequence.neural_crf import BiLSTMCRFConfig, train_bilstm_crf
    from ..training.seeding import seeded
    from ..training.trainer import TrainConfig

    features = data["feature_columns"]
    model_config = BiLSTMCRFConfig(
        word_dim=args.word_dim, char_dim=args.char_dim, char_hidden=args.char_hidden,
        feature_dims={f: args.feature_dim for f in features}, hidden=args.hidden, dropout=args.dropout,
        word_dropout=args.word_dropout, lowercase_words=args.lowercase_words,
        sparse_templates=FeatureTemplates(window=args.sparse_window, affix=args.sparse_affix,
                                          columns=tuple(features)).to_dict() if args.sparse_features else None,
        sparse_min_count=args.sparse_min_count,
        sparse_l2=args.sparse_c2 / max(len(train[0]), 1) if args.sparse_features else 0.0,
    )
    scheme = args.train_scheme or args.scheme
    train_config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, patience=args.patience,
        max_minutes=args.max_minutes, grad_clip=args.grad_clip if args.grad_clip > 0 else math.inf,
        monitor="valid_neg_f1" if scheme else "valid_error", seed=args.seed,
        progress=not args.no_progress and sys.stderr.isatty(), resume=not args.no_resume,
    )
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    if not args.no_resume and run.file(CHECKPOINT).is_file() and run.file(run.CONFIG).is_file():
        previous = run.read_config()
        same = (previous.get("model") == "bilstm-crf" and previous.get("model_config") == model_config.to_dict()
                and {k: previous.get("data", {}).get(k) for k in data} == data)
        if not same:
            raise ValueError(f"{run.path} holds a checkpoint of another model or data; "
                             "pass --no-resume to start over or choose another --out")
    vectors = None
    train_record: dict[str, Any] = {"train_config": train_config.to_dict(), "device": device}
    if args.word_vectors:
        from ..data.vectors import read_word_vectors

        vectors = read_word_vectors(args.word_vectors, max_words=args.max_word_vectors)
        train_record["word_vectors"] = {"file": str(Path(args.word_vectors).resolve()), "words": len(vectors),
                                        "dim": vectors.dim}
    if ctx.is_main:  # written first, so that a resumed run can be checked against it
        run.write_config({"model": "bilstm-crf", "model_config": model_config.to_dict(), "train": train_record,
                          "data": data, "seed": args.seed, "world_size": ctx.world_size})

    def dev_scorer(pred, gold):
        cs = chunk_scores(pred, gold, scheme)
        return {"f1": cs.f1, "precision": cs.precision, "recall": cs.recall}

    with seeded(args.seed):  # initial weights, and the dropout masks (torch's global RNG, restored afterwards)
        model, result = train_bilstm_crf(train, dev, model_config, train_config, run_dir=run.path, seed=args.seed,
                                         dev_scorer=dev_scorer if scheme else None, device=device,
                                         word_vectors=vectors)
    if ctx.is_main:
        model.to("cpu")
        atomic_save_tensors(run.file(run.WEIGHTS), {k: v.cpu() for k, v in model.state_dict().items()},
                            {"model": "bilstm-crf", "metadata": model.to_metadata()})
        run.plot_learning_curve("train_loss", "valid_f1" if scheme else "valid_accuracy",
                                train_label="training loss (nats / sentence)")
        log.info("bilstm-crf: stopped after %d epochs (%s) in %.0f s; best dev epoch %s", result.epochs_completed,
                 result.stop_reason, result.seconds, result.best_epoch)
    train_record.update(epochs_completed=result.epochs_completed, best_epoch=result.best_epoch,
                        best_value=result.best_value, stop_reason=result.stop_reason, seconds=result.seconds)
    return model_config.to_dict(), train_record


# ------------------------------------------------------------------- loading
class LoadedTagger:
    """A trained memm / crf / bilstm-crf run, predicting tags in the run's ``--scheme``.

    Attributes:
        name: the model name of ``config.json``.
        config: the run's ``config.json``.
        model: the :class:`~latentnlp.models.sequence.crf.FeatureCRF`, :class:`~latentnlp.models.sequence.memm.MEMM`
            or :class:`~latentnlp.models.sequence.neural_crf.BiLSTMCRF`.
    """

    def __init__(self, name: str, config: dict, model: Any) -> None:
        self.name, self.config, self.model = name, config, model
        data = config["data"]
        self.scheme, self.train_scheme = data.get("scheme"), data.get("train_scheme")
        self.features: list[str] = list(data.get("feature_columns", []))
        if name == "bilstm-crf":
            self._known = None
        else:
            self._known = {a[len("w[0]="):] for a in model.index_.attributes_ if a.startswith("w[0]=")}

    def _back(self, tags: list[str]) -> list[str]:
        if self.train_scheme is None or self.scheme is None or self.train_scheme == self.scheme:
            return tags
        return convert_scheme(tags, self.train_scheme, self.scheme)

    def predict(self, words: Sequence[Sequence[str]], features: Mapping[str, Sequence[Sequence[str]]]) -> Sentences:
        """Viterbi tags of ``D`` non-empty sentences (``features``: the run's feature columns)."""
        if self.name == "bilstm-crf":
            pred = self.model.tag(words, features or None)
        else:
            pred = self.model.predict(words, features)
        return [self._back(list(p)) for p in pred]

    def nbest(self, words, features, k: int) -> list[list[tuple[float, list[str]]]]:
        """Up to ``k`` ``(p(z | x), tags)`` per sentence, most probable first."""
        if self.name != "bilstm-crf":
            out = self.model.nbest(words, features, n=k)
        else:
            out = self._bilstm_nbest(words, features, k)
        return [[(p, self._back(list(t))) for p, t in sent] for sent in out]

    def _bilstm_nbest(self, words, features, k: int, batch_size: int = 64):
        from ..structured.linear_chain import kbest, log_partition

        model = self.model
        items = model.encode_sentences(words, features or None)
        out: list[list[tuple[float, list[str]]]] = []
        with torch.no_grad():
            for i in range(0, len(items), batch_size):
                batch = model.collate(items[i:i + batch_size])
                unary = model.unary(batch)
                lengths = batch.lengths.to(unary.device)
                pot = model.crf.potentials(unary, lengths)
                paths, scores = kbest(pot, lengths, k)
                log_z = log_partition(pot, lengths)
                for b in range(len(batch)):
                    L = int(lengths[b])
                    out.append([(float(torch.exp(scores[b, r] - log_z[b])),
                                 [model.tags.word(t) for t in paths[b, r, :L].tolist()])
                                for r in range(k) if torch.isfinite(scores[b, r])])
        return out

    def known(self, word: str) -> bool:
        """Whether ``word`` was seen in training (has a ``w[0]`` feature; a BiLSTM-CRF word-vocabulary entry)."""
        if self._known is not None:
            return word in self._known
        form = word.lower() if self.model.config.lowercase_words else word
        return self.model.words.get(form) > 1  # ids 0, 1: <pad>, <unk>


def load_tagger(run: RunDirectory) -> LoadedTagger:
    """The tagger of a memm / crf / bilstm-crf run directory.

    Raises:
        FileNotFoundError: a file of the run is missing.
        ValueError: the run is not a memm / crf / bilstm-crf run, or its weights do not fit its description.
    """
    config = run.read_config()
    name = config.get("model")
    if name not in MODELS:
        raise ValueError(f"{run.path} holds a {name!r} run, not one of {MODELS}")
    if name == "crf":
        from ..models.sequence.crf import FeatureCRF

        return LoadedTagger(name, config, FeatureCRF.load(run.path))
    if name == "memm":
        from ..models.sequence.memm import MEMM

        return LoadedTagger(name, config, MEMM.load(run.path))
    from ..models.sequence.neural_crf import BiLSTMCRF

    tensors, meta = load_tensors(run.file(run.WEIGHTS))
    if meta.get("model") != "bilstm-crf" or "metadata" not in meta:
        raise ValueError(f"{run.file(run.WEIGHTS)} holds a {meta.get('model')!r} model, not a bilstm-crf")
    model = BiLSTMCRF.from_metadata(meta["metadata"])
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise ValueError(f"{run.file(run.WEIGHTS)}: the weights do not fit the model described in its header: {exc}") from None
    model.eval()
    return LoadedTagger(name, config, model)


# ------------------------------------------------------------------- tag
def _read_stdin_columns(text: str, data: dict) -> tuple[ColumnCorpus, list[str]]:
    """Parse CoNLL (or CoNLL-U) text from standard input with the run's columns, the tag column optional.

    Returns the corpus and the names of the columns it has (the run's, or all but the tag column).
    """
    names, tag_col, fmt = list(data["columns"]), data["tag_column"], data.get("format", "conll")
    if fmt == "conll":
        first = next((line.split() for line in text.splitlines() if line.strip()), [])
        if len(first) == len(names):
            have = names
        elif len(first) == len(names) - 1:
            have = [n for n in names if n != tag_col]
        else:
            lineno = next(i for i, line in enumerate(text.splitlines(), 1) if line.strip())
            raise ColumnFormatError("<stdin>", lineno,
                                    f"{len(first)} columns, but this run reads {len(names)} ({' '.join(names)}) "
                                    f"or {len(names) - 1} (without the tag column {tag_col!r})")
    else:
        have = names
    fd, tmp = tempfile.mkstemp(suffix=".conllu" if fmt == "conllu" else ".txt", prefix="latentnlp-stdin-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        try:
            corpus = read_columns(tmp, have, fmt)
        except ColumnFormatError as exc:
            raise ColumnFormatError("<stdin>", exc.line, exc.reason) from None
    finally:
        os.unlink(tmp)
    return ColumnCorpus(corpus.columns, "<stdin>"), have


def tag(args: argparse.Namespace) -> int:
    """``latentnlp tag RUN_DIR [--input-format text|conll] [--nbest K]`` (see the module docstring)."""
    run = RunDirectory(args.run_dir)
    tagger = load_tagger(run)
    data = tagger.config["data"]
    fmt = getattr(args, "input_format", None) or "text"
    k = getattr(args, "nbest", None)
    if k is not None and k < 1:
        raise ValueError(f"--nbest must be >= 1, got {k}")
    text = sys.stdin.read()
    if not text.strip():
        raise ValueError("standard input is empty: give sentences to tag "
                         + ("(one per line)" if fmt == "text" else "(CoNLL columns, a blank line between sentences)"))
    sep = " "
    if fmt == "text":
        if tagger.features:
            raise ValueError(f"this {tagger.name} model reads the feature columns {tagger.features} as well as the "
                             f"tokens; plain text has none: use --input-format conll (columns {' '.join(data['columns'])})")
        words = [line.split() for line in text.splitlines()]
        rows = [[[w] for w in s] for s in words]
        feats: dict[str, list[list[str]]] = {}
    else:
        corpus, have = _read_stdin_columns(text, data)
        words = corpus.column(data["token_column"])
        feats = {f: corpus.column(f) for f in tagger.features}
        columns = [corpus.column(n) for n in have]
        rows = [[[col[d][i] for col in columns] for i in range(len(s))] for d, s in enumerate(words)]
        if data.get("format") == "conllu":
            sep = "\t"
    nonempty = [d for d, s in enumerate(words) if s]
    sub_words = [words[d] for d in nonempty]
    sub_feats = {f: [col[d] for d in nonempty] for f, col in feats.items()}
    out = sys.stdout
    if k is None:
        pred = dict(zip(nonempty, tagger.predict(sub_words, sub_feats)))
        for d, sentence in enumerate(rows):
            for row, t in zip(sentence, pred.get(d, [])):
                out.write(sep.join([*row, t]) + "\n")
            out.write("\n")
        return 0
    lists = dict(zip(nonempty, tagger.nbest(sub_words, sub_feats, k)))
    for d, sentence in enumerate(rows):
        if sentence:
            best = lists[d]
            out.write("# nbest p(z | x): " + " ".join(f"{p:.6g}" for p, _ in best) + "\n")
            for i, row in enumerate(sentence):
                out.write(sep.join([*row, *(t[i] for _, t in best), *(["_"] * (k - len(best)))]) + "\n")
        out.write("\n")
    return 0


# ------------------------------------------------------------------- evaluate
def evaluate(args: argparse.Namespace) -> int:
    """``latentnlp evaluate RUN_DIR --test FILE`` for a memm / crf / bilstm-crf run.

    Writes ``evaluation.json`` (keyed by the resolved test path, other keys kept)
    and ``confusion.png``.

    Raises:
        ValueError: without ``--test``; a test file without the run's columns.
    """
    run = RunDirectory(args.run_dir)
    config = run.read_config()
    if not getattr(args, "test", None):
        raise ValueError(f"evaluate of a {config.get('model')} run needs --test FILE (a file with the run's columns)")
    tagger = load_tagger(run)
    data = config["data"]
    names = data["columns"]
    needed = [data["token_column"], data["tag_column"], *tagger.features]
    corpus = _read(args.test, names, needed, "a column of the run")
    words = corpus.column(data["token_column"])
    feats = {f: corpus.column(f) for f in tagger.features}
    gold = [list(t) for t in corpus.column(data["tag_column"])]
    scheme = data.get("scheme")
    pred = tagger.predict(words, feats)
    report: dict[str, Any] = {"model": tagger.name, "scheme": scheme}
    report.update(_scores(pred, gold, scheme))
    known = np.array([tagger.known(w) for s in words for w in s], dtype=bool)
    flat_p = np.array([t for s in pred for t in s], dtype=object)
    flat_g = np.array([t for s in gold for t in s], dtype=object)
    right = flat_p == flat_g
    report["accuracy_known_words"] = float(right[known].mean()) if known.any() else None
    report["accuracy_unknown_words"] = float(right[~known].mean()) if (~known).any() else None
    report["unknown_word_rate"] = float((~known).mean())
    confusion_matrix_png(flat_p.tolist(), flat_g.tolist(), run.file(CONFUSION),
                         title=f"{tagger.name} on {Path(args.test).name}: tag confusion (rows gold, normalised)")
    print(f"{tagger.name} {run.path} on {args.test}: {report['n_sentences']} sentences, {report['n_tokens']} tokens")
    print(f"  {'token accuracy':24s} {100 * report['accuracy']:6.2f}%")
    for key in ("accuracy_known_words", "accuracy_unknown_words", "unknown_word_rate"):
        if report[key] is not None:
            print(f"  {key:24s} {100 * report[key]:6.2f}%")
    if scheme is not None:
        print(f"conlleval chunk scores ({scheme}):")
        print(chunk_scores(pred, gold, scheme).format())
    existing = json.loads(run.file(run.EVALUATION).read_text()) if run.file(run.EVALUATION).is_file() else {}
    existing[str(Path(args.test).resolve())] = report
    run.write_evaluation(existing)
    return 0
