"""Conditional sequence models on real data: MEMM, feature CRF (vs CRFsuite on the same features) and BiLSTM-CRF.

Tasks
-----
* ``chunking`` — CoNLL-2000 (``word POS chunk``, IOB2). The release has no
  development set: a seeded 10% of the training sentences is held out for every
  choice (``c2``, early stopping); the feature models are then refit on the whole
  training file with the chosen ``c2``. Test F1 is conlleval's (a chunk counts
  only if its type and both boundaries match).
* ``upos`` — UD English-EWT v2.16, UPOS; its own dev split chooses, test reports
  token accuracy. Multiword-token lines are skipped (words, not surface tokens).

Models (``--models``)
---------------------
* ``crf`` — :class:`latentnlp.models.sequence.crf.FeatureCRF`, L-BFGS, ``c2`` chosen on dev from ``--c2-grid``.
* ``memm`` — :class:`latentnlp.models.sequence.memm.MEMM`, same features and grid.
* ``crfsuite`` — python-crfsuite (CRFsuite 0.12, L-BFGS) on *the same attribute strings*,
  the same ``c2`` as our CRF's chosen one and the same model (``feature.possible_states``
  and ``possible_transitions`` on, i.e. every attribute x label weight, as ours).
  Timed side by side with ``crf-peer-setting``: our CRF fit with CRFsuite's exact
  model (no start/end weights) and stopping rule on the same attributes.
* ``bilstm-crf`` — :class:`latentnlp.models.sequence.neural_crf.BiLSTMCRF` (word
  embeddings + character BiLSTM [+ POS embeddings for chunking], BiLSTM, CRF),
  Adam, early stopping on dev F1 (chunking) or dev accuracy (UPOS) within ``--neural-minutes``.
  ``--sparse-features`` adds the task's feature templates as indicator weights on the output
  scores (Huang et al. 2015's BI-LSTM-CRF with features), L2 ``--sparse-c2`` as the CRF's c2.

Feature templates (one set per task, fixed in advance, not tuned on test):
chunking uses the CoNLL-2000 feature set of CRFsuite's example (words and POS
tags in a +-2 window, their bigrams, POS trigrams) plus affixes and shapes;
UPOS uses words in a +-2 window, lowercase forms, prefixes/suffixes up to 4,
shapes and orthographic flags (Ratnaparkhi 1996; Toutanova et al. 2003).

Usage::

    python benchmarks/taggers.py --data-dir ../shared/data --task chunking --models crf memm crfsuite
    python benchmarks/taggers.py --data-dir ../shared/data --task upos --models bilstm-crf --neural-minutes 40

Writes ``benchmarks/results/taggers_<task>[_<tag>].json`` (merged with what is already there, per model).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from latentnlp.data.columns import conll2000_path, read_columns
from latentnlp.data.paths import resolve_data_dir
from latentnlp.evaluation.chunking import chunk_scores
from latentnlp.evaluation.tagging import token_accuracy
from latentnlp.models.sequence.crf import FeatureCRF
from latentnlp.models.sequence.features import FeatureIndex, FeatureTemplates
from latentnlp.models.sequence.loglinear import LogLinearConfig
from latentnlp.models.sequence.memm import MEMM

RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("benchmarks.taggers")

TEMPLATES = {
    "chunking": FeatureTemplates(window=2, lowercase=True, word_bigrams=True, affix=4, shape=True, columns=("pos",),
                                 column_window=2, column_ngrams=True),
    "upos": FeatureTemplates(window=2, lowercase=True, word_bigrams=True, affix=4, shape=True),
}


def load_task(task: str, data_dir: Path):
    """``(train, dev, test, scheme)``; each split is ``(words, columns, tags)``."""
    if task == "chunking":
        train = read_columns(conll2000_path("train", data_dir), names=("word", "pos", "chunk"))
        test = read_columns(conll2000_path("test", data_dir), names=("word", "pos", "chunk"))
        rest, dev = train.split(0.1, seed=0)

        def parts(c):
            return c.column("word"), {"pos": c.column("pos")}, c.column("chunk")

        return {"train": parts(train), "train_minus_dev": parts(rest), "dev": parts(dev), "test": parts(test)}, "iob2"
    if task == "upos":
        ewt = data_dir / "ud-en-ewt"
        splits = {s: read_columns(ewt / f"en_ewt-ud-{s}.conllu", names=("form", "upos")) for s in ("train", "dev", "test")}

        def parts(c):
            return c.column("form"), {}, c.column("upos")

        out = {s: parts(c) for s, c in splits.items()}
        out["train_minus_dev"] = out["train"]  # EWT has a real dev split: no carving, no refit
        return out, None
    raise ValueError(f"unknown task {task!r}")


def score(pred, gold, scheme):
    out = {"accuracy": token_accuracy(pred, gold)}
    if scheme:
        cs = chunk_scores(pred, gold, scheme=scheme)
        out.update({"precision": cs.precision, "recall": cs.recall, "f1": cs.f1})
    return out


def main_metric(scores, scheme):
    return scores["f1"] if scheme else scores["accuracy"]


def run_feature_model(name, data, scheme, templates, c2_grid, max_iterations, refit):
    cls = {"crf": FeatureCRF, "memm": MEMM}[name]
    words, cols, tags = data["train_minus_dev"]
    selection = []
    for c2 in c2_grid:
        t0 = time.perf_counter()
        model = cls(LogLinearConfig(templates=templates, c2=c2, max_iterations=max_iterations)).fit(words, tags, cols)
        dev = score(model.predict(data["dev"][0], data["dev"][1]), data["dev"][2], scheme)
        selection.append({"c2": c2, "dev": dev, "iterations": model.n_iter_, "seconds": time.perf_counter() - t0})
        log.info("%s c2=%g dev %s (%d it, %.0f s)", name, c2, dev, model.n_iter_, time.perf_counter() - t0)
    best = max(selection, key=lambda r: main_metric(r["dev"], scheme))
    if refit or len(c2_grid) > 1:
        words, cols, tags = data["train"] if refit else data["train_minus_dev"]
        t0 = time.perf_counter()
        model = cls(LogLinearConfig(templates=templates, c2=best["c2"], max_iterations=max_iterations)).fit(words, tags, cols)
        seconds = time.perf_counter() - t0
    else:
        seconds = selection[0]["seconds"]
    t0 = time.perf_counter()
    test = score(model.predict(data["test"][0], data["test"][1]), data["test"][2], scheme)
    return {"c2": best["c2"], "selection": selection, "test": test, "fit_seconds_total": seconds,
            "lbfgs_seconds": model.fit_seconds_, "iterations": model.n_iter_, "attributes": len(model.index_),
            "labels": len(model.labels_), "tag_seconds": time.perf_counter() - t0,
            "trained_on": "train" if refit or data["train_minus_dev"] is data["train"] else "train_minus_dev"}


def run_crfsuite_pair(data, scheme, templates, c2, max_iterations, split):
    """CRFsuite and our CRF with CRFsuite's model on identical attributes: accuracy and training time side by side."""
    import pycrfsuite

    words, cols, tags = data[split]
    t0 = time.perf_counter()
    attributes = FeatureIndex(templates).attributes(words, cols)
    test_attributes = FeatureIndex(templates).attributes(data["test"][0], data["test"][1])
    attr_seconds = time.perf_counter() - t0
    out = {"attribute_extraction_seconds": attr_seconds, "c2": c2, "max_iterations": max_iterations, "trained_on": split}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        trainer = pycrfsuite.Trainer(verbose=False)
        for a, t in zip(attributes, tags):
            trainer.append(a, t)
        trainer.set_params({"c1": 0.0, "c2": c2, "max_iterations": max_iterations, "feature.possible_states": True,
                            "feature.possible_transitions": True})
        trainer.train(f"{tmp}/m.crfsuite")
        peer_seconds = time.perf_counter() - t0
        last = trainer.logparser.last_iteration
        tagger = pycrfsuite.Tagger()
        tagger.open(f"{tmp}/m.crfsuite")
        t0 = time.perf_counter()
        peer_pred = [tagger.tag(a) for a in test_attributes]
        peer_tag_seconds = time.perf_counter() - t0
        tagger.close()
    out["crfsuite"] = {"train_seconds": peer_seconds, "iterations": int(last["num"]), "objective": float(last["loss"]),
                       "test": score(peer_pred, data["test"][2], scheme), "tag_seconds": peer_tag_seconds}
    log.info("crfsuite: %s", out["crfsuite"])
    t0 = time.perf_counter()
    ours = FeatureCRF(LogLinearConfig(templates=templates, c2=c2, max_iterations=max_iterations, boundary=False))
    ours.fit_attributes(attributes, tags)
    our_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = ours.predict_attributes(test_attributes)
    out["ours"] = {"train_seconds": our_seconds, "lbfgs_seconds": ours.fit_seconds_, "iterations": ours.n_iter_,
                   "objective": ours.objective_[-1], "test": score(pred, data["test"][2], scheme),
                   "tag_seconds": time.perf_counter() - t0}
    out["time_ratio_ours_over_crfsuite"] = our_seconds / peer_seconds
    out["seconds_per_iteration"] = {"ours": our_seconds / max(ours.n_iter_, 1),
                                    "crfsuite": peer_seconds / max(int(last["num"]), 1)}
    log.info("ours: %s", out["ours"])
    return out


