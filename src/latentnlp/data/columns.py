"""Column corpora: CoNLL-style files with one token per line and one annotation per column.

A :class:`ColumnCorpus` keeps every column of a file (for CoNLL-2000 chunking:
the word, its Penn Treebank POS tag and its chunk tag) as sentences of
strings, by column name. :meth:`ColumnCorpus.tagged` picks two columns as the
words and tags of a :class:`~latentnlp.data.tagged.TaggedCorpus`, so the
taggers and vocabularies of :mod:`latentnlp.data.tagged` apply unchanged
(``tagged("word", "chunk")`` for a chunker, ``tagged("word", "pos")`` for a
POS tagger).

Formats read by :func:`read_columns`
------------------------------------
* ``"conll"`` — the CoNLL-2000 shared task format (Tjong Kim Sang & Buchholz
  2000, "Introduction to the CoNLL-2000 Shared Task: Chunking"), also used by
  CoNLL-2002/2003 NER: one token per line, its fields separated by spaces or
  tabs, a blank line between sentences. Trailing whitespace, several blank
  lines in a row and a missing final newline are tolerated. ``-DOCSTART-``
  lines (document boundaries of CoNLL-2003) end a sentence and are skipped.
  Lines starting with ``#`` are *tokens*, not comments: ``#`` is a word of the
  WSJ (CoNLL-2000 train has ``# # O`` and ``# # I-NP`` lines).
* ``"conllu"`` — CoNLL-U (Universal Dependencies), read with the ``conllu``
  package as :func:`latentnlp.data.tagged.read_conllu` does: multiword-token
  ranges (ids like ``3-4``) and empty nodes (ids like ``8.1``) are skipped,
  the syntactic words are kept. The columns kept are FORM, LEMMA, UPOS and XPOS,
  named ``"form"``, ``"lemma"``, ``"upos"``, ``"xpos"``; an unspecified value
  (``_``) is kept as the string ``"_"``.

Every malformed input raises :class:`ColumnFormatError`, whose message is
``"<path>:<line>: <reason>"`` with the 1-based line number.

:func:`conll2000_path` finds the shared CoNLL-2000 files through
:func:`latentnlp.data.paths.dataset_path`. CoNLL-2000 has no development set;
carve one out of train with :meth:`ColumnCorpus.split`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bow import CorpusFormatError
from .paths import dataset_path
from .tagged import TaggedCorpus

__all__ = [
    "CONLL2000",
    "CONLLU_COLUMNS",
    "COLUMN_FORMATS",
    "DOCSTART",
    "ColumnCorpus",
    "ColumnFormatError",
    "conll2000_path",
    "read_columns",
]

CONLL2000 = "conll2000"
"""Folder of CoNLL-2000 chunking (``train.txt``, ``test.txt``: ``word POS chunk`` lines) under the data root."""
CONLLU_COLUMNS = ("form", "lemma", "upos", "xpos")
"""The CoNLL-U columns :func:`read_columns` keeps, in file order."""
COLUMN_FORMATS = ("conll", "conllu")
DOCSTART = "-DOCSTART-"
"""First field of a document-boundary line (CoNLL-2003); such lines are skipped."""

_FIELD_SEP = re.compile(r"[ \t]+")


class ColumnFormatError(CorpusFormatError):
    """A column file does not follow its format, or the column names asked for do not fit it.

    A :class:`~latentnlp.data.bow.CorpusFormatError` (so a ``ValueError``): the
    message is ``"<path>:<line>: <reason>"``, line 1-based; the parts are kept as
    ``path``, ``line`` and ``reason``.
    """


# --------------------------------------------------------------------------- corpus
@dataclass
class ColumnCorpus:
    """Sentences of tokens with several annotation columns.

    Attributes:
        columns: column name -> ``D`` sentences -> one string per token; every
            column has the same ``D`` sentences of the same lengths ``L_d``. The
            dict's order is the file's column order.
        source: where the sentences came from (a path, for messages and run records).

    Raises:
        ValueError: no column, or a column whose number of sentences or a sentence's
            length differs from the first column's (column and sentence named).
    """

    columns: dict[str, list[list[str]]]
    source: str = ""

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError(f"{self.source}: a column corpus needs at least one column")
        first, *rest = self.columns
        ref = self.columns[first]
        for name in rest:
            col = self.columns[name]
            if len(col) != len(ref):
                raise ValueError(
                    f"{self.source}: column {name!r} has {len(col)} sentences but column {first!r} has {len(ref)}"
                )
            for d, (a, b) in enumerate(zip(ref, col)):
                if len(a) != len(b):
                    raise ValueError(
                        f"{self.source}: sentence {d} has {len(b)} tokens in column {name!r} "
                        f"but {len(a)} in column {first!r}"
                    )

    def __len__(self) -> int:
        """Number of sentences ``D``."""
        return len(next(iter(self.columns.values())))

    @property
    def n_tokens(self) -> int:
        """Number of tokens, ``sum_d L_d``."""
        return sum(len(s) for s in next(iter(self.columns.values())))

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in file order."""
        return tuple(self.columns)

    def column(self, name: str) -> list[list[str]]:
        """The ``D`` sentences of column ``name`` (the corpus's own lists, not a copy).

        Raises:
            ValueError: no such column (the available names are listed).
        """
        try:
            return self.columns[name]
        except KeyError:
            raise ValueError(f"{self.source}: no column {name!r}; the columns are {self.names}") from None

    def sentence(self, d: int) -> dict[str, list[str]]:
        """Sentence ``d`` as column name -> its ``L_d`` strings.

        Raises:
            IndexError: ``d`` out of range.
        """
        return {name: col[d] for name, col in self.columns.items()}

    def subset(self, indices: Iterable[int]) -> ColumnCorpus:
        """The sentences at ``indices`` (in that order), same columns and source.

        Raises:
            IndexError: an index out of range.
        """
        idx = [int(i) for i in indices]
        return ColumnCorpus({name: [col[i] for i in idx] for name, col in self.columns.items()}, self.source)

    def head(self, n: int) -> ColumnCorpus:
        """The first ``n`` sentences (all if fewer)."""
        return self.subset(range(min(n, len(self))))

    def split(self, fraction: float, seed: int) -> tuple[ColumnCorpus, ColumnCorpus]:
        """Split off a random held-out part of ``round(fraction * D)`` sentences.

        Used to carve a development set out of a training file that has none
        (CoNLL-2000 ships train and test only). The choice is deterministic given
        ``seed`` (``numpy.random.default_rng(seed)``, as :meth:`BowCorpus.split
        <latentnlp.data.bow.BowCorpus.split>`); both parts keep the original
        sentence order.

        Returns:
            ``(rest, held_out)``: disjoint, together all ``D`` sentences.

        Raises:
            ValueError: ``fraction`` not in ``(0, 1)``, or one part would be empty.
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        n_held = round(fraction * len(self))
        if n_held == 0 or n_held == len(self):
            raise ValueError(f"fraction {fraction} of {len(self)} sentences leaves an empty part ({n_held} held out)")
        perm = np.random.default_rng(seed).permutation(len(self))
        held = np.sort(perm[:n_held])
        rest = np.sort(perm[n_held:])
        return self.subset(rest.tolist()), self.subset(held.tolist())

    def tagged(self, token_column: str, tag_column: str) -> TaggedCorpus:
        """A :class:`~latentnlp.data.tagged.TaggedCorpus` of two columns (copied lists).

        For CoNLL-2000 read with names ``("word", "pos", "chunk")``:
        ``tagged("word", "chunk")`` (chunking) or ``tagged("word", "pos")`` (POS tagging).

        Raises:
            ValueError: no such column (the available names are listed).
        """
        words = [list(s) for s in self.column(token_column)]
        tags = [list(s) for s in self.column(tag_column)]
        return TaggedCorpus(words, tags, self.source)


# --------------------------------------------------------------------------- reading
def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(1-based line number, line without its end-of-line)``, decoded as UTF-8 line by line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ColumnFormatError(path, lineno, f"not UTF-8 text: {exc}") from exc
            yield lineno, text.rstrip("\r\n")


def _check_names(path: Path, lineno: int, names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ColumnFormatError(path, lineno, f"duplicate column name {name!r} in {tuple(names)}")
        seen.add(name)


def _read_conll(path: Path, names: Sequence[str] | None) -> ColumnCorpus:
    n_cols = first_line = 0
    sentences: list[list[list[str]]] = []  # sentence -> token -> fields
    current: list[list[str]] = []
    last = 0
    for lineno, line in _lines(path):
        last = lineno
        line = line.strip(" \t")
        fields = _FIELD_SEP.split(line) if line else []
        if not fields or fields[0] == DOCSTART:
            if current:
                sentences.append(current)
                current = []
            continue
        if not n_cols:
            n_cols, first_line = len(fields), lineno
            if names is not None:
                _check_names(path, lineno, names)
                if len(names) != n_cols:
                    raise ColumnFormatError(
                        path, lineno, f"{len(names)} column names {tuple(names)} given but the file has {n_cols} columns"
                    )
        elif len(fields) != n_cols:
            raise ColumnFormatError(
                path, lineno, f"{len(fields)} columns, expected {n_cols} (as on line {first_line}, the first token line)"
            )
        current.append(fields)
    if current:
        sentences.append(current)
    if not sentences:
        raise ColumnFormatError(path, max(last, 1), "no sentences (empty file)" if not last else f"no sentences in {last} lines")
    col_names = list(names) if names is not None else [f"col{k}" for k in range(n_cols)]
    columns = {name: [[tok[k] for tok in sent] for sent in sentences] for k, name in enumerate(col_names)}
    return ColumnCorpus(columns, str(path))


def _read_conllu(path: Path, names: Sequence[str] | None) -> ColumnCorpus:
    import conllu

    blocks: list[tuple[int, list[str]]] = []  # (first line number, lines) of each blank-line-separated block
    start, lines, last = 0, [], 0
    for lineno, line in _lines(path):
        last = lineno
        if line.strip():
            if not lines:
                start = lineno
            lines.append(line)
        elif lines:
            blocks.append((start, lines))
            lines = []
    if lines:
        blocks.append((start, lines))

    token_lines = [n for s, block in blocks for n, line in enumerate(block, s) if not line.startswith("#")]
    if not token_lines:
        raise ColumnFormatError(path, max(last, 1), "no sentences (empty file)" if not last else f"no sentences in {last} lines")
    keep = CONLLU_COLUMNS
    if names is not None:
        if not names:
            raise ColumnFormatError(path, token_lines[0], f"no column names given; choose from {CONLLU_COLUMNS}")
        _check_names(path, token_lines[0], names)
        unknown = [n for n in names if n not in CONLLU_COLUMNS]
        if unknown:
            raise ColumnFormatError(
                path, token_lines[0], f"unknown CoNLL-U column name(s) {unknown}; choose from {CONLLU_COLUMNS}"
            )
        keep = tuple(n for n in CONLLU_COLUMNS if n in names)

    columns: dict[str, list[list[str]]] = {name: [] for name in keep}
    for start, block in blocks:
        for n, line in enumerate(block, start):
            if not line.startswith("#") and len(line.split("\t")) != 10:
                raise ColumnFormatError(path, n, f"expected 10 tab-separated columns, got {len(line.split(chr(9)))}")
        try:
            parsed = conllu.parse("\n".join(block) + "\n")
        except Exception as exc:  # conllu raises its own ParseException and ValueError subclasses
            raise ColumnFormatError(path, start, f"the conllu parser rejects the sentence starting here: {exc}") from exc
        for sentence in parsed:
            values: dict[str, list[str]] = {name: [] for name in keep}
            for token in sentence:
                if not isinstance(token["id"], int):  # (3, '-', 4): multiword range; (8, '.', 1): empty node
                    continue
                for name in keep:
                    value = token[name]
                    values[name].append("_" if value is None else str(value))
            if values[keep[0]]:
                for name in keep:
                    columns[name].append(values[name])
    return ColumnCorpus(columns, str(path))


def read_columns(
    path: str | os.PathLike, names: Sequence[str] | None = None, format: str | None = None
) -> ColumnCorpus:
    """Read a CoNLL-style column file (see the module docstring for the formats).

    Args:
        path: the file (UTF-8). Paths only; there is no ``"-"`` for standard input.
        names: ``"conll"``: one name per column, in file order (``None``: ``"col0"``,
            ``"col1"``, ...; CoNLL-2000 users pass ``("word", "pos", "chunk")``).
            ``"conllu"``: a subset of ``("form", "lemma", "upos", "xpos")`` to keep
            (``None``: all four); the kept columns stay in that file order.
        format: ``"conll"``, ``"conllu"``, or ``None``: ``"conllu"`` for a ``.conllu``
            suffix, else ``"conll"``.

    Returns:
        A :class:`ColumnCorpus` of every non-empty sentence; for CoNLL-2000 train
        8,936 sentences / 211,727 tokens, test 2,012 / 47,377.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown ``format``.
        TypeError: ``names`` is a single string.
        ColumnFormatError: (file and 1-based line named) an empty file or one without
            sentences; a token line with another number of columns than the file's
            first token line (``"conll"``) or without 10 tab-separated columns
            (``"conllu"``); a block the ``conllu`` parser rejects; ``names`` whose
            length is not the file's column count (``"conll"``), that repeat a name,
            or that ask for a column the format does not have (``"conllu"``); text
            that is not UTF-8.
    """
    path = Path(path)
    if format is None:
        format = "conllu" if path.suffix.lower() == ".conllu" else "conll"
    if format not in COLUMN_FORMATS:
        raise ValueError(f"format must be one of {COLUMN_FORMATS}, got {format!r}")
    if not path.is_file():
        raise FileNotFoundError(f"no such {format} file: {path}")
    if names is not None and isinstance(names, str):
        raise TypeError(f"names must be a sequence of column names, not the string {names!r}")
    if format == "conllu":
        return _read_conllu(path, names)
    return _read_conll(path, names)


# --------------------------------------------------------------------------- shared data sets
def conll2000_path(split: str = "train", data_dir: str | os.PathLike | None = None) -> Path:
    """``<data root>/conll2000/{split}.txt`` for ``split`` in train, test (CoNLL-2000 has no dev set).

    Raises:
        ValueError: on another split.
        FileNotFoundError: the folder or the file is missing (the path and how to set the root are named).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test (CoNLL-2000 has no dev set; use ColumnCorpus.split), got {split!r}")
    path = dataset_path(CONLL2000, data_dir) / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}; point --data-dir or LATENTNLP_DATA at the folder holding {CONLL2000}/")
    return path
