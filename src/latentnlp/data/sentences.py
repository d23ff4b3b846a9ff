"""One-sentence-per-line corpora for language models (Penn Treebank in Mikolov's form, or a user's own).

Conventions (the ones Mikolov et al. 2010, Zaremba et al. 2014 and Bowman et al.
2016 use on ``ptb/``):

* a line is a sentence, tokens are separated by whitespace; the file holds no
  end-of-sentence token, the reader appends one :data:`EOS` per sentence, and the
  models predict it. Perplexities are reported both **with** it counted as a
  token (Mikolov/Zaremba: 82,430 test tokens) and **without** (words only,
  78,669), with the per-sentence NLL in nats beside them;
* the vocabulary is built from the training file; words outside it map to
  :data:`UNK` (``ptb/`` already has ``<unk>`` in its text, so nothing maps there
  on PTB). :meth:`SentenceVocabulary.encode` reports the unknown words it met;
* id 0 is :data:`PAD` and id 1 is :data:`BOS` (the decoder's first input); neither
  is ever a prediction target, and the models give them probability 0.

Two batchings: :func:`collate_sentences` pads independent sentences
(sentence-level models: Bowman's RNNLM and the sentence VAE);
:func:`batchify_stream` cuts the whole corpus, one ``<eos>`` after each sentence,
into ``B`` parallel streams for continuous truncated BPTT (Zaremba et al. 2014).

Errors name the file and line: an empty file, a blank line, or a line that
decodes badly raise :class:`~latentnlp.data.bow.CorpusFormatError`.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from .bow import CorpusFormatError
from .paths import dataset_path
from .vocab import Vocabulary

__all__ = [
    "PAD",
    "BOS",
    "EOS",
    "UNK",
    "SentenceVocabulary",
    "SentenceBatch",
    "read_sentences",
    "ptb_paths",
    "collate_sentences",
    "batchify_stream",
]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL = (PAD, BOS, EOS, UNK)
N_NEVER_PREDICTED = 2  # PAD and BOS: ids 0 and 1
PTB_FOLDER = "ptb"
PTB_FILES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}


def read_sentences(path: str | os.PathLike, lowercase: bool = False) -> list[list[str]]:
    """Read one whitespace-tokenised sentence per line.

    Args:
        path: a UTF-8 text file.
        lowercase: lower-case every token.

    Returns:
        The sentences, each a non-empty list of tokens.

    Raises:
        FileNotFoundError: if ``path`` is missing.
        CorpusFormatError: naming the file, and the line, for an empty file, a blank
            line, or bytes that are not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sentence file {path} does not exist")
    sentences: list[list[str]] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CorpusFormatError(path, lineno, f"not UTF-8 ({exc.reason})") from None
            tokens = line.split()
            if not tokens:
                raise CorpusFormatError(path, lineno, "blank line; expected one sentence per line")
            sentences.append([t.lower() for t in tokens] if lowercase else tokens)
    if not sentences:
        raise CorpusFormatError(path, None, "the file is empty; expected one sentence per line")
    return sentences


