"""Word vectors for the BiLSTM-CRF, trained offline on unlabelled English: the Hansards English side.

The published BiLSTM-CRF chunking and tagging figures start from pretrained word
embeddings (SENNA, GloVe, word2vec); none can be downloaded here, so this trains
skip-gram vectors (Mikolov et al. 2013, through gensim's ``Word2Vec``) on the
English side of the WPT-03 Hansards training corpus (``../shared/data/hansards-wpt03/train.e.gz``,
1.13M sentences, 20.0M tokens; parliamentary proceedings, so a different domain from
the WSJ of CoNLL-2000 and the web text of EWT, and sharing no sentence with either's
test set). Words are lower-cased (the taggers look words up lower-cased with
``--lowercase-words``; their character encoder keeps the case).

Writes the vectors in word2vec text format (``--out``, default
``benchmarks/runs/vectors/hansards-en-100.txt``) and a JSON record beside it and in
``benchmarks/results/word_vectors.json``::

    python benchmarks/word_vectors.py --data-dir ../shared/data [--dim 100 --epochs 5 --workers 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

from latentnlp.data.paths import resolve_data_dir


class Sentences:
    """Re-iterable lower-cased token lists of a gzipped one-sentence-per-line file."""

    def __init__(self, path: Path):
        self.path = path

    def __iter__(self):
        with gzip.open(self.path, "rt", encoding="utf-8") as f:
            for line in f:
                tokens = line.lower().split()
                if tokens:
                    yield tokens


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    from gensim.models import Word2Vec

    corpus = resolve_data_dir(args.data_dir) / "hansards-wpt03" / "train.e.gz"
    if not corpus.is_file():
        raise SystemExit(f"{corpus}: not found (the WPT-03 Hansards, see ../shared/data/MANIFEST.md)")
    out = Path(args.out or Path(__file__).resolve().parent / "runs" / "vectors" / f"hansards-en-{args.dim}.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = Word2Vec(Sentences(corpus), vector_size=args.dim, window=args.window, min_count=args.min_count, sg=1,
                     negative=5, epochs=args.epochs, workers=args.workers, seed=args.seed)
    seconds = time.perf_counter() - t0
    tmp = out.with_suffix(".tmp")
    model.wv.save_word2vec_format(str(tmp), binary=False)
    tmp.replace(out)
    record = {"corpus": str(corpus), "vectors": str(out), "words": len(model.wv), "dim": args.dim,
              "window": args.window, "min_count": args.min_count, "epochs": args.epochs, "sg": 1, "negative": 5,
              "workers": args.workers, "seed": args.seed, "corpus_words": model.corpus_total_words,
              "train_seconds": seconds, "command": "python benchmarks/word_vectors.py " + " ".join(argv or sys.argv[1:])}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    results = Path(__file__).resolve().parent / "results" / "word_vectors.json"
    results.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
