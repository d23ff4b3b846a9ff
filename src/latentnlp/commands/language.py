"""Language-model commands: ``train rnnlm|sentence-vae``, ``evaluate``, ``sample``, ``reconstruct``, ``interpolate``,
``fit-prior``.

Data: the Penn Treebank in Mikolov's form under ``--data-dir`` (``ptb/ptb.{train,valid,test}.txt``)
by default, or a user's own one-sentence-per-line files (``--train``/``--valid``/``--test``).
The vocabulary comes from the training file (``--min-count``, ``--max-vocab``); words
outside it map to ``<unk>`` and the commands say how many did. Settings are chosen on the
validation file; ``evaluate`` scores the test file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path

import torch

from ..data.sentences import (
    UNK,
    SentenceVocabulary,
    batchify_stream,
    collate_sentences,
    ptb_paths,
    read_sentences,
)
from ..data.vocab import Vocabulary
from ..models.language.rnnlm import (
    NETWORK_FIELDS,
    RNNLanguageModel,
    RNNLMConfig,
    StreamWindow,
    evaluate_sentences,
    stream_windows,
)
from ..runs import RunDirectory
from ..training.distributed import run_distributed
from ..training.seeding import seeded
from ..training.trainer import TrainConfig, Trainer

log = logging.getLogger("latentnlp.commands.language")

MODELS = ("rnnlm", "sentence-vae")


# ------------------------------------------------------------------- data
def data_files(spec: dict) -> dict[str, Path]:
    """``train``/``valid``/``test`` paths of the data ``spec`` recorded in a run's config."""
    if spec["source"] == "ptb":
        return ptb_paths(spec["data_dir"])
    return {k: Path(spec[k]) for k in ("train", "valid", "test") if spec.get(k)}


def run_data(config: dict, data_dir: str | None = None) -> tuple[dict[str, Path], bool]:
    """A run's ``train``/``valid``/``test`` paths and its ``lowercase`` flag; ``data_dir`` (a PTB run's
    ``--data-dir`` given now) replaces the folder recorded at training time."""
    spec = dict(config["data"])
    if data_dir and spec["source"] == "ptb":
        spec["data_dir"] = data_dir
    return data_files(spec), spec.get("lowercase", False)


def _data_spec(args: argparse.Namespace) -> dict:
    if args.train:
        if not args.valid:
            raise ValueError("--train needs --valid (settings are chosen on validation data)")
        return {"source": "files", "train": str(Path(args.train).resolve()), "valid": str(Path(args.valid).resolve()),
                "test": str(Path(args.test).resolve()) if args.test else None, "lowercase": args.lowercase}
    from ..data.paths import resolve_data_dir

    return {"source": "ptb", "data_dir": str(resolve_data_dir(args.data_dir).resolve()), "lowercase": False}


def encode_file(path: Path, vocab: SentenceVocabulary, lowercase: bool = False) -> list[torch.Tensor]:
    """Read and encode a sentence file, logging how many tokens were unknown."""
    ids, unknown = vocab.encode_all(read_sentences(path, lowercase=lowercase))
    if unknown:
        common = ", ".join(f"{w!r}" for w, _ in Counter(unknown).most_common(5))
        log.warning("%s: %d tokens are not in the vocabulary and map to %s (most common: %s)", path, len(unknown), UNK, common)
    return ids


def load_vocab(run: RunDirectory) -> SentenceVocabulary:
    return SentenceVocabulary(Vocabulary(run.read_vocab(), unk=UNK))


