"""Recurrent language models and the sentence VAE on the Penn Treebank (Mikolov's form).

Each preset is one ``latentnlp train ...`` command line (printed, so the result can be
reproduced without this script), followed by ``latentnlp evaluate RUN_DIR`` on the test
split. Settings were fixed in advance or chosen on the validation split; the test split
is scored once at the end. Training resumes from the run directory's checkpoint, so a
stopped benchmark continues where it was when rerun with the same command.

Presets (``--preset``)
----------------------
* ``zaremba-small`` — continuous LSTM LM, the "small" configuration of Zaremba et al. 2014:
  2 layers of 200, no dropout, 20 streams x 20 steps, SGD at 1.0 halved every epoch from
  epoch 5, clipping at 5, 13 epochs, weights uniform in +-0.1. Published test perplexity 114.5.
* ``sentence-lstm`` — sentence-level LSTM LM (each sentence alone, Bowman et al. 2016's
  RNNLM baseline: test NLL 100 nats per sentence, perplexity 116);
* ``sentence-lstm-512`` / ``sentence-lstm-650`` / ``sentence-lstm-2x400`` — the same, wider
  (1 x 512, 1 x 650: Zaremba et al.'s medium width) or deeper (2 x 400), more dropout, and a
  cosine-decayed step size over 9 epochs (512: about 100 minutes on one thread);
* ``vae`` — the sentence VAE with Bowman et al. 2016's sizes (353-dim embeddings, 191 LSTM
  units, 13 latent dimensions), sigmoid KL annealing centred at step 2,500 and word
  dropout 0.25 (published: NLL 101, KL 2);
* ``vae-kl5`` — the same network with free bits (0.5 nats per dimension, Kingma et al.
  2016) and a linear KL warm-up over two epochs, meant to keep at least 5 nats of KL;
* ``vae-512-kl5`` — free bits and warm-up as ``vae-kl5`` with the decoder of
  ``sentence-lstm-512`` (1 x 512, tied softmax, dropout 0.5, no word dropout) and a
  cosine-decayed step size over 6 epochs;
* ``sentence-lstm-512-ft`` — the finished ``sentence-lstm-512`` run trained 3 epochs more
  (``--init-from``; Adam 5e-4, cosine over the 3 epochs): the control for the next two;
* ``vae-512-lm-kl5`` / ``vae-512-lm-kl2`` — a VAE whose decoder and encoder start as the
  finished ``sentence-lstm-512`` (``SentenceVAE.load_language_model``), shared embedding,
  free bits 0.5 / 0.2 nats per dimension over 13 dimensions (at least 6.5 / 2.6 nats of KL
  in training), KL warm-up over the first epoch, then the control's 3 epochs and schedule.
  Those three need ``sentence-lstm-512`` first;
* ``vae-650-lm-kl5`` / ``vae-650-lm-kl2`` — the same two VAEs started from ``sentence-lstm-650``
  (1 x 650) after 5 of its 9 epochs (``--init-from`` an unfinished run takes its checkpoint),
  trained 2 epochs (warm-up over the first). They read ``RUNS/ptb_sentence-lstm-650-e5``: copy
  ``RUNS/ptb_sentence-lstm-650`` there when its ``metrics.jsonl`` has 5 lines.
* ``vae-650-e5x3-kl5`` / ``vae-650-e5x3-kl2`` — the same two VAEs trained 3 epochs (Adam 7e-4
  cosine), so that LM and VAE epochs together come close to the LM's own 9.
* ``vae-650-e5x3-fb1`` — ``vae-650-e5x3-kl5`` with free bits 1 nat per dimension (13 in all);
* ``vae-650-e5x3-kl5-mog-ft`` — ``vae-650-e5x3-kl5`` with its fitted mixture prior (the
  ``RUNS/ptb_vae-650-e5x3-kl5-mog`` run that ``--preset vae-650-e5x3-kl5 --evaluate-only
  --fit-prior ...`` writes) trained one more epoch with that prior fixed and free bits on the
  total KL (7.8 nats).

``--fit-prior M1,M2,..`` (VAEs) fits a Gaussian-mixture prior of each size to the trained
model's aggregate posterior (``latentnlp fit-prior``; the size with the smallest validation
KL is kept) into ``RUN_DIR-mog`` and scores that instead; the JSON key gets ``-mog``.

Figures: per-sentence NLL in nats, per-token perplexity with one ``<eos>`` per sentence
counted (82,430 test tokens) and over words only (78,669 tokens), median seconds per
epoch. Writes ``benchmarks/results/ptb_lm.json`` (merged per preset).

Usage::

    python benchmarks/ptb_lm.py --data-dir ../shared/data --preset zaremba-small [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

PRESETS: dict[str, list[str]] = {
    "zaremba-small": ["rnnlm", "--mode", "continuous", "--cell", "lstm", "--layers", "2", "--embedding-dim", "200",
                      "--hidden-dim", "200", "--dropout", "0", "--batch-size", "20", "--bptt", "20", "--optimizer", "sgd",
                      "--lr", "1.0", "--lr-schedule", "step", "--lr-decay", "0.5", "--lr-decay-start", "5",
                      "--grad-clip", "5", "--epochs", "13", "--patience", "0", "--init-range", "0.1"],
    "sentence-lstm": ["rnnlm", "--mode", "sentence", "--cell", "lstm", "--layers", "1", "--embedding-dim", "256",
                      "--hidden-dim", "256", "--tie-weights", "--dropout", "0.3", "--batch-size", "32",
                      "--optimizer", "adam", "--lr", "0.002", "--grad-clip", "5", "--epochs", "15", "--patience", "2"],
    "sentence-lstm-512": ["rnnlm", "--mode", "sentence", "--cell", "lstm", "--layers", "1", "--embedding-dim", "512",
                          "--hidden-dim", "512", "--tie-weights", "--dropout", "0.5", "--batch-size", "32",
                          "--optimizer", "adam", "--lr", "0.002", "--lr-schedule", "cosine", "--grad-clip", "5",
                          "--epochs", "9", "--patience", "0"],
    "sentence-lstm-2x400": ["rnnlm", "--mode", "sentence", "--cell", "lstm", "--layers", "2", "--embedding-dim", "400",
                            "--hidden-dim", "400", "--tie-weights", "--dropout", "0.4", "--batch-size", "32",
                            "--optimizer", "adam", "--lr", "0.002", "--lr-schedule", "cosine", "--grad-clip", "5",
                            "--epochs", "9", "--patience", "0"],
    "vae": ["sentence-vae", "--cell", "lstm", "--embedding-dim", "353", "--hidden-dim", "191", "--latent-dim", "13",
            "--word-dropout", "0.25", "--kl-schedule", "sigmoid", "--kl-anneal-steps", "5000", "--kl-sigmoid-rate",
            "0.0025", "--batch-size", "32", "--optimizer", "adam", "--lr", "0.001", "--grad-clip", "5", "--epochs", "20",
            "--patience", "3"],
    "vae-kl5": ["sentence-vae", "--cell", "lstm", "--embedding-dim", "353", "--hidden-dim", "191", "--latent-dim", "13",
                "--word-dropout", "0.25", "--free-bits", "0.5", "--kl-schedule", "linear", "--kl-anneal-steps", "2600",
                "--batch-size", "32", "--optimizer", "adam", "--lr", "0.001", "--grad-clip", "5", "--epochs", "20",
                "--patience", "3"],
    "vae-512-kl5": ["sentence-vae", "--cell", "lstm", "--embedding-dim", "512", "--hidden-dim", "512", "--tie-weights",
                    "--dropout", "0.5", "--latent-dim", "13", "--free-bits", "0.5", "--kl-schedule", "linear",
                    "--kl-anneal-steps", "2600", "--batch-size", "32", "--optimizer", "adam", "--lr", "0.002",
                    "--lr-schedule", "cosine", "--grad-clip", "5", "--epochs", "6", "--patience", "0"],
}


def _variant(base: str, **values: str) -> list[str]:
    """Preset ``base`` with the value after each ``--flag`` replaced (keyword ``flag_name`` for ``--flag-name``)."""
    argv = list(PRESETS[base])
    for key, value in values.items():
        argv[argv.index("--" + key.replace("_", "-")) + 1] = value
    return argv


PRESETS["sentence-lstm-650"] = _variant("sentence-lstm-512", embedding_dim="650", hidden_dim="650")
# Fine-tuning from the finished sentence-lstm-512 run ("{runs}" is --runs): the LM for 3 more
# epochs, and two VAEs whose decoder and encoder start as that LM, trained for the same 3 epochs
# with the same schedule, so the VAE-vs-LM comparison gives both the same extra training.
FROM_LM = ["--init-from", "{runs}/ptb_sentence-lstm-512"]
PRESETS["sentence-lstm-512-ft"] = _variant("sentence-lstm-512", lr="0.0005", epochs="3") + FROM_LM
PRESETS["vae-512-lm-kl5"] = _variant("vae-512-kl5", kl_anneal_steps="1315", lr="0.0005", epochs="3") + [
    "--share-embedding", *FROM_LM]
PRESETS["vae-512-lm-kl2"] = _variant("vae-512-lm-kl5", free_bits="0.2")
# The same two VAEs started from sentence-lstm-650 (the best LM) stopped after 5 of its 9 epochs
# ("{runs}/ptb_sentence-lstm-650-e5": a copy of its run directory then, checkpoint and all), for
# 2 epochs: the KL warm-up over the first, then one at full weight (the 512 VAE's third epoch
# moved its valid bound by 0.02 nats). LM 5 + VAE 2 epochs is less training than the LM's 9.
PRESETS["vae-650-lm-kl5"] = _variant("vae-512-lm-kl5", embedding_dim="650", hidden_dim="650", epochs="2",
                                     init_from="{runs}/ptb_sentence-lstm-650-e5")
PRESETS["vae-650-lm-kl2"] = _variant("vae-650-lm-kl5", free_bits="0.2")
# The same two VAEs trained 3 epochs from the same start, Adam 7e-4 cosine: LM 5 + VAE 3 = 8
# epochs, and the per-epoch step sizes sum to about those of the LM's own last 4 (7 + 5.25 +
# 1.75 = 14e-4 against 8.26 + 5 + 2.34 + 0.6 = 16.2e-4), so the VAE gets nearly the LM's training.
PRESETS["vae-650-e5x3-kl5"] = _variant("vae-650-lm-kl5", epochs="3", lr="0.0007")
PRESETS["vae-650-e5x3-kl2"] = _variant("vae-650-e5x3-kl5", free_bits="0.2")
# Twice the free bits (1 nat per dimension, 13 in all), for a posterior that carries more
# information about the sentence; scored with the Gaussian prior and with a mixture prior fitted
# to its aggregate posterior (--fit-prior).
PRESETS["vae-650-e5x3-fb1"] = _variant("vae-650-e5x3-kl5", free_bits="1.0")
# vae-650-e5x3-kl5 with its fitted 100-component mixture prior (run RUN_DIR-mog, written by
# `--preset vae-650-e5x3-kl5 --evaluate-only --fit-prior ...`) trained one more epoch with that
# prior fixed and free bits on the total KL, 0.6 x 13 = 7.8 nats, more than the 3.8 it keeps, so
# the code may carry more information at no KL cost; the prior is then fitted again.
PRESETS["vae-650-e5x3-kl5-mog-ft"] = _variant(
    "vae-650-e5x3-kl5", free_bits="0.6", kl_schedule="constant", lr="0.0003", epochs="1",
    init_from="{runs}/ptb_vae-650-e5x3-kl5-mog") + ["--prior-components", "100"]
PUBLISHED = {
    "zaremba-small": {"test_perplexity": 114.5, "source": "Zaremba et al. 2014, Table 1 (non-regularized LSTM)"},
    "sentence-lstm": {"test_nll_per_sentence": 100.0, "test_perplexity": 116.0, "source": "Bowman et al. 2016, Table 2"},
    "vae": {"test_nll_per_sentence": 101.0, "test_kl": 2.0, "test_perplexity": 119.0, "source": "Bowman et al. 2016, Table 2"},
}


def published_for(preset: str) -> dict | None:
    """The published row a preset is compared with: Bowman's RNNLM for every sentence LSTM, his VAE for every VAE."""
    for family in ("sentence-lstm", "vae", "zaremba-small"):
        if preset == family or preset.startswith(family + "-"):
            return PUBLISHED[family]
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--preset", required=True, choices=sorted(PRESETS))
    ap.add_argument("--runs", default=str(Path(__file__).resolve().parent / "runs"), help="parent of the run directories")
    ap.add_argument("--max-minutes", type=float, default=None, help="training budget (wall clock)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--iw-samples", type=int, default=100, help="VAE: importance samples per sentence")
    ap.add_argument("--elbo-samples", type=int, default=1, help="VAE: samples averaged in each sentence's ELBO")
    ap.add_argument("--evaluate-only", action="store_true",
                    help="score the preset's finished run directory again (e.g. with another --iw-samples) "
                         "without training")
    ap.add_argument("--label", default=None,
                    help="key of the entry in ptb_lm.json (default: the preset), e.g. to keep a rerun beside the first run")
    ap.add_argument("--fit-prior", default=None, metavar="M1,M2,...",
                    help="VAE: after training, fit a Gaussian-mixture prior of each size to the aggregate posterior "
                         "(latentnlp fit-prior; the size chosen on validation) into RUN_DIR-mog and score that; "
                         "the entry's key gets '-mog'")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train options, appended")
    args = ap.parse_args(argv)

    import torch

    from latentnlp.cli import main as cli

    torch.set_num_threads(args.threads)
    run_dir = Path(args.runs) / f"ptb_{args.preset}"
    key = args.label or args.preset + ("-mog" if args.fit_prior else "")  # the entry in ptb_lm.json
    preset = [a.replace("{runs}", str(Path(args.runs))) for a in PRESETS[args.preset]]
    train_argv = ["train", *preset, "--out", str(run_dir), "--no-progress", *args.extra]
    if args.data_dir:
        train_argv += ["--data-dir", args.data_dir]
    if args.max_minutes:
        train_argv += ["--max-minutes", str(args.max_minutes)]
    train_seconds = None
    if args.evaluate_only:
        if not (run_dir / "model.safetensors").is_file():
            raise SystemExit(f"--evaluate-only: no finished run at {run_dir} (no model.safetensors); a run stopped "
                             f"by hand is finished from its checkpoint by rerunning with --extra --epochs N, N the "
                             f"epochs it completed")
    else:
        print("latentnlp " + " ".join(train_argv), flush=True)
        t0 = time.perf_counter()
        if cli(train_argv) != 0:
            return 1
        train_seconds = round(time.perf_counter() - t0, 1)
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    prior_argv = None
    if args.fit_prior:
        trained_dir, run_dir = run_dir, run_dir.with_name(run_dir.name + "-mog")
        prior_argv = ["fit-prior", str(trained_dir), "--out", str(run_dir), "--components", *args.fit_prior.split(",")]
        if args.data_dir:
            prior_argv += ["--data-dir", args.data_dir]
        print("latentnlp " + " ".join(prior_argv), flush=True)
        if cli(prior_argv) != 0:
            return 1
    eval_argv = ["evaluate", str(run_dir), "--split", "test", "--iw-samples", str(args.iw_samples),
                 "--elbo-samples", str(args.elbo_samples)]
    if args.data_dir:
        eval_argv += ["--data-dir", args.data_dir]
    print("latentnlp " + " ".join(eval_argv), flush=True)
    t0 = time.perf_counter()
    if cli(eval_argv) != 0:
        return 1
    eval_seconds = time.perf_counter() - t0
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    result = {
        "preset": args.preset,
        "label": key,
        "train_command": "latentnlp " + " ".join(train_argv),
        "fit_prior_command": "latentnlp " + " ".join(prior_argv) if prior_argv else None,
        "prior": config.get("prior"),
        "evaluate_command": "latentnlp " + " ".join(eval_argv),
        "test": evaluation.get("ptb.test.txt"),
        "published": published_for(args.preset),
        "epochs_completed": len(history),
        "best_epoch": history[-1].get("best_epoch") if history else None,
        "median_seconds_per_epoch": statistics.median(r["epoch_seconds"] for r in history) if history else None,
        "valid_curve": [{k: r[k] for k in r if k.startswith("valid_") or k in ("epoch", "train_loss", "learning_rate")}
                        for r in history],
        "model_config": config["model_config"],
        "train_config": config["train_config"],
        "train_seconds_this_call": train_seconds,
        "evaluate_only": args.evaluate_only,
        "eval_seconds": round(eval_seconds, 1),
        "machine": {"cpu_count": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                    "python": platform.python_version(), "load_average_1min": os.getloadavg()[0]},
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "ptb_lm.json"
    merged = json.loads(out.read_text()) if out.is_file() else {}
    merged[key] = result
    out.write_text(json.dumps(merged, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("preset", "test", "median_seconds_per_epoch", "epochs_completed")}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
