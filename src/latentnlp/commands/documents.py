"""Document-model commands: ``train sbn|fdarn|docnade|rsm|lda``, their ``evaluate`` and ``topics``,
and ``reproduce doc-table``.

    latentnlp train sbn|fdarn --data-dir DIR --latent-dim 50 [--epochs N --lr --batch-size --max-minutes M] --out RUN_DIR
    latentnlp train docnade|rsm --data-dir DIR --hidden-dim 50 [...] --out RUN_DIR
    latentnlp train lda --data-dir DIR --topics 50 --out RUN_DIR       (needs latentnlp.models.document.lda and its library)
    latentnlp evaluate RUN_DIR [--split test] [--elbo-samples 20 --iw-samples 100 | --orderings K |
                               --ais-chains M --ais-temperatures T | --particles P] [--max-docs N]
    latentnlp topics RUN_DIR [--n-words 10] [--npmi]
    latentnlp reproduce doc-table --data-dir DIR [--budget-minutes 140] [--rows ID ...] --out RUN_DIR

Data and validation are those of ``train nvdm``: the NVDM release of 20 Newsgroups, with a
seeded 10% of the *training* documents held out for validation and early stopping; the test
split is only read by ``evaluate`` and by the table's final evaluation. Every ``train`` resumes
from the checkpoint in ``--out`` (``--no-resume`` starts over) and refuses a checkpoint of a
different model.

What ``evaluate`` reports, per model (per-document perplexity ``exp(mean_d -log p(d) / N_d)``
and corpus perplexity, each labelled by its estimator):

* ``sbn``, ``fdarn``: the ELBO bound (``--elbo-samples``) and the importance-weighted estimate
  (``--iw-samples``);
* ``docnade``: the exact log-likelihood under ``--orderings`` K seeded random word orderings
  (their mean in log space) and their log-mean-exp ensemble (the same when K = 1);
* ``rsm``: ``log Z_D`` of every distinct document length (``--ais-space length``, the default:
  :func:`~latentnlp.models.document.rsm.rsm_log_partitions`, one AIS run with ``--ais-chains``
  chains through all lengths beside importance sampling from the basins of the local maxima,
  a few minutes on the test set; ``joint``/``hidden``: AIS per length); there is no bound;
* ``lda``: the left-to-right estimate (Wallach et al. 2009) with ``--particles`` particles.

The table. :data:`TABLE_ROWS` lists every row with its command-line settings, the published
figure and the row's share of the training budget. Each row trains into its own sub-run
directory ``OUT/ROW_ID`` (a normal run directory: ``evaluate``, ``topics`` work on it) with
``--max-minutes`` set to its share, is evaluated on the test split, and gets the top-10 words
of every latent dimension / topic with their NPMI coherence from document co-occurrence in
the training split (Lau et al. 2014; :mod:`latentnlp.evaluation.coherence`). A finished row
leaves ``OUT/ROW_ID/row.json`` and is skipped when the command is run again; an unfinished one
resumes from its checkpoint with what is left of its share (time already spent is read from
its ``metrics.jsonl``); a row whose training finished but whose evaluation did not is only
evaluated. Changing an evaluation option re-evaluates finished rows without retraining them;
changing ``--max-train-docs`` or ``--seed`` in the same ``--out`` is refused.

The budget split (``--budget-minutes``, default 140, the training minutes of all rows; evaluation
comes on top, ~20-30 minutes with the table's estimator settings, most of it the RSM's AIS): at the
default each row trains for its :attr:`TableRow.minutes` (LDA-50 3, LDA-200 5, RSM-50 15,
DocNADE-50 40, SBN-50 15, fDARN-50 15, fDARN-200 20, NVDM-50 7, NVDM-200 20); another budget, or
``--rows``, scales the selected rows' minutes to fill it. LDA trains a fixed 1,000 Gibbs sweeps
(its share is nominal). Every model trains on the same 90% of the training documents (LDA does
not use the held-out 10%). The settings are the toolkit's defaults (:data:`TRAIN_DEFAULTS`,
:data:`TABLE_ROWS`), not tuned, except the step sizes chosen on validation: NVDM's in
``benchmarks/nvdm_20news.py``, SBN/fDARN's 1e-3 (see :data:`TRAIN_DEFAULTS`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.bow import BowCorpus
from ..data.paths import resolve_data_dir
from ..evaluation.coherence import topic_coherence
from ..runs import RunDirectory
from ..training.distributed import run_distributed
from ..training.seeding import seeded
from ..training.trainer import TrainConfig
from .nvdm import load_splits

log = logging.getLogger("latentnlp.commands.documents")

MODELS = ("sbn", "fdarn", "docnade", "rsm")
LDA_MODULE = "latentnlp.models.document.lda"

# The toolkit's defaults for each model's training (Adam throughout). Sensible starting points,
# not tuned beyond one check: NVIL's noisier gradients get more patience, and SBN's step size was
# chosen on the validation split (5 minutes of SBN-50: bound 870 at 1e-3 against 895 at 3e-4);
# the RSM runs its epochs out (its validation figure, the pseudo-NLL proxy, is not a likelihood).
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "sbn": dict(epochs=1000, batch_size=64, lr=1e-3, patience=20),
    "fdarn": dict(epochs=1000, batch_size=64, lr=1e-3, patience=20),
    "docnade": dict(epochs=500, batch_size=64, lr=1e-3, patience=10),
    # PCD with the step decayed linearly to 0 over the epochs (chosen on validation: 824 against 952
    # with a constant step and 2,512 for CD-1; README); pseudo-NLL validation costs ~5x an epoch.
    "rsm": dict(epochs=300, batch_size=100, lr=3e-4, patience=0, lr_schedule="linear", validate_every=10),
}
VALID_FRACTION = 0.1


# =================================================================== data and models
def _max_train_docs(train: BowCorpus, n: int | None) -> BowCorpus:
    if n is None:
        return train
    if n < 1:
        raise ValueError(f"--max-train-docs must be >= 1, got {n}")
    return train.subset(list(range(min(n, len(train)))))


def _first_docs(corpus: BowCorpus, n: int | None) -> BowCorpus:
    if n is None:
        return corpus
    if n < 1:
        raise ValueError(f"--max-docs must be >= 1, got {n}")
    return corpus.subset(list(range(min(n, len(corpus)))))


def _build_model(name: str, args: argparse.Namespace, vocab_size: int):
    """The untrained model of ``latentnlp train NAME`` (weights seeded by the caller)."""
    if name in ("sbn", "fdarn"):
        from ..inference.nvil import NVILConfig
        from ..models.document.sbn import DocumentSBN, SBNConfig

        nvil = NVILConfig(centering=args.centering, variance_normalization=not args.no_variance_normalization,
                          alpha=args.alpha, baseline_hidden=args.baseline_hidden)
        return DocumentSBN(SBNConfig(vocab_size=vocab_size, latent_dim=args.latent_dim,
                                     prior="factorized" if name == "sbn" else "darn", encoder_hidden=args.encoder_hidden,
                                     encoder_activation=args.encoder_activation, input_transform=args.input_transform,
                                     baseline_word_weights=not args.mlp_only_baseline,
                                     train_samples=args.train_samples, nvil=nvil))
    if name == "docnade":
        from ..models.document.docnade import DocNADE, DocNADEConfig

        return DocNADE(DocNADEConfig(vocab_size=vocab_size, hidden_size=args.hidden_dim, activation=args.activation,
                                     train_orderings=args.train_orderings))
    if name == "rsm":
        from ..models.document.rsm import ReplicatedSoftmax, RSMConfig

        return ReplicatedSoftmax(RSMConfig(vocab_size=vocab_size, hidden_dim=args.hidden_dim, cd_k=args.cd_k,
                                           persistent=args.pcd, n_chains=args.chains, init_scale=args.init_scale,
                                           weight_decay=args.weight_decay))
    raise ValueError(f"unknown document model {name!r}; known: {list(MODELS)}")


def _write_config(run: RunDirectory, name: str, model_config: dict, train_config: dict | None, args: argparse.Namespace,
                  data_dir: str, train: BowCorpus, valid: BowCorpus, world_size: int = 1) -> None:
    """``config.json`` and ``vocab.txt``; the ``data`` block is ``train nvdm``'s, so ``transform`` works too."""
    run.write_config({
        "model": name,
        "model_config": model_config,
        "train_config": train_config,
        "data": {"dataset": args.dataset, "data_dir": data_dir, "valid_fraction": args.valid_fraction,
                 "split_seed": args.split_seed, "n_train": len(train), "n_valid": len(valid),
                 "max_train_docs": args.max_train_docs},
        "seed": args.seed,
        "world_size": world_size,
    })
    run.write_vocab(train.vocab)


