"""Sentence-aligned parallel text and word-alignment files.

File formats:

* **parallel text**: two files (optionally gzip-compressed, ``.gz``), one tokenized
  sentence per line, tokens separated by whitespace; line ``k`` of one file is the
  translation of line ``k`` of the other. Both files must have the same number of lines.
  An **empty line is kept as an empty sentence**, so line numbers (and the gold
  standard's sentence numbers) stay aligned; an empty sentence aligns to nothing (its
  partner's words can only align to NULL, and no link is ever output for it).
* **NAACL / WPT-03 gold** (Mihalcea & Pedersen 2003): one link per line,
  ``sentence_no source_pos target_pos [S|P] [confidence]``, all 1-based; ``S`` marks a
  sure link, ``P`` a possible one (a missing label means ``S``). In the Hansards files
  the columns are ``sentence_no english_pos french_pos``. Position 0 denotes NULL (the
  ``*.nullalign`` files); such links are counted in :attr:`GoldAlignment.n_null_links`
  and otherwise ignored, because alignment error rate is defined over word-to-word links.
* **Pharaoh** (Moses / fast_align): line ``k`` holds the links of sentence ``k`` as
  ``i-j`` pairs, 0-based, ``i`` indexing the first (source) sentence and ``j`` the
  second; as a gold standard ``i-j`` is a sure link and ``i?j`` a possible one.

Every reader raises :class:`~latentnlp.data.bow.CorpusFormatError` (a ``ValueError``)
naming the file and the 1-based line of a malformed line.
"""

from __future__ import annotations

import gzip
import io
import os
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from .bow import CorpusFormatError
from .vocab import Vocabulary

__all__ = [
    "GoldAlignment",
    "ParallelCorpus",
    "TokenizedText",
    "Vocabulary",
    "count_lines",
    "read_gold_alignment",
    "read_naacl_alignment",
    "read_parallel",
    "read_pharaoh",
    "read_tokenized",
    "write_pharaoh",
]

PathLike = str | os.PathLike[str]


