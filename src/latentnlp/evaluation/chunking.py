"""Chunk-level scores of sequence labellers (chunking, named entities) and tagging-scheme conversion.

A chunker labels each token with a *chunk tag*: ``O`` (outside every chunk) or
``P-TYPE``, a position prefix ``P`` and a chunk type (``NP``, ``VP``, ``PER``,
...). The tagging schemes (Ramshaw & Marcus 1995, "Text chunking using
transformation-based learning"; Tjong Kim Sang & Veenstra 1999, "Representing
text chunks") are:

* ``"iob1"`` — ``I-X`` inside every chunk, ``B-X`` only on the first token of
  a chunk that directly follows a chunk of the same type (Ramshaw & Marcus's
  IOB; the original CoNLL-2003 NER release);
* ``"iob2"`` — ``B-X`` on the first token of every chunk, ``I-X`` on the
  others (the CoNLL-2000 chunking data, ``conll2000/`` in the shared data);
* ``"iobes"`` — ``S-X`` for a one-token chunk, else ``B-X``, ``I-X``...,
  ``E-X`` (also called BIOES or BILOU);

each with ``O`` outside chunks.

Chunk boundaries: the conlleval rules
--------------------------------------
:func:`chunks` finds chunks as the CoNLL shared tasks' scorer ``conlleval``
(Erik Tjong Kim Sang, version 2004-01-26) does, re-implemented from its
``startOfChunk`` / ``endOfChunk`` rules: a tag is split at its first ``-`` into
prefix and type, and a chunk starts or ends between two tokens according to
the pair of prefixes and whether the types differ. The rules look at tags
only, never at a declared scheme, so the same rules read IOB1, IOB2 and IOBES
— the ``scheme`` argument only checks which prefixes may occur. They also
decide what a malformed sequence means, for gold and predicted tags alike:

* ``O I-NP``: the ``I-NP`` starts a chunk (IOB1 reading);
* ``B-NP I-VP``: a type change ends the ``NP`` chunk and starts a ``VP`` chunk;
* ``B-NP I-NP O`` in IOBES (no ``E-NP``): one chunk over the first two tokens;
* ``E-NP E-NP`` or ``S-NP I-NP``: two chunks.

The 2004 script's rules cover the prefixes ``B``, ``I``, ``E`` (IOB1, IOB2,
IOE1, IOE2); the rules for ``S`` and for ``B`` after ``E`` are those of the
IOBES extension of conlleval in common use (the original script has none for
``S`` and would merge ``S-NP S-NP`` into one chunk). On tags with prefixes
``B``, ``I`` and ``O`` only, the two rule sets give the same chunks. The
script's rules for its bracket tags (``[``, ``]``) and the ``.`` tag are left
out: those tags belong to none of the three schemes.

Scores
------
:func:`chunk_scores` gives conlleval's figures: a predicted chunk is correct
only if a gold chunk has the same type and the same first and last token
(Tjong Kim Sang & Buchholz 2000, "Introduction to the CoNLL-2000 shared task:
chunking"); precision, recall and their harmonic mean F1 (FB1, van Rijsbergen
1979) over all chunks and per chunk type, and the token accuracy of the tags.
:func:`confusion` and :func:`confusion_matrix_png` give the tag confusion
matrix (rows gold, columns predicted) through scikit-learn.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SCHEMES",
    "ChunkScores",
    "chunk_scores",
    "chunks",
    "confusion",
    "confusion_matrix_png",
    "convert_scheme",
]

SCHEMES = ("iob1", "iob2", "iobes")
_PREFIXES = {"iob1": frozenset("BI"), "iob2": frozenset("BI"), "iobes": frozenset("BIES")}
_OUT = ("O", "")

# conlleval's (previous prefix, prefix) pairs at which a chunk ends / starts, before the
# type-change rule. The 2004 script's pairs, then those of the IOBES extension.
_END_PAIRS = frozenset(
    {("B", "B"), ("B", "O"), ("I", "B"), ("I", "O"), ("E", "E"), ("E", "I"), ("E", "O")}
    | {("B", "S"), ("I", "S"), ("E", "S"), ("E", "B"), ("S", "B"), ("S", "I"), ("S", "E"), ("S", "O"), ("S", "S")}
)
_START_PAIRS = frozenset(
    {("B", "B"), ("I", "B"), ("O", "B"), ("O", "I"), ("E", "E"), ("E", "I"), ("O", "E")}
    | {("S", "B"), ("E", "B"), ("B", "S"), ("I", "S"), ("O", "S"), ("S", "S"), ("E", "S"), ("S", "I"), ("S", "E")}
)


def _end_of_chunk(prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    """conlleval's ``endOfChunk``: did a chunk end between the previous and the current token?"""
    return (prev[0], cur[0]) in _END_PAIRS or (prev[0] != "O" and prev[1] != cur[1])