# ------------------------------------------------------------------ train
def _common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder holding ptb/ (default: $LATENTNLP_DATA)")
    p.add_argument("--train", help="your own training file, one sentence per line (instead of PTB)")
    p.add_argument("--valid", help="your own validation file (with --train)")
    p.add_argument("--test", help="your own test file (with --train; read by evaluate)")
    p.add_argument("--lowercase", action="store_true", help="lower-case your own files")
    p.add_argument("--min-count", type=int, default=1, help="words seen fewer times in train become <unk>")
    p.add_argument("--max-vocab", type=int, default=None, help="cap on the vocabulary size")
    p.add_argument("--out", required=True, help="run directory to create or resume")
    p.add_argument("--cell", default="lstm", choices=["rnn", "lstm", "gru"])
    p.add_argument("--embedding-dim", type=int, default=200)
    p.add_argument("--hidden-dim", type=int, default=200)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.0, help="dropout on non-recurrent connections")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32, help="sentences (sentence level) or streams (continuous)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "linear", "cosine", "step"])
    p.add_argument("--lr-decay", type=float, default=0.5, help="'step' schedule: factor per epoch")
    p.add_argument("--lr-decay-start", type=int, default=5, help="'step' schedule: first decayed epoch (1-based)")
    p.add_argument("--grad-clip", type=float, default=5.0, help="max global gradient norm (Zaremba: 5)")
    p.add_argument("--patience", type=int, default=3, help="validations without improvement before stopping (0: never)")
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument("--adaptive-softmax", metavar="C1,C2,..",
                   help="adaptive softmax (Grave et al. 2017): vocabulary ids where tail clusters start, e.g. 2000 "
                        "(words are ids by training frequency; PTB's first 2,000 ids cover 87%% of tokens)")
    p.add_argument("--init-from", metavar="RUN_DIR",
                   help="start from an rnnlm run's weights (same vocabulary): a finished run's final weights, or an "
                        "unfinished run's checkpoint (after its last completed epoch). An rnnlm continues from an "
                        "rnnlm of the same sizes (dropout may differ); a sentence-vae takes them as its decoder and "
                        "encoder (SentenceVAE.load_language_model), or continues a sentence-vae run of the same "
                        "network (prior included; the KL schedule, free bits and dropout may differ)")


def add_train_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rnnlm", help="recurrent language model (Elman RNN, LSTM, GRU), sentence-level or continuous")
    _common_options(p)
    p.add_argument("--mode", default="sentence", choices=["sentence", "continuous"],
                   help="sentence: each sentence alone (Bowman's baseline); continuous: truncated BPTT over the corpus")
    p.add_argument("--bptt", type=int, default=20, help="continuous mode: steps per window (Zaremba small: 20)")
    p.add_argument("--tie-weights", action="store_true", help="share input and output embeddings")
    p.add_argument("--init-range", type=float, default=0.1)
    p.set_defaults(func=cmd_train, model_name="rnnlm")

    p = sub.add_parser("sentence-vae", help="sentence VAE (Bowman et al. 2016): LSTM encoder, Gaussian z, LSTM decoder")
    _common_options(p)
    p.add_argument("--latent-dim", type=int, default=13, help="z dimensions (Bowman: 13)")
    p.add_argument("--bidirectional", action="store_true", help="bidirectional encoder")
    p.add_argument("--feed-context", action="store_true", help="feed z to the decoder at every step, not only at the start")
    p.add_argument("--tie-weights", action="store_true",
                   help="decoder softmax shares the decoder's input embedding (needs --embedding-dim == --hidden-dim)")
    p.add_argument("--share-embedding", action="store_true", help="the encoder reads the decoder's embedding table")
    p.add_argument("--word-dropout", type=float, default=0.0, help="fraction of decoder inputs replaced by <unk> in training")
    p.add_argument("--kl-schedule", default="sigmoid", choices=["constant", "linear", "sigmoid", "cyclical"])
    p.add_argument("--kl-anneal-steps", type=int, default=5000, help="steps to reach weight 1 (cyclical: all cycles)")
    p.add_argument("--kl-sigmoid-rate", type=float, default=0.0025, help="sigmoid schedule's slope per step")
    p.add_argument("--kl-cycles", type=int, default=4, help="cyclical schedule: cycles (Fu et al. 2019: 4)")
    p.add_argument("--kl-cycle-ratio", type=float, default=0.5, help="cyclical: share of a cycle spent increasing")
    p.add_argument("--free-bits", type=float, default=0.0, help="free bits per latent dimension, nats (Kingma et al. 2016); "
                   "under a mixture prior, on the total KL (free bits x latent dimensions)")
    p.add_argument("--prior-components", type=int, default=0,
                   help="0: p(z) = N(0, I); M: a mixture of M Gaussians, kept fixed in training (fitted by "
                        "'latentnlp fit-prior'; start from such a run with --init-from)")
    p.set_defaults(func=cmd_train, model_name="sentence-vae")


def cmd_train(args: argparse.Namespace) -> int:
    return run_distributed(_train_in_group, args)


