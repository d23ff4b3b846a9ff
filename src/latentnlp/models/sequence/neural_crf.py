"""Neural CRF tagger: character BiLSTM + word BiLSTM + linear-chain CRF (Lample et al. 2016).

Architecture (Lample, Ballesteros, Subramanian, Kawakami & Dyer 2016, "Neural
Architectures for Named Entity Recognition", Sec. 2-4; Huang, Xu & Yu 2015,
"Bidirectional LSTM-CRF Models for Sequence Tagging"; Ma & Hovy 2016, "End-to-end
Sequence Labeling via Bi-directional LSTM-CNNs-CRF", with a char BiLSTM in place
of their char CNN). For a sentence of ``L`` words ``w_1 .. w_L``:

* word embedding ``e_w(w_n)`` (``word_dim``; paper: 100);
* character representation: a BiLSTM over the characters of ``w_n``
  (``char_dim`` embeddings, paper 25; ``char_hidden`` units per direction,
  paper 25; Ma & Hovy: 30-dim chars), its final forward and backward states
  concatenated (``2 * char_hidden``); ``char_hidden = 0`` disables it;
* one embedding per extra discrete input column (``feature_dims``, e.g. the POS
  column of CoNLL-2000: ``{"pos": 25}``);
* dropout (paper: 0.5) on the concatenation, a word BiLSTM (``hidden`` units
  per direction, paper 100; Ma & Hovy 200) over packed sequences, dropout on
  its outputs, and a linear map to unary tag scores ``P (B, N, C)``;
* a :class:`~latentnlp.models.sequence.crf_layer.CRFLayer` on top:
  ``log p(y | x) = s(y) - log Z(x)`` (paper Eq. 1-2), nats per sentence, which
  the training loss negates. Prediction is Viterbi decoding.

Vocabularies (all :class:`latentnlp.data.vocab.Vocabulary`, built from the
training data by :func:`build_vocabularies`): words (optionally lower-cased),
characters (of the original word forms) and each feature column have id 0 =
:data:`PAD` and id 1 = :data:`UNK`; anything unseen in training maps to
``<unk>``. Tags form a closed vocabulary (an unknown tag is an error where ids
are needed; scoring compares strings). A training string that is literally
``<pad>`` or ``<unk>`` shares the special entry.

Sparse features connected to the output (``sparse_templates``; Huang, Xu & Yu
2015, Sec. 3.4 and Table 4, "BI-LSTM-CRF" with spelling and context features):
the indicator attributes of the feature-based CRF
(:class:`~latentnlp.models.sequence.features.FeatureTemplates`: words in a window,
affixes, shapes, POS n-grams ...) each get a weight vector over the ``C`` tags,
added to the BiLSTM's unary scores, ``P[b, n] += sum_{a in A(x, n)} U[a]``. The
attribute index is fitted on the training sentences (``sparse_min_count``); unseen
attributes are ignored. ``sparse_l2`` adds ``sparse_l2 * ||U||^2`` to every
sentence's loss, i.e. the feature CRF's ``c2 * ||U||^2`` on the corpus sum when
``sparse_l2 = c2 / D_train``. Off by default.

Pretrained word vectors (``train_bilstm_crf(..., word_vectors=...)``; Lample et
al. 2016, Sec. 4.1; Huang et al. 2015, Sec. 4.3): the words of the vectors file join
the word vocabulary after the training words, and every word with a vector (looked
up as is, else lower-cased) starts from it; the others keep the uniform start. All
rows are fine-tuned.

Word dropout (``word_dropout``; Lample et al. 2016, Sec. 4: 0.5): during
training, each occurrence of a word seen exactly once in the training data is
replaced by ``<unk>`` with this probability, so that the ``<unk>`` embedding is
trained (default 0: off). Its randomness comes from the shared
:class:`~latentnlp.training.trainer.Trainer`'s seeded generator through
:meth:`BiLSTMCRF.sample_noise`, so it is reproduced on resume.

Shapes: ``B`` sentences padded to ``N`` words of at most ``M`` characters,
``C`` tags. Rebuild a model with :meth:`BiLSTMCRF.to_metadata` (JSON-ready:
config and vocabularies) and :meth:`BiLSTMCRF.from_metadata`; the weights are
its ``state_dict`` (saved with safetensors by the caller).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ...data.vectors import WordVectors
from ...data.vocab import Vocabulary
from ...evaluation.tagging import token_accuracy
from .crf_layer import CRFLayer
from .features import FeatureIndex, FeatureTemplates, sentence_attributes

if TYPE_CHECKING:  # pragma: no cover
    from ...training.trainer import TrainConfig, TrainResult

__all__ = [
    "PAD",
    "UNK",
    "BiLSTMCRFConfig",
    "BiLSTMCRF",
    "TaggerBatch",
    "build_vocabularies",
    "token_accuracy",
    "train_bilstm_crf",
]

PAD = "<pad>"
UNK = "<unk>"
METADATA_FORMAT = "latentnlp.BiLSTMCRF"

Sentences = Sequence[Sequence[str]]
Scorer = Callable[[list[list[str]], list[list[str]]], Mapping[str, float]]


@dataclass
class BiLSTMCRFConfig:
    """Architecture of :class:`BiLSTMCRF`; fields name the papers' values.

    Attributes:
        word_dim: word embedding size (Lample et al.: 100).
        char_dim: character embedding size (Lample et al.: 25; Ma & Hovy: 30).
        char_hidden: units per direction of the character BiLSTM (Lample et al.: 25);
            0 disables the character encoder.
        feature_dims: embedding size of each extra discrete input column, by column
            name (e.g. ``{"pos": 25}`` for the POS column of CoNLL-2000); default none.
        hidden: units per direction of the word BiLSTM (Lample et al.: 100; Ma & Hovy: 200).
        layers: stacked word BiLSTM layers (papers: 1).
        dropout: dropout probability on the BiLSTM's input and output (papers: 0.5).
        word_dropout: probability that a training occurrence of a word seen once in
            the training data is replaced by ``<unk>`` (Lample et al.: 0.5; default 0, off).
        lowercase_words: look words up lower-cased (the characters keep their case).
        sparse_templates: ``FeatureTemplates.to_dict()`` of sparse indicator attributes
            connected directly to the output scores (Huang et al. 2015, Sec. 3.4); ``None``
            (default) turns them off. Their ``columns`` must be extra columns the model is given.
        sparse_min_count: attributes seen fewer times in training get no weight.
        sparse_l2: L2 penalty on the sparse weights added to each sentence's loss (nats).

    Raises:
        ValueError: on a non-positive size, a probability outside its range or a bad feature name.
    """

    word_dim: int = 100
    char_dim: int = 30
    char_hidden: int = 50
    feature_dims: dict[str, int] = field(default_factory=dict)
    hidden: int = 200
    layers: int = 1
    dropout: float = 0.5
    word_dropout: float = 0.0
    lowercase_words: bool = False
    sparse_templates: dict | None = None
    sparse_min_count: int = 1
    sparse_l2: float = 0.0

    def __post_init__(self) -> None:
        for name in ("word_dim", "char_dim", "hidden", "layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BiLSTMCRFConfig.{name} must be a positive integer, got {value!r}")
        if isinstance(self.char_hidden, bool) or not isinstance(self.char_hidden, int) or self.char_hidden < 0:
            raise ValueError(f"BiLSTMCRFConfig.char_hidden must be an integer >= 0, got {self.char_hidden!r}")
        if not isinstance(self.feature_dims, Mapping):
            raise ValueError(f"BiLSTMCRFConfig.feature_dims must be a dict name -> size, got {self.feature_dims!r}")
        self.feature_dims = dict(self.feature_dims)
        for name, dim in self.feature_dims.items():
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"BiLSTMCRFConfig.feature_dims: bad column name {name!r} (non-empty, no '.')")
            if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
                raise ValueError(f"BiLSTMCRFConfig.feature_dims[{name!r}] must be a positive integer, got {dim!r}")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"BiLSTMCRFConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not (isinstance(self.word_dropout, (int, float)) and 0.0 <= self.word_dropout <= 1.0):
            raise ValueError(f"BiLSTMCRFConfig.word_dropout must be in [0, 1], got {self.word_dropout!r}")
        if not isinstance(self.lowercase_words, bool):
            raise ValueError(f"BiLSTMCRFConfig.lowercase_words must be a bool, got {self.lowercase_words!r}")
        if self.sparse_templates is not None:
            if isinstance(self.sparse_templates, FeatureTemplates):
                self.sparse_templates = self.sparse_templates.to_dict()
            if not isinstance(self.sparse_templates, Mapping):
                raise ValueError(f"BiLSTMCRFConfig.sparse_templates must be a FeatureTemplates dict, got {self.sparse_templates!r}")
            try:
                self.sparse_templates = FeatureTemplates.from_dict(self.sparse_templates).to_dict()
            except (TypeError, ValueError) as e:
                raise ValueError(f"BiLSTMCRFConfig.sparse_templates: {e}") from e
        if isinstance(self.sparse_min_count, bool) or not isinstance(self.sparse_min_count, int) or self.sparse_min_count < 1:
            raise ValueError(f"BiLSTMCRFConfig.sparse_min_count must be a positive integer, got {self.sparse_min_count!r}")
        if not (isinstance(self.sparse_l2, (int, float)) and math.isfinite(self.sparse_l2) and self.sparse_l2 >= 0):
            raise ValueError(f"BiLSTMCRFConfig.sparse_l2 must be a finite number >= 0, got {self.sparse_l2!r}")

    @property
    def templates(self) -> FeatureTemplates | None:
        """The sparse feature templates, or ``None`` when they are off."""
        return None if self.sparse_templates is None else FeatureTemplates.from_dict(self.sparse_templates)

    @property
    def columns(self) -> list[str]:
        """Every extra input column the model reads: ``feature_dims`` and the sparse templates' ``columns``."""
        t = self.templates
        return sorted(set(self.feature_dims) | set(t.columns if t is not None else ()))
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> BiLSTMCRFConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown BiLSTMCRFConfig fields {unknown}")
        return cls(**dict(data))