def run_bilstm_crf(data, scheme, minutes, epochs, seed, run_dir, args, templates):
    from latentnlp.models.sequence.neural_crf import BiLSTMCRFConfig, train_bilstm_crf
    from latentnlp.training.trainer import TrainConfig

    refit = args.refit_epochs is not None
    split = "train" if refit else "train_minus_dev"
    feature_dims = {"pos": args.pos_dim} if data["train"][1] else {}
    config = BiLSTMCRFConfig(word_dim=args.word_dim, char_dim=30, char_hidden=args.char_hidden, feature_dims=feature_dims,
                             hidden=args.hidden, dropout=args.dropout, word_dropout=args.word_dropout,
                             lowercase_words=args.lowercase_words,
                             sparse_templates=templates.to_dict() if args.sparse_features else None,
                             sparse_min_count=args.sparse_min_count,
                             sparse_l2=args.sparse_c2 / len(data[split][0]) if args.sparse_features else 0.0)
    monitor = "valid_neg_f1" if scheme else "valid_error"
    if refit:  # a fixed schedule on all of train: validated once, at the end, so the last weights are kept
        epochs = args.refit_epochs
    tc = TrainConfig(epochs=epochs, batch_size=args.batch_size, learning_rate=args.lr,
                     patience=0 if refit else args.patience, validate_every=epochs if refit else 1,
                     monitor=monitor, max_minutes=minutes, seed=seed, progress=False, grad_clip=5.0,
                     lr_schedule=args.lr_schedule)

    def scorer(pred, gold):
        return {"f1": chunk_scores(pred, gold, scheme=scheme).f1} if scheme else {}

    words, cols, tags = data[split]
    train = (words, cols or None, tags)
    dev = (data["dev"][0], data["dev"][1] or None, data["dev"][2])
    vectors = None
    if args.word_vectors:
        from latentnlp.data.vectors import read_word_vectors

        vectors = read_word_vectors(args.word_vectors)
    t0 = time.perf_counter()
    model, result = train_bilstm_crf(train, dev, config, tc, run_dir=run_dir, seed=seed,
                                     dev_scorer=scorer if scheme else None, word_vectors=vectors)
    seconds = time.perf_counter() - t0
    test_words, test_cols, test_tags = data["test"]
    pred = model.tag(test_words, test_cols or None)
    epochs_run = result.epochs_completed
    return {"config": config.to_dict(), "trained_on": "train (refit, last epoch)" if refit else "train_minus_dev",
            "word_vectors": None if vectors is None else
            {"file": args.word_vectors, "words": len(vectors), "dim": vectors.dim,
             "vocabulary": len(model.words)}, "train_config": {k: v for k, v in tc.to_dict().items() if k != "betas"},
            "test": score(pred, test_tags, scheme), "train_seconds": seconds, "trainer_seconds": result.seconds,
            "epochs_run": epochs_run, "seconds_per_epoch": result.seconds / epochs_run if epochs_run else None,
            "best_epoch": result.best_epoch, "best_dev_value": result.best_value, "stop_reason": result.stop_reason,
            "dev_history": [{k: v for k, v in h.items() if k.startswith("valid") or k == "epoch"} for h in result.history]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--task", choices=["chunking", "upos"], required=True)
    p.add_argument("--models", nargs="+", default=["crf", "memm", "crfsuite"],
                   choices=["crf", "memm", "crfsuite", "bilstm-crf"])
    p.add_argument("--c2-grid", type=float, nargs="+", default=[0.1, 1.0])
    p.add_argument("--max-iterations", type=int, default=200)
    p.add_argument("--no-refit", action="store_true", help="keep the model fit on train minus dev (chunking)")
    p.add_argument("--crfsuite-c2", type=float, default=None, help="default: our CRF's chosen c2 (or the first of the grid)")
    p.add_argument("--neural-minutes", type=float, default=40.0)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", choices=["constant", "linear", "cosine"], default="constant",
                   help="BiLSTM-CRF step-size schedule over --epochs (cosine/linear decay to 0 at the last epoch)")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--refit-epochs", type=int, default=None,
                   help="BiLSTM-CRF, chunking: train on the whole training file for exactly this many epochs (chosen "
                        "beforehand on the held-out split), keep the last weights, score test (as the CRF's refit)")
    p.add_argument("--word-vectors", default=None,
                   help="BiLSTM-CRF: pretrained word vectors, word2vec text format (benchmarks/word_vectors.py)")
    p.add_argument("--sparse-features", action="store_true",
                   help="BiLSTM-CRF: connect the feature CRF's attributes (the task's templates) to the output "
                        "scores (Huang et al. 2015)")
    p.add_argument("--sparse-min-count", type=int, default=1, help="drop sparse attributes seen fewer times in training")
    p.add_argument("--sparse-c2", type=float, default=1.0,
                   help="L2 on the sparse weights as the feature CRF's c2 (sparse_l2 = c2 / training sentences)")
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--word-dim", type=int, default=100)
    p.add_argument("--char-hidden", type=int, default=50)
    p.add_argument("--pos-dim", type=int, default=25)
    p.add_argument("--word-dropout", type=float, default=0.0)
    p.add_argument("--lowercase-words", action="store_true")
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default=None, help="BiLSTM-CRF run directory (checkpoints; resumable)")
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    data_dir = resolve_data_dir(args.data_dir)
    data, scheme = load_task(args.task, data_dir)
    templates = TEMPLATES[args.task]
    out_path = RESULTS / f"taggers_{args.task}{'_' + args.tag if args.tag else ''}.json"
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    result.update({"task": args.task, "scheme": scheme, "templates": templates.to_dict(),
                   "sizes": {k: [len(v[0]), sum(len(s) for s in v[0])] for k, v in data.items()},
                   "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                               "python": platform.python_version(), "torch": torch.__version__},
                   "command": "python benchmarks/taggers.py " + " ".join(argv if argv is not None else sys.argv[1:])})
    models = result.setdefault("models", {})
    refit = args.task == "chunking" and not args.no_refit
    for name in args.models:
        t0 = time.perf_counter()
        if name in ("crf", "memm"):
            models[name] = run_feature_model(name, data, scheme, templates, args.c2_grid, args.max_iterations, refit)
        elif name == "crfsuite":
            c2 = args.crfsuite_c2 if args.crfsuite_c2 is not None else models.get("crf", {}).get("c2", args.c2_grid[0])
            models["crfsuite_vs_ours"] = run_crfsuite_pair(data, scheme, templates, c2, args.max_iterations,
                                                           "train" if refit else "train_minus_dev")
        else:
            run_dir = args.run_dir or str(RESULTS.parent / "runs" / f"bilstm-crf-{args.task}")
            models[name] = run_bilstm_crf(data, scheme, args.neural_minutes, args.epochs, args.seed, run_dir, args,
                                           templates)
        models[name if name != "crfsuite" else "crfsuite_vs_ours"]["wall_seconds"] = time.perf_counter() - t0
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=2, default=float) + "\n")
        log.info("%s done: %s", name, json.dumps(models.get(name, models.get("crfsuite_vs_ours", {})).get("test", {})))
    print(out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
