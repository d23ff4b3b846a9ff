"""Feature templates of the feature-based taggers (MEMM and linear-chain CRF), and their sparse matrix.

A template turns position ``i`` of a sentence (its columns: the token and any
extra columns such as CoNLL-2000's POS tags) into a list of *attribute* strings
``f(x, i)``, e.g. ``w[0]=pound``, ``suf3[0]=und``, ``pos[-1]|pos[0]=DT|NN``. A
model pairs every attribute with every label (CRF state features
``f(x, i) 1[z_i = y]``) and adds tag-transition features ``1[z_{i-1}=y', z_i=y]``
itself. The attribute lists are plain strings, so exactly the same features can
be handed to a peer (CRFsuite) for side-by-side comparisons.

Templates (all optional, see :class:`FeatureTemplates`), following the standard
sets of Ratnaparkhi (1996) and Toutanova et al. (2003) for POS tagging and of
Sha & Pereira (2003) / CRFsuite's CoNLL-2000 example for chunking:

* the token and its neighbours ``w[-k] .. w[k]`` (window ``k``), optionally lowercased
  (``lw[...]``), and token bigrams ``w[-1]|w[0]``, ``w[0]|w[1]``;
* prefixes and suffixes of the current token up to length ``affix`` (``pre2[0]=co``);
* the word shape (``Xxxx`` -> ``Xx``, ``1.8`` -> ``d.d``) and flags: has a digit,
  has a hyphen, all caps, capitalised, sentence-initial;
* extra columns (``pos``): unigrams in a window, bigrams and trigrams;
* ``BOS``/``EOS`` at the sentence ends and a ``bias`` attribute on every token.

:class:`FeatureIndex` maps attributes seen at least ``min_count`` times in
training to columns of a ``scipy.sparse`` matrix ``X (T, A)`` (one row per token,
0/1 entries); attributes unseen in training are dropped at test time.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["FeatureTemplates", "FeatureIndex", "token_attributes", "sentence_attributes", "word_shape"]

_UPPER = re.compile(r"[A-Z]+")
_LOWER = re.compile(r"[a-z]+")
_DIGIT = re.compile(r"[0-9]+")


def word_shape(word: str) -> str:
    """Collapsed word shape: runs of upper case -> ``X``, lower -> ``x``, digits -> ``d`` (``"McDonald's"`` -> ``XxXx'x``)."""
    return _DIGIT.sub("d", _LOWER.sub("x", _UPPER.sub("X", word)))


@dataclass
class FeatureTemplates:
    """Which attributes :func:`token_attributes` emits.

    Attributes:
        window: neighbouring tokens ``w[-window] .. w[window]`` (0: the token alone).
        lowercase: also emit lowercased tokens in the window (``lw[k]``).
        word_bigrams: ``w[-1]|w[0]`` and ``w[0]|w[1]``.
        affix: prefixes and suffixes of the current token of lengths ``1 .. affix`` (0: none).
        shape: the word shape and orthographic flags of the current token (and shapes at +-1).
        columns: extra input columns used as features (e.g. ``("pos",)`` for CoNLL-2000).
        column_window: window of the extra columns' unigrams.
        column_ngrams: also their bigrams and trigrams inside the window.

    Raises:
        ValueError: on a negative window or affix length.
    """

    window: int = 2
    lowercase: bool = True
    word_bigrams: bool = True
    affix: int = 4
    shape: bool = True
    columns: tuple[str, ...] = ()
    column_window: int = 2
    column_ngrams: bool = True

    def __post_init__(self) -> None:
        for name in ("window", "affix", "column_window"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"FeatureTemplates.{name} must be >= 0, got {getattr(self, name)!r}")
        self.columns = tuple(self.columns)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> FeatureTemplates:
        return cls(**{**data, "columns": tuple(data.get("columns", ()))})


def _at(seq: Sequence[str], j: int) -> str:
    if j < 0:
        return "<s>" if j == -1 else f"<s{-j}>"
    if j >= len(seq):
        return "</s>" if j == len(seq) else f"</s{j - len(seq) + 1}>"
    return seq[j]


def token_attributes(words: Sequence[str], i: int, templates: FeatureTemplates,
                     columns: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """Attribute strings of position ``i``.

    Args:
        words: the sentence's tokens, length ``L``.
        i: position, ``0 <= i < L``.
        templates: what to emit.
        columns: extra columns named in ``templates.columns`` (each of length ``L``).

    Raises:
        KeyError: if a column named in ``templates.columns`` is missing.
    """
    t = templates
    w = words[i]
    feats = ["bias", f"w[0]={w}"]
    if t.lowercase:
        feats.append(f"lw[0]={w.lower()}")
    for k in range(1, t.window + 1):
        feats.append(f"w[-{k}]={_at(words, i - k)}")
        feats.append(f"w[+{k}]={_at(words, i + k)}")
        if t.lowercase:
            feats.append(f"lw[-{k}]={_at(words, i - k).lower()}")
            feats.append(f"lw[+{k}]={_at(words, i + k).lower()}")
    if t.word_bigrams:
        feats.append(f"w[-1]|w[0]={_at(words, i - 1)}|{w}")
        feats.append(f"w[0]|w[+1]={w}|{_at(words, i + 1)}")
    for n in range(1, min(t.affix, len(w)) + 1):
        feats.append(f"pre{n}={w[:n]}")
        feats.append(f"suf{n}={w[-n:]}")
    if t.shape:
        feats.append(f"shape={word_shape(w)}")
        if i > 0:
            feats.append(f"shape[-1]={word_shape(words[i - 1])}")
        if i + 1 < len(words):
            feats.append(f"shape[+1]={word_shape(words[i + 1])}")
        if any(ch.isdigit() for ch in w):
            feats.append("has_digit")
        if "-" in w:
            feats.append("has_hyphen")
        if w.isupper():
            feats.append("all_caps")
        elif w[:1].isupper():
            feats.append("init_cap" if i > 0 else "init_cap_first")
    if i == 0:
        feats.append("BOS")
    if i == len(words) - 1:
        feats.append("EOS")
    for name in t.columns:
        if columns is None or name not in columns:
            raise KeyError(f"feature column {name!r} is missing (have {sorted(columns or {})})")
        col = columns[name]
        k = t.column_window
        for j in range(-k, k + 1):
            feats.append(f"{name}[{j:+d}]={_at(col, i + j)}")
        if t.column_ngrams:
            for j in range(-k, k):
                feats.append(f"{name}[{j:+d}]|{name}[{j + 1:+d}]={_at(col, i + j)}|{_at(col, i + j + 1)}")
            for j in range(-k, k - 1):
                feats.append(f"{name}[{j:+d}..{j + 2:+d}]={_at(col, i + j)}|{_at(col, i + j + 1)}|{_at(col, i + j + 2)}")
    return feats


def sentence_attributes(words: Sequence[str], templates: FeatureTemplates,
                        columns: Mapping[str, Sequence[str]] | None = None) -> list[list[str]]:
    """:func:`token_attributes` for every position of one sentence (``L`` lists)."""
    return [token_attributes(words, i, templates, columns) for i in range(len(words))]


@dataclass
class FeatureIndex:
    """Attribute string -> column of the sparse feature matrix (fit on training data only).

    Attributes:
        templates: the templates that produce the attributes.
        min_count: attributes seen fewer times in training are dropped.
        attributes_: the kept attributes, column order (after :meth:`fit`).
    """

    templates: FeatureTemplates = field(default_factory=FeatureTemplates)
    min_count: int = 1
    attributes_: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.min_count < 1:
            raise ValueError(f"FeatureIndex.min_count must be >= 1, got {self.min_count}")
        self._ids = {a: k for k, a in enumerate(self.attributes_)}

    def __len__(self) -> int:
        return len(self.attributes_)

    def attributes(self, words: Sequence[Sequence[str]], columns: Mapping[str, Sequence[Sequence[str]]] | None = None
                   ) -> list[list[list[str]]]:
        """Attribute lists of a corpus: ``D`` sentences of ``L_d`` tokens of attribute strings."""
        columns = columns or {}
        out = []
        for d, sent in enumerate(words):
            cols = {name: columns[name][d] for name in self.templates.columns if name in columns}
            out.append(sentence_attributes(sent, self.templates, cols))
        return out

    def fit(self, attributes: Sequence[Sequence[Sequence[str]]]) -> FeatureIndex:
        """Keep the attributes seen ``min_count`` times in ``attributes`` (from :meth:`attributes`), sorted."""
        counts = Counter(a for sent in attributes for tok in sent for a in tok)
        self.attributes_ = sorted(a for a, c in counts.items() if c >= self.min_count)
        self._ids = {a: k for k, a in enumerate(self.attributes_)}
        return self

    def lookup(self, attributes: Sequence[str]) -> list[int]:
        """Sorted distinct columns of the known strings among one token's ``attributes`` (unknown ones are dropped)."""
        ids = self._ids
        return sorted({ids[a] for a in attributes if a in ids})

    def transform(self, attributes: Sequence[Sequence[Sequence[str]]]) -> tuple[sp.csr_matrix, np.ndarray]:
        """The 0/1 matrix ``X (T, A)`` (CSR, float64) and sentence offsets ``(D + 1,)`` (rows of sentence ``d``
        are ``offsets[d]:offsets[d + 1]``). Unknown attributes are dropped."""
        if not self.attributes_:
            raise ValueError("FeatureIndex is not fitted (no attributes)")
        indptr = [0]
        indices: list[int] = []
        offsets = [0]
        for sent in attributes:
            for tok in sent:
                indices.extend(self.lookup(tok))
                indptr.append(len(indices))
            offsets.append(len(indptr) - 1)
        indices_arr = np.asarray(indices, dtype=np.int32)
        X = sp.csr_matrix((np.ones(len(indices_arr)), indices_arr, np.asarray(indptr, dtype=np.int64)),
                          shape=(len(indptr) - 1, len(self.attributes_)))
        return X, np.asarray(offsets, dtype=np.int64)

    def to_dict(self) -> dict:
        return {"templates": self.templates.to_dict(), "min_count": self.min_count}

    @classmethod
    def from_dict(cls, data: Mapping, attributes: list[str]) -> FeatureIndex:
        return cls(FeatureTemplates.from_dict(data["templates"]), int(data["min_count"]), list(attributes))