def _refuse_other_checkpoint(run: RunDirectory, name: str, model_config: dict) -> None:
    """Raise if ``run`` holds a checkpoint of another model or configuration."""
    if not (run.file("checkpoint.safetensors").is_file() and run.file(run.CONFIG).is_file()):
        return
    previous = run.read_config()
    before = previous.get("model_config", {})
    changed = {k: (before.get(k), v) for k, v in model_config.items() if before.get(k) != v}
    if previous.get("model") != name or changed:
        raise ValueError(
            f"{run.path} holds a checkpoint of a different model ({previous.get('model')!r}; field: (checkpoint, now) = "
            f"{changed}); pass --no-resume to start over or choose another --out"
        )


# =================================================================== train
def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder holding DATASET/ (default: $LATENTNLP_DATA, then ~/.cache/latentnlp)")
    p.add_argument("--dataset", default="20news-nvdm", help="folder of train.feat/test.feat/vocab.new (default: %(default)s)")
    p.add_argument("--out", required=True, help="run directory to create or resume")
    p.add_argument("--valid-fraction", type=float, default=VALID_FRACTION, help="share of train held out for validation")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/valid split (fixed so runs compare)")
    p.add_argument("--seed", type=int, default=0, help="seeds initial weights, shuffling and noise")
    p.add_argument("--max-train-docs", type=int, default=None, help="train on the first N training documents only (quick runs)")


def _optimisation_options(p: argparse.ArgumentParser, name: str) -> None:
    d = TRAIN_DEFAULTS[name]
    p.add_argument("--epochs", type=int, default=d["epochs"], help="max passes over train (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="(default %(default)s)")
    p.add_argument("--lr", type=float, default=d["lr"], help="Adam step size (default %(default)s; not tuned)")
    p.add_argument("--patience", type=int, default=d["patience"], help="validations without improvement before stopping (0: never)")
    p.add_argument("--lr-schedule", choices=["constant", "linear", "cosine"], default=d.get("lr_schedule", "constant"),
                   help="step size over --epochs: constant, or decayed linearly / by a cosine to 0 (default %(default)s)")
    p.add_argument("--validate-every", type=int, default=d.get("validate_every", 1), help="epochs between validations (default %(default)s)")
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget of the training")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")


