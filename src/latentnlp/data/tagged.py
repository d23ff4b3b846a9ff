"""Tagged corpora (sentences of words with part-of-speech tags), their vocabularies and readers.

A :class:`TaggedCorpus` holds sentences as strings; a :class:`Vocabulary` maps
strings to ids. Models see ids only, through :func:`encode`.

Unknown-word policy
-------------------
The word vocabulary is built from the training corpus by
:func:`build_word_vocab`: id 0 is always :data:`UNK` (``"<unk>"``), and every
word seen at least ``min_count`` times in training gets its own id. Words seen
fewer times are *replaced by* ``<unk>`` in training too, so that a supervised
tagger learns ``b_j(<unk>)`` from rare words — the standard estimate of how
tags emit unseen words (``min_count=2`` makes hapax legomena the unknown-word
model). At tagging time every out-of-vocabulary word maps to ``<unk>`` and
:func:`encode` logs how many tokens did so (one INFO line per call, with the
count and share). With ``min_count=1`` nothing in training is ``<unk>``, so a
model trained by EM gives unknown words probability 0 unless its M-step is
smoothed. Tag vocabularies have no ``<unk>``: an unseen tag is an error where
ids are required, or id ``-1`` (always wrong) when scoring, see :func:`encode`.
For case/digit folding and rare or unseen words mapped to orthographic
signature classes (``<sig-lower-ing>``, ...) instead of ``<unk>``, see
:class:`latentnlp.data.wordforms.WordPreprocessor`.

Readers (all raise :class:`~latentnlp.data.bow.CorpusFormatError` naming the
file and the 1-based line of malformed input)
-------------------------------------------------------------------------
* :func:`read_conllu` — CoNLL-U via the ``conllu`` package (Universal
  Dependencies), UPOS or XPOS column. Multiword-token ranges (ids like
  ``3-4``, e.g. English ``don't`` over ``do`` + ``n't``) and empty nodes
  (ids like ``8.1``, enhanced dependencies) are skipped: they are not words
  of the sentence; the syntactic words under a range are kept.
* :func:`read_treebank_zip` — NLTK's 10% WSJ sample (``treebank.zip``) read in
  place with :mod:`zipfile` from its ``combined/*.mrg`` parse trees; ``-NONE-``
  leaves (traces and empty elements, not words) are dropped, giving 3,914
  sentences / 94,084 tokens / 45 tags.
* :func:`read_wordtag` — one sentence per line, whitespace-separated
  ``word/TAG`` tokens (split at the *last* ``/``, so ``1/2/CD`` is the word
  ``1/2``); blank lines are skipped.
* :func:`read_tagged` — one of the three by ``format`` (or by file name).

:func:`treebank_sample_path` and :func:`ud_ewt_path` find the shared data sets
through :func:`latentnlp.data.paths.dataset_path`.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from .bow import CorpusFormatError
from .paths import dataset_path
from .vocab import Vocabulary

__all__ = [
    "FORMATS",
    "TAG_COLUMNS",
    "TREEBANK_SAMPLE",
    "UD_EWT",
    "UNK",
    "TaggedCorpus",
    "Vocabulary",
    "build_tag_vocab",
    "build_word_vocab",
    "encode",
    "read_conllu",
    "read_tagged",
    "read_treebank_zip",
    "read_wordtag",
    "treebank_sample_path",
    "ud_ewt_path",
]

log = logging.getLogger("latentnlp.data.tagged")

UNK = "<unk>"
"""The unknown word; id 0 of every word vocabulary."""

FORMATS = ("conllu", "treebank", "wordtag")
TAG_COLUMNS = ("upos", "xpos")
TREEBANK_SAMPLE = "nltk-treebank-sample"
"""Folder of NLTK's WSJ sample (``treebank.zip``) under the data root."""
UD_EWT = "ud-en-ewt"
"""Folder of Universal Dependencies English Web Treebank (``en_ewt-ud-{train,dev,test}.conllu``)."""