@dataclass
class TaggerBatch:
    """A padded batch of sentences as ids (what :meth:`BiLSTMCRF.forward` takes).

    Attributes:
        words: ``(B, N)`` long word ids, :data:`PAD` (id 0) at padding.
        chars: ``(B, N, M)`` long character ids, 0 at padding (``M >= 1``).
        char_lengths: ``(B, N)`` long, characters of each word (``>= 1`` for a real
            word: an empty string is one ``<unk>`` character), 0 at padding.
        features: ``{column: (B, N) long ids}``, 0 at padding.
        lengths: ``(B,)`` long, words per sentence (``>= 1``).
        tags: ``(B, N)`` long tag ids with ``-1`` at padding, or ``None`` (prediction only).
        attributes: ``(B, N, K)`` long sparse attribute ids (1-based; 0 at padding), or
            ``None`` when the model has no sparse features.
    """

    words: torch.Tensor
    chars: torch.Tensor
    char_lengths: torch.Tensor
    features: dict[str, torch.Tensor]
    lengths: torch.Tensor
    tags: torch.Tensor | None = None
    attributes: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.lengths.shape[0]

    def to(self, device: torch.device | str) -> TaggerBatch:
        return TaggerBatch(
            words=self.words.to(device),
            chars=self.chars.to(device),
            char_lengths=self.char_lengths.to(device),
            features={k: v.to(device) for k, v in self.features.items()},
            lengths=self.lengths.to(device),
            tags=None if self.tags is None else self.tags.to(device),
            attributes=None if self.attributes is None else self.attributes.to(device),
        )