def ptb_paths(data_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """``{"train", "valid", "test"} -> Path`` of the Penn Treebank under the data root.

    Raises:
        FileNotFoundError: naming the first missing file and the data root it was looked for in.
    """
    root = dataset_path(PTB_FOLDER, data_dir)
    paths = {split: root / name for split, name in PTB_FILES.items()}
    for path in paths.values():
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the Penn Treebank (Mikolov's ptb.train/valid/test.txt) is expected under "
                f"{root} (set --data-dir or $LATENTNLP_DATA)"
            )
    return paths


class SentenceVocabulary:
    """Word ids for language models: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3, then the words.

    Args:
        vocab: a :class:`~latentnlp.data.vocab.Vocabulary` whose first four entries are
            :data:`SPECIAL` and whose unknown-word entry is :data:`UNK`.

    Raises:
        ValueError: if the special entries are missing or out of place.
    """

    def __init__(self, vocab: Vocabulary) -> None:
        if vocab.tokens[: len(SPECIAL)] != SPECIAL or vocab.unk != UNK:
            raise ValueError(f"a sentence vocabulary starts with {SPECIAL} and maps unknown words to {UNK!r}")
        self.vocab = vocab
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = range(4)

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 1, max_size: int | None = None) -> "SentenceVocabulary":
        """Words of the training ``sentences`` seen at least ``min_count`` times, most frequent first.

        ``max_size`` caps the total size (special entries included); ties keep first-seen order.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size <= len(SPECIAL):
            raise ValueError(f"max_size must exceed the {len(SPECIAL)} special entries, got {max_size}")
        counts = Counter(w for s in sentences for w in s)
        words = [w for w, c in counts.most_common() if c >= min_count and w not in SPECIAL]
        if max_size is not None:
            words = words[: max_size - len(SPECIAL)]
        return cls(Vocabulary(SPECIAL + tuple(words), unk=UNK))

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.vocab.tokens

    def encode(self, sentence: Sequence[str], unknown: list[str] | None = None) -> torch.Tensor:
        """``(len(sentence),)`` int64 ids; unknown words get ``<unk>`` and are appended to ``unknown`` if given."""
        ids = []
        for w in sentence:
            i = self.vocab.get(w)
            if i < 0:
                i = self.unk_id
                if unknown is not None:
                    unknown.append(w)
            ids.append(i)
        return torch.tensor(ids, dtype=torch.long)

    def encode_all(self, sentences: Sequence[Sequence[str]]) -> tuple[list[torch.Tensor], list[str]]:
        """Encode every sentence; returns ``(ids, unknown_words_met)``."""
        unknown: list[str] = []
        return [self.encode(s, unknown) for s in sentences], unknown

    def decode(self, ids: Iterable[int], stop_at_eos: bool = True) -> list[str]:
        """Words of ``ids``, leaving out ``<pad>``/``<bos>`` and stopping at ``<eos>``."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id and stop_at_eos:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            words.append(self.vocab.word(i))
        return words

    def to_json(self) -> dict:
        return self.vocab.to_json()

    @classmethod
    def from_json(cls, data: dict) -> "SentenceVocabulary":
        return cls(Vocabulary.from_json(data))


@dataclass
class SentenceBatch:
    """``B`` sentences padded to ``T = max length + 1`` (the ``<eos>`` step).

    Attributes:
        inputs: ``(B, T)`` ``<bos> w_1 .. w_n`` then ``<pad>``.
        targets: ``(B, T)`` ``w_1 .. w_n <eos>`` then ``<pad>``.
        lengths: ``(B,)`` ``n + 1``, the number of predicted tokens (``<eos>`` included).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """``(B, T)`` bool, True on predicted positions."""
        steps = torch.arange(self.inputs.shape[1], device=self.lengths.device)
        return steps.unsqueeze(0) < self.lengths.unsqueeze(1)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


def collate_sentences(ids: Sequence[torch.Tensor], vocab: SentenceVocabulary, max_length: int | None = None) -> SentenceBatch:
    """Pad encoded sentences into a :class:`SentenceBatch`.

    Args:
        ids: ``B`` 1-D id tensors (without ``<bos>``/``<eos>``).
        vocab: gives the special ids.
        max_length: truncate sentences longer than this many words (``None``: keep all).

    Raises:
        ValueError: if ``ids`` is empty.
    """
    if len(ids) == 0:
        raise ValueError("cannot collate an empty list of sentences")
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if max_length is not None:
        ids = [s[:max_length] for s in ids]
    lengths = torch.tensor([len(s) + 1 for s in ids], dtype=torch.long)
    width = int(lengths.max())
    inputs = torch.full((len(ids), width), vocab.pad_id, dtype=torch.long)
    targets = torch.full((len(ids), width), vocab.pad_id, dtype=torch.long)
    for b, s in enumerate(ids):
        n = len(s)
        inputs[b, 0] = vocab.bos_id
        inputs[b, 1 : n + 1] = s
        targets[b, :n] = s
        targets[b, n] = vocab.eos_id
    return SentenceBatch(inputs, targets, lengths)


def batchify_stream(ids: Sequence[torch.Tensor], vocab: SentenceVocabulary, n_streams: int) -> torch.Tensor:
    """The corpus as one token stream (``<eos>`` after every sentence) cut into ``n_streams`` rows.

    Returns:
        ``(n_streams, L)`` ids, ``L = total tokens // n_streams`` (the remainder is dropped,
        as in Zaremba et al. 2014's reader).

    Raises:
        ValueError: if ``n_streams < 1`` or the corpus has fewer than ``2 * n_streams`` tokens.
    """
    if n_streams < 1:
        raise ValueError(f"n_streams must be >= 1, got {n_streams}")
    eos = torch.tensor([vocab.eos_id], dtype=torch.long)
    stream = torch.cat([t for s in ids for t in (s, eos)]) if ids else torch.zeros(0, dtype=torch.long)
    length = stream.numel() // n_streams
    if length < 2:
        raise ValueError(f"a corpus of {stream.numel()} tokens cannot fill {n_streams} streams of at least 2 tokens")
    return stream[: n_streams * length].view(n_streams, length)