# --------------------------------------------------------------------------- corpus and vocabulary
@dataclass
class TaggedCorpus:
    """Sentences of words with one tag per word.

    Attributes:
        words: ``D`` sentences, each a list of word strings (may be empty only if read so).
        tags: ``D`` lists of tag strings, ``len(tags[d]) == len(words[d])``.
        source: where the sentences came from (a path, for messages and run records).

    Raises:
        ValueError: if ``words`` and ``tags`` disagree in number or in a sentence's length (named).
    """

    words: list[list[str]]
    tags: list[list[str]]
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.words) != len(self.tags):
            raise ValueError(f"{self.source}: {len(self.words)} word sentences but {len(self.tags)} tag sentences")
        for d, (w, t) in enumerate(zip(self.words, self.tags)):
            if len(w) != len(t):
                raise ValueError(f"{self.source}: sentence {d} has {len(w)} words but {len(t)} tags")

    def __len__(self) -> int:
        return len(self.words)

    @property
    def n_tokens(self) -> int:
        return sum(len(w) for w in self.words)

    def tag_counts(self) -> Counter:
        return Counter(t for sent in self.tags for t in sent)

    def word_counts(self) -> Counter:
        return Counter(w for sent in self.words for w in sent)

    def subset(self, indices: Iterable[int]) -> TaggedCorpus:
        """The sentences at ``indices`` (in that order), same source."""
        idx = list(indices)
        return TaggedCorpus([self.words[i] for i in idx], [self.tags[i] for i in idx], self.source)

    def head(self, n: int) -> TaggedCorpus:
        """The first ``n`` sentences (all if fewer)."""
        return self.subset(range(min(n, len(self))))


def build_word_vocab(corpus: TaggedCorpus, min_count: int = 1) -> Vocabulary:
    """Word vocabulary of a training corpus: ``<unk>`` (id 0), then words seen ``>= min_count`` times.

    Words are ordered by decreasing count, ties alphabetically (deterministic,
    so every process of a distributed run builds the same ids).

    Raises:
        ValueError: if ``min_count < 1``.
    """
    if not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
    counts = corpus.word_counts()
    kept = sorted((w for w, c in counts.items() if c >= min_count and w != UNK), key=lambda w: (-counts[w], w))
    return Vocabulary((UNK, *kept), unk=UNK)


def build_tag_vocab(corpus: TaggedCorpus) -> Vocabulary:
    """Closed tag vocabulary, tags sorted alphabetically."""
    return Vocabulary(tuple(sorted(corpus.tag_counts())), unk=None)