def add_train_parsers(sub: argparse._SubParsersAction) -> None:
    """``train sbn``, ``train fdarn``, ``train docnade``, ``train rsm`` and ``train lda``."""
    for name, help_text in (("sbn", "SBN document model, factorised Bernoulli prior, trained with NVIL (Mnih & Gregor 2014)"),
                            ("fdarn", "fDARN document model, autoregressive prior over the binary latents, trained with NVIL")):
        p = sub.add_parser(name, help=help_text)
        _data_options(p)
        _optimisation_options(p, name)
        p.add_argument("--latent-dim", type=int, default=50, help="K binary latents (paper: 50, and 200 for fDARN)")
        p.add_argument("--encoder-hidden", type=int, default=0, help="hidden units of the inference network (0: linear, the paper's)")
        p.add_argument("--encoder-activation", default="tanh", choices=["tanh", "relu", "sigmoid"])
        p.add_argument("--input-transform", default="log1p", choices=["log1p", "counts", "frequencies"],
                       help="t(x) read by the inference network and the baseline (default %(default)s)")
        p.add_argument("--train-samples", type=int, default=1, help="latent samples per document and step (paper: 1)")
        p.add_argument("--centering", default="both", choices=["none", "constant", "input", "both"], help="NVIL baselines (paper: both)")
        p.add_argument("--alpha", type=float, default=0.8, help="NVIL running-average rate (paper: 0.8)")
        p.add_argument("--baseline-hidden", type=int, default=100, help="units of the input-dependent baseline (paper: 100)")
        p.add_argument("--no-variance-normalization", action="store_true", help="switch NVIL's variance normalisation off")
        p.add_argument("--mlp-only-baseline", action="store_true",
                       help="the paper's MLP-only input baseline, without the linear word-count term (SBNConfig.baseline_word_weights)")
        p.set_defaults(func=cmd_train, model_name=name)

    p = sub.add_parser("docnade", help="DocNADE (Larochelle & Lauly 2012): exact autoregressive document likelihood")
    _data_options(p)
    _optimisation_options(p, "docnade")
    p.add_argument("--hidden-dim", type=int, default=50, help="H hidden units (paper: 50)")
    p.add_argument("--activation", default="sigmoid", choices=["sigmoid", "tanh", "relu"], help="(paper: sigmoid)")
    p.add_argument("--train-orderings", type=int, default=1, help="random orderings per document and step (paper: 1)")
    p.set_defaults(func=cmd_train, model_name="docnade")

    p = sub.add_parser("rsm", help="Replicated Softmax (Salakhutdinov & Hinton 2009) trained by CD-k or PCD")
    _data_options(p)
    _optimisation_options(p, "rsm")
    p.add_argument("--hidden-dim", type=int, default=50, help="H binary hidden units (paper: 50)")
    p.add_argument("--cd-k", type=int, default=1, help="Gibbs sweeps per update (paper: CD-1 at first)")
    p.add_argument("--pcd", action=argparse.BooleanOptionalAction, default=True,
                   help="persistent CD (default; single process only); --no-pcd: CD-k, the paper's rule, which on 20 Newsgroups "
                        "leaves maxima of the energy where one word takes most of the probability (README)")
    p.add_argument("--chains", type=int, default=200, help="persistent chains with --pcd (default %(default)s)")
    p.add_argument("--init-scale", type=float, default=0.01, help="std of the initial weights")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty on W in the CD surrogate (RSMConfig.weight_decay)")
    p.set_defaults(func=cmd_train, model_name="rsm")

    p = sub.add_parser("lda", help="LDA baseline (latentnlp.models.document.lda); held-out likelihood by the left-to-right estimator")
    _data_options(p)
    p.add_argument("--topics", type=int, default=50, help="number of topics (paper table: 50 and 200)")
    p.add_argument("--iterations", type=int, default=1000, help="Gibbs sweeps over the training documents (default %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="sampler threads (1: reproducible)")
    p.add_argument("--alpha", type=float, default=0.1, help="initial symmetric document-topic prior per topic (default %(default)s)")
    p.add_argument("--eta", type=float, default=0.01, help="symmetric topic-word prior, fixed (default %(default)s)")
    p.add_argument("--optimize-interval", type=int, default=10,
                   help="re-estimate an asymmetric alpha every N sweeps (Minka); 0 keeps alpha fixed and symmetric")
    p.set_defaults(func=cmd_train_lda, model_name="lda")


def cmd_train(args: argparse.Namespace) -> int:
    return run_distributed(_train_in_group, args)


def _train_in_group(args: argparse.Namespace, ctx) -> int:
    name = args.model_name
    run = RunDirectory(args.out)
    data_dir = str(resolve_data_dir(args.data_dir).resolve())
    splits = load_splits(args.dataset, data_dir, args.valid_fraction, args.split_seed)
    train, valid = _max_train_docs(splits["train"], args.max_train_docs), splits["valid"]
    with seeded(args.seed):
        model = _build_model(name, args, train.vocab_size)
    monitor = model.monitor if name == "rsm" else "valid_perplexity_bound"
    train_config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, lr_schedule=args.lr_schedule, patience=args.patience,
        validate_every=args.validate_every, monitor=monitor, max_minutes=args.max_minutes, seed=args.seed,
        progress=not args.no_progress and sys.stderr.isatty(), resume=not args.no_resume,
    )
    if not args.no_resume:
        _refuse_other_checkpoint(run, name, model.config.to_dict())
    if ctx.is_main:
        _write_config(run, name, model.config.to_dict(), train_config.to_dict(), args, data_dir, train, valid, ctx.world_size)
        log.info("%s: train %d docs / %d tokens, valid %d docs (held out of train; the test split is not read)",
                 name, len(train), train.n_tokens, len(valid))
    if name == "rsm":
        model.fit(train, valid, train_config, run_dir=str(run.path), init_seed=args.seed)
    else:
        model.fit(train, valid, train_config, run_dir=str(run.path))
    result = model.train_result_
    if ctx.is_main:
        run.save_model(name, model)
        run.plot_learning_curve("train_loss", monitor,
                                train_label="train loss (nats / document)" if name != "rsm" else "reconstruction proxy (nats / document)")
        log.info("stopped after %d epochs (%s) in %.0f s; best %s %.2f at epoch %s", result.epochs_completed,
                 result.stop_reason, result.seconds, monitor, result.best_value or float("nan"), result.best_epoch)
        print(f"run directory: {run.path}")
    return 0


# ------------------------------------------------------------------ LDA
class LDAUnavailable(RuntimeError):
    """The LDA module or the library behind it is missing."""


def import_lda():
    """``latentnlp.models.document.lda``, imported on demand.

    Raises:
        LDAUnavailable: the module is not there, or importing it fails for want of its library.
    """
    try:
        return importlib.import_module(LDA_MODULE)
    except ImportError as exc:
        raise LDAUnavailable(f"the LDA baseline is unavailable ({exc}); it needs {LDA_MODULE} and the tomotopy "
                             "library it wraps") from exc


