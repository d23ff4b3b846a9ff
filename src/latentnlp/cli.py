"""``latentnlp``: the command line.

    latentnlp train nvdm --data-dir DIR --latent-dim 50 --epochs N --seed S --out RUN_DIR
    latentnlp evaluate RUN_DIR [--split test] [--iw-samples 100]
    latentnlp topics RUN_DIR [--n-words 10] [--npmi]     (nvdm, sbn, fdarn, docnade, rsm, lda)
    latentnlp train sbn|fdarn --data-dir DIR --latent-dim 50 [--epochs --lr --batch-size --max-minutes --seed] --out RUN_DIR
    latentnlp train docnade|rsm --data-dir DIR --hidden-dim 50 [...] --out RUN_DIR
    latentnlp train lda --data-dir DIR --topics 50 --out RUN_DIR
    latentnlp evaluate RUN_DIR [--iw-samples K | --orderings K | --ais-chains M --ais-temperatures T | --particles P]
                                                    (document models: per-document perplexity, bound and estimate named)
    latentnlp reproduce doc-table --data-dir DIR [--budget-minutes 140] [--rows ID ...] --out RUN_DIR
    latentnlp neighbors RUN_DIR WORD [--n-words 10]
    latentnlp transform RUN_DIR [--split test] --out MEANS.npy
    latentnlp train hmm --train FILE [--unsupervised --states K] --out RUN_DIR
    latentnlp tag RUN_DIR < sentences.txt
    latentnlp evaluate RUN_DIR --test FILE          (HMM: accuracy, or M-1/1-1/V-measure)
    latentnlp align --source F --target E --model ibm1|ibm2 --iterations N --out RUN_DIR
    latentnlp evaluate RUN_DIR --gold FILE          (alignment: AER, precision, recall)
    latentnlp train nade|made|rbm --data-dir DIR --out RUN_DIR   (binarized MNIST, or --data FILE.npz)
    latentnlp evaluate RUN_DIR                      (density: test NLL in nats, estimator named)
    latentnlp sample RUN_DIR --n 64                 (density: PNG grid of samples; rnnlm/sentence-vae: sentences)
    latentnlp train memm|crf|bilstm-crf --train FILE [--dev FILE | --dev-fraction 0.1] --columns NAME...
                    --token-column NAME --tag-column NAME [--feature-columns NAME...] [--scheme iob2] --out RUN_DIR
    latentnlp tag RUN_DIR [--input-format text|conll] [--nbest K] < input   (memm/crf/bilstm-crf: CoNLL columns out)
    latentnlp evaluate RUN_DIR --test FILE          (memm/crf/bilstm-crf: token accuracy, conlleval chunk P/R/F1)
    latentnlp train rnnlm|sentence-vae --data-dir DIR [--train F --valid F] --out RUN_DIR   (PTB by default)
    latentnlp evaluate RUN_DIR [--test FILE]        (rnnlm/sentence-vae: NLL per sentence, perplexities, KL, IW)
    latentnlp reconstruct RUN_DIR "a sentence"      (sentence-vae: decode from the posterior mean and samples)
    latentnlp interpolate RUN_DIR "first" "second" --steps 5   (sentence-vae: homotopy between two codes)

``evaluate`` and ``tag`` read the model name from ``RUN_DIR/config.json`` and
dispatch to that model's command module (an explicit table, :data:`EVALUATORS`).
Multi-process: ``torchrun --nproc-per-node 2 -m latentnlp train nvdm ...``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from .commands import align as align_commands
from .commands import density as density_commands
from .commands import documents as document_commands
from .commands import hmm as hmm_commands
from .commands import language as language_commands
from .commands import nvdm as nvdm_commands
from .commands import tagger as tagger_commands
from .data.bow import CorpusFormatError
from .runs import RunDirectory
from .training.checkpoint import CheckpointError

# model name in config.json -> function(args) -> exit code
EVALUATORS: dict[str, Callable[[argparse.Namespace], int]] = {"nvdm": nvdm_commands.evaluate, "hmm": hmm_commands.evaluate,
                                                          "ibm1": align_commands.evaluate, "ibm2": align_commands.evaluate,
                                                          "nade": density_commands.evaluate, "made": density_commands.evaluate,
                                                          "rbm": density_commands.evaluate,
                                                          "memm": tagger_commands.evaluate, "crf": tagger_commands.evaluate,
                                                          "bilstm-crf": tagger_commands.evaluate,
                                                          "rnnlm": language_commands.evaluate,
                                                          "sentence-vae": language_commands.evaluate,
                                                          "sbn": document_commands.evaluate, "fdarn": document_commands.evaluate,
                                                          "docnade": document_commands.evaluate, "rsm": document_commands.evaluate,
                                                          "lda": document_commands.evaluate}

def _hmm_tag(args: argparse.Namespace) -> int:
    """``tag`` of an HMM run: plain text only (``--input-format conll`` and ``--nbest`` are the feature taggers')."""
    if getattr(args, "input_format", None) not in (None, "text") or getattr(args, "nbest", None) is not None:
        raise ValueError("an HMM run tags plain text, one sentence per line; --input-format conll and --nbest "
                         "apply to memm, crf and bilstm-crf runs")
    return hmm_commands.tag(args)


TAGGERS: dict[str, Callable[[argparse.Namespace], int]] = {"hmm": _hmm_tag, "memm": tagger_commands.tag,
                                                       "crf": tagger_commands.tag, "bilstm-crf": tagger_commands.tag}


SAMPLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "nade": density_commands.cmd_sample, "made": density_commands.cmd_sample, "rbm": density_commands.cmd_sample,
    "rnnlm": language_commands.cmd_sample, "sentence-vae": language_commands.cmd_sample}


