"""The toolkit's one vocabulary: an ordered set of strings with integer ids ``0 .. len - 1``.

Used for words and tags of tagged corpora (optionally with an unknown-word
entry that unseen strings map to) and for the two sides of a parallel corpus.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from ..atomic import atomic_write_text

__all__ = ["Vocabulary"]


def _has_whitespace(word: str) -> bool:
    return not word or len(word.split()) != 1 or word.split()[0] != word


class Vocabulary:
    """An ordered set of strings; string ``tokens[i]`` has id ``i``.

    Args:
        tokens: the strings, each once, in id order.
        unk: the entry unknown strings map to in :meth:`id` (must be one of ``tokens``),
            or ``None`` for a closed vocabulary (tags, or the words of a parallel corpus).

    Raises:
        ValueError: if a string occurs twice (naming it) or ``unk`` is not among ``tokens``.
    """

    __slots__ = ("_tokens", "_unk", "_index")

    def __init__(self, tokens: Iterable[str], unk: str | None = None) -> None:
        self._tokens = tuple(tokens)
        self._unk = unk
        self._index = {t: i for i, t in enumerate(self._tokens)}
        if len(self._index) != len(self._tokens):
            dup = next(t for t, c in Counter(self._tokens).items() if c > 1)
            raise ValueError(f"vocabulary lists {dup!r} twice")
        if unk is not None and unk not in self._index:
            raise ValueError(f"unknown-word token {unk!r} is not in the vocabulary")

    @classmethod
    def from_sentences(cls, sentences: Iterable[Sequence[str]], unk: str | None = None) -> Vocabulary:
        """All strings of ``sentences`` in order of first occurrence (``unk``, if given, first)."""
        index: dict[str, None] = {} if unk is None else {unk: None}
        for sentence in sentences:
            for w in sentence:
                index.setdefault(w, None)
        return cls(index, unk=unk)

    # --------------------------------------------------------------- lookup
    @property
    def tokens(self) -> tuple[str, ...]:
        return self._tokens

    words = tokens  # the parallel-corpus name for the same thing

    @property
    def unk(self) -> str | None:
        return self._unk

    @property
    def unk_id(self) -> int | None:
        return None if self._unk is None else self._index[self._unk]

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __getitem__(self, token: str) -> int:
        """The id of ``token``; raises KeyError naming it if it is not an entry (``unk`` is not used)."""
        try:
            return self._index[token]
        except KeyError:
            raise KeyError(f"word {token!r} is not in the vocabulary ({len(self)} words)") from None

    def get(self, token: str, default: int = -1) -> int:
        return self._index.get(token, default)

    def id(self, token: str) -> int | None:
        """Id of ``token``; an unknown string gets the ``unk`` id, or ``None`` in a closed vocabulary."""
        i = self._index.get(token)
        return self.unk_id if i is None else i

    def word(self, idx: int) -> str:
        """The string with id ``idx``."""
        return self._tokens[idx]

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """``(len(tokens),)`` int64 ids; raises KeyError naming the first unknown string."""
        return np.array([self[w] for w in tokens], dtype=np.int64)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._tokens == other._tokens and self._unk == other._unk

    def __hash__(self) -> int:
        return hash((self._tokens, self._unk))

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} entries, unk={self._unk!r})"

    # -------------------------------------------------------- serialisation
    def to_json(self) -> dict:
        return {"tokens": list(self._tokens), "unk": self._unk}

    @classmethod
    def from_json(cls, data: dict) -> Vocabulary:
        return cls(tuple(data["tokens"]), data.get("unk"))

    def write(self, path: str | os.PathLike) -> None:
        """One entry per line (line ``i``, 0-based, is id ``i``), written atomically.

        Raises:
            ValueError: if an entry is empty or holds whitespace (it could not be read back).
        """
        bad = [w for w in self._tokens if _has_whitespace(w)]
        if bad:
            raise ValueError(f"cannot write vocabulary entry {bad[0]!r} one per line: it is empty or holds whitespace")
        atomic_write_text(path, "".join(w + "\n" for w in self._tokens))

    @classmethod
    def read(cls, path: str | os.PathLike, unk: str | None = None) -> Vocabulary:
        """Read a file written by :meth:`write` (plain or ``.gz``).

        Raises:
            FileNotFoundError: if ``path`` is missing.
            CorpusFormatError: naming file and line of an empty, space-holding or duplicated entry.
        """
        from .bow import CorpusFormatError
        from .parallel import _open_text

        words: list[str] = []
        seen: dict[str, int] = {}
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                w = line.rstrip("\n")
                if _has_whitespace(w):
                    raise CorpusFormatError(path, lineno, f"expected one word, got {w!r}")
                if w in seen:
                    raise CorpusFormatError(path, lineno, f"word {w!r} already on line {seen[w]}")
                seen[w] = lineno
                words.append(w)
        return cls(words, unk=unk)