def _open_text(path: PathLike) -> io.TextIOBase:
    """Open ``path`` for reading as UTF-8 text, transparently decompressing ``.gz``.

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="\n")
    return open(path, encoding="utf-8", newline="\n")


def count_lines(path: PathLike, max_lines: int | None = None) -> int:
    """Number of lines of a (possibly gzipped) text file, stopping at ``max_lines``."""
    n = 0
    with _open_text(path) as fh:
        for _ in fh:
            n += 1
            if max_lines is not None and n >= max_lines:
                break
    return n


class _GrowingIndex(dict):
    """``word -> id`` that assigns the next id to a word seen for the first time."""

    def __missing__(self, word: str) -> int:
        idx = self[word] = len(self)
        return idx


@dataclass(frozen=True)
class TokenizedText:
    """Sentences of word ids in one flat array (CSR layout).

    Attributes:
        ids: ``(n_tokens,)`` int32 word ids, sentence after sentence.
        offsets: ``(n_sentences + 1,)`` int64; sentence ``k`` is ``ids[offsets[k]:offsets[k+1]]``.
    """

    ids: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        if self.ids.ndim != 1 or self.offsets.ndim != 1 or self.offsets.size < 1:
            raise ValueError(f"ids must be 1-D and offsets 1-D non-empty, got shapes {self.ids.shape}, {self.offsets.shape}")
        if self.offsets[0] != 0 or self.offsets[-1] != self.ids.size or np.any(np.diff(self.offsets) < 0):
            raise ValueError(
                f"offsets must rise from 0 to len(ids)={self.ids.size}, got {self.offsets[0]}..{self.offsets[-1]}"
            )

    def __len__(self) -> int:
        return self.offsets.size - 1

    @property
    def lengths(self) -> np.ndarray:
        """``(n_sentences,)`` int64 sentence lengths."""
        return np.diff(self.offsets)

    def sentence(self, k: int) -> np.ndarray:
        return self.ids[self.offsets[k] : self.offsets[k + 1]]

    def select(self, start: int, stop: int) -> TokenizedText:
        """Sentences ``start..stop-1``."""
        off = self.offsets[start : stop + 1]
        return TokenizedText(self.ids[off[0] : off[-1]], off - off[0])

    def take(self, indices: np.ndarray) -> TokenizedText:
        """Sentences ``indices`` (a ``(k,)`` integer array), in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        lens = self.lengths[indices]
        offsets = np.zeros(indices.size + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        gather = np.repeat(self.offsets[indices] - offsets[:-1], lens) + np.arange(offsets[-1], dtype=np.int64)
        return TokenizedText(self.ids[gather], offsets)

    @staticmethod
    def concatenate(parts: Sequence[TokenizedText]) -> TokenizedText:
        ids = np.concatenate([p.ids for p in parts]) if parts else np.zeros(0, np.int32)
        offs = [np.zeros(1, np.int64)]
        base = 0
        for p in parts:
            offs.append(p.offsets[1:] + base)
            base += p.ids.size
        return TokenizedText(ids, np.concatenate(offs))


def _encode_file(path: PathLike, index: _GrowingIndex, max_sentences: int | None) -> TokenizedText:
    """Read one tokenized sentence per line into ids, growing ``index``."""
    ids = array("i")
    offsets = array("q", [0])
    lookup = index.__getitem__
    with _open_text(path) as fh:
        for line in fh:
            if max_sentences is not None and len(offsets) > max_sentences:
                break
            ids.extend(map(lookup, line.split()))
            offsets.append(len(ids))
    return TokenizedText(np.frombuffer(ids, dtype=np.int32).copy(), np.frombuffer(offsets, dtype=np.int64).copy())


def read_tokenized(path: PathLike, vocab: Vocabulary | None = None, max_sentences: int | None = None) -> tuple[TokenizedText, Vocabulary]:
    """Read one tokenized sentence per line (``.gz`` allowed); empty lines are empty sentences.

    Args:
        path: the file.
        vocab: extend this vocabulary (new words get the next ids) instead of starting empty.
        max_sentences: read only the first N lines.

    Returns:
        ``(text, vocabulary)``.
    """
    index = _GrowingIndex((w, i) for i, w in enumerate(vocab.words)) if vocab is not None else _GrowingIndex()
    text = _encode_file(path, index, max_sentences)
    return text, Vocabulary(index)


@dataclass(frozen=True)
class ParallelCorpus:
    """Sentence pairs: ``source[k]`` is translated by ``target[k]``.

    Attributes:
        source, target: the two sides (same number of sentences).
        source_vocab, target_vocab: the words behind the ids.
        names: a label per side (usually the file names) for messages.
    """

    source: TokenizedText
    target: TokenizedText
    source_vocab: Vocabulary
    target_vocab: Vocabulary
    names: tuple[str, str] = field(default=("source", "target"))

    def __post_init__(self) -> None:
        if len(self.source) != len(self.target):
            raise ValueError(
                f"{self.names[0]} has {len(self.source)} sentences but {self.names[1]} has {len(self.target)}"
            )

    def __len__(self) -> int:
        return len(self.source)

    @classmethod
    def from_sentences(
        cls,
        source: Sequence[Sequence[str]],
        target: Sequence[Sequence[str]],
        source_vocab: Vocabulary | None = None,
        target_vocab: Vocabulary | None = None,
    ) -> ParallelCorpus:
        """Build a corpus from token lists; vocabularies are built (or extended) from the data.

        Raises:
            ValueError: if the two sides hold different numbers of sentences (naming both).
        """
        if len(source) != len(target):
            raise ValueError(f"source has {len(source)} sentences but target has {len(target)}")

        def encode(sents: Sequence[Sequence[str]], vocab: Vocabulary | None) -> tuple[TokenizedText, Vocabulary]:
            index = _GrowingIndex((w, i) for i, w in enumerate(vocab.words)) if vocab is not None else _GrowingIndex()
            ids = np.array([index[w] for s in sents for w in s], dtype=np.int32)
            offsets = np.zeros(len(sents) + 1, dtype=np.int64)
            np.cumsum([len(s) for s in sents], out=offsets[1:])
            return TokenizedText(ids, offsets), Vocabulary(index)

        src, sv = encode(source, source_vocab)
        tgt, tv = encode(target, target_vocab)
        return cls(src, tgt, sv, tv)

    def swap(self) -> ParallelCorpus:
        """The same pairs with source and target exchanged (for the reverse direction)."""
        return ParallelCorpus(self.target, self.source, self.target_vocab, self.source_vocab, self.names[::-1])

    def select(self, start: int, stop: int) -> ParallelCorpus:
        """Pairs ``start..stop-1`` (vocabularies unchanged)."""
        return ParallelCorpus(
            self.source.select(start, stop), self.target.select(start, stop), self.source_vocab, self.target_vocab, self.names
        )

    def take(self, indices: np.ndarray) -> ParallelCorpus:
        """Pairs ``indices`` (a ``(k,)`` integer array), vocabularies unchanged."""
        return ParallelCorpus(self.source.take(indices), self.target.take(indices), self.source_vocab, self.target_vocab, self.names)

    def sentence_pair(self, k: int) -> tuple[list[str], list[str]]:
        """The words of pair ``k``: ``(source_words, target_words)``."""
        sv, tv = self.source_vocab.words, self.target_vocab.words
        return [sv[i] for i in self.source.sentence(k)], [tv[i] for i in self.target.sentence(k)]

    @property
    def n_tokens(self) -> tuple[int, int]:
        """``(source tokens, target tokens)``."""
        return int(self.source.ids.size), int(self.target.ids.size)


def read_parallel(
    source_path: PathLike,
    target_path: PathLike,
    max_sentences: int | None = None,
    extra: Sequence[tuple[PathLike, PathLike]] = (),
) -> ParallelCorpus:
    """Read two line-aligned tokenized files (``.gz`` allowed) into one corpus.

    Args:
        source_path, target_path: the two sides.
        max_sentences: read only the first N pairs of ``source_path``/``target_path``.
        extra: more ``(source, target)`` file pairs, read in full and appended after the
            first (the shared task's practice of training on train + test); the
            vocabularies cover all files.

    Returns:
        The corpus, pairs in file order (the extra files' pairs last).

    Raises:
        FileNotFoundError: if a file is missing.
        ValueError: if two paired files hold different numbers of lines; the message
            names both files and both counts.
    """
    if max_sentences is not None and max_sentences < 1:
        raise ValueError(f"max_sentences must be >= 1, got {max_sentences}")
    src_index, tgt_index = _GrowingIndex(), _GrowingIndex()
    src_parts, tgt_parts = [], []
    for i, (sp_, tp_) in enumerate([(source_path, target_path), *extra]):
        limit = max_sentences if i == 0 else None
        s = _encode_file(sp_, src_index, limit)
        t = _encode_file(tp_, tgt_index, limit)
        if len(s) != len(t):
            raise ValueError(
                f"{sp_} has {len(s)} lines but {tp_} has {len(t)} lines; parallel files must have one sentence per line each"
            )
        src_parts.append(s)
        tgt_parts.append(t)
    return ParallelCorpus(
        TokenizedText.concatenate(src_parts),
        TokenizedText.concatenate(tgt_parts),
        Vocabulary(src_index),
        Vocabulary(tgt_index),
        (str(source_path), str(target_path)),
    )


# ------------------------------------------------------------------ alignments
Link = tuple[int, int]


@dataclass(frozen=True)
class GoldAlignment:
    """A gold-standard alignment: per sentence, 0-based ``(source_pos, target_pos)`` links.

    Attributes:
        sure: ``sure[k]`` is the set of sure links of sentence ``k``.
        possible: ``possible[k]`` ⊇ ``sure[k]``: sure and possible links (S ∪ P).
        n_null_links: links to position 0 (NULL) that were read and left out.
    """

    sure: tuple[frozenset[Link], ...]
    possible: tuple[frozenset[Link], ...]
    n_null_links: int = 0

    def __len__(self) -> int:
        return len(self.sure)

    def swap(self) -> GoldAlignment:
        """The same gold with the two positions of every link exchanged."""
        flip = lambda sets: tuple(frozenset((j, i) for i, j in s) for s in sets)
        return GoldAlignment(flip(self.sure), flip(self.possible), self.n_null_links)

    @property
    def n_sure(self) -> int:
        return sum(len(s) for s in self.sure)

    @property
    def n_possible(self) -> int:
        return sum(len(p) for p in self.possible)


def _gold(sure: list[set[Link]], possible: list[set[Link]], n_null: int) -> GoldAlignment:
    return GoldAlignment(
        tuple(frozenset(s) for s in sure), tuple(frozenset(p | s) for s, p in zip(sure, possible)), n_null
    )


def _grow(lists: list[set[Link]], n: int) -> None:
    while len(lists) < n:
        lists.append(set())


def read_naacl_alignment(path: PathLike, n_sentences: int | None = None) -> GoldAlignment:
    """Read a NAACL 2003 / WPT-03 gold file (``sentence_no pos1 pos2 [S|P] [confidence]``, 1-based).

    Args:
        path: the file (e.g. ``test.wa.nonullalign`` or ``test.wa.nullalign``).
        n_sentences: the number of sentences of the aligned text; sentences without any
            link are not listed in the file, so pass this to get one entry per sentence.
            Default: the largest sentence number in the file.

    Returns:
        Links as 0-based ``(pos1 - 1, pos2 - 1)`` (in the Hansards files: English, French);
        links with a position 0 (NULL) are counted in ``n_null_links`` and left out.

    Raises:
        CorpusFormatError: naming file and line for a line that is not 3-5 fields of the
            right types, a sentence number < 1 or above ``n_sentences``, or a negative position.
    """
    sure: list[set[Link]] = []
    possible: list[set[Link]] = []
    n_null = 0
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            fields = line.split()
            if not fields:
                continue
            if not 3 <= len(fields) <= 5:
                raise CorpusFormatError(path, lineno, f"expected 'sentence_no pos1 pos2 [S|P] [confidence]', got {line.rstrip()!r}")
            try:
                k, i, j = int(fields[0]), int(fields[1]), int(fields[2])
            except ValueError:
                raise CorpusFormatError(path, lineno, f"sentence number and positions must be integers, got {line.rstrip()!r}") from None
            label = fields[3] if len(fields) >= 4 else "S"
            if label not in ("S", "P"):
                raise CorpusFormatError(path, lineno, f"link label must be S or P, got {label!r}")
            if len(fields) == 5:
                try:
                    float(fields[4])
                except ValueError:
                    raise CorpusFormatError(path, lineno, f"confidence must be a number, got {fields[4]!r}") from None
            if k < 1 or (n_sentences is not None and k > n_sentences):
                raise CorpusFormatError(path, lineno, f"sentence number {k} outside 1..{n_sentences if n_sentences is not None else 'N'}")
            if i < 0 or j < 0:
                raise CorpusFormatError(path, lineno, f"positions must be >= 0 (0 is NULL), got {i} {j}")
            _grow(sure, k)
            _grow(possible, k)
            if i == 0 or j == 0:
                n_null += 1
                continue
            (sure if label == "S" else possible)[k - 1].add((i - 1, j - 1))
    if n_sentences is not None:
        _grow(sure, n_sentences)
        _grow(possible, n_sentences)
    return _gold(sure, possible, n_null)


def _parse_pharaoh_line(line: str, path: PathLike, lineno: int) -> tuple[set[Link], set[Link]]:
    sure: set[Link] = set()
    possible: set[Link] = set()
    for tok in line.split():
        sep = "-" if "-" in tok else "?" if "?" in tok else None
        parts = tok.split(sep) if sep else []
        if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit():
            raise CorpusFormatError(path, lineno, f"expected links 'i-j' or 'i?j' with i, j >= 0, got {tok!r}")
        (sure if sep == "-" else possible).add((int(parts[0]), int(parts[1])))
    return sure, possible


def read_pharaoh(path: PathLike, possible_path: PathLike | None = None) -> GoldAlignment:
    """Read Pharaoh alignments (one sentence a line, 0-based ``i-j`` sure and ``i?j`` possible links).

    Args:
        path: the alignments.
        possible_path: optional second Pharaoh file of possible links (line-aligned with
            ``path``); its ``i-j`` links are added to the possible set.

    Raises:
        CorpusFormatError: naming file and line of a malformed link.
        ValueError: if ``possible_path`` has a different number of lines (naming both).
    """
    sure: list[set[Link]] = []
    possible: list[set[Link]] = []
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            s, p = _parse_pharaoh_line(line, path, lineno)
            sure.append(s)
            possible.append(p)
    if possible_path is not None:
        with _open_text(possible_path) as fh:
            n = 0
            for lineno, line in enumerate(fh, 1):
                s, p = _parse_pharaoh_line(line, possible_path, lineno)
                if lineno <= len(possible):
                    possible[lineno - 1] |= s | p
                n = lineno
        if n != len(sure):
            raise ValueError(f"{path} has {len(sure)} lines but {possible_path} has {n} lines")
    return _gold(sure, possible, 0)


def read_gold_alignment(path: PathLike, n_sentences: int | None = None) -> GoldAlignment:
    """Read a gold alignment in either format, told apart by the first non-empty line.

    A first line of 3-5 whitespace-separated fields whose first three are integers is the
    NAACL/WPT-03 format (:func:`read_naacl_alignment`); anything else is read as Pharaoh
    (:func:`read_pharaoh`), whose links hold ``-`` or ``?``.
    """
    with _open_text(path) as fh:
        first = next((line for line in fh if line.strip()), "")
    fields = first.split()
    if 3 <= len(fields) <= 5 and all(f.isdigit() for f in fields[:3]):
        return read_naacl_alignment(path, n_sentences)
    gold = read_pharaoh(path)
    if n_sentences is not None and len(gold) != n_sentences:
        raise ValueError(f"{path} holds {len(gold)} lines (sentences) but the aligned text has {n_sentences}")
    return gold


def write_pharaoh(path: PathLike, alignments: Iterable[Iterable[Link] | np.ndarray]) -> int:
    """Write one line per sentence of sorted 0-based ``i-j`` links; returns the number of lines.

    Args:
        alignments: per sentence, ``(source_pos, target_pos)`` pairs (or an ``(n, 2)`` array).
    """
    lines = []
    for links in alignments:
        pairs = links.tolist() if isinstance(links, np.ndarray) else links
        lines.append(" ".join(f"{i}-{j}" for i, j in sorted(map(tuple, pairs))) + "\n")
    atomic_write_text(path, "".join(lines))
    return len(lines)


def iter_links(gold: GoldAlignment, sure: bool = True) -> Iterator[tuple[int, Link]]:
    """``(sentence, link)`` for every sure (or, with ``sure=False``, possible) link."""
    for k, links in enumerate(gold.sure if sure else gold.possible):
        for link in sorted(links):
            yield k, link
