"""HMM commands: ``train hmm``, ``tag`` and ``evaluate`` of an HMM run.

    latentnlp train hmm --train FILE [--format conllu|treebank|wordtag] [--tag-column upos|xpos]
                        [--unsupervised --states K --iterations N --restarts R] [--seed S]
                        [--min-count N | --rare-threshold N] [--rare-words unk|signature]
                        [--lowercase] [--map-digits] --out RUN_DIR
    latentnlp tag RUN_DIR < sentences.txt
    latentnlp evaluate RUN_DIR --test FILE

Supervised (the default): a bigram HMM tagger, add-k smoothed maximum
likelihood from the gold tags. ``--unsupervised``: Baum-Welch EM with
``--states`` hidden states, the gold tags unused (they only score the result).
Under ``torchrun --nproc-per-node N -m latentnlp train hmm --unsupervised ...``
each process runs the E-step on its shard of the sentences and the expected
counts are all-reduced (:meth:`HiddenMarkovModel.fit_em`).

Word preprocessing (:mod:`latentnlp.data.wordforms`, gold-free): ``--lowercase``,
``--map-digits`` (every digit becomes 0), and words seen at most
``--rare-threshold`` times in training (default 1, i.e. ``--min-count 2``)
become ``<unk>`` or, with ``--rare-words signature``, their orthographic
signature class (``<sig-lower-ing>``, ``<sig-cap>``, ...). The choice is
stored in ``config.json`` (``data.word_preprocessing``) and ``tag`` /
``evaluate`` map words the same way.

Run directory (see :mod:`latentnlp.runs`)::

    config.json          {"model": "hmm", "mode", "model_config", "train", "data", "seed", "world_size", ...}
    model.safetensors    log_init (C,), log_transition (C, C), log_emission (C, V); config in the header
    vocab.txt            word vocabulary, id order (id 0 is <unk>)
    tags.json            {"tokens": state names in id order}: gold tags (supervised) or "0".."K-1"
    metrics.jsonl        EM only: one line per iteration, training log-likelihood (nats, total and per token);
                         under --estimator vb the ELBO instead (the quantity VB EM maximises)
    learning_curve.png   EM only: log-likelihood per token against iteration
    evaluation.json      written by ``evaluate``, keyed by the test file
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from ..atomic import atomic_write_text
from ..data.tagged import (
    FORMATS,
    TAG_COLUMNS,
    UNK,
    TaggedCorpus,
    Vocabulary,
    build_tag_vocab,
    encode,
    read_tagged,
)
from ..data.wordforms import RARE_WORD_MODES, WordPreprocessor
from ..evaluation.tagging import (
    accuracy,
    many_to_one_accuracy,
    one_to_one_accuracy,
    v_measure,
)
from ..models.sequence.hmm import HiddenMarkovModel, HMMConfig
from ..runs import RunDirectory
from ..training.checkpoint import atomic_save_tensors, load_tensors
from ..training.distributed import run_distributed, shard_bounds

__all__ = ["add_train_parser", "cmd_train", "evaluate", "load_hmm", "load_word_preprocessor", "save_hmm", "tag",
           "word_preprocessor_from_args"]

log = logging.getLogger("latentnlp.commands.hmm")

TAGS_FILE = "tags.json"


# ------------------------------------------------------------------- storage
def save_hmm(run: RunDirectory, model: HiddenMarkovModel, words: Vocabulary, tags: Vocabulary) -> None:
    """Write ``model.safetensors`` (parameters and config; no pickle), ``vocab.txt`` and ``tags.json``."""
    run.path.mkdir(parents=True, exist_ok=True)
    tensors = {"log_init": model.log_init_, "log_transition": model.log_transition_, "log_emission": model.log_emission_}
    atomic_save_tensors(run.file(run.WEIGHTS), tensors, {"model": "hmm", "model_config": model.config.to_dict()})
    run.write_vocab(words.tokens)
    atomic_write_text(run.file(TAGS_FILE), json.dumps(tags.to_json(), indent=1) + "\n")


def load_hmm(run: RunDirectory) -> tuple[HiddenMarkovModel, Vocabulary, Vocabulary]:
    """``(model, word vocabulary, tag/state vocabulary)`` of an HMM run.

    Raises:
        FileNotFoundError: a file of the run is missing.
        ValueError: the weights are not an HMM's or disagree with the vocabularies (sizes named).
    """
    tensors, meta = load_tensors(run.file(run.WEIGHTS))
    if meta.get("model") != "hmm":
        raise ValueError(f"{run.file(run.WEIGHTS)} holds a {meta.get('model')!r} model, not an HMM")
    model = HiddenMarkovModel(HMMConfig(**meta["model_config"]))
    model._set(tuple(tensors[k].to(model._dtype) for k in ("log_init", "log_transition", "log_emission")))
    words = Vocabulary(run.read_vocab(), unk=UNK)
    tags_path = run.file(TAGS_FILE)
    if not tags_path.is_file():
        raise FileNotFoundError(f"{tags_path} is missing")
    tags = Vocabulary.from_json(json.loads(tags_path.read_text()))
    if len(words) != model.vocab_size or len(tags) != model.n_states:
        raise ValueError(
            f"{run.path}: vocab.txt has {len(words)} words and tags.json {len(tags)} tags, but the model has "
            f"V={model.vocab_size}, C={model.n_states}"
        )
    return model, words, tags


def word_preprocessor_from_args(args: argparse.Namespace) -> WordPreprocessor:
    """The :class:`~latentnlp.data.wordforms.WordPreprocessor` of ``train hmm``'s flags.

    Raises:
        ValueError: ``--min-count < 1``, ``--rare-threshold < 0``, or both given and disagreeing.
    """
    min_count, threshold = getattr(args, "min_count", None), getattr(args, "rare_threshold", None)
    if min_count is not None and min_count < 1:
        raise ValueError(f"--min-count must be >= 1, got {min_count}")
    if threshold is not None and threshold < 0:
        raise ValueError(f"--rare-threshold must be >= 0, got {threshold}")
    if min_count is not None and threshold is not None and min_count != threshold + 1:
        raise ValueError(f"--min-count {min_count} and --rare-threshold {threshold} disagree "
                         f"(--min-count N is --rare-threshold N-1); give one")
    if threshold is None:
        threshold = (2 if min_count is None else min_count) - 1
    return WordPreprocessor(lowercase=bool(getattr(args, "lowercase", False)),
                            digits=bool(getattr(args, "map_digits", False)),
                            rare_words=getattr(args, "rare_words", "unk"), rare_threshold=threshold)


def load_word_preprocessor(run: RunDirectory) -> WordPreprocessor:
    """The word preprocessing a run was trained with (``config.json`` ``data.word_preprocessing``).

    Runs written before the option existed map words to themselves or ``<unk>`` (the default).
    """
    return WordPreprocessor.from_dict(run.read_config().get("data", {}).get("word_preprocessing"))


# ------------------------------------------------------------------- train
def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hmm", help="hidden Markov model: supervised tagger or unsupervised (EM) tag induction")
    p.add_argument("--train", required=True, help="training file (.conllu, treebank.zip or word/TAG text)")
    p.add_argument("--format", choices=FORMATS, help="default: from the file name (.conllu, .zip, else wordtag)")
    p.add_argument("--tag-column", choices=TAG_COLUMNS, default="upos", help="CoNLL-U tag column (default %(default)s)")
    p.add_argument("--unsupervised", action="store_true", help="Baum-Welch EM; gold tags are ignored for training")
    p.add_argument("--states", type=int, help="hidden states for EM (default: the number of gold tags in --train)")
    p.add_argument("--iterations", type=int, default=100, help="maximum EM iterations (default %(default)s)")
    p.add_argument("--restarts", type=int, default=1, help="EM random restarts; the best training likelihood is kept")
    p.add_argument("--tol", type=float, default=1e-6, help="EM stops below this gain in nats per token (default %(default)s)")
    p.add_argument("--smoothing", type=float, default=None,
                   help="add-k pseudocount (default: 0.1 supervised, 0 for EM)")
    p.add_argument("--estimator", choices=("mle", "vb"), default="mle",
                   help="EM estimator: mle (Baum-Welch) or vb (variational Bayes EM, Johnson 2007; "
                        "restarts kept by the ELBO) (default %(default)s)")
    p.add_argument("--alpha-transition", type=float, default=0.1,
                   help="--estimator vb: symmetric Dirichlet prior on initial/transition rows (default %(default)s)")
    p.add_argument("--alpha-emission", type=float, default=0.1,
                   help="--estimator vb: symmetric Dirichlet prior on emission rows (default %(default)s)")
    p.add_argument("--min-count", type=int, default=None,
                   help="words seen fewer times in training are rare (default 2, i.e. --rare-threshold 1)")
    p.add_argument("--rare-threshold", type=int, default=None,
                   help="words seen at most this many times in training are rare (same as --min-count N+1)")
    p.add_argument("--rare-words", choices=RARE_WORD_MODES, default="unk",
                   help="rare and unseen words become <unk> or their orthographic signature class, "
                        "e.g. <sig-lower-ing> (default %(default)s)")
    p.add_argument("--lowercase", action="store_true", help="lower-case words before counting and lookup")
    p.add_argument("--map-digits", action="store_true", help="map every digit to 0 before counting and lookup")
    p.add_argument("--max-sentences", type=int, default=None, help="use only the first N training sentences")
    p.add_argument("--seed", type=int, default=0, help="seed of EM's random initialisation")
    p.add_argument("--out", required=True, help="run directory to write")
    p.set_defaults(func=cmd_train)


def _read(path: str, fmt: str | None, tag_column: str, max_sentences: int | None = None) -> TaggedCorpus:
    corpus = read_tagged(path, fmt, tag_column)
    if max_sentences is not None:
        if max_sentences < 1:
            raise ValueError(f"--max-sentences must be >= 1, got {max_sentences}")
        corpus = corpus.head(max_sentences)
    empty = [d for d, s in enumerate(corpus.words) if not s]
    if empty:
        log.info("%s: dropping %d empty sentences", path, len(empty))
        keep = [d for d, s in enumerate(corpus.words) if s]
        corpus = corpus.subset(keep)
    if len(corpus) == 0:
        raise ValueError(f"{path}: no sentences")
    return corpus


def cmd_train(args: argparse.Namespace) -> int:
    """``latentnlp train hmm``: fit and write a run directory (rank 0 writes under torchrun)."""
    return run_distributed(_train, args)


def _train(args: argparse.Namespace, ctx) -> int:
    for name in ("iterations", "restarts"):
        value = getattr(args, name)
        if value < (0 if name == "iterations" else 1):
            raise ValueError(f"--{name.replace('_', '-')} must be >= {0 if name == 'iterations' else 1}, got {value}")
    preprocessor = word_preprocessor_from_args(args)
    estimator = getattr(args, "estimator", "mle")
    if estimator != "mle" and not args.unsupervised:
        raise ValueError(f"--estimator {estimator} applies to --unsupervised training")
    corpus = _read(args.train, args.format, args.tag_column, args.max_sentences)
    words = preprocessor.build_vocab(corpus)  # words only: gold tags never shape the vocabulary
    gold_tags = build_tag_vocab(corpus)
    smoothing = args.smoothing if args.smoothing is not None else (0.0 if args.unsupervised else 0.1)
    word_ids, tag_ids = encode(preprocessor.transform(corpus, words), words, gold_tags)
    run = RunDirectory(args.out)
    if args.unsupervised:
        n_states = args.states if args.states is not None else len(gold_tags)
        if n_states < 1:
            raise ValueError(f"--states must be >= 1, got {n_states}")
        config = HMMConfig(
            n_states=n_states, vocab_size=len(words), n_iter=args.iterations, tol=args.tol,
            n_restarts=args.restarts, smoothing=smoothing, random_state=args.seed, estimator=estimator,
            alpha_transition=getattr(args, "alpha_transition", 0.1), alpha_emission=getattr(args, "alpha_emission", 0.1),
        )
        model = HiddenMarkovModel(config)
        lo, hi = shard_bounds(len(word_ids), ctx)
        if hi <= lo:
            raise ValueError(f"{len(word_ids)} sentences cannot be shared by {ctx.world_size} processes")
        model.fit_em(word_ids[lo:hi], ctx=ctx)
        states = Vocabulary(tuple(str(k) for k in range(n_states)))
    else:
        if args.states is not None and args.states != len(gold_tags):
            raise ValueError(f"--states applies to --unsupervised; a tagger has one state per tag ({len(gold_tags)})")
        config = HMMConfig(n_states=len(gold_tags), vocab_size=len(words), smoothing=smoothing, random_state=args.seed)
        model = HiddenMarkovModel(config).fit_supervised(word_ids, tag_ids, smoothing=smoothing)
        states = gold_tags
    if not ctx.is_main:
        return 0
    run.write_config({
        "model": "hmm",
        "mode": "unsupervised" if args.unsupervised else "supervised",
        "model_config": config.to_dict(),
        "train": {"iterations": args.iterations, "restarts": args.restarts, "tol": args.tol, "smoothing": smoothing,
                  "n_iter": model.n_iter_, "converged": model.converged_,
                  "restart_log_likelihoods": getattr(model, "restart_log_likelihoods_", None)},
        "data": {"train": str(Path(args.train).resolve()), "format": args.format, "tag_column": args.tag_column,
                 "min_count": preprocessor.rare_threshold + 1, "word_preprocessing": preprocessor.to_dict(),
                 "max_sentences": args.max_sentences,
                 "n_sentences": len(corpus), "n_tokens": corpus.n_tokens, "gold_tags": list(gold_tags.tokens)},
        "seed": args.seed,
        "world_size": ctx.world_size,
    })
    save_hmm(run, model, words, states)
    if args.unsupervised:
        n = corpus.n_tokens
        vb = config.estimator == "vb"
        records = []
        for i, (ll, objective) in enumerate(zip(model.log_likelihood_history_, model.objective_history_)):
            if vb:
                # VB EM maximises the ELBO; its first term, log Z of the sub-normalised weights, is not a likelihood.
                rec = {"iteration": i, "elbo": objective, "elbo_per_token": objective / n, "log_z_subnormalised": ll}
            else:
                rec = {"iteration": i, "log_likelihood": ll, "log_likelihood_per_token": ll / n, "objective": objective}
            records.append(rec)
        if vb:
            records = [r for r in records if r["elbo"] != float("-inf")]  # entry 0 of a random start has no q(theta)
        atomic_write_text(run.file(run.METRICS), "".join(json.dumps(r) + "\n" for r in records))
        key, label = (("elbo_per_token", "ELBO (nats / token)") if vb
                      else ("log_likelihood_per_token", "training log-likelihood (nats / token)"))
        run.plot_learning_curve(key, x_key="iteration", train_label=label)
        log.info("%s: %d iterations, %s %.4f nats/token%s", "VB EM" if vb else "EM", model.n_iter_, label.split(" (")[0],
                 records[-1][key], " (converged)" if model.converged_ else "")
    log.info("trained on %d sentences / %d tokens, V = %d, C = %d", len(corpus), corpus.n_tokens, len(words), model.n_states)
    print(f"run directory: {run.path}")
    return 0


# ------------------------------------------------------------------- tag
def tag(args: argparse.Namespace) -> int:
    """``latentnlp tag RUN_DIR``: tag whitespace-tokenised sentences from standard input, one per line.

    Output: for each input line, one ``index<TAB>word<TAB>tag`` line per word
    (1-based index; for an unsupervised run the tag is the state number), then
    a blank line. An empty (or all-whitespace) input line gives an empty block,
    i.e. just the blank line, so output blocks stay aligned with input lines.
    Words are mapped as in training (the run's ``data.word_preprocessing``: case and
    digit folding, rare/unseen words to their signature class, see
    :mod:`latentnlp.data.wordforms`); words still unknown are tagged as ``<unk>``,
    and their count is logged. The output shows the original words.
    """
    run = RunDirectory(args.run_dir)
    model, words, tags = load_hmm(run)
    preprocessor = load_word_preprocessor(run)
    sentences = [line.split() for line in sys.stdin]
    corpus = TaggedCorpus(sentences, [["_"] * len(s) for s in sentences], "<stdin>")
    ids, _ = encode(preprocessor.transform(corpus, words), words)
    nonempty = [d for d, s in enumerate(ids) if s.numel()]
    paths: dict[int, list[int]] = {}
    if nonempty:
        for d, path in zip(nonempty, model.viterbi([ids[d] for d in nonempty])):
            paths[d] = path.tolist()
    out = sys.stdout
    for d, sentence in enumerate(sentences):
        for n, (word, state) in enumerate(zip(sentence, paths.get(d, []))):
            out.write(f"{n + 1}\t{word}\t{tags.tokens[state]}\n")
        out.write("\n")
    return 0


# ------------------------------------------------------------------- evaluate
def evaluate(args: argparse.Namespace) -> int:
    """``latentnlp evaluate RUN_DIR --test FILE`` for an HMM run; writes ``evaluation.json``.

    Supervised runs: tagging accuracy (Viterbi), overall and on words known /
    unknown to the training vocabulary. Unsupervised runs: many-to-one,
    one-to-one accuracy and V-measure of the Viterbi states against the gold tags.
    The test file's format is taken from its name (``.conllu``, ``.zip``, else
    word/TAG) and CoNLL-U uses the run's tag column.

    Raises:
        ValueError: without ``--test``, or on a test file with no sentences.
    """
    run = RunDirectory(args.run_dir)
    config = run.read_config()
    if not getattr(args, "test", None):
        raise ValueError("evaluate of an HMM run needs --test FILE (a tagged file)")
    model, words, tags = load_hmm(run)
    corpus = _read(args.test, None, config["data"]["tag_column"])
    unsupervised = config["mode"] == "unsupervised"
    # unsupervised: states carry no tag names, so gold tags get ids of their own (scores are mapping-based)
    preprocessor = load_word_preprocessor(run)
    mapped = preprocessor.transform(corpus, words)
    ids, gold = encode(mapped, words, build_tag_vocab(corpus) if unsupervised else tags, unknown_tag="minus_one")
    pred, gold = torch.cat(model.viterbi(ids)), torch.cat(gold)
    report: dict = {"mode": config["mode"], "n_sentences": len(corpus), "n_tokens": corpus.n_tokens}
    if unsupervised:
        report.update(many_to_one=many_to_one_accuracy(pred, gold), one_to_one=one_to_one_accuracy(pred, gold),
                      v_measure=v_measure(pred, gold))
    else:
        # known: the word itself is in the vocabulary (not <unk>, not a signature class)
        known = torch.tensor([not preprocessor.is_class(w) for sent in mapped.words for w in sent], dtype=torch.bool)
        report["accuracy"] = accuracy(pred, gold)
        report["accuracy_known_words"] = accuracy(pred[known], gold[known]) if known.any() else None
        report["accuracy_unknown_words"] = accuracy(pred[~known], gold[~known]) if (~known).any() else None
        report["unknown_word_rate"] = float((~known).double().mean())
    print(f"hmm ({config['mode']}) {run.path} on {args.test}: {corpus.n_tokens} tokens")
    for key, value in report.items():
        if isinstance(value, float):
            print(f"  {key:24s} {100 * value:6.2f}%")
    existing = json.loads(run.file(run.EVALUATION).read_text()) if run.file(run.EVALUATION).is_file() else {}
    existing[str(Path(args.test).resolve())] = report
    run.write_evaluation(existing)
    return 0
