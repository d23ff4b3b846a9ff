"""Emission-vocabulary preprocessing for taggers: case and digit folding, rare words as signature classes.

An HMM (or any model over categorical word ids) sees one id per word *type*.
On a small corpus most types are rare (in NLTK's 94k-token WSJ sample, about
half of the 12k types occur once), so their emission probabilities are
estimated from one token each and EM can give each rare word its own
idiosyncratic state. Every unsupervised tagger in the literature therefore
shrinks the vocabulary first, keeping the model categorical:

* ``lowercase``: ``The`` and ``the`` are one type;
* ``digits``: every digit becomes ``0`` (``1987`` and ``1990`` are one type,
  ``0000``);
* ``rare_words="signature"``: a word whose (normalised) training count is at
  most ``rare_threshold`` is replaced by its orthographic *signature*
  (:func:`word_signature`: capitalisation, digits, hyphen, a common English
  suffix), i.e. a class such as ``<sig-cap>`` (``Zurich``) or ``<sig-ing>``
  (``trimming``); with ``rare_words="unk"`` it becomes :data:`UNK` (the
  default, and the toolkit's old behaviour with ``min_count = rare_threshold + 1``).

Signatures follow the unknown-word classes of the Berkeley parser (Petrov et
al. 2006, ACL; Petrov & Klein 2007) and of Collins-style taggers; lowercasing,
digit folding and rare-word classes as a preprocessing step for unsupervised
HMM tagging are as in Clark (2003, EACL, "Combining distributional and
morphological information for part of speech induction") and Berg-Kirkpatrick
et al. (2010, NAACL, "Painless unsupervised learning with features"), who map
rare words to such classes.

The mapping of a word is the same at training and at tagging time
(:meth:`WordPreprocessor.map_word`): the normalised form if it is in the
vocabulary, else its signature if that class is in the vocabulary, else
``<unk>``. So a word that was rare in training and a word never seen at all
share a class, which is what lets a model tag unseen words by their shape.
Gold tags are never looked at.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass

from .tagged import UNK, TaggedCorpus, Vocabulary

__all__ = ["RARE_WORD_MODES", "SIGNATURE_SUFFIXES", "WordPreprocessor", "normalise_word", "word_signature"]

RARE_WORD_MODES = ("unk", "signature")

SIGNATURE_SUFFIXES = (
    "tion", "sion", "ment", "ness", "able", "ible", "less", "ship", "ance", "ence", "ious", "ical",
    "ing", "ity", "ous", "ive", "ize", "ise", "est", "ful", "ism", "ist", "ant", "ent", "age", "ary",
    "ly", "ed", "er", "al", "ic", "en", "es", "'s",
    "s", "y",
)
"""Common English suffixes tried longest first by :func:`word_signature` (inflection and derivation:
``-ing -ed -s`` verbs and plurals, ``-ly`` adverbs, ``-tion -ment -ness -ity`` nouns, ``-al -ous -ive -able -ic``
adjectives, ``-er -est`` comparatives); the Berkeley parser's English classes (Petrov et al. 2006) extended."""

_DIGIT = re.compile(r"[0-9]")
_SIGNATURE_PREFIX = "<sig"


def normalise_word(word: str, lowercase: bool = False, digits: bool = False) -> str:
    """``word`` lowercased (if ``lowercase``) and with every ASCII digit replaced by ``0`` (if ``digits``)."""
    if not isinstance(word, str):
        raise TypeError(f"word must be a string, got {type(word).__name__}")
    if lowercase:
        word = word.lower()
    if digits:
        word = _DIGIT.sub("0", word)
    return word


def word_signature(word: str) -> str:
    """The orthographic class of ``word``, a string ``<sig...>`` that no real word of a corpus is.

    Features, in this order, each a ``-name`` part (all that apply):

    * ``-punct``: no letter and no digit (``--``, ``%``), and nothing else is added;
    * ``-num``: only digits and ``.,:/-`` (``1,000``, ``3/4``), and nothing else is added;
    * ``-allcaps``: at least two letters, all upper case (``IBM``, ``U.S.``);
      ``-cap``: first character upper case otherwise (``Zurich``, ``McDonald``);
      ``-lower``: otherwise, when it has a lower-case letter;
    * ``-digit``: contains a digit (``1980s``, ``F-16``);
    * ``-hyphen``: contains ``-`` (``well-known``);
    * ``-SUFFIX`` (e.g. ``-ing``): the longest of :data:`SIGNATURE_SUFFIXES` the lower-cased
      word ends with, only for words of at least 4 characters that contain no digit and
      whose remaining stem is at least 2 characters long.

    Examples: ``word_signature("trimming") == "<sig-lower-ing>"``, ``"Zurich" -> "<sig-cap>"``,
    ``"1,234" -> "<sig-num>"``, ``"well-timed" -> "<sig-lower-hyphen-ed>"``.

    Args:
        word: a non-empty string (original case: capitalisation is a feature).

    Returns:
        The signature; words with the same features share it (about 150 classes possible).

    Raises:
        ValueError: if ``word`` is not a non-empty string.

    Source: the unknown-word signatures of the Berkeley parser (Petrov et al. 2006;
    ``SimpleLexicon``/``getSignature``), simplified (no sentence position).
    """
    if not isinstance(word, str) or not word:
        raise ValueError(f"word must be a non-empty string, got {word!r}")
    has_letter = any(c.isalpha() for c in word)
    has_digit = any(c.isdigit() for c in word)
    if not has_letter and not has_digit:
        return _SIGNATURE_PREFIX + "-punct>"
    if has_digit and not has_letter and all(c.isdigit() or c in ".,:/-" for c in word):
        return _SIGNATURE_PREFIX + "-num>"
    parts = []
    letters = [c for c in word if c.isalpha()]
    if len(letters) >= 2 and all(c.isupper() for c in letters):
        parts.append("allcaps")
    elif word[0].isupper():
        parts.append("cap")
    elif any(c.islower() for c in letters):
        parts.append("lower")
    if has_digit:
        parts.append("digit")
    if "-" in word:
        parts.append("hyphen")
    lower = word.lower()
    if len(word) >= 4 and not has_digit:
        for suffix in sorted(SIGNATURE_SUFFIXES, key=len, reverse=True):
            if lower.endswith(suffix) and len(lower) - len(suffix) >= 2:
                parts.append(suffix)
                break
    return _SIGNATURE_PREFIX + "".join("-" + p for p in parts) + ">"


