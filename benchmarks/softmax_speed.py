"""Training speed of the RNNLM's output layer: full softmax against the adaptive softmax, on PTB batches.

One training step (forward, backward, Adam update) of a sentence-level 1-layer LSTM LM on
real PTB training batches (32 sentences), for:

* ``full``: one softmax over the 10,002 entries (tied embeddings);
* ``adaptive-2000`` / ``adaptive-2000-4000``: ours (``RNNLMConfig.softmax_cutoffs``, tied;
  the likelihood stays exact);
* ``torch-adaptive-2000``: the peer, ``torch.nn.AdaptiveLogSoftmaxWithLoss`` with the same
  cutoff and ``div_value=1`` (full-width tails, as ours), on the same LSTM; untied, since
  it cannot share the embedding.

The models take turns batch by batch, so load on the machine hits each alike. Reports the
median seconds per step and tokens per second, and checks on one batch that each
adaptive model's next-token distribution sums to 1. Writes ``benchmarks/results/softmax_speed.json``.

Usage::

    python benchmarks/softmax_speed.py --data-dir ../shared/data [--hidden 512] [--steps 30] [--threads 1]
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per model (after 3 warm-up steps)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "softmax_speed.json"))
    args = ap.parse_args(argv)

    import torch
    from torch import nn

    from latentnlp.data.paths import resolve_data_dir
    from latentnlp.data.sentences import SentenceVocabulary, collate_sentences, ptb_paths, read_sentences
    from latentnlp.models.language.rnnlm import RNNLanguageModel, RNNLMConfig

    torch.set_num_threads(args.threads)
    paths = ptb_paths(resolve_data_dir(args.data_dir))
    train = read_sentences(paths["train"])
    vocab = SentenceVocabulary.build(train)
    ids, _ = vocab.encode_all(train)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(ids), generator=g).tolist()
    n_batches = args.steps + 3
    batches = [collate_sentences([ids[i] for i in order[k * args.batch_size:(k + 1) * args.batch_size]], vocab)
               for k in range(n_batches)]
    V, H = len(vocab), args.hidden

    def lm(cutoffs=(), tie=True):
        torch.manual_seed(0)
        return RNNLanguageModel(RNNLMConfig(vocab_size=V, embedding_dim=H, hidden_dim=H, num_layers=1,
                                            tie_weights=tie, dropout=0.5, softmax_cutoffs=cutoffs))

    class TorchAdaptive(nn.Module):
        """The same LSTM under torch's AdaptiveLogSoftmaxWithLoss (the peer)."""

        def __init__(self) -> None:
            super().__init__()
            self.lm = lm(tie=False)
            self.head = nn.AdaptiveLogSoftmaxWithLoss(H, V, cutoffs=[2000], div_value=1.0)

        def forward(self, batch):
            out, _ = self.lm.run(batch.inputs, lengths=batch.lengths)
            mask = batch.mask
            return {"loss": -self.head(out[mask], batch.targets[mask]).output.sum() / len(batch)}

    models = {"full": lm(), "adaptive-2000": lm((2000,)), "adaptive-2000-4000": lm((2000, 4000)),
              "torch-adaptive-2000": TorchAdaptive()}
    optimizers = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    seconds = {k: [] for k in models}
    for step, batch in enumerate(batches):
        for name, model in models.items():
            model.train()
            t0 = time.perf_counter()
            loss = model(batch)["loss"].mean()
            optimizers[name].zero_grad()
            loss.backward()
            optimizers[name].step()
            if step >= 3:
                seconds[name].append(time.perf_counter() - t0)
    tokens = statistics.mean(int(b.lengths.sum()) for b in batches[3:])
    sums = {}
    with torch.no_grad():
        h = torch.randn(64, H, generator=g)
        for name in ("adaptive-2000", "adaptive-2000-4000"):
            sums[name] = float((models[name].log_probs(h).exp().sum(-1) - 1).abs().max())
    base = statistics.median(seconds["full"])
    result = {
        "what": "seconds per training step (forward, backward, Adam) of a 1-layer LSTM LM on PTB batches",
        "hidden": H, "vocab_size": V, "batch_size": args.batch_size, "steps": args.steps,
        "mean_tokens_per_batch": tokens,
        "models": {name: {"median_seconds_per_step": statistics.median(s),
                          "tokens_per_second": tokens / statistics.median(s),
                          "speed_up_over_full": base / statistics.median(s)} for name, s in seconds.items()},
        "max_abs_error_of_sum_p": sums,
        "command": "python benchmarks/softmax_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpu_count": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                    "python": platform.python_version(), "load_average_1min": os.getloadavg()[0]},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["models"], indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