def _start_of_chunk(prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    """conlleval's ``startOfChunk``: did a chunk start at the current token?"""
    return (prev[0], cur[0]) in _START_PAIRS or (cur[0] != "O" and prev[1] != cur[1])


def _check_scheme(scheme: str, name: str = "scheme") -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"{name} must be one of {SCHEMES}, got {scheme!r}")


def _split_tags(tags: Sequence[str], scheme: str) -> list[tuple[str, str]]:
    """``(prefix, type)`` of each tag (conlleval splits at the first ``-``); ``O`` is ``("O", "")``."""
    if isinstance(tags, str):
        raise ValueError(f"tags must be a sequence of tag strings, got the string {tags!r}")
    allowed = _PREFIXES[scheme]
    out = []
    for n, tag in enumerate(tags):
        if tag == "O":
            out.append(_OUT)
            continue
        prefix, sep, kind = str(tag).partition("-")
        if not sep or prefix not in allowed or not kind:
            raise ValueError(
                f"tag {tag!r} at position {n} is not O or P-TYPE with P in {sorted(allowed)} ({scheme} scheme)"
            )
        out.append((prefix, kind))
    return out


def chunks(tags: Sequence[str], scheme: str = "iob2") -> list[tuple[str, int, int]]:
    """The chunks of one sentence's tags, found by conlleval's rules (see the module docstring).

    Args:
        tags: ``L`` chunk tags (``"O"`` or ``"P-TYPE"``).
        scheme: ``"iob1"``, ``"iob2"`` or ``"iobes"``; it only sets which prefixes
            are allowed (``B``, ``I``; ``B``, ``I``, ``E``, ``S`` for IOBES): the
            boundary rules are the same for all three.

    Returns:
        ``(type, start, end)`` of each chunk in order, ``end`` exclusive
        (tokens ``start .. end-1``); chunks never overlap.

    Raises:
        ValueError: an unknown scheme, or a tag that is not ``O`` or ``P-TYPE`` with a
            prefix of the scheme and a non-empty type (tag and position named).

    Source: conlleval ``startOfChunk`` / ``endOfChunk`` (Tjong Kim Sang, CoNLL-2000),
    with the IOBES extension for ``S``.
    """
    _check_scheme(scheme)
    parsed = _split_tags(tags, scheme)
    spans: list[tuple[str, int, int]] = []
    start, kind = -1, ""
    prev = _OUT
    for i, cur in enumerate([*parsed, _OUT]):  # a sentence is followed by an O (conlleval's boundary)
        if start >= 0 and _end_of_chunk(prev, cur):
            spans.append((kind, start, i))
            start = -1
        if i < len(parsed) and _start_of_chunk(prev, cur):
            start, kind = i, cur[1]
        prev = cur
    return spans


def _render(spans: Sequence[tuple[str, int, int]], length: int, scheme: str) -> list[str]:
    out = ["O"] * length
    prev_end, prev_kind = -1, ""
    for kind, s, e in spans:
        if scheme == "iobes" and e - s == 1:
            out[s] = f"S-{kind}"
        else:
            for i in range(s, e):
                out[i] = f"I-{kind}"
            if scheme == "iob2" or scheme == "iobes" or (prev_end == s and prev_kind == kind):
                out[s] = f"B-{kind}"
            if scheme == "iobes":
                out[e - 1] = f"E-{kind}"
        prev_end, prev_kind = e, kind
    return out