def load_lda(run: RunDirectory):
    """The LDA model saved in an ``lda`` run directory (``lda.safetensors`` and ``lda.json`` beside ``config.json``)."""
    return import_lda().LDABaseline.load(run.path)


def cmd_train_lda(args: argparse.Namespace) -> int:
    """``latentnlp train lda``: tomotopy's collapsed Gibbs sampler for ``--iterations`` sweeps (no clock budget)."""
    run = RunDirectory(args.out)
    if run.file(run.CONFIG).is_file() and run.read_config().get("model") != "lda":
        raise ValueError(f"{run.path} holds a {run.read_config().get('model')!r} run; choose another --out")
    data_dir = str(resolve_data_dir(args.data_dir).resolve())
    splits = load_splits(args.dataset, data_dir, args.valid_fraction, args.split_seed)
    train, valid = _max_train_docs(splits["train"], args.max_train_docs), splits["valid"]
    module = import_lda()
    config = module.LDAConfig(n_topics=args.topics, iterations=args.iterations, seed=args.seed, workers=args.workers,
                              alpha=args.alpha, eta=args.eta, optimize_interval=args.optimize_interval)
    try:
        model = module.LDABaseline(config).fit(train)
    except ImportError as exc:  # the module imports its library inside fit
        raise LDAUnavailable(f"the LDA baseline is unavailable ({exc})") from exc
    _write_config(run, "lda", config.to_dict(), None, args, data_dir, train, valid)
    model.save(run.path)
    log.info("LDA with %d topics: %d Gibbs sweeps over %d documents in %.0f s (the held-out part of train is not used)",
             args.topics, args.iterations, len(train), model.fit_seconds_)
    print(f"run directory: {run.path}")
    return 0


def load_document_model(run: RunDirectory):
    """A run's model: LDA through its own ``load``, everything else through the run directory."""
    if run.read_config().get("model") == "lda":
        return load_lda(run)
    return run.load_model()


# =================================================================== evaluate
@dataclass(frozen=True)
class EvaluationSettings:
    """How ``evaluate`` estimates each model's log-likelihood (the CLI's options)."""

    elbo_samples: int = 20
    iw_samples: int = 100
    orderings: int = 1
    ais_chains: int = 100
    ais_temperatures: int = 1000
    particles: int = 20
    seed: int = 0
    ais_space: str = "length"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "EvaluationSettings":
        d = cls()
        pick = lambda name: d.__dict__[name] if getattr(args, name, None) is None else getattr(args, name)
        return cls(**{f.name: pick(f.name) for f in dataclasses.fields(cls)})


def evaluate_model(name: str, model, corpus: BowCorpus, settings: EvaluationSettings):
    """The model's perplexity report on ``corpus`` with the estimator its family uses."""
    s = settings
    if name in ("nvdm", "sbn", "fdarn"):
        return model.evaluate(corpus, elbo_samples=s.elbo_samples, iw_samples=s.iw_samples, seed=s.seed)
    if name == "docnade":
        # 100 documents a batch: K orderings of the longest test documents (4,306 words) are K x 100 x 4,306 x H floats
        return model.evaluate(corpus, n_orderings=s.orderings, seed=s.seed, batch_size=100)
    if name == "rsm":
        log.info("rsm: log Z_D of %d distinct document lengths (%s; %d chains, %d temperatures)", len(set(corpus.doc_lengths.tolist())),
                 s.ais_space, s.ais_chains, s.ais_temperatures)
        return model.evaluate(corpus, ais_chains=s.ais_chains, ais_betas=s.ais_temperatures, seed=s.seed,
                              ais_space=s.ais_space)
    if name == "lda":
        return model.evaluate(corpus, n_particles=s.particles, seed=s.seed)
    raise ValueError(f"cannot evaluate a {name!r} run")


def estimator_labels(name: str, report) -> tuple[str | None, str | None]:
    """What the report's ``bound_*`` and ``estimate_*`` figures are, in words (``None``: not computed)."""
    has_bound = report.bound_per_document is not None and math.isfinite(report.bound_per_document)
    has_estimate = report.estimate_per_document is not None and math.isfinite(report.estimate_per_document)
    if name in ("nvdm", "sbn", "fdarn"):
        bound = f"ELBO bound ({report.elbo_samples} samples)"
        estimate = f"IW estimate (K = {report.iw_samples})"
    elif name == "docnade":
        k = report.elbo_samples
        bound = f"exact, mean log p over {k} ordering{'s' if k > 1 else ''}"
        estimate = f"ordering ensemble (K = {k})"
    elif name == "rsm":
        bound = None
        if report.ais_space == "length":
            estimate = (f"largest of AIS through all lengths ({report.ais_chains} chains, mode jumps), mode importance "
                        f"sampling and the mode bound")
        else:
            space = ", hidden units, words summed out" if report.ais_space == "hidden" else ""
            estimate = f"AIS ({report.ais_chains} chains x {report.ais_temperatures} temperatures per length{space})"
    else:
        bound = "bound reported by LDABaseline"
        estimate = f"left-to-right estimate, R = {report.iw_samples} particles (Wallach et al. 2009)"
    return (bound if has_bound else None), (estimate if has_estimate else None)


def format_report(name: str, report) -> str:
    """The report as text; DocNADE's rows are renamed (its generic ones say ELBO and IW)."""
    if name != "docnade":
        return report.format()
    bound, estimate = estimator_labels(name, report)
    lines = [f"documents: {report.n_docs}   tokens: {report.n_tokens}", f"{'':50s}{'per-document':>14s}{'corpus':>12s}",
             f"{'perplexity, ' + bound:50s}{report.bound_per_document:14.1f}{report.bound_corpus:12.1f}"]
    if report.elbo_samples > 1:
        lines.append(f"{'perplexity, ' + estimate:50s}{report.estimate_per_document:14.1f}{report.estimate_corpus:12.1f}")
    lines.append(f"mean log p {report.elbo_nats_per_doc:.2f} nats/doc (exact under each ordering; no latent variables)")
    return "\n".join(lines)