def _train_config(args: argparse.Namespace, monitor: str, batch_size: int, shuffle: bool) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs, batch_size=batch_size, learning_rate=args.lr, optimizer=args.optimizer,
        lr_schedule=args.lr_schedule, lr_decay=args.lr_decay, lr_decay_start=args.lr_decay_start,
        grad_clip=args.grad_clip, patience=args.patience, max_minutes=args.max_minutes, monitor=monitor,
        seed=args.seed, shuffle=shuffle, progress=not args.no_progress and sys.stderr.isatty(),
        resume=not args.no_resume,
    )


def _check_resumable(run: RunDirectory, name: str, model_config, resume: bool) -> None:
    if not resume or not run.file(run.CHECKPOINT).is_file() or not run.file(run.CONFIG).is_file():
        return
    previous = run.read_config()
    same = previous.get("model") == name
    if same:  # compare through the config class: fields added since then take their defaults
        try:
            same = type(model_config)(**previous.get("model_config", {})) == model_config
        except (TypeError, ValueError):
            same = False
    if not same:
        raise ValueError(f"{run.path} holds a checkpoint of a different model ({previous.get('model')}); "
                         "pass --no-resume or choose another --out")


def _train_in_group(args: argparse.Namespace, ctx) -> int:
    run = RunDirectory(args.out)
    spec = _data_spec(args)
    files = data_files(spec)
    train_sentences = read_sentences(files["train"], lowercase=spec["lowercase"])
    vocab = SentenceVocabulary.build(train_sentences, min_count=args.min_count, max_size=args.max_vocab)
    train_ids, _ = vocab.encode_all(train_sentences)
    valid_ids = encode_file(files["valid"], vocab, spec["lowercase"])
    with seeded(args.seed):
        if args.model_name == "rnnlm":
            model = RNNLanguageModel(RNNLMConfig(
                vocab_size=len(vocab), cell=args.cell, embedding_dim=args.embedding_dim, hidden_dim=args.hidden_dim,
                num_layers=args.layers, dropout=args.dropout, tie_weights=args.tie_weights, init_range=args.init_range,
                softmax_cutoffs=_softmax_cutoffs(args.adaptive_softmax)))
        else:
            model = _build_vae(args, len(vocab))
    mode = getattr(args, "mode", "sentence")
    _check_resumable(run, args.model_name, model.config, not args.no_resume)
    resuming = not args.no_resume and run.file(run.CHECKPOINT).is_file()
    init_from_epoch = None  # set when --init-from names an unfinished run
    if args.init_from and not resuming:  # a checkpoint, when there is one, holds later weights
        init_from_epoch = _initialize_from(model, args.model_name, RunDirectory(args.init_from), vocab)
    elif args.init_from and run.file(run.CONFIG).is_file():
        init_from_epoch = run.read_config().get("init_from_epoch")
    if mode == "continuous":
        if ctx.enabled:
            raise ValueError("continuous (truncated-BPTT) training carries one state through the corpus and runs "
                             "in one process; use --mode sentence under torchrun")
        stream = batchify_stream(train_ids, vocab, args.batch_size)
        windows = stream_windows(stream, args.bptt)
        # Each Trainer "example" is one window across all streams, visited in order.
        train_config = _train_config(args, "valid_perplexity", batch_size=1, shuffle=False)

        def collate(idx: list[int]) -> StreamWindow:
            (k,) = idx
            start, stop = windows[k]
            return StreamWindow(stream[:, start:stop], stream[:, start + 1 : stop + 1], reset=k == 0)

        n_train = len(windows)
        valid_stream = _eval_stream(valid_ids, vocab)

        def validate(m) -> dict[str, float]:
            total, count = m.stream_log_likelihood(valid_stream)
            return {"valid_perplexity": float(torch.tensor(-total / count).exp()), "valid_nll_per_token": -total / count}
    else:
        monitor = "valid_perplexity" if args.model_name == "rnnlm" else "valid_nll_per_sentence"
        train_config = _train_config(args, monitor, batch_size=args.batch_size, shuffle=True)

        def collate(idx: list[int]):
            return collate_sentences([train_ids[i] for i in idx], vocab)

        n_train = len(train_ids)

        def validate(m) -> dict[str, float]:
            if args.model_name == "rnnlm":
                figures = evaluate_sentences(m, valid_ids, vocab)
            else:
                figures = _vae_validation(m, valid_ids, vocab)
            return {f"valid_{k}": v for k, v in figures.items() if isinstance(v, float)}
    if ctx.is_main:
        run.write_config({
            "model": args.model_name, "model_config": model.config.to_dict(), "train_config": train_config.to_dict(),
            "data": spec, "mode": mode, "bptt": getattr(args, "bptt", None), "n_streams": args.batch_size,
            "n_train_sentences": len(train_ids), "n_valid_sentences": len(valid_ids), "seed": args.seed,
            "world_size": ctx.world_size, "init_from": args.init_from,
            "init_from_epoch": init_from_epoch,
        })
        run.write_vocab(vocab.tokens)
    log.info("%s (%s): train %d sentences, valid %d, vocabulary %d (test not touched)",
             args.model_name, mode, len(train_ids), len(valid_ids), len(vocab))
    trainer = Trainer(model, train_config, n_train, collate, validate=validate, run_dir=run.path, ctx=ctx)
    result = trainer.fit()
    if not ctx.is_main:
        return 0
    run.save_model(args.model_name, model)
    run.plot_learning_curve("train_loss", train_config.monitor,
                            train_label="train loss (nats per sentence or stream-window)")
    log.info("stopped after %d epochs (%s) in %.0f s; best %s %.2f at epoch %s", result.epochs_completed,
             result.stop_reason, result.seconds, train_config.monitor, result.best_value or float("nan"), result.best_epoch)
    print(f"run directory: {run.path}")
    return 0


