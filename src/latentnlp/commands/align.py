"""Word-alignment commands: ``latentnlp align`` and ``evaluate`` of an alignment run.

    latentnlp align --source train.f.gz --target train.e.gz --model ibm2 --iterations 5 \\
        --test-source test.f --test-target test.e --out RUN_DIR
    latentnlp evaluate RUN_DIR --gold test.wa.nonullalign

``align`` trains ``p(target | source)`` (the *forward* model) and, unless
``--symmetrize none``, also ``p(source | target)`` (the *backward* model), then writes
Viterbi alignments. As in the WPT-03 shared task, test pairs are aligned by training on
train + test: the ``--test-*`` files are appended to the training pairs and their
alignments are written separately. Run directory::

    RUN_DIR/
      config.json                      "model": "ibm1" | "ibm2", configs, data files, counts
      source_vocab.txt, target_vocab.txt
      forward.safetensors              t-table of p(target | source): keys (K,) int64 = e * V_target + f
                                       (e = V_source: NULL), t (K,) float64; config in the header
      backward.safetensors             the same for p(source | target) (keys over the swapped vocabularies)
      train.align, test.align          final (symmetrised) links, Pharaoh "i-j": i source, j target, 0-based
      test.forward.align, test.backward.align   each direction's links, also as (source, target)
      test.lengths.txt                 "source_length target_length" per test pair
      metrics.jsonl                    one JSON object per EM iteration (direction, model, log-likelihood, seconds)
      evaluation.json                  written by ``latentnlp evaluate``
      alignment_example.png            written by ``latentnlp evaluate``: one test pair's matrix with the gold
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_text
from ..data.parallel import (
    GoldAlignment,
    read_gold_alignment,
    read_parallel,
    read_pharaoh,
    write_pharaoh,
)
from ..evaluation.alignment import alignment_scores, plot_alignment
from ..models.alignment import IBM1Config, IBM2Config, IBMModel1, IBMModel2, symmetrize
from ..models.alignment.ibm import AlignmentSet
from ..models.alignment.symmetrize import posterior_symmetrize
from ..runs import RunDirectory
from ..training.checkpoint import atomic_save_tensors
from ..training.distributed import run_distributed

log = logging.getLogger("latentnlp.commands.align")

SYMMETRIZE_CHOICES = ("grow-diag-final-and", "intersection", "union", "posterior", "none")
POSTERIOR_SLICE = 20_000  # pairs decoded at a time under --symmetrize posterior (bounds memory)


def add_root_parsers(sub: argparse._SubParsersAction) -> None:
    """``align``."""
    p = sub.add_parser("align", help="train IBM Model 1 / fast_align's Model 2 and write word alignments")
    p.add_argument("--source", required=True, help="source-side training text, one tokenized sentence per line (.gz allowed)")
    p.add_argument("--target", required=True, help="target-side training text, line-aligned with --source")
    p.add_argument("--model", required=True, choices=["ibm1", "ibm2"], help="ibm1: IBM Model 1; ibm2: fast_align's diagonal Model 2")
    p.add_argument("--iterations", type=int, default=5, help="EM iterations of the chosen model (default %(default)s)")
    p.add_argument("--model1-iterations", type=int, default=5, help="Model 1 iterations initialising Model 2 (default %(default)s)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--symmetrize", default="grow-diag-final-and", choices=SYMMETRIZE_CHOICES,
                   help="combine both directions (default %(default)s; posterior: keep links whose product of the two "
                        "directions' link posteriors reaches --posterior-threshold, Liang et al. 2006; none: forward model only)")
    p.add_argument("--posterior-threshold", type=float, default=0.2,
                   help="--symmetrize posterior: threshold in (0, 1] (default %(default)s, chosen on the WPT-03 trial pairs)")
    p.add_argument("--max-sentences", type=int, default=None, help="train on the first N pairs of --source/--target only")
    p.add_argument("--test-source", help="test pairs to align (appended to training, as in WPT-03)")
    p.add_argument("--test-target")
    p.add_argument("--max-length", type=int, default=100, help="pairs longer than this are left out of EM (default %(default)s)")
    p.add_argument("--p0", type=float, default=0.08, help="ibm2: NULL alignment probability (fast_align's default %(default)s)")
    p.add_argument("--tension", type=float, default=4.0, help="ibm2: initial diagonal tension (default %(default)s)")
    p.add_argument("--fixed-tension", action="store_true", help="ibm2: keep the tension fixed (fast_align without -o)")
    p.add_argument("--gold-order", default="auto", choices=["auto", "source-target", "target-source"],
                   help="which side a gold file's first position column refers to (auto: the orientation whose "
                        "positions fit the test sentences; WPT-03 lists English first)")
    p.set_defaults(func=cmd_align)


def _model_config(args: argparse.Namespace) -> IBM1Config | IBM2Config:
    if args.model == "ibm1":
        return IBM1Config(n_iterations=args.iterations, max_length=args.max_length)
    return IBM2Config(
        n_iterations=args.iterations,
        model1_iterations=args.model1_iterations,
        p0=args.p0,
        tension=args.tension,
        learn_tension=not args.fixed_tension,
        max_length=args.max_length,
    )


def _metrics_rows(model: IBMModel1 | IBMModel2, direction: str) -> list[dict[str, Any]]:
    rows = []
    seconds = model.iteration_seconds_
    m1 = list(getattr(model, "model1_log_likelihood_", []))
    for k, ll in enumerate(m1):
        rows.append({"direction": direction, "model": "ibm1", "iteration": k + 1, "log_likelihood": ll, "seconds": seconds[k]})
    for k, ll in enumerate(model.log_likelihood_):
        row = {"direction": direction, "model": model.name, "iteration": k + 1, "log_likelihood": ll, "seconds": seconds[len(m1) + k]}
        if isinstance(model, IBMModel2) and model.tension_history_:
            row["tension"] = model.tension_history_[k]
        rows.append(row)
    return rows


def cmd_align(args: argparse.Namespace) -> int:
    return run_distributed(_cmd_align_in_group, args)


def _cmd_align_in_group(args: argparse.Namespace, ctx) -> int:
    if args.iterations < 0 or args.model1_iterations < 0:
        raise ValueError(f"--iterations and --model1-iterations must be >= 0, got {args.iterations}, {args.model1_iterations}")
    if (args.test_source is None) != (args.test_target is None):
        raise ValueError("--test-source and --test-target go together")
    config = _model_config(args)
    model_cls = IBMModel1 if args.model == "ibm1" else IBMModel2
    t0 = time.perf_counter()
    extra = [(args.test_source, args.test_target)] if args.test_source else []
    corpus = read_parallel(args.source, args.target, max_sentences=args.max_sentences, extra=extra)
    n_test = 0
    if extra:
        n_test = len(read_parallel(args.test_source, args.test_target))
    n_train = len(corpus) - n_test
    log.info("read %d training + %d test pairs (%d / %d tokens) in %.1f s", n_train, n_test, *corpus.n_tokens, time.perf_counter() - t0)
    run = RunDirectory(args.out)

    forward = model_cls(config)
    fwd_links = forward.fit_align(corpus, ctx)
    backward = bwd_links = None
    if args.symmetrize != "none":
        backward = model_cls(config)
        bwd_links = backward.fit_align(corpus.swap(), ctx)
    if not ctx.is_main:
        return 0

    run.write_config(
        {
            "model": args.model,
            "model_config": config.to_dict(),
            "symmetrize": args.symmetrize,
            "posterior_threshold": args.posterior_threshold if args.symmetrize == "posterior" else None,
            "gold_order": args.gold_order,
            "data": {
                "source": str(Path(args.source).resolve()),
                "target": str(Path(args.target).resolve()),
                "test_source": str(Path(args.test_source).resolve()) if args.test_source else None,
                "test_target": str(Path(args.test_target).resolve()) if args.test_target else None,
                "max_sentences": args.max_sentences,
                "n_train": n_train,
                "n_test": n_test,
                "n_source_tokens": corpus.n_tokens[0],
                "n_target_tokens": corpus.n_tokens[1],
            },
            "world_size": ctx.world_size,
        }
    )
    corpus.source_vocab.write(run.file("source_vocab.txt"))
    corpus.target_vocab.write(run.file("target_vocab.txt"))
    rows = []
    for name, model in (("forward", forward), ("backward", backward)):
        if model is None:
            continue
        tensors, meta = model.state_tensors()
        meta["direction"] = name
        atomic_save_tensors(run.file(f"{name}.safetensors"), tensors, meta)
        rows += _metrics_rows(model, name)
    atomic_write_text(run.file(run.METRICS), "".join(json.dumps(r) + "\n" for r in rows))

    t0 = time.perf_counter()
    if bwd_links is None:
        final = fwd_links
    elif args.symmetrize == "posterior":
        final = _posterior_links(forward, backward, corpus, args.posterior_threshold)
    else:
        final = symmetrize(fwd_links, bwd_links, args.symmetrize)
    write_pharaoh(run.file("train.align"), final.select(0, n_train))
    if n_test:
        write_pharaoh(run.file("test.align"), final.select(n_train, len(corpus)))
        write_pharaoh(run.file("test.forward.align"), fwd_links.select(n_train, len(corpus)))
        if bwd_links is not None:
            write_pharaoh(run.file("test.backward.align"), bwd_links.select(n_train, len(corpus)).swap())
        lengths = np.stack([corpus.source.lengths[n_train:], corpus.target.lengths[n_train:]], axis=1)
        atomic_write_text(run.file("test.lengths.txt"), "".join(f"{a} {b}\n" for a, b in lengths.tolist()))
    log.info("wrote alignments in %.1f s", time.perf_counter() - t0)
    print(f"run directory: {run.path}")
    return 0


def _posterior_links(forward, backward, corpus, threshold: float) -> AlignmentSet:
    """Posterior-product decoding of every pair, :data:`POSTERIOR_SLICE` pairs at a time."""
    if not 0 < threshold <= 1:
        raise ValueError(f"--posterior-threshold must be in (0, 1], got {threshold}")
    parts = []
    for start in range(0, len(corpus), POSTERIOR_SLICE):
        piece = corpus.select(start, min(start + POSTERIOR_SLICE, len(corpus)))
        decoded = posterior_symmetrize(forward.link_posteriors(piece), backward.link_posteriors(piece.swap()), threshold)
        parts.extend(decoded.to_sets())
    return AlignmentSet.from_sets(parts)


# ---------------------------------------------------------------- evaluate
def _orient(gold: GoldAlignment, lengths: np.ndarray, order: str, gold_path: str) -> GoldAlignment:
    """The gold in ``(source_pos, target_pos)`` order, choosing the orientation as ``order`` says.

    Raises:
        ValueError: naming the gold file and a sentence whose links do not fit the test
            sentence lengths in the chosen (or any) orientation.
    """

    def misfit(g: GoldAlignment) -> tuple[int, tuple[int, int]] | None:
        for k, links in enumerate(g.possible):
            for i, j in links:
                if not (i < lengths[k, 0] and j < lengths[k, 1]):
                    return k, (i, j)
        return None

    swapped = gold.swap()
    if order == "source-target":
        candidates = [gold]
    elif order == "target-source":
        candidates = [swapped]
    else:
        candidates = [gold, swapped]
    fits = [g for g in candidates if misfit(g) is None]
    if not fits:
        k, link = misfit(candidates[0])  # type: ignore[misc]
        raise ValueError(
            f"{gold_path}: sentence {k + 1} has link {link[0] + 1} {link[1] + 1} (1-based) outside the test pair of "
            f"{lengths[k, 0]} source / {lengths[k, 1]} target words (gold order {order})"
        )
    return fits[0]


def evaluate(args: argparse.Namespace) -> int:
    """``latentnlp evaluate RUN_DIR --gold FILE`` for an alignment run: AER, precision, recall."""
    run = RunDirectory(args.run_dir)
    config = run.read_config()
    if not args.gold:
        raise ValueError(f"evaluating the alignment run {run.path} needs --gold FILE (NAACL/WPT-03 or Pharaoh format)")
    n_test = config["data"]["n_test"]
    if not n_test or not run.file("test.align").is_file():
        raise FileNotFoundError(f"{run.path} holds no test alignments (test.align); run align with --test-source/--test-target")
    lengths = np.loadtxt(run.file("test.lengths.txt"), dtype=np.int64, ndmin=2)
    gold = _orient(read_gold_alignment(args.gold, n_sentences=n_test), lengths, config.get("gold_order", "auto"), args.gold)
    result: dict[str, Any] = {"gold": str(Path(args.gold).resolve()), "n_sentences": n_test}
    print(f"{config['model']} {run.path} against {args.gold} ({n_test} sentences, {gold.n_sure} sure / {gold.n_possible} possible links)")
    for name, file in (("forward", "test.forward.align"), ("backward", "test.backward.align"), ("final", "test.align")):
        if not run.file(file).is_file():
            continue
        predicted = read_pharaoh(run.file(file)).sure
        scores = alignment_scores(predicted, gold)
        label = config.get("symmetrize", "none") if name == "final" else name
        print(f"{name:9s} ({label}): {scores.format()}")
        result[name] = scores.to_dict()
        result[name]["method"] = label
    run.write_evaluation(result)
    _plot_example(run, config, gold)
    return 0


def _plot_example(run: RunDirectory, config: dict[str, Any], gold: GoldAlignment) -> None:
    """Draw the first test pair of 6-20 words a side (needs the test files recorded in the config)."""
    data = config["data"]
    if not data.get("test_source") or not Path(data["test_source"]).is_file() or not Path(data["test_target"]).is_file():
        return
    test = read_parallel(data["test_source"], data["test_target"])
    predicted = read_pharaoh(run.file("test.align")).sure
    for k in range(len(test)):
        src, tgt = test.sentence_pair(k)
        if 6 <= len(src) <= 20 and 6 <= len(tgt) <= 20:
            plot_alignment(
                run.file("alignment_example.png"), src, tgt, predicted[k], gold.sure[k], gold.possible[k],
                title=f"test pair {k + 1}: dots {config.get('symmetrize')}, squares gold sure / possible",
            )
            return