def add_evaluate_options(ev: argparse.ArgumentParser) -> None:
    """Options of ``latentnlp evaluate`` that only document runs read (besides the shared ones)."""
    ev.add_argument("--particles", type=int, default=20, help="LDA: particles of the left-to-right estimator")
    ev.add_argument("--ais-space", choices=["length", "joint", "hidden"], default="length",
                    help="RSM: length (default): one AIS run over the hidden units through every document length, with "
                         "jumps between the local maxima of the words-summed-out energy, beside importance sampling from "
                         "those maxima's basins and the rigorous bound they give, the largest kept per length "
                         "(--ais-temperatures is then the number in [0, 1]); joint: per-length AIS over words and hidden "
                         "units; hidden: per-length AIS over the hidden units. The per-length chains miss the maxima that "
                         "dominate long documents (benchmarks/rsm_estimators.py)")
    ev.add_argument("--max-docs", type=int, default=None,
                    help="sbn/fdarn/docnade/rsm/lda: score only the first N documents of the split (quick checks; not comparable)")


def _run_split(run: RunDirectory, split: str, data_dir: str | None) -> tuple[dict, BowCorpus]:
    config = run.read_config()
    data = config["data"]
    splits = load_splits(data["dataset"], data_dir or data["data_dir"], data["valid_fraction"], data["split_seed"])
    return config, splits[split]


def evaluate(args: argparse.Namespace) -> int:
    """``latentnlp evaluate RUN_DIR`` of an sbn, fdarn, docnade, rsm or lda run."""
    run = RunDirectory(args.run_dir)
    config, corpus = _run_split(run, args.split, args.data_dir)
    corpus = _first_docs(corpus, getattr(args, "max_docs", None))
    name = config["model"]
    model = load_document_model(run)
    report = evaluate_model(name, model, corpus, EvaluationSettings.from_args(args))
    what = args.split if getattr(args, "max_docs", None) is None else f"{args.split}[:{len(corpus)}]"
    print(f"{name} {run.path} on {config['data']['dataset']} {what}")
    print(format_report(name, report))
    existing = json.loads(run.file(run.EVALUATION).read_text()) if run.file(run.EVALUATION).is_file() else {}
    bound, estimate = estimator_labels(name, report)
    existing[what] = report.to_dict() | {"bound_estimator": bound, "estimate_estimator": estimate}
    run.write_evaluation(existing)
    return 0


# =================================================================== topics
def cmd_topics(args: argparse.Namespace) -> int:
    """``latentnlp topics RUN_DIR`` of a document run: top words per latent dimension / topic, NPMI on request."""
    run = RunDirectory(args.run_dir)
    model = load_document_model(run)
    if not hasattr(model, "topic_words"):
        raise ValueError(f"{run.path}: a {run.read_config().get('model')!r} model has no topic words")
    topics = model.topic_words(run.read_vocab(), n_words=args.n_words)
    dims = list(args.dims) if args.dims else list(range(len(topics)))
    for k in dims:
        if not 0 <= k < len(topics):
            raise ValueError(f"dimension {k} out of range 0..{len(topics) - 1}")
    coherence = None
    if args.npmi:
        _, reference = _run_split(run, "train", args.data_dir)
        coherence = topic_coherence([topics[k] for k in dims], reference, n_words=args.n_words)
    for i, k in enumerate(dims):
        score = f"  NPMI {coherence.per_topic[i]:+.3f}" if coherence else ""
        print(f"{k:4d}{score}  {' '.join(topics[k])}")
    if coherence:
        print(f"mean NPMI of top-{args.n_words} words over {len(dims)} dimensions "
              f"(document co-occurrence in the training split, Lau et al. 2014): {coherence.mean:+.4f}")
    return 0


# =================================================================== the table
@dataclass(frozen=True)
class TableRow:
    """One row of the document-model table.

    Attributes:
        id: the row's name and its sub-run folder (``lda-50``).
        label: the model as the papers name it.
        model: the ``latentnlp train`` command.
        dim: latent dimensions / hidden units / topics.
        published: the published per-document test perplexity (``None``: none published).
        source: where it was published.
        minutes: the row's training minutes at the default budget; a budget ``M`` gives each
            selected row ``M * minutes / (sum of the selected rows' minutes)``.
        train_args: command-line settings of ``latentnlp train MODEL`` beyond the defaults.
    """

    id: str
    label: str
    model: str
    dim: int
    published: float | None
    source: str
    minutes: float
    train_args: tuple[str, ...] = ()