def convert_scheme(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Rewrite one sentence's chunk tags from scheme ``source`` to scheme ``target``.

    The chunks are read with :func:`chunks` (so a malformed sequence is first read
    as conlleval reads it) and written in ``target``: the chunks are unchanged,
    so ``convert_scheme(convert_scheme(t, a, b), b, a) == t`` for every
    well-formed ``t`` in scheme ``a``.

    Args:
        tags: ``L`` chunk tags in scheme ``source``.
        source, target: ``"iob1"``, ``"iob2"`` or ``"iobes"``.

    Returns:
        ``L`` tags in scheme ``target``.

    Raises:
        ValueError: an unknown scheme, or a tag not of ``source`` (as :func:`chunks`).

    Source: the representations of Tjong Kim Sang & Veenstra (1999).
    """
    _check_scheme(source, "source")
    _check_scheme(target, "target")
    return _render(chunks(tags, source), len(tags), target)


# --------------------------------------------------------------------------- scores
def _prf(n_correct: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = n_correct / n_pred if n_pred else 0.0
    r = n_correct / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f


@dataclass
class ChunkScores:
    """conlleval's chunk scores of a labelled corpus.

    Attributes:
        precision: ``n_correct / n_pred`` in ``[0, 1]`` (0 when nothing is predicted).
        recall: ``n_correct / n_gold`` in ``[0, 1]`` (0 when there is no gold chunk).
        f1: ``2PR / (P + R)`` (conlleval's FB1; 0 when ``P + R = 0``).
        n_gold: number of gold chunks.
        n_pred: number of predicted chunks.
        n_correct: predicted chunks with a gold chunk of the same type and boundaries.
        token_accuracy: fraction of tokens whose predicted tag equals the gold tag
            (0 for an empty corpus).
        per_type: chunk type -> ``(precision, recall, f1, n_gold, n_pred)``, for every
            type of the gold or predicted chunks (sorted by type).
        n_tokens: number of tokens scored.
    """

    precision: float
    recall: float
    f1: float
    n_gold: int
    n_pred: int
    n_correct: int
    token_accuracy: float
    per_type: dict[str, tuple[float, float, float, int, int]] = field(default_factory=dict)
    n_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``per_type`` maps each type to a dict with keys
        ``precision``, ``recall``, ``f1``, ``n_gold``, ``n_pred``."""
        out = asdict(self)
        out["per_type"] = {
            kind: dict(zip(("precision", "recall", "f1", "n_gold", "n_pred"), values))
            for kind, values in self.per_type.items()
        }
        return out

    def format(self) -> str:
        """A report laid out as conlleval's (percentages; per type, the last number is ``n_pred``)."""
        lines = [
            f"processed {self.n_tokens} tokens with {self.n_gold} phrases; "
            f"found: {self.n_pred} phrases; correct: {self.n_correct}.",
            f"accuracy: {100 * self.token_accuracy:6.2f}%; precision: {100 * self.precision:6.2f}%; "
            f"recall: {100 * self.recall:6.2f}%; FB1: {100 * self.f1:6.2f}",
        ]
        for kind, (p, r, f, _, n_pred) in self.per_type.items():
            lines.append(f"{kind:>17}: precision: {100 * p:6.2f}%; recall: {100 * r:6.2f}%; FB1: {100 * f:6.2f}  {n_pred}")
        return "\n".join(lines)


def chunk_scores(
    pred_sentences: Sequence[Sequence[str]], gold_sentences: Sequence[Sequence[str]], scheme: str = "iob2"
) -> ChunkScores:
    """Chunk precision, recall and F1 of predicted against gold tags, as conlleval computes them.

    Chunks are found in each sentence by :func:`chunks` (conlleval's rules, for
    predicted and gold tags alike). A predicted chunk is correct only if a gold
    chunk of the same sentence has the same type, the same first token and the
    same last token: overlapping a gold chunk is not enough.

    Args:
        pred_sentences: ``D`` sentences of predicted tags.
        gold_sentences: ``D`` sentences of gold tags, ``len(gold_sentences[d]) == len(pred_sentences[d])``.
        scheme: ``"iob1"``, ``"iob2"`` or ``"iobes"`` (which prefixes may occur).

    Returns:
        A :class:`ChunkScores`.

    Raises:
        ValueError: the numbers of sentences differ, sentence ``d`` differs in length
            (``d`` named), a sentence is a string rather than a list of tags, or a tag
            does not fit ``scheme`` (as :func:`chunks`, with the sentence named).

    Source: conlleval (Tjong Kim Sang & Buchholz 2000, CoNLL-2000 shared task).
    """
    _check_scheme(scheme)
    if isinstance(pred_sentences, str) or isinstance(gold_sentences, str):
        raise ValueError("pred_sentences and gold_sentences must be sequences of sentences, not strings")
    if len(pred_sentences) != len(gold_sentences):
        raise ValueError(f"{len(pred_sentences)} predicted sentences but {len(gold_sentences)} gold sentences")
    n_gold: Counter = Counter()
    n_pred: Counter = Counter()
    n_correct: Counter = Counter()
    n_tokens = n_same = 0
    for d, (pred, gold) in enumerate(zip(pred_sentences, gold_sentences)):
        if isinstance(pred, str) or isinstance(gold, str):
            raise ValueError(f"sentence {d} is a string; each sentence must be a sequence of tags")
        if len(pred) != len(gold):
            raise ValueError(f"sentence {d}: {len(pred)} predicted tags but {len(gold)} gold tags")
        try:
            p_spans, g_spans = chunks(pred, scheme), chunks(gold, scheme)
        except ValueError as exc:
            raise ValueError(f"sentence {d}: {exc}") from exc
        n_pred.update(kind for kind, _, _ in p_spans)
        n_gold.update(kind for kind, _, _ in g_spans)
        n_correct.update(kind for kind, _, _ in set(p_spans) & set(g_spans))
        n_tokens += len(gold)
        n_same += sum(p == g for p, g in zip(pred, gold))
    p, r, f = _prf(sum(n_correct.values()), sum(n_pred.values()), sum(n_gold.values()))
    per_type = {
        kind: (*_prf(n_correct[kind], n_pred[kind], n_gold[kind]), n_gold[kind], n_pred[kind])
        for kind in sorted(set(n_gold) | set(n_pred))
    }
    return ChunkScores(
        precision=p,
        recall=r,
        f1=f,
        n_gold=sum(n_gold.values()),
        n_pred=sum(n_pred.values()),
        n_correct=sum(n_correct.values()),
        token_accuracy=n_same / n_tokens if n_tokens else 0.0,
        per_type=per_type,
        n_tokens=n_tokens,
    )


# --------------------------------------------------------------------------- confusion matrix
def confusion(pred: Sequence[Any], gold: Sequence[Any], labels: Sequence[Any] | None = None) -> tuple[list, np.ndarray]:
    """Confusion matrix of predicted against gold labels (``sklearn.metrics.confusion_matrix``).

    Args:
        pred: ``(T,)`` predicted labels (tags), one per token, sentences concatenated.
        gold: ``(T,)`` gold labels.
        labels: the ``K`` labels, in the order of the rows and columns; ``None``: the
            sorted union of the labels in ``gold`` and ``pred``. Tokens whose gold or
            predicted label is not among them are left out.

    Returns:
        ``(labels, matrix)``: the ``K`` labels as a list and an int64 ``(K, K)`` array,
        ``matrix[i, j]`` = number of tokens with gold ``labels[i]`` predicted as ``labels[j]``
        (rows gold, columns predicted).

    Raises:
        ValueError: ``pred`` and ``gold`` differ in length (both named) or are empty, or
            (from scikit-learn) no given label occurs in ``gold``.
    """
    from sklearn.metrics import confusion_matrix

    pred, gold = list(pred), list(gold)
    if len(pred) != len(gold):
        raise ValueError(f"pred and gold must have the same length, got {len(pred)} and {len(gold)}")
    if not gold:
        raise ValueError("the confusion matrix of zero tokens is undefined (pred and gold are empty)")
    labels = sorted(set(gold) | set(pred)) if labels is None else list(labels)
    matrix = confusion_matrix(gold, pred, labels=labels).astype(np.int64, copy=False)
    return labels, matrix


def confusion_matrix_png(
    pred_tags: Sequence[Any],
    gold_tags: Sequence[Any],
    path: str | os.PathLike,
    labels: Sequence[Any] | None = None,
    normalize: bool = True,
    title: str = "",
) -> Path:
    """Draw the confusion matrix of :func:`confusion` to a PNG (matplotlib, Agg backend).

    Rows are gold labels, columns predicted labels. With ``normalize`` each row is
    divided by its total (the share of each gold label's tokens given each predicted
    label; a row with no tokens stays 0), else raw counts are shown. Cells are
    annotated with their values when there are at most 25 labels.

    Args:
        pred_tags, gold_tags, labels: as :func:`confusion` (flat ``(T,)`` sequences).
        path: the PNG to write (parent folders are created).
        normalize: show row-normalised fractions instead of counts.
        title: the figure title (``""``: a default naming the axes).

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: as :func:`confusion`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, matrix = confusion(pred_tags, gold_tags, labels)
    shown = matrix.astype(np.float64)
    if normalize:
        totals = shown.sum(axis=1, keepdims=True)
        shown = np.divide(shown, totals, out=np.zeros_like(shown), where=totals > 0)
    k = len(names)
    side = max(4.0, 0.4 * k + 2.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side), dpi=100)
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(float(shown.max()), 1.0))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if k <= 25:
        cut = shown.max() / 2 if shown.size else 0.0
        for i in range(k):
            for j in range(k):
                text = f"{shown[i, j]:.2f}" if normalize else f"{int(matrix[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if shown[i, j] > cut else "black")
    ax.set_xticks(range(k))
    ax.set_xticklabels([str(x) for x in names], rotation=90)
    ax.set_yticks(range(k))
    ax.set_yticklabels([str(x) for x in names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title or ("confusion matrix (rows: gold, normalised; columns: predicted)" if normalize
                           else "confusion matrix (rows: gold; columns: predicted)"))
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp)
    finally:
        plt.close(fig)
    os.replace(tmp, out)
    return out