# SentenceVAEConfig fields that only shape training: a sentence-vae run may continue another with other values
VAE_TRAINING_FIELDS = ("dropout", "word_dropout", "kl_schedule", "kl_anneal_steps", "kl_sigmoid_rate",
                       "kl_sigmoid_center", "kl_cycles", "kl_cycle_ratio", "free_bits", "init_range")


def _initialize_from(model, model_name: str, source: RunDirectory, vocab: SentenceVocabulary) -> int | None:
    """Copy an rnnlm run's weights into ``model`` (``--init-from``), or a sentence-vae run's into a
    sentence-vae of the same network; errors name the source run.

    A sentence VAE started from another keeps every weight and buffer (a mixture prior included)
    except ``kl_step``, so its own KL schedule starts from step 0.

    A finished run gives its final weights (``model.safetensors``); an unfinished one, stopped
    or still training, the weights of its checkpoint, after its last completed epoch, which is
    returned (``None`` for a finished run).
    """
    finished = source.file(source.WEIGHTS).is_file()
    if not source.file(source.CONFIG).is_file() or not (finished or source.file(source.CHECKPOINT).is_file()):
        raise ValueError(f"--init-from {source.path}: not a run directory with weights (needs config.json and "
                         f"model.safetensors, or checkpoint.safetensors)")
    config = source.read_config()
    from_vae = config.get("model") == "sentence-vae" and model_name == "sentence-vae"
    if config.get("model") != "rnnlm" and not from_vae:
        raise ValueError(f"--init-from {source.path}: holds a {config.get('model')!r} run; only rnnlm runs (or a "
                         f"sentence-vae run, for a sentence-vae) can start a {model_name}")
    if tuple(source.read_vocab()) != tuple(vocab.tokens):
        raise ValueError(f"--init-from {source.path}: its vocab.txt differs from this run's vocabulary; train on the "
                         f"same file with the same --min-count/--max-vocab/--lowercase")
    lm, epoch = (source.load_model(), None) if finished else source.load_checkpoint_model()
    if from_vae:
        source_fields, fields = lm.config.to_dict(), model.config.to_dict()
        differ = [k for k in fields if k not in VAE_TRAINING_FIELDS and source_fields[k] != fields[k]]
        if differ:
            raise ValueError(f"--init-from {source.path}: its network differs from this one in {differ}")
        missing, unexpected = model.load_state_dict({k: v for k, v in lm.state_dict().items() if k != "kl_step"},
                                                    strict=False)
        assert missing == ["kl_step"] and not unexpected, (missing, unexpected)
    elif model_name == "rnnlm":
        shape = (*NETWORK_FIELDS, "context_dim", "feed_context")  # dropout and init_range may change
        differ = [k for k in shape if getattr(lm.config, k) != getattr(model.config, k)]
        if differ:
            raise ValueError(f"--init-from {source.path}: its network differs from this one in {differ}")
        model.load_state_dict(lm.state_dict())
    else:
        try:
            model.load_language_model(lm)
        except ValueError as err:
            raise ValueError(f"--init-from {source.path}: {err}") from None
    if epoch is None:
        log.info("initialised %s from %s", model_name, source.path)
    else:
        print(f"--init-from {source.path}: an unfinished run; starting from its checkpoint's weights after epoch "
              f"{epoch}")
    return epoch


