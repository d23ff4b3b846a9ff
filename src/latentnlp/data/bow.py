"""Bag-of-words corpora: an in-memory container, the ``.feat``/vocab file formats, and
building corpora from raw text.

File formats (the NVDM / ProdLDA release format):

* ``.feat``: one document per line, ``LABEL id:count id:count ...``; ``LABEL`` is an
  integer, ``id`` is a 1-based row number of the vocabulary file and ``count`` a
  positive integer; fields are separated by spaces or tabs. A line holding only a label
  (or nothing) is an empty document; readers drop those and log how many.
* vocabulary: one word per line, optionally followed by whitespace and an integer count
  (ignored when reading). Line ``i`` (1-based) is the word of id ``i``.

Warnings about dropped documents and out-of-vocabulary tokens go to the
``latentnlp.data`` logger.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NoReturn

import numpy as np
import scipy.sparse as sp
import torch

from ..atomic import atomic_write_text

__all__ = [
    "BowCorpus",
    "CorpusFormatError",
    "read_vocab",
    "read_feat",
    "write_feat",
    "write_vocab",
    "build_bow",
    "bow_from_texts",
    "TOKEN_PATTERN",
]

logger = logging.getLogger("latentnlp.data")

TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"
"""Tokens are runs of two or more letters (no digits, no underscores)."""

PathLike = str | os.PathLike[str]

_INT64_MAX = int(np.iinfo(np.int64).max)
_INT64_MIN = int(np.iinfo(np.int64).min)
_WS = " \t\r\f\v"  # field separators inside a line (``\n`` separates lines)
_WS_RE = re.compile(r"[ \t\r\f\v]+")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_LINE_RE = re.compile(r"[+-]?[0-9]+(?:[ \t\r\f\v]+[+-]?[0-9]+:[+-]?[0-9]+)*")


class CorpusFormatError(ValueError):
    """A data file does not follow its format.

    The message is ``"<path>:<line>: <reason>"`` (line 1-based), or ``"<path>: <reason>"``
    for problems of the whole file. The parts are kept as ``path``, ``line``, ``reason``.
    """

    def __init__(self, path: PathLike, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {reason}")


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True, eq=False, repr=False)
class BowCorpus:
    """A bag-of-words corpus of ``D`` documents over a vocabulary of ``V`` words.

    Attributes:
        counts: ``scipy.sparse.csr_matrix`` of shape ``(D, V)`` with non-negative integer
            token counts (int32 or int64); ``counts[d, v]`` is how often word ``v`` occurs
            in document ``d``. Stored in canonical form (sorted, no duplicate entries).
        vocab: the ``V`` distinct words; ``vocab[v]`` names column ``v``.
        labels: ``numpy.ndarray`` of shape ``(D,)``, int64, or ``None``.

    The corpus is immutable: do not modify ``counts`` or ``labels`` in place. Two corpora
    compare equal only if they are the same object; compare fields to compare contents.

    Raises:
        TypeError: ``counts`` is not a scipy sparse matrix of integers, or ``labels`` is not
            integer-valued.
        ValueError: shapes disagree (``counts`` not 2-D, ``V != len(vocab)``,
            ``labels`` not of shape ``(D,)``), negative counts, or repeated words.
    """

    counts: sp.csr_matrix
    vocab: tuple[str, ...]
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        counts = self.counts
        if not sp.issparse(counts):
            raise TypeError(f"counts must be a scipy.sparse matrix, got {type(counts).__name__}")
        if counts.ndim != 2:
            raise ValueError(f"counts must be 2-D (D, V), got shape {counts.shape}")
        if not np.issubdtype(counts.dtype, np.integer):
            raise TypeError(f"counts must hold integers (int32 or int64), got dtype {counts.dtype}")
        if not isinstance(counts, sp.csr_matrix) or not counts.has_canonical_format:
            counts = sp.csr_matrix(counts, copy=True)
            counts.sum_duplicates()
        if counts.dtype not in (np.int32, np.int64):
            counts = counts.astype(np.int64)
        if counts.nnz and counts.data.min() < 0:
            raise ValueError("counts must be non-negative")
        vocab = tuple(self.vocab)
        n_docs, n_words = counts.shape
        if len(vocab) != n_words:
            raise ValueError(f"counts has shape {counts.shape} but vocab has {len(vocab)} words (expected {n_words})")
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocab contains repeated words")
        labels = self.labels
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (n_docs,):
                raise ValueError(f"labels has shape {labels.shape} but counts has shape {counts.shape} (expected ({n_docs},))")
            if labels.size and not np.issubdtype(labels.dtype, np.integer):
                raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
            labels = labels.astype(np.int64, copy=True)  # own copy; left writable for torch.as_tensor
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "vocab", vocab)
        object.__setattr__(self, "labels", labels)

    def __repr__(self) -> str:
        return (
            f"BowCorpus(n_docs={self.n_docs}, vocab_size={self.vocab_size}, "
            f"n_tokens={self.n_tokens}, labels={'yes' if self.labels is not None else 'no'})"
        )

    @property
    def n_docs(self) -> int:
        """Number of documents ``D``."""
        return int(self.counts.shape[0])

    @property
    def vocab_size(self) -> int:
        """Vocabulary size ``V``."""
        return int(self.counts.shape[1])

    def __len__(self) -> int:
        return self.n_docs

    @property
    def doc_lengths(self) -> np.ndarray:
        """Tokens per document ``N_d``: a new int64 array of shape ``(D,)`` on each call
        (O(nnz); keep the result rather than calling it in a loop)."""
        cum = np.concatenate(([0], np.cumsum(self.counts.data, dtype=np.int64)))
        return cum[self.counts.indptr[1:]] - cum[self.counts.indptr[:-1]]

    @property
    def n_tokens(self) -> int:
        """Total number of tokens, ``sum_d N_d``."""
        return int(self.counts.data.sum(dtype=np.int64))

    @cached_property
    def word_index(self) -> dict[str, int]:
        """Map word -> column (0-based). Cached and shared: do not modify it."""
        return {word: i for i, word in enumerate(self.vocab)}

    def _rows(self, indices: Sequence[int] | np.ndarray | None) -> np.ndarray | None:
        if indices is None:
            return None
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (self.n_docs,):
                raise ValueError(f"boolean mask has shape {idx.shape}, expected ({self.n_docs},)")
            return np.flatnonzero(idx)
        if idx.size == 0:
            return np.zeros(0, dtype=np.int64)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"indices must be a 1-D sequence of integers or a boolean mask, got {idx.dtype} of shape {idx.shape}")
        if idx.min() < 0 or idx.max() >= self.n_docs:
            raise IndexError(f"document indices must lie in 0..{self.n_docs - 1}, got {idx.min()}..{idx.max()}")
        return idx.astype(np.int64, copy=False)

    def subset(self, indices: Sequence[int] | np.ndarray) -> BowCorpus:
        """Return the documents ``indices`` (0-based, in the given order, repeats allowed,
        or a boolean mask of shape ``(D,)``) as a new corpus with the same vocabulary.

        Raises:
            IndexError: an index outside ``0..D-1``.
            TypeError / ValueError: ``indices`` is neither integers nor a matching mask.
        """
        if indices is None:
            raise TypeError("subset() needs indices or a boolean mask, got None")
        idx = self._rows(indices)
        labels = None if self.labels is None else self.labels[idx]
        return BowCorpus(self.counts[idx], self.vocab, labels)

    def split(self, fraction: float, seed: int) -> tuple[BowCorpus, BowCorpus]:
        """Split off a random held-out part of ``round(fraction * D)`` documents.

        The choice is deterministic given ``seed`` (``numpy.random.default_rng(seed)``);
        both parts keep the original document order.

        Returns:
            ``(rest, held_out)``: disjoint, together all ``D`` documents.

        Raises:
            ValueError: ``fraction`` not in ``(0, 1)``, or one part would be empty.
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        n_held = round(fraction * self.n_docs)
        if n_held == 0 or n_held == self.n_docs:
            raise ValueError(
                f"fraction {fraction} of {self.n_docs} documents leaves an empty part ({n_held} held out)"
            )
        perm = np.random.default_rng(seed).permutation(self.n_docs)
        held = np.sort(perm[:n_held])
        rest = np.sort(perm[n_held:])
        return self.subset(rest), self.subset(held)

    def to_dense(
        self, indices: Sequence[int] | np.ndarray | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Return counts of documents ``indices`` (all if ``None``) as a dense CPU tensor of
        shape ``(len(indices), V)`` and type ``dtype``.

        Raises:
            IndexError / TypeError / ValueError: as for :meth:`subset`.
        """
        idx = self._rows(indices)
        rows = self.counts if idx is None else self.counts[idx]
        out = torch.zeros(rows.shape, dtype=dtype)
        if rows.nnz:
            row_of = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
            out[torch.from_numpy(row_of), torch.from_numpy(rows.indices.astype(np.int64))] = torch.from_numpy(
                rows.data.astype(np.int64)
            ).to(dtype)
        return out

    def drop_empty(self) -> tuple[BowCorpus, int]:
        """Return ``(corpus without zero-length documents, number dropped)``."""
        keep = self.doc_lengths > 0
        n_dropped = int(self.n_docs - keep.sum())
        if n_dropped == 0:
            return self, 0
        return self.subset(keep), n_dropped


# --------------------------------------------------------------------------- file I/O


def _read_text(path: PathLike) -> str:
    """Read a UTF-8 file (a leading BOM is ignored); bad bytes raise CorpusFormatError."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CorpusFormatError(path, data.count(b"\n", 0, err.start) + 1, "not valid UTF-8") from None


def _split_lines(text: str) -> list[str]:
    """Split on ``\\n``; a final newline does not start another line."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _line_numbers(numbers: Sequence[int], limit: int = 10) -> str:
    head = ", ".join(str(n) for n in numbers[:limit])
    more = f", ... ({len(numbers) - limit} more)" if len(numbers) > limit else ""
    return head + more


def _log_dropped(source: str, where: str, numbers: Sequence[int]) -> None:
    if numbers:
        noun = where if len(numbers) == 1 else where + "s"
        logger.warning("%s: dropped %d empty document(s) (%s %s)", source, len(numbers), noun, _line_numbers(numbers))


def read_vocab(path: PathLike) -> tuple[str, ...]:
    """Read a vocabulary file: line ``i`` holds the word of id ``i`` (1-based), optionally
    followed by whitespace and an integer count, which is ignored.

    Returns:
        The ``V`` words, in file order.

    Raises:
        FileNotFoundError: no such file.
        CorpusFormatError: empty file, blank line, more than two fields, a non-integer
            count, or a repeated word (naming file and line).
    """
    lines = _split_lines(_read_text(path))
    if not lines:
        raise CorpusFormatError(path, None, "empty vocabulary file")
    words: list[str] = []
    first_seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            raise CorpusFormatError(path, lineno, "blank line in vocabulary")
        if len(fields) > 2:
            raise CorpusFormatError(path, lineno, f"expected 'word' or 'word count', got {len(fields)} fields")
        if len(fields) == 2 and not _INT_RE.fullmatch(fields[1]):
            raise CorpusFormatError(path, lineno, f"count {fields[1]!r} is not an integer")
        word = fields[0]
        if word in first_seen:
            raise CorpusFormatError(path, lineno, f"word {word!r} repeats line {first_seen[word]}")
        first_seen[word] = lineno
        words.append(word)
    return tuple(words)


def _as_vocab(vocab: Sequence[str] | PathLike) -> tuple[str, ...]:
    if isinstance(vocab, (str, os.PathLike)):
        return read_vocab(vocab)
    return tuple(vocab)


def _line_problem(text: str, n_words: int) -> str | None:
    """Check one stripped, non-empty ``.feat`` line; return what is wrong, or ``None``."""
    fields = _WS_RE.split(text)
    label = fields[0]
    if not _INT_RE.fullmatch(label):
        return f"label {label!r} is not an integer"
    if not _INT64_MIN <= int(label) <= _INT64_MAX:
        return f"label {label} does not fit in int64"
    seen: set[int] = set()
    for token in fields[1:]:
        parts = token.split(":")
        if len(parts) != 2:
            return f"token {token!r} is not of the form id:count"
        id_text, count_text = parts
        if not _INT_RE.fullmatch(id_text):
            return f"id {id_text!r} in token {token!r} is not an integer"
        if not _INT_RE.fullmatch(count_text):
            return f"count {count_text!r} in token {token!r} is not an integer"
        word_id, count = int(id_text), int(count_text)
        if not 1 <= word_id <= n_words:
            return f"id {word_id} outside the vocabulary (1..{n_words})"
        if count <= 0:
            return f"count {count} of id {word_id} is not positive"
        if count > _INT64_MAX:
            return f"count {count} of id {word_id} does not fit in int64"
        if word_id in seen:
            return f"id {word_id} appears more than once"
        seen.add(word_id)
    return None


def _raise_first_problem(path: PathLike, lines: Sequence[str], n_words: int) -> NoReturn:
    """Slow exact check of every line; raises CorpusFormatError at the first bad one."""
    for lineno, line in enumerate(lines, 1):
        text = line.strip(_WS)
        if text and (problem := _line_problem(text, n_words)) is not None:
            raise CorpusFormatError(path, lineno, problem)
    raise RuntimeError(f"{path}: internal error: fast parser rejected a file the line checker accepts")


def read_feat(path: PathLike, vocab: Sequence[str] | PathLike) -> BowCorpus:
    """Read a ``.feat`` file (``LABEL id:count ...`` per line, ids 1-based).

    Args:
        path: the ``.feat`` file.
        vocab: the vocabulary as a sequence of ``V`` words, or the path of a vocab file.

    Returns:
        A :class:`BowCorpus` with int64 ``counts`` of shape ``(D, V)`` and int64
        ``labels`` of shape ``(D,)``, in file order. Empty documents (label-only or blank
        lines) are dropped, with one WARNING on the ``latentnlp.data`` logger giving
        their number and line numbers.

    Raises:
        FileNotFoundError: no such file.
        CorpusFormatError: naming file and 1-based line, at the first line whose label is
            not an integer, or with a token that is not ``id:count``, a non-integer id or
            count, an id outside ``1..V``, a count <= 0, or an id repeated in the line;
            also (without a line) a file with no non-empty documents.
    """
    words = _as_vocab(vocab)
    n_words = len(words)
    lines = _split_lines(_read_text(path))
    labels: list[str] = []
    bodies: list[str] = []
    empty: list[int] = []
    for lineno, line in enumerate(lines, 1):
        text = line.strip(_WS)
        if not text:
            empty.append(lineno)
            continue
        if _LINE_RE.fullmatch(text) is None:
            _raise_first_problem(path, lines, n_words)
        head = text.split(maxsplit=1)
        labels.append(head[0])
        if len(head) == 1:
            empty.append(lineno)
            bodies.append("")
        else:
            bodies.append(head[1])
    nonempty = np.array([bool(b) for b in bodies], dtype=bool)
    if not nonempty.any():
        raise CorpusFormatError(path, None, f"no non-empty documents ({len(lines)} line(s))")
    try:
        label_arr = np.array(labels, dtype=np.int64)[nonempty]
        numbers = np.array(" ".join(bodies).replace(":", " ").split(), dtype=np.int64)
    except OverflowError:
        _raise_first_problem(path, lines, n_words)
    ids, cnts = numbers[0::2], numbers[1::2]
    if ids.min() < 1 or ids.max() > n_words or cnts.min() <= 0:
        _raise_first_problem(path, lines, n_words)
    lengths = np.fromiter((b.count(":") for b in bodies if b), dtype=np.int64, count=int(nonempty.sum()))
    indptr = np.concatenate(([0], np.cumsum(lengths)))
    counts = sp.csr_matrix((cnts, ids - 1, indptr), shape=(len(lengths), n_words))
    counts.sort_indices()
    repeated = np.zeros(counts.nnz, dtype=bool)
    repeated[1:] = counts.indices[1:] == counts.indices[:-1]
    repeated[counts.indptr[:-1]] = False  # first entry of each row (rows are non-empty)
    if repeated.any():
        _raise_first_problem(path, lines, n_words)
    _log_dropped(str(path), "line", empty)
    return BowCorpus(counts, words, label_arr)


def write_feat(corpus: BowCorpus, path: PathLike) -> None:
    """Write ``corpus`` as a ``.feat`` file, atomically.

    One line per document: ``LABEL id:count ...`` with 1-based ids in increasing order,
    single spaces, ``\\n`` line ends. Documents without labels (``labels is None``) get
    label ``0``. Empty documents are written as a label-only line, which
    :func:`read_feat` drops; otherwise ``read_feat(path, corpus.vocab)`` reproduces
    ``counts``, ``vocab`` and ``labels`` exactly.
    """
    counts = corpus.counts
    labels = corpus.labels if corpus.labels is not None else np.zeros(corpus.n_docs, dtype=np.int64)
    ids = (counts.indices + 1).tolist()
    data = counts.data.tolist()
    indptr = counts.indptr.tolist()
    lines = []
    for d, label in enumerate(labels.tolist()):
        lo, hi = indptr[d], indptr[d + 1]
        tokens = " ".join(f"{i}:{c}" for i, c in zip(ids[lo:hi], data[lo:hi]))
        lines.append(f"{label} {tokens}\n" if tokens else f"{label}\n")
    atomic_write_text(path, "".join(lines))


def write_vocab(vocab: Sequence[str], path: PathLike, counts: Iterable[int] | None = None) -> None:
    """Write a vocabulary file, atomically: ``word`` per line, or ``word count`` when
    ``counts`` (one integer per word) is given.

    Raises:
        ValueError: an empty or whitespace-containing word, a repeated word, or
            ``counts`` of the wrong length.
    """
    words = list(vocab)
    if len(set(words)) != len(words):
        raise ValueError("vocab contains repeated words")
    for word in words:
        if not word or len(word.split()) != 1 or word != word.strip():
            raise ValueError(f"vocabulary words must be non-empty and contain no whitespace, got {word!r}")
    if counts is None:
        lines = [f"{w}\n" for w in words]
    else:
        count_list = [int(c) for c in counts]
        if len(count_list) != len(words):
            raise ValueError(f"{len(count_list)} counts for {len(words)} words")
        lines = [f"{w} {c}\n" for w, c in zip(words, count_list)]
    atomic_write_text(path, "".join(lines))


# --------------------------------------------------------------------------- from text


def _labels_array(labels: Sequence[int] | np.ndarray | None, n_texts: int) -> np.ndarray | None:
    if labels is None:
        return None
    arr = np.asarray(labels)
    if arr.shape != (n_texts,):
        raise ValueError(f"labels has shape {arr.shape}, expected ({n_texts},) to match the texts")
    return arr


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    return list(texts)


def _vectorizer(**kwargs: object):
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(lowercase=True, token_pattern=TOKEN_PATTERN, dtype=np.int64, **kwargs)


def _finish(counts: sp.csr_matrix, vocab: Sequence[str], labels: np.ndarray | None, source: str) -> BowCorpus:
    """Drop empty documents (logging their 0-based text indices) and wrap up."""
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        keep = lengths > 0
        counts = counts[keep]
        labels = None if labels is None else labels[keep]
        _log_dropped(source, "text index", empty.tolist())
    return BowCorpus(sp.csr_matrix(counts), tuple(vocab), labels)


def build_bow(
    texts: Sequence[str],
    vocab_size: int = 2000,
    stop_words: str | Sequence[str] | None = "english",
    labels: Sequence[int] | np.ndarray | None = None,
    min_df: float | int = 1,
    max_df: float | int = 1.0,
) -> BowCorpus:
    """Build a bag-of-words corpus from raw texts with scikit-learn's ``CountVectorizer``.

    Texts are lowercased and split into tokens of two or more letters
    (:data:`TOKEN_PATTERN`); ``stop_words`` (``"english"``, a list, or ``None``) are
    removed, ``min_df``/``max_df`` applied as in ``CountVectorizer``, and the
    ``vocab_size`` most frequent remaining words (by total corpus count) are kept. Ties
    are broken alphabetically, so the result is deterministic. Columns are ordered by
    decreasing corpus count, then alphabetically (the order of NVDM's ``vocab.new``).
    Documents left empty are dropped, with their labels, and counted in one WARNING on
    the ``latentnlp.data`` logger (listing their 0-based indices in ``texts``).

    Args:
        texts: ``D0`` documents.
        vocab_size: maximum vocabulary size ``V`` (fewer if fewer distinct words remain).
        labels: optional ``D0`` integer labels.

    Returns:
        A :class:`BowCorpus` of shape ``(D, V)``, ``D <= D0``.

    Raises:
        TypeError: ``texts`` is a single string.
        ValueError: ``vocab_size < 1``, labels of the wrong length, or no words left
            (scikit-learn's "empty vocabulary" error).
    """
    texts = _check_texts(texts)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    label_arr = _labels_array(labels, len(texts))
    vectorizer = _vectorizer(stop_words=stop_words, min_df=min_df, max_df=max_df)
    counts = vectorizer.fit_transform(texts).tocsr()
    words = vectorizer.get_feature_names_out()  # alphabetical, matching the columns
    totals = np.asarray(counts.sum(axis=0)).ravel()
    order = np.lexsort((np.arange(len(words)), -totals))[:vocab_size]  # count desc, then alphabetical
    return _finish(counts[:, order], [str(w) for w in words[order]], label_arr, "build_bow")


def bow_from_texts(
    texts: Sequence[str],
    vocab: Sequence[str] | PathLike,
    labels: Sequence[int] | np.ndarray | None = None,
) -> BowCorpus:
    """Map new texts onto a fixed vocabulary, tokenised as in :func:`build_bow`.

    No stop words are removed: a word is kept exactly when it is in ``vocab`` (words that
    the tokeniser cannot produce, e.g. with digits or capitals, never match). The total
    number of out-of-vocabulary tokens dropped is logged at INFO, and documents left
    empty are dropped with their labels and counted in one WARNING (0-based text
    indices), both on the ``latentnlp.data`` logger.

    Args:
        texts: ``D0`` documents.
        vocab: ``V`` distinct words (column order of the result), or a vocab file path.
        labels: optional ``D0`` integer labels.

    Returns:
        A :class:`BowCorpus` of shape ``(D, V)``, ``D <= D0``, with ``vocab`` unchanged.

    Raises:
        TypeError: ``texts`` is a single string.
        ValueError: an empty or repeated vocabulary, or labels of the wrong length.
    """
    texts = _check_texts(texts)
    words = _as_vocab(vocab)
    if not words:
        raise ValueError("vocab is empty")
    if len(set(words)) != len(words):
        raise ValueError("vocab contains repeated words")
    label_arr = _labels_array(labels, len(texts))
    vectorizer = _vectorizer(vocabulary=list(words))
    counts = vectorizer.fit_transform(texts).tocsr()
    analyze = vectorizer.build_analyzer()
    n_all = sum(len(analyze(t)) for t in texts)
    n_oov = n_all - int(counts.sum())
    logger.info("bow_from_texts: dropped %d out-of-vocabulary token(s) of %d", n_oov, n_all)
    return _finish(counts, words, label_arr, "bow_from_texts")