def encode(
    corpus: TaggedCorpus, words: Vocabulary, tags: Vocabulary | None = None, unknown_tag: str = "error"
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """Word ids (and tag ids) of every sentence, as 1-D LongTensors.

    Out-of-vocabulary words map to ``words.unk_id`` and are counted in one log
    line. A tag missing from ``tags`` raises (``unknown_tag="error"``) or maps
    to ``-1`` (``unknown_tag="minus_one"``: for scoring, where it is never matched).

    Returns:
        ``(word_ids, tag_ids)``: ``D`` tensors of shape ``(L_d,)``; ``tag_ids`` is
        ``None`` when ``tags`` is ``None``.

    Raises:
        ValueError: if ``words`` has no ``unk`` and a word is unknown, or on an unknown
        tag with ``unknown_tag="error"`` (sentence and position named).
    """
    if unknown_tag not in ("error", "minus_one"):
        raise ValueError(f"unknown_tag must be 'error' or 'minus_one', got {unknown_tag!r}")
    word_ids, tag_ids = [], [] if tags is not None else None
    n_unk = n_bad_tags = 0
    for d, (sw, st) in enumerate(zip(corpus.words, corpus.tags)):
        ids = []
        for n, w in enumerate(sw):
            i = words._index.get(w)
            if i is None:
                if words.unk is None:
                    raise ValueError(f"{corpus.source}: word {w!r} of sentence {d} (position {n}) is not in the vocabulary")
                i = words.unk_id
                n_unk += 1
            ids.append(i)
        word_ids.append(torch.tensor(ids, dtype=torch.long))
        if tags is not None:
            t_ids = []
            for n, t in enumerate(st):
                i = tags._index.get(t)
                if i is None:
                    if unknown_tag == "error":
                        raise ValueError(
                            f"{corpus.source}: tag {t!r} of sentence {d} (position {n}) is not in the tag set "
                            f"({len(tags)} tags)"
                        )
                    i = -1
                    n_bad_tags += 1
                t_ids.append(i)
            tag_ids.append(torch.tensor(t_ids, dtype=torch.long))
    total = corpus.n_tokens
    if n_unk:
        log.info("%s: %d of %d tokens (%.2f%%) are out of vocabulary and map to %s",
                 corpus.source, n_unk, total, 100.0 * n_unk / max(total, 1), words.unk)
    if n_bad_tags:
        log.info("%s: %d tokens have tags outside the model's tag set (scored as wrong)", corpus.source, n_bad_tags)
    return word_ids, tag_ids


# --------------------------------------------------------------------------- CoNLL-U
def _conllu_blocks(path: Path) -> Iterable[tuple[int, str]]:
    """``(first line number, text)`` of each blank-line-separated block of a file."""
    start, lines = None, []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                if start is None:
                    start = lineno
                lines.append(line)
            elif lines:
                yield start, "".join(lines)
                start, lines = None, []
    if lines:
        yield start, "".join(lines)


def read_conllu(path: str | os.PathLike, tag_column: str = "upos") -> TaggedCorpus:
    """Read a CoNLL-U file (Universal Dependencies) with the ``conllu`` package.

    Words are the FORM column; tags the UPOS (17 universal tags) or XPOS
    (language-specific; PTB-style for English EWT) column. Multiword-token
    ranges (``3-4``) and empty nodes (``8.1``) are skipped — they are not words
    of the sentence (the syntactic words a range spans are kept).

    Args:
        path: the ``.conllu`` file (UTF-8).
        tag_column: ``"upos"`` or ``"xpos"``.

    Returns:
        A :class:`TaggedCorpus`; for EWT train: 12,544 sentences / 204,577 words.

    Raises:
        FileNotFoundError: no such file.
        ValueError: on a bad ``tag_column``.
        CorpusFormatError: a line without 10 tab-separated columns, a bad id, a
            word without a tag (``_``) in the chosen column, or a block the
            ``conllu`` parser rejects (file and line named).
    """
    import conllu

    if tag_column not in TAG_COLUMNS:
        raise ValueError(f"tag_column must be one of {TAG_COLUMNS}, got {tag_column!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such CoNLL-U file: {path}")
    words, tags = [], []
    for start, text in _conllu_blocks(path):
        lines = text.splitlines()
        for offset, line in enumerate(lines):
            if not line.startswith("#") and len(line.split("\t")) != 10:
                raise CorpusFormatError(
                    path, start + offset, f"expected 10 tab-separated columns, got {len(line.split(chr(9)))}"
                )
        try:
            sentences = conllu.parse(text)
        except Exception as exc:  # conllu raises its own ParseException and ValueError subclasses
            raise CorpusFormatError(path, start, f"the conllu parser rejects the sentence starting here: {exc}") from exc
        token_lines = [start + k for k, line in enumerate(lines) if not line.startswith("#")]
        for sentence in sentences:
            sw, st = [], []
            for token, lineno in zip(sentence, token_lines):
                tid = token["id"]
                if not isinstance(tid, int):  # (3, '-', 4): multiword range; (8, '.', 1): empty node
                    continue
                tag = token[tag_column]
                if tag is None or tag == "_":
                    raise CorpusFormatError(path, lineno, f"word {token['form']!r} has no {tag_column.upper()} tag")
                sw.append(token["form"])
                st.append(tag)
            words.append(sw)
            tags.append(st)
    return TaggedCorpus(words, tags, str(path))


# --------------------------------------------------------------------------- Penn Treebank sample
_MRG_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def _parse_mrg(text: str, where: str) -> list[tuple[list[str], list[str]]]:
    """Sentences (words, tags) of one ``.mrg`` file: the leaves ``(TAG word)`` of each top-level tree."""
    sentences: list[tuple[list[str], list[str]]] = []
    depth = 0
    words: list[str] = []
    tags: list[str] = []
    tree_line = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        toks = _MRG_TOKEN.findall(line)
        i = 0
        while i < len(toks):
            t = toks[i]
            if t == "(":
                if depth == 0:
                    words, tags, tree_line = [], [], lineno
                # a leaf: "(" TAG word ")" on one line
                if i + 3 < len(toks) and toks[i + 1] not in "()" and toks[i + 2] not in "()" and toks[i + 3] == ")":
                    if toks[i + 1] != "-NONE-":
                        tags.append(toks[i + 1])
                        words.append(toks[i + 2])
                    i += 4
                    continue
                depth += 1
            elif t == ")":
                if depth == 0:
                    raise CorpusFormatError(where, lineno, "unbalanced ')'")
                depth -= 1
                if depth == 0:
                    if not words:
                        raise CorpusFormatError(where, tree_line, "tree has no words")
                    sentences.append((words, tags))
            elif depth == 0:
                raise CorpusFormatError(where, lineno, f"text {t!r} outside a tree")
            i += 1
    if depth != 0:
        raise CorpusFormatError(where, tree_line, f"tree starting here is not closed ({depth} '(' open at end of file)")
    return sentences


def read_treebank_zip(path: str | os.PathLike) -> TaggedCorpus:
    """Read NLTK's Penn Treebank sample from ``treebank.zip`` in place (no extraction).

    Reads ``treebank/combined/wsj_*.mrg`` (parse trees with tags) in file order;
    each top-level tree is a sentence, its leaves ``(TAG word)`` the tokens.
    ``-NONE-`` leaves (traces, empty complementisers: not words) are dropped.

    Returns:
        A :class:`TaggedCorpus` of 3,914 sentences / 94,084 tokens / 45 tags
        (the MANIFEST's figures) for the shipped file.

    Raises:
        FileNotFoundError: no such file.
        CorpusFormatError: not a zip file, no ``.mrg`` members, or a malformed tree
            (``zip:member:line`` named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such treebank zip: {path}")
    if not zipfile.is_zipfile(path):
        raise CorpusFormatError(path, None, "not a zip file")
    words, tags = [], []
    with zipfile.ZipFile(path) as z:
        members = sorted(n for n in z.namelist() if re.search(r"(^|/)combined/[^/]+\.mrg$", n))
        if not members:
            raise CorpusFormatError(path, None, "no combined/*.mrg members (expected NLTK's treebank.zip)")
        for name in members:
            try:
                text = z.read(name).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CorpusFormatError(f"{path}:{name}", None, f"not UTF-8 text: {exc}") from exc
            for sw, st in _parse_mrg(text, f"{path}:{name}"):
                words.append(sw)
                tags.append(st)
    return TaggedCorpus(words, tags, str(path))


# --------------------------------------------------------------------------- word/TAG text
def read_wordtag(path: str | os.PathLike, sep: str = "/") -> TaggedCorpus:
    """Read one sentence per line of ``word/TAG`` tokens separated by whitespace.

    Each token is split at its last ``sep``; blank lines are skipped.

    Raises:
        FileNotFoundError: no such file.
        CorpusFormatError: a token without ``sep``, or with an empty word or tag (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such word/TAG file: {path}")
    words, tags = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            toks = line.split()
            if not toks:
                continue
            sw, st = [], []
            for tok in toks:
                word, s, tag = tok.rpartition(sep)
                if not s or not word or not tag:
                    raise CorpusFormatError(path, lineno, f"token {tok!r} is not word{sep}TAG")
                sw.append(word)
                st.append(tag)
            words.append(sw)
            tags.append(st)
    return TaggedCorpus(words, tags, str(path))


def read_tagged(path: str | os.PathLike, format: str | None = None, tag_column: str = "upos") -> TaggedCorpus:
    """Read a tagged corpus in ``format`` (``None``: ``.conllu`` -> conllu, ``.zip`` -> treebank, else wordtag).

    ``tag_column`` applies to CoNLL-U only. Errors: as the reader chosen, or
    ``ValueError`` on an unknown ``format``.
    """
    if format is None:
        suffix = Path(path).suffix.lower()
        format = {".conllu": "conllu", ".zip": "treebank"}.get(suffix, "wordtag")
    if format == "conllu":
        return read_conllu(path, tag_column)
    if format == "treebank":
        return read_treebank_zip(path)
    if format == "wordtag":
        return read_wordtag(path)
    raise ValueError(f"format must be one of {FORMATS}, got {format!r}")


# --------------------------------------------------------------------------- shared data sets
def treebank_sample_path(data_dir: str | os.PathLike | None = None) -> Path:
    """``<data root>/nltk-treebank-sample/treebank.zip``.

    Raises:
        FileNotFoundError: the folder or the zip is missing (the path and how to set the root are named).
    """
    path = dataset_path(TREEBANK_SAMPLE, data_dir) / "treebank.zip"
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}; point --data-dir or LATENTNLP_DATA at the folder holding {TREEBANK_SAMPLE}/")
    return path


def ud_ewt_path(split: str = "train", data_dir: str | os.PathLike | None = None) -> Path:
    """``<data root>/ud-en-ewt/en_ewt-ud-{split}.conllu`` for ``split`` in train, dev, test.

    Raises:
        ValueError: on another split.
        FileNotFoundError: the folder or the file is missing.
    """
    if split not in ("train", "dev", "test"):
        raise ValueError(f"split must be train, dev or test, got {split!r}")
    path = dataset_path(UD_EWT, data_dir) / f"en_ewt-ud-{split}.conllu"
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}; point --data-dir or LATENTNLP_DATA at the folder holding {UD_EWT}/")
    return path