MG14 = "Mnih & Gregor 2014"
MIAO16 = "Miao et al. 2016, Table 1 (ELBO bound)"
# The split of the default 140-minute budget (minutes per row) follows how fast each model trains on
# the 10,141 training documents with one CPU thread (measured on 2,000 documents): an epoch takes
# ~1.3 s for SBN, fDARN-50 and the RSM (CD-1) and ~50 s for DocNADE (a full softmax per token), and
# NVDM-50 early-stops in ~5 minutes while NVDM-200 still improved after 25 (benchmarks/nvdm_20news.py).
# LDA's share is nominal: tomotopy runs its fixed 1,000 Gibbs sweeps (~2.5 and ~4 minutes here).
TABLE_ROWS: tuple[TableRow, ...] = (
    TableRow("lda-50", "LDA", "lda", 50, 1091.0, MG14, 3, ("--topics", "50")),
    TableRow("lda-200", "LDA", "lda", 200, 1058.0, MG14, 5, ("--topics", "200")),
    # PCD, not the paper's CD-1: CD-1 leaves a maximum of g far from every document (one word at
    # probability 0.89) that puts the validation perplexity at 2,512; settings chosen on validation
    # (README, "The document-model table").
    TableRow("rsm-50", "RSM", "rsm", 50, 953.0, MG14, 15, ("--hidden-dim", "50", "--pcd", "--chains", "200", "--lr", "3e-4",
                                                          "--lr-schedule", "linear", "--epochs", "300", "--patience", "0",
                                                          "--validate-every", "10")),
    TableRow("docnade-50", "DocNADE", "docnade", 50, 896.0, MG14, 40, ("--hidden-dim", "50")),
    TableRow("sbn-50", "SBN", "sbn", 50, 909.0, MG14, 15, ("--latent-dim", "50")),
    TableRow("fdarn-50", "fDARN", "fdarn", 50, 917.0, MG14, 15, ("--latent-dim", "50")),
    TableRow("fdarn-200", "fDARN", "fdarn", 200, None, MG14 + " (no 20 Newsgroups figure for fDARN-200)", 20,
             ("--latent-dim", "200")),
    TableRow("nvdm-50", "NVDM", "nvdm", 50, 836.0, MIAO16, 7, ("--latent-dim", "50", "--lr", "3e-4")),
    TableRow("nvdm-200", "NVDM", "nvdm", 200, 852.0, MIAO16, 20, ("--latent-dim", "200", "--lr", "1e-4")),
)
ROWS_BY_ID = {r.id: r for r in TABLE_ROWS}
DEFAULT_BUDGET_MINUTES = sum(r.minutes for r in TABLE_ROWS)
# Evaluation settings of the table (each a ``reproduce doc-table`` option). The RSM's log Z_D comes
# from rsm_log_partitions (``ais_space="length"``): one AIS run of 100 chains through every test
# length plus importance sampling from the basins of the words-summed-out energy's local maxima, a
# few minutes on the test set. The per-length AIS the table used before (20 chains x 1,000
# temperatures per length) missed the maxima that dominate long documents: against exact
# enumeration on trained 20-unit RSMs it was off by up to 30 (hidden) and 1,400 (joint) nats
# (benchmarks/rsm_estimators.py).
TABLE_EVALUATION = EvaluationSettings(elbo_samples=20, iw_samples=100, orderings=5, ais_chains=100, ais_temperatures=1000,
                                      particles=20, seed=0, ais_space="length")


def budget_split(rows: list[TableRow], budget_minutes: float) -> dict[str, float]:
    """Training minutes of each row: the budget split in proportion to the rows' default minutes."""
    if not budget_minutes > 0:
        raise ValueError(f"--budget-minutes must be > 0, got {budget_minutes}")
    total = sum(r.minutes for r in rows)
    return {r.id: budget_minutes * r.minutes / total for r in rows}


def add_root_parsers(sub: argparse._SubParsersAction) -> None:
    """``reproduce doc-table``."""
    rp = sub.add_parser("reproduce", help="reproduce a published table")
    rsub = rp.add_subparsers(dest="table", required=True)
    p = rsub.add_parser("doc-table", help="the document-model table of Mnih & Gregor 2014 / Miao et al. 2016 on 20 Newsgroups")
    p.add_argument("--data-dir", help="folder holding 20news-nvdm/ (default: $LATENTNLP_DATA, then ~/.cache/latentnlp)")
    p.add_argument("--out", required=True, help="run directory of the table (one sub-run per row); rerun to resume")
    p.add_argument("--budget-minutes", type=float, default=DEFAULT_BUDGET_MINUTES,
                   help="total training minutes, split across the rows in proportion to their default shares "
                        "(default %(default)s; evaluation comes on top)")
    p.add_argument("--rows", nargs="+", choices=list(ROWS_BY_ID), default=None, metavar="ID",
                   help=f"only these rows (default: all): {', '.join(ROWS_BY_ID)}")
    p.add_argument("--seed", type=int, default=0, help="training and evaluation seed of every row")
    p.add_argument("--max-train-docs", type=int, default=None, help="train on the first N training documents (quick runs)")
    p.add_argument("--max-eval-docs", type=int, default=None, help="evaluate on the first N test documents (quick runs)")
    e = TABLE_EVALUATION
    p.add_argument("--elbo-samples", type=int, default=e.elbo_samples, help="NVDM/SBN/fDARN: samples per ELBO")
    p.add_argument("--iw-samples", type=int, default=e.iw_samples, help="NVDM/SBN/fDARN: importance samples")
    p.add_argument("--orderings", type=int, default=e.orderings, help="DocNADE: seeded orderings per document")
    p.add_argument("--ais-chains", type=int, default=e.ais_chains, help="RSM: AIS chains (one run through every length)")
    p.add_argument("--ais-temperatures", type=int, default=e.ais_temperatures, help="RSM: AIS temperatures in [0, 1]")
    p.add_argument("--particles", type=int, default=e.particles, help="LDA: left-to-right particles")
    p.add_argument("--n-words", type=int, default=10, help="top words per dimension for NPMI (Lau et al.: 10)")
    p.set_defaults(func=cmd_reproduce_doc_table)


def _cli(argv: list[str]) -> int:
    from ..cli import build_parser

    args = build_parser().parse_args(argv)
    return args.func(args)


def _checkpoint_epoch(run: RunDirectory) -> int | None:
    from ..training.checkpoint import load_tensors

    path = run.file("checkpoint.safetensors")
    return load_tensors(path)[1]["epoch"] if path.is_file() else None