def _eval_stream(ids: list[torch.Tensor], vocab: SentenceVocabulary) -> torch.Tensor:
    """One stream ``(1, 1 + tokens)`` that starts with ``<eos>``, so every word and ``<eos>`` is predicted."""
    eos = torch.tensor([vocab.eos_id])
    return torch.cat([eos] + [t for s in ids for t in (s, eos)]).view(1, -1)


def _softmax_cutoffs(text: str | None) -> tuple[int, ...]:
    """``--adaptive-softmax 2000,4000`` -> ``(2000, 4000)``."""
    if not text:
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--adaptive-softmax takes comma-separated vocabulary ids such as 2000,4000, got {text!r}") from None


def _build_vae(args: argparse.Namespace, vocab_size: int):
    from ..models.language.sentence_vae import SentenceVAE, SentenceVAEConfig

    return SentenceVAE(SentenceVAEConfig(
        vocab_size=vocab_size, embedding_dim=args.embedding_dim, hidden_dim=args.hidden_dim, latent_dim=args.latent_dim,
        cell=args.cell, num_layers=args.layers, dropout=args.dropout, encoder_bidirectional=args.bidirectional,
        feed_context=args.feed_context, word_dropout=args.word_dropout, kl_schedule=args.kl_schedule,
        kl_anneal_steps=args.kl_anneal_steps, kl_sigmoid_rate=args.kl_sigmoid_rate, kl_cycles=args.kl_cycles,
        kl_cycle_ratio=args.kl_cycle_ratio, free_bits=args.free_bits, tie_weights=args.tie_weights,
        prior_components=args.prior_components,
        share_embedding=args.share_embedding, softmax_cutoffs=_softmax_cutoffs(args.adaptive_softmax)))


def _vae_validation(model, ids, vocab) -> dict[str, float]:
    """Validation figures of a VAE: the honest ELBO (one sample per sentence, seeded), KL, active units."""
    from ..models.language.sentence_vae import evaluate_vae

    figures = evaluate_vae(model, ids, vocab, iw_samples=0, elbo_samples=1, generator=torch.Generator().manual_seed(0))
    return {"nll_per_sentence": figures["bound_nll_per_sentence"], "perplexity": figures["bound_perplexity"],
            "kl_per_sentence": figures["kl_per_sentence"], "active_units": float(figures["active_units"]),
            "mutual_information": figures["mutual_information"]}


# --------------------------------------------------------------- evaluate
def evaluate(args: argparse.Namespace) -> int:
    """``latentnlp evaluate RUN_DIR`` for rnnlm / sentence-vae runs: NLL per sentence (nats) and perplexities."""
    run = RunDirectory(args.run_dir)
    config = run.read_config()
    vocab = load_vocab(run)
    files, lowercase = run_data(config, args.data_dir)
    path = Path(args.test) if args.test else files.get(args.split)
    if path is None:
        raise ValueError(f"{run.path} was trained on your own files without --test; pass evaluate --test FILE")
    ids = encode_file(path, vocab, lowercase)
    model = run.load_model()
    name = config["model"]
    result: dict = {"file": str(path), "model": name}
    if name == "rnnlm":
        result["sentence_level"] = evaluate_sentences(model, ids, vocab)
        if config.get("mode") == "continuous":
            total, count = model.stream_log_likelihood(_eval_stream(ids, vocab))
            result["continuous"] = {"nll_per_token": -total / count, "perplexity": float(torch.tensor(-total / count).exp()),
                                    "n_tokens": count}
    else:
        from ..models.language.sentence_vae import evaluate_vae

        result["vae"] = evaluate_vae(model, ids, vocab, iw_samples=args.iw_samples, elbo_samples=args.elbo_samples,
                                     generator=torch.Generator().manual_seed(args.seed))
    print(json.dumps(result, indent=2))
    existing = json.loads(run.file(run.EVALUATION).read_text()) if run.file(run.EVALUATION).is_file() else {}
    existing[path.name] = result
    run.write_evaluation(existing)
    return 0