@dataclass
class _Encoded:
    """One sentence as ids, unpadded (``L`` words of at most ``M`` characters)."""

    words: torch.Tensor  # (L,)
    chars: torch.Tensor  # (L, M)
    char_lengths: torch.Tensor  # (L,)
    features: dict[str, torch.Tensor]  # {column: (L,)}
    tags: torch.Tensor | None  # (L,)
    attributes: torch.Tensor | None = None  # (L, K) sparse attribute ids, 0 = padding


def _special_vocab(sentences: Iterable[Iterable[str]]) -> Vocabulary:
    """``<pad>``, ``<unk>``, then every string in order of first occurrence."""
    index: dict[str, None] = {PAD: None, UNK: None}
    for sentence in sentences:
        for s in sentence:
            index.setdefault(s, None)
    return Vocabulary(index, unk=UNK)


def _check_columns(words: Sentences, features: Mapping[str, Sentences] | None, tags: Sentences | None, names) -> None:
    """Every sentence non-empty; every needed feature column and the tags aligned with the words."""
    for i, sentence in enumerate(words):
        if len(sentence) == 0:
            raise ValueError(f"sentence {i} is empty (every sentence needs at least one word)")
    features = features or {}
    columns = [(f"features[{name!r}]", features.get(name)) for name in names] + [("tags", tags)]
    for label, column in columns:
        if column is None:
            if label != "tags":
                raise ValueError(f"{label} is missing: the model reads the columns {sorted(names)}")
            continue
        if len(column) != len(words):
            raise ValueError(f"{label} has {len(column)} sentences, words has {len(words)}")
        for i, (w, c) in enumerate(zip(words, column)):
            if len(c) != len(w):
                raise ValueError(f"{label}: sentence {i} has {len(c)} entries for {len(w)} words")


def build_vocabularies(
    words: Sentences,
    features: Mapping[str, Sentences] | None,
    tags: Sentences,
    config: BiLSTMCRFConfig,
    extra_words: Iterable[str] = (),
) -> dict:
    """Vocabularies of a training set, as :class:`BiLSTMCRF` takes them.

    Args:
        words: training sentences (lists of word strings).
        features: ``{column: sentences of strings}`` aligned with ``words``; must hold
            every column of ``config.columns`` (other columns are ignored).
        tags: gold tag strings aligned with ``words``.
        config: the architecture (its ``lowercase_words`` and ``feature_dims`` are used).
        extra_words: words outside the training data that get a row of the word embedding
            anyway (the words of pretrained vectors), after the training words (lower-cased
            with ``lowercase_words``); they are never singletons.

    Returns:
        ``{"words", "chars", "tags", "features", "singletons", "attributes"}``: word, character and
        feature vocabularies with :data:`PAD` = 0 and :data:`UNK` = 1 (``chars`` is
        ``None`` when ``char_hidden == 0``), the closed tag vocabulary in order of first
        occurrence, the sorted ids of words seen exactly once (for ``word_dropout``), and
        the sorted sparse attributes seen ``sparse_min_count`` times (``None`` when
        ``config.sparse_templates`` is ``None``).

    Raises:
        ValueError: on an empty sentence, a missing feature column or misaligned columns.
    """
    names = list(config.feature_dims)
    _check_columns(words, features, tags, config.columns)
    forms = [[w.lower() for w in s] for s in words] if config.lowercase_words else words
    extra = [w.lower() for w in extra_words] if config.lowercase_words else list(extra_words)
    word_vocab = _special_vocab([*forms, extra])  # training words first: extra words never shift their ids
    counts: dict[int, int] = {}
    for sentence in forms:
        for w in sentence:
            i = word_vocab[w]
            counts[i] = counts.get(i, 0) + 1
    singletons = sorted(i for i, c in counts.items() if c == 1 and i > 1)
    chars = _special_vocab(w for s in words for w in s) if config.char_hidden > 0 else None
    feats = {name: _special_vocab(features[name]) for name in names}  # type: ignore[index]
    attributes = None
    templates = config.templates
    if templates is not None:
        index = FeatureIndex(templates, config.sparse_min_count)
        attributes = index.fit(index.attributes(words, features)).attributes_
    return {
        "words": word_vocab,
        "chars": chars,
        "tags": Vocabulary.from_sentences(tags),
        "features": feats,
        "singletons": singletons,
        "attributes": attributes,
    }


