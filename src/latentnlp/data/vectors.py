"""Pretrained word vectors in the word2vec / GloVe text format.

One vector per line, ``word v_1 ... v_d`` separated by spaces; an optional first
line ``V d`` (word2vec's header) is checked against the rest. This is the format
``gensim``'s ``KeyedVectors.save_word2vec_format(binary=False)`` writes and GloVe
distributes (see ``benchmarks/word_vectors.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["WordVectors", "read_word_vectors"]


@dataclass
class WordVectors:
    """Words and their vectors.

    Attributes:
        words: ``V`` distinct strings, in file order (word2vec writes them by frequency).
        vectors: ``(V, d)`` float32 tensor; row ``i`` belongs to ``words[i]``.
    """

    words: list[str]
    vectors: torch.Tensor

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.words)


def read_word_vectors(path: str | Path, max_words: int | None = None) -> WordVectors:
    """Read a word2vec/GloVe text file.

    Args:
        path: the file (UTF-8).
        max_words: keep only the first ``max_words`` vectors (``None``: all).

    Returns:
        :class:`WordVectors`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: on an empty file, a header that disagrees with the vectors, a line
            with the wrong number of values, a value that is not a finite number, or a
            word given twice; each names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: word-vector file not found")
    if max_words is not None and max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    words: list[str] = []
    rows: list[np.ndarray] = []
    index: dict[str, int] = {}
    header: tuple[int, int] | None = None
    dim: int | None = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").rstrip("\r").split(" ")
            parts = [p for p in parts if p != ""]
            if not parts:
                continue
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                header = (int(parts[0]), int(parts[1]))
                dim = header[1]
                continue
            if dim is None:
                dim = len(parts) - 1
            if dim < 1 or len(parts) != dim + 1:
                raise ValueError(f"{path}:{lineno}: expected a word and {dim} values, got {len(parts)} fields")
            try:
                values = np.asarray(parts[1:], dtype=np.float32)
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: {e}") from None
            if not np.isfinite(values).all():
                raise ValueError(f"{path}:{lineno}: the vector of {parts[0]!r} is not finite")
            if parts[0] in index:
                raise ValueError(f"{path}:{lineno}: {parts[0]!r} was already given on an earlier line")
            index[parts[0]] = len(words)
            words.append(parts[0])
            rows.append(values)
            if max_words is not None and len(words) >= max_words:
                break
    if not words:
        raise ValueError(f"{path}: no word vectors in the file")
    if header is not None and max_words is None and header[0] != len(words):
        raise ValueError(f"{path}:1: the header announces {header[0]} vectors, the file has {len(words)}")
    return WordVectors(words, torch.from_numpy(np.stack(rows)))