# ------------------------------------------------------- sample / generate
def add_decoding_options(p: argparse.ArgumentParser) -> None:
    """Options of ``sample``/``reconstruct``/``interpolate`` that choose how words are decoded."""
    p.add_argument("--method", default=None, choices=["greedy", "sample", "beam"],
                   help="language models: decoding (default: sample for rnnlm, greedy for sentence-vae)")
    p.add_argument("--beam-size", type=int, default=5, help="beam search width")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--max-length", type=int, default=50, help="longest generated sentence, in words")


def _decoding(args: argparse.Namespace, generator: torch.Generator, default_method: str) -> dict:
    """Keyword arguments of the decoders from the command line."""
    return dict(method=args.method or default_method, generator=generator, beam_size=args.beam_size,
                max_length=args.max_length, temperature=args.temperature)


def _language_run(run_dir: str, allowed: tuple[str, ...]):
    run = RunDirectory(run_dir)
    config = run.read_config()
    if config.get("model") not in allowed:
        raise ValueError(f"{run_dir}: this command needs a {' or '.join(allowed)} run, not {config.get('model')!r}")
    return run, config, load_vocab(run), run.load_model()


def cmd_sample(args: argparse.Namespace) -> int:
    """``latentnlp sample RUN_DIR --n 10``: sentences from the language model, or decoded from the VAE's prior."""
    from ..models.language.decoding import decode

    run, config, vocab, model = _language_run(args.run_dir, MODELS)
    n = 10 if args.n is None else args.n
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    generator = torch.Generator().manual_seed(args.seed)
    if config["model"] == "rnnlm":
        ids = decode(model, n, None, bos_id=vocab.bos_id, eos_id=vocab.eos_id, **_decoding(args, generator, "sample"))
    else:
        ids = model.sample_prior(n, **_decoding(args, generator, "greedy"))
    for s in ids:
        print(" ".join(vocab.decode(s)))
    return 0


def _encode_inputs(texts: list[str], vocab: SentenceVocabulary, config: dict):
    """Whitespace-tokenised input sentences as a batch (lower-cased for PTB runs); unknown words reported."""
    lowercase = config["data"].get("lowercase") or config["data"]["source"] == "ptb"
    ids = []
    for text in texts:
        words = text.split()
        if not words:
            raise ValueError("an input sentence is empty; give at least one word")
        unknown: list[str] = []
        ids.append(vocab.encode([w.lower() for w in words] if lowercase else words, unknown))
        if unknown:
            print(f"note: {', '.join(repr(w) for w in unknown)} not in the vocabulary; read as {UNK}", file=sys.stderr)
    return ids, collate_sentences(ids, vocab)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """``latentnlp reconstruct RUN_DIR "a sentence"``: decode from the posterior mean, then from ``--samples`` draws of q(z|x)."""
    run, config, vocab, model = _language_run(args.run_dir, ("sentence-vae",))
    if args.samples < 0:
        raise ValueError(f"--samples must be >= 0, got {args.samples}")
    (ids,), batch = _encode_inputs([args.sentence], vocab, config)
    options = _decoding(args, torch.Generator().manual_seed(args.seed), "greedy")
    print("input:     " + " ".join(vocab.decode(ids)))
    print("mean:      " + " ".join(vocab.decode(model.reconstruct(batch, use_mean=True, **options)[0])))
    for k in range(args.samples):
        print(f"sample {k + 1}:  " + " ".join(vocab.decode(model.reconstruct(batch, use_mean=False, **options)[0])))
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    """``latentnlp interpolate RUN_DIR "first" "second" --steps 5``: decode evenly spaced points between the two posterior means."""
    run, config, vocab, model = _language_run(args.run_dir, ("sentence-vae",))
    _, batch = _encode_inputs([args.first, args.second], vocab, config)
    sentences = model.interpolate(batch, steps=args.steps, **_decoding(args, torch.Generator().manual_seed(args.seed), "greedy"))
    for k, s in enumerate(sentences):
        print(f"{k / (args.steps - 1):.2f}  " + " ".join(vocab.decode(s)))
    return 0