def _train_row(row: TableRow, sub: RunDirectory, share: float, args: argparse.Namespace, data_dir: str) -> dict:
    """Train (or resume) the row's sub-run with what is left of its share; return what training did.

    A resumed row gets its share minus the training time its ``metrics.jsonl`` records (the epochs'
    training passes; validation time is not recorded there, so a resumed row may run a little over).
    """
    argv = ["train", row.model, "--data-dir", data_dir, "--out", str(sub.path), "--seed", str(args.seed), *row.train_args]
    if args.max_train_docs is not None:
        argv += ["--max-train-docs", str(args.max_train_docs)]
    t0 = time.perf_counter()
    if row.model == "lda":  # a fixed number of Gibbs sweeps: the share is not enforced
        _cli(argv)
        return {"command": "latentnlp " + " ".join(argv), "wall_seconds": time.perf_counter() - t0, "share_minutes": share}
    argv.append("--no-progress")
    left = share - sum(r.get("epoch_seconds", 0.0) for r in sub.read_metrics()) / 60
    epoch = _checkpoint_epoch(sub)
    extra = ["--max-minutes", f"{max(left, 1e-3):.6g}"]
    if left <= 0 and epoch:
        extra += ["--epochs", str(epoch)]  # share spent: restore the best weights from the checkpoint, no more epochs
        log.info("%s: its %.3g training minutes are spent; finishing from the checkpoint at epoch %d", row.id, share, epoch)
    elif epoch:
        log.info("%s: resuming at epoch %d with %.3g of its %.3g minutes left", row.id, epoch, left, share)
    _cli([*argv, *extra])
    history = sub.read_metrics()
    train_config = sub.read_config()["train_config"]
    best = next((r["best_epoch"] for r in reversed(history) if r.get("best_epoch") is not None), None)
    n = len(history)
    if n >= train_config["epochs"] and "--epochs" not in extra:
        stop = "epochs"
    elif train_config["patience"] and best is not None and n - best >= train_config["patience"]:
        stop = "early stopping"
    else:
        stop = "time budget"
    return {"command": "latentnlp " + " ".join(argv + ["--max-minutes", f"{share:.6g}"]),
            "wall_seconds": time.perf_counter() - t0, "epoch_seconds": sum(r.get("epoch_seconds", 0.0) for r in history),
            "share_minutes": share, "epochs": n, "best_epoch": best, "stop_reason": stop}


def _training_identity(row: TableRow, args: argparse.Namespace) -> dict:
    """What a row's trained model depends on (not the budget, so a resumed table may change it)."""
    return {"train_args": list(row.train_args), "seed": args.seed, "max_train_docs": args.max_train_docs}


def _evaluation_identity(row: TableRow, args: argparse.Namespace, settings: EvaluationSettings) -> dict:
    """What a row's evaluation depends on: the test documents, the settings its estimator reads, the words per topic."""
    reads = {"nvdm": ("elbo_samples", "iw_samples"), "sbn": ("elbo_samples", "iw_samples"),
             "fdarn": ("elbo_samples", "iw_samples"), "docnade": ("orderings",),
             "rsm": ("ais_chains", "ais_temperatures", "ais_space"),
             "lda": ("particles",)}[row.model]
    return {"max_eval_docs": args.max_eval_docs, "n_words": args.n_words, "seed": settings.seed,
            **{k: getattr(settings, k) for k in reads}}


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_json(path: Path, value: Any) -> None:
    from ..atomic import atomic_write_text

    atomic_write_text(path, json.dumps(_json_safe(value), indent=2, allow_nan=False) + "\n")


def _finish_row(row: TableRow, sub: RunDirectory, args: argparse.Namespace, settings: EvaluationSettings,
                test: BowCorpus, reference: BowCorpus, training: dict) -> dict:
    """Evaluate a trained row on the test split and score its topics; write ``row.json``."""
    model = load_document_model(sub)
    t0 = time.perf_counter()
    report = evaluate_model(row.model, model, test, settings)
    eval_seconds = time.perf_counter() - t0
    print(f"{row.id}: {format_report(row.model, report)}")
    bound, estimate = estimator_labels(row.model, report)
    topics = model.topic_words(sub.read_vocab(), n_words=args.n_words)
    coherence = topic_coherence(topics, reference, n_words=args.n_words)
    result = {
        "id": row.id, "label": row.label, "model": row.model, "dim": row.dim, "status": "done",
        "published": row.published, "published_source": row.source,
        "bound_per_document": report.bound_per_document if bound else None,
        "estimate_per_document": report.estimate_per_document if estimate else None,
        "bound_corpus": report.bound_corpus if bound else None,
        "estimate_corpus": report.estimate_corpus if estimate else None,
        "bound_estimator": bound, "estimate_estimator": estimate,
        "npmi_mean": coherence.mean, "npmi_per_dimension": list(coherence.per_topic), "top_words": topics,
        "report": report.to_dict(), "eval_seconds": eval_seconds, "training": training, "run_dir": str(sub.path),
        "evaluation_identity": _evaluation_identity(row, args, settings),
    }
    _write_json(sub.file("row.json"), result)
    return _json_safe(result)


def _skipped(row: TableRow, reason: str) -> dict:
    print(f"{row.id}: skipped: {reason}", file=sys.stderr)
    return {"id": row.id, "label": row.label, "model": row.model, "dim": row.dim, "status": "skipped", "reason": reason,
            "published": row.published, "published_source": row.source}


def _table_row(row: TableRow, out: Path, share: float, args: argparse.Namespace, settings: EvaluationSettings,
               data_dir: str, test: BowCorpus, reference: BowCorpus) -> dict:
    """One row: skipped if finished, else trained (or resumed), evaluated and scored."""
    sub = RunDirectory(out / row.id)
    identity = _training_identity(row, args)
    training_file, done = sub.file("training.json"), sub.file("row.json")
    if training_file.is_file():
        training = json.loads(training_file.read_text())
        if training.get("identity") != identity:
            raise ValueError(f"{sub.path} was trained with other settings ({training.get('identity')}, now {identity}); "
                             f"delete it to redo the row, or choose another --out")
        if done.is_file():
            result = json.loads(done.read_text())
            if result.get("evaluation_identity") == _evaluation_identity(row, args, settings):
                print(f"{row.id}: finished before, skipped (delete {sub.path} to redo it)")
                return result
            print(f"{row.id}: trained before; evaluating again with the new evaluation settings")
    else:
        print(f"{row.id}: training ({share:.3g} minutes)")
        try:
            if row.model == "lda":
                import_lda()
            training = _train_row(row, sub, share, args, data_dir) | {"identity": identity}
        except LDAUnavailable as exc:
            return _skipped(row, str(exc))
        _write_json(training_file, training)
    return _finish_row(row, sub, args, settings, test, reference, training)