def _dispatch(table: dict[str, Callable[[argparse.Namespace], int]], what: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        model = RunDirectory(args.run_dir).read_config().get("model")
        if model not in table:
            raise ValueError(f"{args.run_dir}: cannot {what} a {model!r} run; {what} knows {sorted(table)}")
        return table[model](args)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentnlp", description="Latent-variable models of language.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model into a run directory")
    train_sub = train.add_subparsers(dest="model", required=True)
    nvdm_commands.add_train_parser(train_sub)
    hmm_commands.add_train_parser(train_sub)
    density_commands.add_train_parser(train_sub)
    tagger_commands.add_train_parsers(train_sub)
    language_commands.add_train_parsers(train_sub)
    document_commands.add_train_parsers(train_sub)

    ev = sub.add_parser("evaluate", help="evaluate a trained model (what is measured depends on the model)")
    ev.add_argument("run_dir")
    ev.add_argument("--data-dir", help="override the data directory recorded in the run")
    ev.add_argument("--split", default="test", choices=["train", "valid", "test"])
    ev.add_argument("--test", help="a test file (sequence models)")
    ev.add_argument("--gold", help="a gold-standard file (alignment)")
    ev.add_argument("--elbo-samples", type=int, default=20, help="samples averaged in each document's ELBO")
    ev.add_argument("--iw-samples", type=int, default=100, help="K for the importance-weighted estimate (0: skip)")
    ev.add_argument("--seed", type=int, default=0)
    density_commands.add_evaluate_options(ev)
    document_commands.add_evaluate_options(ev)
    ev.set_defaults(func=_dispatch(EVALUATORS, "evaluate"))

    tag = sub.add_parser("tag", help="tag sentences from standard input (one per line, or CoNLL columns) with a trained tagger")
    tag.add_argument("run_dir")
    tagger_commands.add_tag_options(tag)
    tag.set_defaults(func=_dispatch(TAGGERS, "tag"))

    nvdm_commands.add_root_parsers(sub)
    sub.choices["topics"].set_defaults(func=document_commands.cmd_topics)  # nvdm's parser, every document model's command
    document_commands.add_root_parsers(sub)
    align_commands.add_root_parsers(sub)

    sample = sub.add_parser("sample", help="draw samples from a trained model (density: PNG grid; language: sentences)")
    sample.add_argument("run_dir")
    sample.add_argument("--n", type=int, default=None, help="number of samples (default: 64 images, 10 sentences)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", help="density: PNG path (default RUN_DIR/samples.png)")
    language_commands.add_decoding_options(sample)
    sample.set_defaults(func=_dispatch(SAMPLERS, "sample"))
    language_commands.add_root_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except (FileNotFoundError, CorpusFormatError, CheckpointError, ValueError, KeyError, FloatingPointError,
            document_commands.LDAUnavailable) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"latentnlp: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
