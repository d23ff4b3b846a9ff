"""How much the sentence VAEs' codes say about their sentences, on the PTB test set.

For each finished sentence-VAE run directory given, the encoder alone (no decoder pass):

* ``kl_per_sentence`` — ``E_x KL(q(z|x) || p(z))``, nats (closed form, or 64 draws under a
  fitted mixture prior), the figure ``latentnlp evaluate`` reports;
* ``mutual_information`` — ``I(x; z)`` with the aggregate posterior taken per batch of 64
  sentences, as ``latentnlp evaluate`` reports it (at most log 64 = 4.16 nats);
* ``mutual_information_pooled`` — the same with the aggregate posterior pooled over all
  3,761 test sentences (at most log 3761 = 8.23 nats);
* ``kl_minus_pooled_mi`` — what the KL spends beyond the information, ``KL(q(z) || p(z))``
  estimated with the pooled figure.

Writes ``benchmarks/results/ptb_vae_information.json`` (merged by run name).

Usage::

    python benchmarks/ptb_vae_information.py --data-dir ../shared/data benchmarks/runs/ptb_vae-650-e5x3-kl5 ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="sentence-vae run directories")
    ap.add_argument("--data-dir", default=None, help="where ptb/ lies (default: as trained)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    from latentnlp.commands.language import encode_file, load_vocab, run_data
    from latentnlp.data.sentences import collate_sentences
    from latentnlp.models.language.rnnlm import sentence_batches
    from latentnlp.runs import RunDirectory

    torch.set_num_threads(args.threads)
    out = RESULTS / "ptb_vae_information.json"
    merged = json.loads(out.read_text()) if out.is_file() else {}
    for path in args.runs:
        run = RunDirectory(path)
        config = run.read_config()
        if config.get("model") != "sentence-vae":
            raise SystemExit(f"{path}: not a sentence-vae run")
        vocab = load_vocab(run)
        files, lowercase = run_data(config, args.data_dir)
        test = files["test"]
        ids = encode_file(test, vocab, lowercase)
        model = run.load_model()
        # the batches evaluate_vae forms (64 sentences by length), so the per-batch figure is its figure
        batches = [collate_sentences([ids[i] for i in idx], vocab) for idx in sentence_batches(len(ids), (len(s) for s in ids), 64)]
        with torch.no_grad():
            g = torch.Generator().manual_seed(args.seed)
            kl = sum(float(model.kl(b, g).double().sum()) for b in batches) / len(ids)
            mi = model.mutual_information(batches, torch.Generator().manual_seed(args.seed))
            pooled = model.mutual_information(batches, torch.Generator().manual_seed(args.seed), pooled=True)
        row = {"run": str(run.path), "test_file": str(test), "n_sentences": len(ids),
               "prior_components": model.config.prior_components, "kl_per_sentence": kl,
               "mutual_information": mi, "mutual_information_pooled": pooled, "kl_minus_pooled_mi": kl - pooled}
        merged[run.path.name] = row
        print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out.write_text(json.dumps(merged, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