def ais_warning(report: dict) -> str | None:
    """A flag for an RSM row whose ``log Z_D`` estimates rest on few effective samples, else ``None``.

    Per-length AIS (``joint``/``hidden``): flagged when the smallest effective sample size is
    below 10% of the chains, the usual sign that the schedule is too short for the longest
    documents (``log Z`` underestimated, perplexity optimistic). ``length``
    (:func:`~latentnlp.models.document.rsm.rsm_log_partitions`): flagged when raising ``log Z_D``
    by ``log 2`` for the documents whose estimate has an effective sample size below 10% of its
    draws (``estimate_per_document_low_ess_plus_log2``) raises the perplexity by more than 2%.
    """
    if report.get("ais_space") == "length":
        share, base = report.get("low_ess_document_share"), report.get("estimate_per_document")
        raised = report.get("estimate_per_document_low_ess_plus_log2")
        if None in (share, base, raised) or not (math.isfinite(base) and math.isfinite(raised)) or raised <= 1.02 * base:
            return None
        return (f"log Z_D on few effective samples for {100 * share:.0f}% of the documents; log Z_D + log 2 there "
                f"gives {raised:.1f}")
    ess, chains = report.get("ais_min_effective_sample_size"), report.get("ais_chains")
    if ess is None or not chains or not math.isfinite(ess) or ess >= 0.1 * chains:
        return None
    return f"AIS not converged (min ESS {ess:.1f} of {chains} chains): optimistic"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _markdown(results: list[dict], settings: dict) -> str:
    lines = [
        "# Document models on 20 Newsgroups: per-document test perplexity",
        "",
        "Per-document perplexity exp(mean_d -log p(d) / N_d) on the test split; *bound* and *estimate* are named per row. "
        f"NPMI: mean over dimensions of the top-{settings['n_words']} words' NPMI, document co-occurrence in the training "
        "split (Lau et al. 2014).",
        "",
        "| model | dim | published | ours: bound | ours: estimate | estimator (bound / estimate) | NPMI | training |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in results:
        published = _fmt(r["published"], 0)
        if r["status"] != "done":
            lines.append(f"| {r['label']} | {r['dim']} | {published} | | | skipped: {r['reason']} | | |")
            continue
        t = r["training"]
        trained = f"{t['wall_seconds'] / 60:.3g} min (share {t['share_minutes']:.3g})"
        if "epochs" in t:
            trained = f"{t['epochs']} epochs ({t['stop_reason']}), " + trained
        names = " / ".join(n or "—" for n in (r["bound_estimator"], r["estimate_estimator"]))
        warning = ais_warning(r.get("report", {}))
        if warning:
            names += f" **{warning}**"
        lines.append(f"| {r['label']} | {r['dim']} | {published} | {_fmt(r['bound_per_document'])} | "
                     f"{_fmt(r['estimate_per_document'])} | {names} | {_fmt(r['npmi_mean'], 3)} | {trained} |")
    lines += ["", "Published figures: " + "; ".join(sorted({f"{r['label']}: {r['published_source']}" for r in results})) + ".",
              f"Training budget {settings['budget_minutes']:g} minutes split across the rows as: "
              + ", ".join(f"{k} {v:.3g}" for k, v in settings["split_minutes"].items()) + " (evaluation comes on top). "
              "Settings are the toolkit's defaults (`latentnlp train MODEL --help`) except where a row's command "
              "says otherwise (step sizes, and the RSM's PCD, chosen on validation).",
              "Commands: " + "; ".join(f"`{r['training']['command']}`" for r in results if r["status"] == "done") + "."]
    if settings["max_train_docs"] is not None or settings["max_eval_docs"] is not None:
        lines.append(f"**Quick run, not comparable with the papers**: max_train_docs={settings['max_train_docs']}, "
                     f"max_eval_docs={settings['max_eval_docs']}.")
    return "\n".join(lines) + "\n"


def cmd_reproduce_doc_table(args: argparse.Namespace) -> int:
    """``latentnlp reproduce doc-table``: train, evaluate and score every row; write table.md and table.json."""
    from ..atomic import atomic_write_text

    rows = [ROWS_BY_ID[r] for r in dict.fromkeys(args.rows)] if args.rows else list(TABLE_ROWS)
    split = budget_split(rows, args.budget_minutes)
    settings = EvaluationSettings(elbo_samples=args.elbo_samples, iw_samples=args.iw_samples, orderings=args.orderings,
                                  ais_chains=args.ais_chains, ais_temperatures=args.ais_temperatures,
                                  particles=args.particles, seed=args.seed, ais_space=TABLE_EVALUATION.ais_space)
    data_dir = str(resolve_data_dir(args.data_dir).resolve())
    splits = load_splits("20news-nvdm", data_dir, VALID_FRACTION, 0)
    test = _first_docs(splits["test"], args.max_eval_docs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log.info("doc-table: %d rows, training budget %.4g minutes (%s)", len(rows), args.budget_minutes,
             ", ".join(f"{k} {v:.3g}" for k, v in split.items()))
    results = [_table_row(row, out, split[row.id], args, settings, data_dir, test, splits["train"]) for row in rows]
    table_settings = {"data_dir": data_dir, "split": "test", "n_test_docs": len(test), "budget_minutes": args.budget_minutes,
                      "split_minutes": split, "seed": args.seed, "max_train_docs": args.max_train_docs,
                      "max_eval_docs": args.max_eval_docs, "n_words": args.n_words,
                      "evaluation": dataclasses.asdict(settings)}
    markdown = _markdown(results, table_settings)
    atomic_write_text(out / "table.md", markdown)
    _write_json(out / "table.json", {"settings": table_settings, "rows": results})
    print(markdown)
    print(f"wrote {out / 'table.md'} and {out / 'table.json'}")
    return 0
