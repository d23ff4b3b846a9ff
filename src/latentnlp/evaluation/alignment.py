"""Word-alignment quality: alignment error rate, precision, recall (Och & Ney 2003), and a picture.

With ``A`` the proposed links, ``S`` the sure gold links and ``P ⊇ S`` the possible ones
(sure and possible), summed over all sentences of a test set:

    precision = |A ∩ P| / |A|
    recall    = |A ∩ S| / |S|
    AER       = 1 - (|A ∩ S| + |A ∩ P|) / (|A| + |S|)

(Och & Ney 2003, "A Systematic Comparison of Various Statistical Alignment Models",
sec. 5). Links to NULL are not counted: they are neither proposed nor gold.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data.parallel import GoldAlignment

__all__ = ["AlignmentScores", "alignment_scores", "plot_alignment"]

Link = tuple[int, int]


@dataclass(frozen=True)
class AlignmentScores:
    """Corpus-level scores and the counts behind them."""

    aer: float
    precision: float
    recall: float
    n_predicted: int  # |A|
    n_sure: int  # |S|
    n_possible: int  # |P| (sure included)
    n_predicted_sure: int  # |A ∩ S|
    n_predicted_possible: int  # |A ∩ P|
    n_sentences: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def format(self) -> str:
        return (
            f"AER {self.aer:.4f}  precision {self.precision:.4f}  recall {self.recall:.4f}  "
            f"({self.n_predicted} links proposed, {self.n_sure} sure / {self.n_possible} possible gold, "
            f"{self.n_sentences} sentences)"
        )


def _as_set(links: Iterable[Sequence[int]] | np.ndarray) -> set[Link]:
    if isinstance(links, np.ndarray):
        if links.size and (links.ndim != 2 or links.shape[1] != 2):
            raise ValueError(f"an alignment must be (n_links, 2), got shape {links.shape}")
        return set(map(tuple, links.reshape(-1, 2).tolist()))
    return {(int(i), int(j)) for i, j in links}


def alignment_scores(predicted: Sequence[Iterable[Sequence[int]] | np.ndarray], gold: GoldAlignment) -> AlignmentScores:
    """AER, precision and recall of ``predicted`` against ``gold`` (see the module docstring).

    Args:
        predicted: per sentence, the proposed 0-based links in the gold's orientation
            (e.g. an :class:`~latentnlp.models.alignment.AlignmentSet`).
        gold: sure and possible links per sentence.

    Raises:
        ValueError: if the numbers of sentences differ (naming both), or the gold has no
            sure link while links are proposed (AER undefined) — a corpus with no
            proposed links and no sure links has AER 0.
    """
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predicted sentences but the gold standard has {len(gold)}")
    a_total = s_total = p_total = a_s = a_p = 0
    for links, sure, possible in zip(predicted, gold.sure, gold.possible):
        a = _as_set(links)
        a_total += len(a)
        s_total += len(sure)
        p_total += len(possible | sure)
        a_s += len(a & sure)
        a_p += len(a & (possible | sure))
    if a_total + s_total == 0:
        aer = 0.0
    else:
        aer = 1.0 - (a_s + a_p) / (a_total + s_total)
    precision = a_p / a_total if a_total else 0.0
    recall = a_s / s_total if s_total else 0.0
    return AlignmentScores(aer, precision, recall, a_total, s_total, p_total, a_s, a_p, len(gold))


def plot_alignment(
    path: str | os.PathLike,
    source_words: Sequence[str],
    target_words: Sequence[str],
    predicted: Iterable[Sequence[int]] | np.ndarray = (),
    sure: Iterable[Link] = (),
    possible: Iterable[Link] = (),
    posterior: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Draw one sentence pair's alignment matrix to a PNG (matplotlib, Agg backend).

    Rows are source words, columns target words. Gold sure links are filled squares,
    possible-only links hollow squares, predicted links dots (green on a gold link, red
    off it). ``posterior``, an optional ``(len(source_words), len(target_words))`` array,
    is shown as a grey background.

    Raises:
        ValueError: if a link or the posterior's shape falls outside the sentence lengths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ls, lt = len(source_words), len(target_words)
    pred, s_set = _as_set(predicted), set(sure)
    p_set = set(possible) - s_set
    for name, links in (("predicted", pred), ("sure", s_set), ("possible", p_set)):
        bad = [x for x in links if not (0 <= x[0] < ls and 0 <= x[1] < lt)]
        if bad:
            raise ValueError(f"{name} link {bad[0]} outside the {ls} x {lt} sentence pair")
    if posterior is not None and posterior.shape != (ls, lt):
        raise ValueError(f"posterior must have shape ({ls}, {lt}), got {posterior.shape}")
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * lt + 2), max(3, 0.35 * ls + 1.5)), dpi=100)
    if posterior is not None:
        ax.imshow(posterior, cmap="Greys", vmin=0, vmax=1, aspect="equal")
    else:
        ax.imshow(np.zeros((max(ls, 1), max(lt, 1))), cmap="Greys", vmin=0, vmax=1, aspect="equal")
    for i, j in s_set:
        ax.add_patch(plt.Rectangle((j - 0.4, i - 0.4), 0.8, 0.8, color="tab:blue", alpha=0.6))
    for i, j in p_set:
        ax.add_patch(plt.Rectangle((j - 0.4, i - 0.4), 0.8, 0.8, fill=False, edgecolor="tab:blue", linewidth=1.5))
    for i, j in pred:
        ax.plot(j, i, "o", color="tab:green" if (i, j) in s_set | p_set else "tab:red", markersize=5)
    ax.set_xticks(range(lt))
    ax.set_xticklabels(target_words, rotation=90)
    ax.set_yticks(range(ls))
    ax.set_yticklabels(source_words)
    ax.set_xlim(-0.5, lt - 0.5)
    ax.set_ylim(ls - 0.5, -0.5)
    ax.set_title(title or "squares: gold sure (filled) / possible (hollow); dots: predicted")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return out