def _uniform_embedding(num: int, dim: int) -> nn.Embedding:
    """Embedding initialised uniform in ``+-sqrt(3 / dim)`` (unit variance per vector; Ma & Hovy 2016,
    Sec. 3.1), with the :data:`PAD` row (id 0) at zero and kept there."""
    emb = nn.Embedding(num, dim, padding_idx=0)
    bound = math.sqrt(3.0 / dim)
    nn.init.uniform_(emb.weight, -bound, bound)
    with torch.no_grad():
        emb.weight[0].zero_()
    return emb


class BiLSTMCRF(nn.Module):
    """BiLSTM-CRF tagger (Lample et al. 2016; see the module docstring).

    Args:
        config: a :class:`BiLSTMCRFConfig`.
        words: word vocabulary with :data:`PAD` and :data:`UNK` (its ``unk``).
        tags: closed tag vocabulary (``C = len(tags)``).
        chars: character vocabulary with :data:`PAD` and :data:`UNK`; required iff ``config.char_hidden > 0``.
        features: one vocabulary (with :data:`PAD` and :data:`UNK`) per column of ``config.feature_dims``.
        singletons: ids of the words that ``word_dropout`` may replace by ``<unk>``.
        attributes: the sparse attribute strings (``U`` has one row per attribute, plus
            row 0 for padding); required iff ``config.sparse_templates`` is set.

    Use :func:`build_vocabularies` to make the vocabularies and :func:`train_bilstm_crf` to train.

    Raises:
        ValueError: on a vocabulary without ``<pad>``/``<unk>``, a missing or extra
            vocabulary, an empty tag set, a singleton id outside the word vocabulary, or
            attributes given without (or missing with) ``config.sparse_templates``.
    """

    def __init__(
        self,
        config: BiLSTMCRFConfig,
        words: Vocabulary,
        tags: Vocabulary,
        chars: Vocabulary | None = None,
        features: Mapping[str, Vocabulary] | None = None,
        singletons: Iterable[int] = (),
        attributes: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        features = dict(features or {})
        self.config = config
        for label, vocab in [("words", words), ("chars", chars)] + [(f"features[{k!r}]", v) for k, v in features.items()]:
            if vocab is None:
                continue
            if not isinstance(vocab, Vocabulary) or vocab.get(PAD) != 0 or vocab.unk != UNK:
                raise ValueError(f"{label} vocabulary must have {PAD!r} at id 0 and unk={UNK!r} (see build_vocabularies)")
        if (chars is None) != (config.char_hidden == 0):
            raise ValueError(f"a chars vocabulary is needed iff config.char_hidden > 0 (char_hidden={config.char_hidden})")
        if sorted(features) != sorted(config.feature_dims):
            raise ValueError(f"feature vocabularies {sorted(features)} do not match config.feature_dims {sorted(config.feature_dims)}")
        if not isinstance(tags, Vocabulary) or len(tags) < 1:
            raise ValueError("tags must be a non-empty Vocabulary")
        self.words, self.tags, self.chars, self.features = words, tags, chars, features
        singletons = sorted({int(i) for i in singletons})
        if singletons and not (0 <= singletons[0] and singletons[-1] < len(words)):
            raise ValueError(f"singleton ids must lie in [0, {len(words)}), got {singletons[0]} .. {singletons[-1]}")
        self.singletons = singletons
        is_singleton = torch.zeros(len(words), dtype=torch.bool)
        is_singleton[singletons] = True
        self.register_buffer("is_singleton", is_singleton, persistent=False)  # (V,)

        self.word_embedding = _uniform_embedding(len(words), config.word_dim)
        width = config.word_dim
        if config.char_hidden > 0:
            assert chars is not None
            self.char_embedding = _uniform_embedding(len(chars), config.char_dim)
            self.char_lstm = nn.LSTM(config.char_dim, config.char_hidden, batch_first=True, bidirectional=True)
            width += 2 * config.char_hidden
        self.feature_embeddings = nn.ModuleDict(
            {name: _uniform_embedding(len(features[name]), dim) for name, dim in config.feature_dims.items()}
        )
        width += sum(config.feature_dims.values())
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            width,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.projection = nn.Linear(2 * config.hidden, len(tags))
        self.crf = CRFLayer(len(tags))
        templates = config.templates
        if (attributes is None) != (templates is None):
            raise ValueError("attributes are needed iff config.sparse_templates is set (see build_vocabularies)")
        self.attribute_index: FeatureIndex | None = None
        if templates is not None:
            assert attributes is not None
            self.attribute_index = FeatureIndex(templates, config.sparse_min_count, list(attributes))
            self.sparse_weight = nn.Embedding(len(attributes) + 1, len(tags), padding_idx=0)  # U: (A + 1, C)
            nn.init.zeros_(self.sparse_weight.weight)

    # ------------------------------------------------------------ encoding
    @property
    def num_tags(self) -> int:
        return len(self.tags)

    def _device(self) -> torch.device:
        return self.projection.weight.device

    def _encode_one(self, words: Sequence[str], features: Mapping[str, Sequence[str]], tags: Sequence[str] | None, i: int) -> _Encoded:
        forms = [w.lower() for w in words] if self.config.lowercase_words else words
        word_ids = torch.tensor([self.words.id(w) for w in forms], dtype=torch.long)
        if self.chars is not None:
            char_ids = [[self.chars.id(c) for c in w] or [self.chars.unk_id] for w in words]
        else:
            char_ids = [[0] for _ in words]
        char_lengths = torch.tensor([len(c) for c in char_ids], dtype=torch.long)
        chars = torch.zeros(len(words), int(char_lengths.max()), dtype=torch.long)
        for n, c in enumerate(char_ids):
            chars[n, : len(c)] = torch.tensor(c, dtype=torch.long)
        feats = {
            name: torch.tensor([vocab.id(v) for v in features[name]], dtype=torch.long) for name, vocab in self.features.items()
        }
        tag_ids = None
        if tags is not None:
            ids = [self.tags.get(t) for t in tags]
            if -1 in ids:
                bad = tags[ids.index(-1)]
                raise ValueError(f"sentence {i}: tag {bad!r} is not in the tag vocabulary ({len(self.tags)} tags)")
            tag_ids = torch.tensor(ids, dtype=torch.long)
        attr_ids = None
        if self.attribute_index is not None:
            index = self.attribute_index
            per_token = [[k + 1 for k in index.lookup(tok)]  # row 0 of U is padding
                         for tok in sentence_attributes(words, index.templates, {c: features[c] for c in index.templates.columns})]
            attr_ids = torch.zeros(len(words), max(1, max(len(t) for t in per_token)), dtype=torch.long)
            for n, t in enumerate(per_token):
                attr_ids[n, : len(t)] = torch.tensor(t, dtype=torch.long)
        return _Encoded(word_ids, chars, char_lengths, feats, tag_ids, attr_ids)

    def encode_sentences(
        self, words: Sentences, features: Mapping[str, Sentences] | None = None, tags: Sentences | None = None
    ) -> list[_Encoded]:
        """Sentences as unpadded id tensors (the input of :meth:`collate`); unknown strings map to ``<unk>``.

        Raises:
            ValueError: on an empty sentence, a missing or misaligned column, or a tag
                outside the tag vocabulary (naming the sentence and the tag).
        """
        columns = self.config.columns
        _check_columns(words, features, tags, columns)
        features = features or {}
        return [
            self._encode_one(w, {name: features[name][i] for name in columns}, None if tags is None else tags[i], i)
            for i, w in enumerate(words)
        ]

    @staticmethod
    def collate(items: Sequence[_Encoded]) -> TaggerBatch:
        """Pad encoded sentences (from :meth:`encode_sentences`) into a :class:`TaggerBatch`.

        Raises:
            ValueError: if ``items`` is empty or mixes sentences with and without tags.
        """
        if len(items) == 0:
            raise ValueError("cannot collate an empty batch")
        has_tags = {it.tags is not None for it in items}
        if len(has_tags) != 1:
            raise ValueError("some sentences have tags and some do not")
        B = len(items)
        lengths = torch.tensor([it.words.shape[0] for it in items], dtype=torch.long)
        N = int(lengths.max())
        M = max(it.chars.shape[1] for it in items)
        words = torch.zeros(B, N, dtype=torch.long)
        chars = torch.zeros(B, N, M, dtype=torch.long)
        char_lengths = torch.zeros(B, N, dtype=torch.long)
        features = {name: torch.zeros(B, N, dtype=torch.long) for name in items[0].features}
        tags = torch.full((B, N), -1, dtype=torch.long) if has_tags == {True} else None
        attributes = None
        if items[0].attributes is not None:
            attributes = torch.zeros(B, N, max(it.attributes.shape[1] for it in items), dtype=torch.long)
        for b, it in enumerate(items):
            L = it.words.shape[0]
            words[b, :L] = it.words
            chars[b, :L, : it.chars.shape[1]] = it.chars
            char_lengths[b, :L] = it.char_lengths
            for name, ids in it.features.items():
                features[name][b, :L] = ids
            if tags is not None:
                tags[b, :L] = it.tags
            if attributes is not None:
                attributes[b, :L, : it.attributes.shape[1]] = it.attributes
        return TaggerBatch(words, chars, char_lengths, features, lengths, tags, attributes)

    def encode_batch(
        self, words: Sentences, features: Mapping[str, Sentences] | None = None, tags: Sentences | None = None
    ) -> TaggerBatch:
        """``collate(encode_sentences(words, features, tags))``: a padded :class:`TaggerBatch`.

        Args:
            words: ``B`` sentences of word strings (each non-empty).
            features: ``{column: sentences}`` aligned with ``words``; needs every column
                of ``config.columns`` (others are ignored).
            tags: gold tag strings aligned with ``words``, or ``None``.

        Raises:
            ValueError: as :meth:`encode_sentences`.
        """
        return self.collate(self.encode_sentences(words, features, tags))

    def load_word_vectors(self, vectors: WordVectors) -> int:
        """Start every word with a pretrained vector from it (exact form first, then lower-cased).

        Args:
            vectors: :class:`~latentnlp.data.vectors.WordVectors` of dimension ``config.word_dim``.

        Returns:
            How many rows of the word embedding were set (never :data:`PAD` or :data:`UNK`).

        Raises:
            ValueError: if the vectors' dimension differs from ``config.word_dim``.
        """
        if vectors.dim != self.config.word_dim:
            raise ValueError(f"the word vectors have {vectors.dim} dimensions, the model's word_dim is {self.config.word_dim}")
        row = {w: i for i, w in enumerate(vectors.words)}
        ids, rows = [], []
        for i, w in enumerate(self.words.tokens):
            if i < 2:
                continue
            j = row.get(w, row.get(w.lower()))
            if j is not None:
                ids.append(i)
                rows.append(j)
        if ids:
            with torch.no_grad():
                weight = self.word_embedding.weight
                weight[torch.tensor(ids)] = vectors.vectors[torch.tensor(rows)].to(weight)
        return len(ids)

    # ------------------------------------------------------------ the network
    def sample_noise(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """Per-sentence seeds ``(1, batch_size)`` int64 for word dropout, or ``None`` when it is off.

        The :class:`~latentnlp.training.trainer.Trainer` draws them from its seeded
        generator (so resuming reproduces them) and gives each process its slice.
        """
        if self.config.word_dropout <= 0 or not self.singletons:
            return None
        return torch.randint(0, 2**62, (1, batch_size), generator=generator, dtype=torch.long)

    def _word_dropout(self, words: torch.Tensor, lengths: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """``words (B, N)`` with singletons replaced by ``<unk>`` with probability ``word_dropout``."""
        B, N = words.shape
        if noise is not None:
            if noise.shape != (1, B):
                raise ValueError(f"noise has shape {tuple(noise.shape)}, expected (1, {B}) (see sample_noise)")
            g = torch.Generator()
            u = torch.stack([torch.rand(N, generator=g.manual_seed(int(s))) for s in noise[0].tolist()]).to(words.device)
        else:
            u = torch.rand(B, N, device=words.device)
        real = torch.arange(N, device=words.device).unsqueeze(0) < lengths.unsqueeze(1)
        drop = real & self.is_singleton[words] & (u < self.config.word_dropout)
        return words.masked_fill(drop, self.words.unk_id)

    def _char_features(self, x: TaggerBatch) -> torch.Tensor:
        """Final states of the char BiLSTM, concatenated: ``(B, N, 2 * char_hidden)``, 0 at padding."""
        B, N, _ = x.chars.shape
        real = x.char_lengths > 0  # (B, N)
        chars = x.chars[real]  # (W, M): the W real words of the batch
        emb = self.char_embedding(chars)  # (W, M, char_dim)
        packed = pack_padded_sequence(emb, x.char_lengths[real].cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.char_lstm(packed)  # h: (2, W, char_hidden), forward and backward final states
        rep = torch.cat([h[0], h[1]], dim=-1)  # (W, 2 * char_hidden)
        out = rep.new_zeros(B, N, rep.shape[-1])
        out[real] = rep
        return out

    def unary(self, x: TaggerBatch, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Unary tag scores ``(B, N, C)`` (nats; values at padding are meaningless).

        Args:
            x: a :class:`TaggerBatch` (moved to the model's device here).
            noise: word-dropout seeds from :meth:`sample_noise` (used in training mode only).
        """
        x = x.to(self._device())
        words = x.words
        if self.training and self.config.word_dropout > 0 and self.singletons:
            words = self._word_dropout(words, x.lengths, noise)
        parts = [self.word_embedding(words)]  # (B, N, word_dim)
        if self.config.char_hidden > 0:
            parts.append(self._char_features(x))  # (B, N, 2 * char_hidden)
        for name, emb in self.feature_embeddings.items():
            if name not in x.features:
                raise ValueError(f"the batch lacks the feature column {name!r}")
            parts.append(emb(x.features[name]))  # (B, N, dim)
        h = self.dropout(torch.cat(parts, dim=-1))  # (B, N, width)
        N = h.shape[1]
        packed = pack_padded_sequence(h, x.lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=N)  # (B, N, 2 * hidden), 0 at padding
        scores = self.projection(self.dropout(out))  # (B, N, C)
        if self.attribute_index is not None:
            if x.attributes is None:
                raise ValueError("the batch lacks the sparse attributes (encode it with this model)")
            scores = scores + self.sparse_weight(x.attributes).sum(dim=2)  # (B, N, K, C) -> (B, N, C)
        return scores

    def log_likelihood(self, x: TaggerBatch, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(tags | words)``, ``(B,)`` nats per sentence.

        Raises:
            ValueError: if ``x.tags`` is ``None``.
        """
        if x.tags is None:
            raise ValueError("the batch has no tags (encode it with tags to compute a likelihood)")
        unary = self.unary(x, noise)
        return self.crf.log_likelihood(unary, x.tags.to(unary.device), x.lengths.to(unary.device))

    def forward(self, x: TaggerBatch, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Training interface of the shared Trainer: ``{"loss": -log p(tags | words)}``, ``(B,)`` nats per sentence,
        plus ``sparse_l2 * ||U||^2`` per sentence when the sparse features are regularised."""
        loss = -self.log_likelihood(x, noise)
        if self.attribute_index is not None and self.config.sparse_l2 > 0:
            loss = loss + self.config.sparse_l2 * self.sparse_weight.weight.pow(2).sum()
        return {"loss": loss}

    def optimization_phases(self, alternate: bool) -> dict[str, list[nn.Parameter]]:
        """One joint phase (the model has no alternating scheme).

        Raises:
            ValueError: if ``alternate`` is true.
        """
        if alternate:
            raise ValueError("BiLSTMCRF trains all parameters jointly; TrainConfig.alternate must be False")
        return {"joint": list(self.parameters())}

    # ------------------------------------------------------------ prediction
    def predict(self, x: TaggerBatch) -> list[list[int]]:
        """Viterbi tag ids of each sentence (without padding), in evaluation mode (no dropout)."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                unary = self.unary(x)
                _, paths = self.crf.decode(unary, x.lengths.to(unary.device))
        finally:
            self.train(was_training)
        lengths = x.lengths.tolist()
        return [row[:L] for row, L in zip(paths.cpu().tolist(), lengths)]

    def tag(self, words: Sentences, features: Mapping[str, Sentences] | None = None, batch_size: int = 64) -> list[list[str]]:
        """Viterbi tag strings of raw sentences (unknown words, characters and feature values map to ``<unk>``).

        Raises:
            ValueError: as :meth:`encode_sentences`, or if ``batch_size < 1``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        items = self.encode_sentences(words, features)
        out: list[list[str]] = []
        for i in range(0, len(items), batch_size):
            for ids in self.predict(self.collate(items[i : i + batch_size])):
                out.append([self.tags.word(t) for t in ids])
        return out

    # ------------------------------------------------------------ persistence
    def to_metadata(self) -> dict:
        """JSON-ready description from which :meth:`from_metadata` rebuilds the model (weights excluded)."""
        return {
            "format": METADATA_FORMAT,
            "version": 1,
            "config": self.config.to_dict(),
            "words": self.words.to_json(),
            "chars": None if self.chars is None else self.chars.to_json(),
            "features": {name: v.to_json() for name, v in self.features.items()},
            "tags": self.tags.to_json(),
            "singletons": list(self.singletons),
            "attributes": None if self.attribute_index is None else list(self.attribute_index.attributes_),
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping) -> BiLSTMCRF:
        """A model with the architecture and vocabularies of ``metadata`` and fresh weights
        (load the trained ``state_dict`` into it).

        Raises:
            ValueError: if ``metadata`` is not a :meth:`to_metadata` description.
        """
        found = metadata.get("format") if isinstance(metadata, Mapping) else type(metadata).__name__
        if found != METADATA_FORMAT:
            raise ValueError(f"not a {METADATA_FORMAT} description (format {found!r})")
        if metadata.get("version") != 1:
            raise ValueError(f"unsupported {METADATA_FORMAT} version {metadata.get('version')!r}")
        chars = metadata.get("chars")
        return cls(
            BiLSTMCRFConfig.from_dict(metadata["config"]),
            words=Vocabulary.from_json(metadata["words"]),
            tags=Vocabulary.from_json(metadata["tags"]),
            chars=None if chars is None else Vocabulary.from_json(chars),
            features={name: Vocabulary.from_json(v) for name, v in metadata.get("features", {}).items()},
            singletons=metadata.get("singletons", ()),
            attributes=metadata.get("attributes"),
        )


# --------------------------------------------------------------------------- training


def train_bilstm_crf(
    train: tuple[Sentences, Mapping[str, Sentences] | None, Sentences],
    dev: tuple[Sentences, Mapping[str, Sentences] | None, Sentences],
    config: BiLSTMCRFConfig,
    train_config: TrainConfig,
    run_dir: str | Path | None = None,
    seed: int = 0,
    dev_scorer: Scorer | None = None,
    device: str | torch.device | None = None,
    eval_batch_size: int = 256,
    word_vectors: WordVectors | None = None,
) -> tuple[BiLSTMCRF, TrainResult]:
    """Build vocabularies from ``train``, train a :class:`BiLSTMCRF` with the shared Trainer, return the best model.

    Validation (every ``train_config.validate_every`` epochs) tags ``dev`` by
    Viterbi and reports ``valid_accuracy`` (token accuracy) and ``valid_error =
    1 - valid_accuracy``; with ``dev_scorer(pred, gold)`` (tag strings per
    sentence) each of its entries ``k`` is added as ``valid_k`` and, negated, as
    ``valid_neg_k`` (so ``monitor="valid_neg_f1"`` selects on F1). The Trainer
    keeps the weights with the smallest ``train_config.monitor``; when that is
    left at the TrainConfig default (``"valid_perplexity_bound"``, meaningless
    here) ``"valid_error"`` is used. Gradients are clipped to norm 5 when
    ``train_config.grad_clip`` is ``None`` (pass ``math.inf`` for no clipping).
    ``train_config.alternate`` must be False.

    Args:
        train: ``(words, features, tags)``: sentences of word strings, ``{column: sentences}``
            (or ``None`` when ``config.columns`` is empty) and gold tag strings.
        dev: the same for the development set (never the test set); dev tags unseen
            in training are simply always wrong.
        config: the architecture.
        train_config: optimisation settings (:class:`~latentnlp.training.trainer.TrainConfig`).
        run_dir: checkpoints, ``metrics.jsonl`` and ``bilstm_crf.json`` (the
            :meth:`BiLSTMCRF.to_metadata` description) go here; training resumes
            from its checkpoint if one is there (``train_config.resume``).
        seed: seeds the initial weights (:func:`latentnlp.training.seeding.seeded`).
        dev_scorer: optional ``(pred, gold) -> {name: value}`` scorer of tag strings
            (called once on ``(gold, gold)`` before training to learn its keys).
        device: where to train (default CPU).
        eval_batch_size: sentences per batch when tagging ``dev``.
        word_vectors: pretrained vectors (dimension ``config.word_dim``): their words join
            the vocabulary and start from them (:meth:`BiLSTMCRF.load_word_vectors`).

    Returns:
        ``(model, result)``: the model with the best validation weights (in eval
        mode) and the :class:`~latentnlp.training.trainer.TrainResult`.

    Raises:
        ValueError: on malformed or misaligned data, or an unknown monitored key.
    """
    from ...atomic import atomic_write_text
    from ...training.seeding import seeded
    from ...training.trainer import TrainConfig, Trainer

    train_words, train_features, train_tags = train
    dev_words, dev_features, dev_tags = dev
    if len(train_words) == 0 or len(dev_words) == 0:
        raise ValueError("the training and development sets must be non-empty")
    vocabs = build_vocabularies(train_words, train_features, train_tags, config,
                                extra_words=word_vectors.words if word_vectors is not None else ())
    with seeded(seed):
        model = BiLSTMCRF(
            config,
            words=vocabs["words"],
            tags=vocabs["tags"],
            chars=vocabs["chars"],
            features=vocabs["features"],
            singletons=vocabs["singletons"],
            attributes=vocabs["attributes"],
        )
    if word_vectors is not None:
        model.load_word_vectors(word_vectors)
    if device is not None:
        model.to(device)
    items = model.encode_sentences(train_words, train_features, train_tags)
    dev_items = model.encode_sentences(dev_words, dev_features)  # dev tags are compared as strings
    _check_columns(dev_words, None, dev_tags, [])
    gold = [list(t) for t in dev_tags]

    def validate(m: BiLSTMCRF) -> dict[str, float]:
        pred: list[list[str]] = []
        for i in range(0, len(dev_items), eval_batch_size):
            pred.extend([m.tags.word(t) for t in ids] for ids in m.predict(m.collate(dev_items[i : i + eval_batch_size])))
        acc = token_accuracy(pred, gold)
        metrics = {"valid_accuracy": acc, "valid_error": 1.0 - acc}
        if dev_scorer is not None:
            for k, v in dev_scorer(pred, gold).items():
                metrics[f"valid_{k}"] = float(v)
                metrics[f"valid_neg_{k}"] = -float(v)
        return metrics

    keys = {"valid_accuracy", "valid_error"}
    if dev_scorer is not None:
        for k in dev_scorer(gold, gold):
            keys |= {f"valid_{k}", f"valid_neg_{k}"}
    changes: dict = {}
    if train_config.monitor not in keys:
        if train_config.monitor != TrainConfig.monitor:
            raise ValueError(f"TrainConfig.monitor={train_config.monitor!r} is not among the validation metrics {sorted(keys)}")
        changes["monitor"] = "valid_error"
    if train_config.grad_clip is None:
        changes["grad_clip"] = 5.0
    elif math.isinf(train_config.grad_clip):
        changes["grad_clip"] = None
    if changes:
        train_config = dataclasses.replace(train_config, **changes)
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(run_dir) / "bilstm_crf.json", json.dumps(model.to_metadata()) + "\n")
    trainer = Trainer(
        model,
        train_config,
        n_train=len(items),
        collate=lambda idx: model.collate([items[i] for i in idx]),
        validate=validate,
        run_dir=run_dir,
    )
    result = trainer.fit()
    model.eval()
    return model, result