def cmd_fit_prior(args: argparse.Namespace) -> int:
    """``latentnlp fit-prior RUN_DIR --out NEW_RUN --components 1 10 50``: a sentence VAE with a mixture prior.

    Draws ``--samples-per-sentence`` codes from ``q(z|x)`` for every training sentence, fits a
    diagonal Gaussian mixture of each size in ``--components`` to them
    (:func:`~latentnlp.models.language.sentence_vae.fit_mixture_prior`) and keeps the size with the
    smallest validation KL, which for the unchanged encoder and decoder is the largest validation
    ELBO. ``NEW_RUN`` gets the model, the vocabulary and the config (with the selection table under
    ``"prior"``); ``latentnlp evaluate NEW_RUN`` scores it. The test file is not read.
    """
    from ..models.language.sentence_vae import fit_mixture_prior, posterior_samples

    run, config, vocab, model = _language_run(args.run_dir, ("sentence-vae",))
    if not args.components or min(args.components) < 1:
        raise ValueError(f"--components takes mixture sizes >= 1, got {args.components}")
    out = RunDirectory(args.out)
    if out.path.resolve() == run.path.resolve():
        raise ValueError(f"--out must be a new run directory, not the source run {run.path}")
    files, lowercase = run_data(config, args.data_dir)
    batches = {}
    for split in ("train", "valid"):
        ids = encode_file(files[split], vocab, lowercase)
        batches[split] = [collate_sentences(ids[i : i + args.batch_size], vocab) for i in range(0, len(ids), args.batch_size)]
    generator = torch.Generator().manual_seed(args.seed)
    z = posterior_samples(model, batches["train"], args.samples_per_sentence, generator)

    @torch.no_grad()
    def valid_kl(m) -> float:
        g = torch.Generator().manual_seed(args.seed)
        total = sum(float(m.kl(b, g).double().sum()) for b in batches["valid"])
        return total / sum(len(b) for b in batches["valid"])

    selection = [{"components": model.config.prior_components, "valid_kl_per_sentence": valid_kl(model),
                  "fitted": False}]
    best = None
    for n in args.components:
        fitted = fit_mixture_prior(model, z, n, random_state=args.seed)
        row = {"components": n, "valid_kl_per_sentence": valid_kl(fitted), "fitted": True}
        selection.append(row)
        print(json.dumps(row), flush=True)
        if best is None or row["valid_kl_per_sentence"] < best[0]["valid_kl_per_sentence"]:
            best = (row, fitted)
    row, fitted = best
    out.write_config({**config, "model_config": fitted.config.to_dict(), "prior": {
        "fitted_from": str(run.path), "samples_per_sentence": args.samples_per_sentence, "n_samples": int(z.shape[0]),
        "seed": args.seed, "selection": selection, "chosen_components": row["components"],
        "criterion": "smallest validation KL (= largest validation ELBO, the encoder and decoder being fixed)"}})
    out.write_vocab(vocab.tokens)
    out.save_model("sentence-vae", fitted)
    print(f"prior: {row['components']} components, validation KL {row['valid_kl_per_sentence']:.3f} nats per sentence "
          f"(the source run's prior: {selection[0]['valid_kl_per_sentence']:.3f}); run directory: {out.path}")
    return 0


def add_root_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconstruct", help="sentence VAE: decode a sentence from its posterior mean and samples")
    p.add_argument("run_dir")
    p.add_argument("sentence")
    p.add_argument("--samples", type=int, default=3, help="also decode this many draws from q(z|x)")
    p.add_argument("--seed", type=int, default=0)
    add_decoding_options(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("interpolate", help="sentence VAE: decode points on the line between two sentences' codes")
    p.add_argument("run_dir")
    p.add_argument("first")
    p.add_argument("second")
    p.add_argument("--steps", type=int, default=5, help="points, endpoints included")
    p.add_argument("--seed", type=int, default=0)
    add_decoding_options(p)
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("fit-prior", help="sentence VAE: fit a Gaussian-mixture prior to the aggregate posterior "
                                         "(chosen on validation) into a new run directory")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="the new run directory")
    p.add_argument("--components", type=int, nargs="+", default=[1, 10, 50, 100],
                   help="mixture sizes to try; the one with the smallest validation KL is kept")
    p.add_argument("--samples-per-sentence", type=int, default=1, help="draws of q(z|x) per training sentence")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--data-dir", default=None, help="PTB runs: where ptb/ lies now (default: as trained)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_fit_prior)