@dataclass(frozen=True)
class WordPreprocessor:
    """How words become the categorical symbols a model emits (see the module docstring).

    Attributes:
        lowercase: lower-case every word before counting and lookup.
        digits: replace every digit by ``0`` before counting and lookup.
        rare_words: ``"unk"`` (rare words become ``<unk>``) or ``"signature"`` (they become
            their :func:`word_signature` class, computed on the original word).
        rare_threshold: words whose normalised training count is ``<= rare_threshold`` are
            rare (0: none is; 1: words seen once). ``rare_words="unk"`` with threshold ``t`` is
            :func:`~latentnlp.data.tagged.build_word_vocab` with ``min_count = t + 1``.

    Raises:
        ValueError: on a ``rare_words`` not in :data:`RARE_WORD_MODES` or a negative or
        non-integer ``rare_threshold``.
        TypeError: on non-boolean flags.
    """

    lowercase: bool = False
    digits: bool = False
    rare_words: str = "unk"
    rare_threshold: int = 0

    def __post_init__(self) -> None:
        for name in ("lowercase", "digits"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"WordPreprocessor.{name} must be True or False, got {getattr(self, name)!r}")
        if self.rare_words not in RARE_WORD_MODES:
            raise ValueError(f"WordPreprocessor.rare_words must be one of {RARE_WORD_MODES}, got {self.rare_words!r}")
        t = self.rare_threshold
        if not isinstance(t, int) or isinstance(t, bool) or t < 0:
            raise ValueError(f"WordPreprocessor.rare_threshold must be an integer >= 0, got {t!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> WordPreprocessor:
        """Inverse of :meth:`to_dict`; ``None`` (a run written before this option existed) gives the default."""
        if data is None:
            return cls()
        unknown = set(data) - {"lowercase", "digits", "rare_words", "rare_threshold"}
        if unknown:
            raise ValueError(f"unknown word-preprocessing fields {sorted(unknown)}")
        return cls(**data)

    @property
    def is_identity(self) -> bool:
        """True when words map to themselves (or ``<unk>``) exactly as without preprocessing."""
        return not self.lowercase and not self.digits and self.rare_words == "unk"

    def normalise(self, word: str) -> str:
        return normalise_word(word, self.lowercase, self.digits)

    def build_vocab(self, corpus: TaggedCorpus) -> Vocabulary:
        """Vocabulary of a training corpus: ``<unk>`` (id 0), frequent normalised words, then signatures.

        Frequent words (normalised count ``> rare_threshold``) are ordered by decreasing count,
        ties alphabetically; then, with ``rare_words="signature"``, the signature classes of
        the rare training words in the same order (deterministic, as
        :func:`~latentnlp.data.tagged.build_word_vocab`).
        """
        counts = Counter(self.normalise(w) for sent in corpus.words for w in sent)
        signatures = self.rare_words == "signature"
        kept = sorted((w for w, c in counts.items() if c > self.rare_threshold and w != UNK
                       and not (signatures and w.startswith(_SIGNATURE_PREFIX))), key=lambda w: (-counts[w], w))
        kept_set = set(kept)
        classes: list[str] = []
        if self.rare_words == "signature":
            sig_counts = Counter(word_signature(w) for sent in corpus.words for w in sent
                                 if self.normalise(w) not in kept_set)
            classes = sorted(sig_counts, key=lambda s: (-sig_counts[s], s))
        return Vocabulary((UNK, *kept, *classes), unk=UNK)

    def is_class(self, symbol: str) -> bool:
        """Whether a mapped symbol stands for a class of words (``<unk>`` or a signature), not one word."""
        return symbol == UNK or (self.rare_words == "signature" and symbol.startswith(_SIGNATURE_PREFIX))

    def map_word(self, word: str, vocab: Vocabulary) -> str:
        """The symbol ``word`` is emitted as: its normalised form if in ``vocab``, else its signature
        (``rare_words="signature"``) if that is in ``vocab``, else ``<unk>``."""
        form = self.normalise(word)
        if form in vocab and not self.is_class(form):
            return form
        if self.rare_words == "signature" and word:
            sig = word_signature(word)
            if sig in vocab:
                return sig
        return UNK

    def transform(self, corpus: TaggedCorpus, vocab: Vocabulary) -> TaggedCorpus:
        """``corpus`` with every word replaced by :meth:`map_word` (tags and sentence lengths unchanged)."""
        cache: dict[str, str] = {}
        words = []
        for sent in corpus.words:
            out = []
            for w in sent:
                m = cache.get(w)
                if m is None:
                    m = cache[w] = self.map_word(w, vocab)
                out.append(m)
            words.append(out)
        return TaggedCorpus(words, corpus.tags, corpus.source)
