"""What the feature-based log-linear taggers share (the MEMM and the linear-chain CRF).

Both score a label ``y`` at position ``i`` by ``f(x, i) . W[:, y]`` with the same
sparse attributes (:mod:`.features`) and a weight matrix ``W (A, C)``, both add
tag-transition weights, both are fit by minimising a regularised negative
conditional log-likelihood with L-BFGS (Liu & Nocedal 1989; scipy's
``L-BFGS-B``), and both decode with the Viterbi algorithm of the one
linear-chain core. They differ only in the normalisation: per position for the
MEMM (McCallum, Freitag & Pereira 2000), per sentence for the CRF (Lafferty,
McCallum & Pereira 2001).

Regularisation is ``c2 * ||theta||^2`` (CRFsuite's convention, so that a ``c2``
chosen for CRFsuite means the same here), and training stops like CRFsuite's
L-BFGS: when the objective improved by less than ``delta`` (relative) over the
last ``period`` iterations, or after ``max_iterations``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import scipy.optimize
import scipy.sparse as sp
import torch

from ...atomic import atomic_write_text
from ...training.checkpoint import atomic_save_tensors, load_tensors
from .features import FeatureIndex, FeatureTemplates

__all__ = ["LogLinearConfig", "LogLinearTagger", "Sentences", "SparseRows"]

log = logging.getLogger("latentnlp.taggers")

# words (D sentences), extra columns (name -> D sentences), tags (D sentences) or None
Sentences = tuple[Sequence[Sequence[str]], Mapping[str, Sequence[Sequence[str]]], Sequence[Sequence[str]] | None]


@dataclass
class LogLinearConfig:
    """Settings of a feature-based tagger.

    Attributes:
        templates: the feature templates (:class:`~.features.FeatureTemplates`).
        min_count: attributes seen fewer times in training are dropped.
        c2: L2 coefficient, penalty ``c2 * ||theta||^2`` (CRFsuite's ``c2``; its default is 1).
        max_iterations: L-BFGS iterations at most.
        delta: stop when ``(f_{k-period} - f_k) / f_k < delta`` (CRFsuite's default 1e-5).
        period: see ``delta`` (CRFsuite's default 10).
        history: L-BFGS memory ``m`` (CRFsuite's default 6).
        transitions: ``"all"`` — every tag bigram has a weight; ``"observed"`` —
            tag bigrams (and first/last tags) never seen in training are forbidden
            (score ``-inf``), the structural zeros of McCallum et al. (2000).
        boundary: CRF only — learn first-tag and last-tag weights (``start``, ``end``);
            ``False`` fixes them at 0, which is CRFsuite's model.

    Raises:
        ValueError: on a negative ``c2``, a non-positive iteration count or an unknown ``transitions``.
    """

    templates: FeatureTemplates = field(default_factory=FeatureTemplates)
    min_count: int = 1
    c2: float = 1.0
    max_iterations: int = 200
    delta: float = 1e-5
    period: int = 10
    history: int = 6
    transitions: str = "all"
    boundary: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.templates, Mapping):
            self.templates = FeatureTemplates.from_dict(self.templates)
        if not self.c2 >= 0:
            raise ValueError(f"c2 must be >= 0, got {self.c2!r}")
        for name in ("max_iterations", "period", "history", "min_count"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.transitions not in ("all", "observed"):
            raise ValueError(f"transitions must be 'all' or 'observed', got {self.transitions!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["templates"] = self.templates.to_dict()
        return d


class SparseRows:
    """A 0/1 feature matrix ``X (T, A)`` and its transpose as torch CSR tensors (multi-threaded products).

    ``X @ W`` gives per-token scores ``(T, C)`` and ``X.T @ G`` feature expectations ``(A, C)``.
    """

    def __init__(self, X: sp.csr_matrix) -> None:
        self.shape = X.shape
        Xt = X.T.tocsr()
        with warnings.catch_warnings():  # torch warns that sparse CSR is in beta
            warnings.simplefilter("ignore", UserWarning)
            self._X = self._csr(X)
            self._Xt = self._csr(Xt)

    @staticmethod
    def _csr(M: sp.csr_matrix) -> torch.Tensor:
        M.sort_indices()
        return torch.sparse_csr_tensor(torch.from_numpy(M.indptr.astype(np.int64)), torch.from_numpy(M.indices.astype(np.int64)),
                                       torch.from_numpy(M.data.astype(np.float64)), size=M.shape)

    def matmul(self, W: torch.Tensor) -> torch.Tensor:
        """``X @ W``: ``(T, A) x (A, C) -> (T, C)``."""
        return self._X @ W

    def rmatmul(self, G: torch.Tensor) -> torch.Tensor:
        """``X.T @ G``: ``(A, T) x (T, C) -> (A, C)``."""
        return self._Xt @ G


def _check_sentences(words, columns, tags, what: str) -> None:
    if len(words) == 0:
        raise ValueError(f"{what}: no sentences")
    for d, sent in enumerate(words):
        if len(sent) == 0:
            raise ValueError(f"{what}: sentence {d} is empty")
        if tags is not None and len(tags[d]) != len(sent):
            raise ValueError(f"{what}: sentence {d} has {len(sent)} tokens but {len(tags[d])} tags")
        for name, col in columns.items():
            if len(col[d]) != len(sent):
                raise ValueError(f"{what}: sentence {d} has {len(sent)} tokens but {len(col[d])} values in column {name!r}")
    if tags is not None and len(tags) != len(words):
        raise ValueError(f"{what}: {len(words)} sentences but {len(tags)} tag sequences")


class LogLinearTagger:
    """Base class: features, labels, the L-BFGS driver, decoding plumbing and safetensors I/O.

    Learned state (after :meth:`fit`): ``labels_`` (tag strings, column order of the
    weights), ``index_`` (the fitted :class:`FeatureIndex`), ``weights_ (A, C)``,
    ``transition_`` (subclass-specific shape), ``n_iter_``, ``objective_`` (per
    iteration, nats + penalty), ``fit_seconds_``.
    """

    name = "loglinear"

    def __init__(self, config: LogLinearConfig | None = None) -> None:
        self.config = config or LogLinearConfig()
        self.labels_: list[str] = []
        self.index_: FeatureIndex | None = None
        self.weights_: np.ndarray | None = None
        self.n_iter_ = 0
        self.objective_: list[float] = []
        self.fit_seconds_ = 0.0

    # ------------------------------------------------------------------ data
    def _attributes(self, words, columns) -> list[list[list[str]]]:
        columns = dict(columns or {})
        missing = [c for c in self.config.templates.columns if c not in columns]
        if missing:
            raise ValueError(f"the feature templates use columns {missing} that the input does not have "
                             f"(have {sorted(columns)})")
        return FeatureIndex(self.config.templates).attributes(words, columns)

    def _features(self, words, columns) -> tuple[sp.csr_matrix, np.ndarray]:
        """The test-time feature matrix of ``words`` with the fitted index."""
        if self.index_ is None:
            raise ValueError(f"this {type(self).__name__} is not fitted")
        return self.index_.transform(self._attributes(words, columns))

    def _fit_index(self, attributes) -> tuple[sp.csr_matrix, np.ndarray]:
        self.index_ = FeatureIndex(self.config.templates, self.config.min_count).fit(attributes)
        return self.index_.transform(attributes)

    def _label_ids(self, tags: Sequence[Sequence[str]]) -> np.ndarray:
        ids = {t: k for k, t in enumerate(self.labels_)}
        return np.asarray([ids[t] for sent in tags for t in sent], dtype=np.int64)

    @property
    def num_labels(self) -> int:
        return len(self.labels_)

    # ------------------------------------------------------------- optimiser
    def _minimize(self, objective: Callable[[np.ndarray], tuple[float, np.ndarray]], theta0: np.ndarray,
                  callback: Callable[[int, float], None] | None = None) -> np.ndarray:
        """L-BFGS with CRFsuite's stopping rule; returns the final parameters."""
        cfg = self.config
        history: list[float] = []
        last = {"theta": theta0, "f": math.inf}

        def fun(theta):
            f, g = objective(theta)
            if not math.isfinite(f):
                raise FloatingPointError(f"{type(self).__name__}: the objective is {f} (check the features and c2)")
            if f < last["f"]:
                last["f"], last["theta"] = f, theta.copy()
            return f, g

        def on_iteration(intermediate_result):
            f = float(intermediate_result.fun)
            history.append(f)
            if callback is not None:
                callback(len(history), f)
            if len(history) > cfg.period:
                old = history[-1 - cfg.period]
                if (old - f) / max(abs(f), 1e-300) < cfg.delta:
                    raise StopIteration

        t0 = time.perf_counter()
        result = scipy.optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B", callback=on_iteration,
                                         options={"maxiter": cfg.max_iterations, "maxcor": cfg.history,
                                                  "ftol": 0.0, "gtol": 0.0, "maxfun": 20 * cfg.max_iterations})
        self.fit_seconds_ = time.perf_counter() - t0
        self.n_iter_ = len(history)
        self.objective_ = history
        theta = result.x if result.fun <= last["f"] else last["theta"]
        log.info("%s: L-BFGS stopped after %d iterations (%s), objective %.4f, %.1f s", type(self).__name__,
                 self.n_iter_, result.message, float(min(result.fun, last["f"])), self.fit_seconds_)
        return theta

    # -------------------------------------------------------------- decoding
    @staticmethod
    def _padded(rows: torch.Tensor, offsets: np.ndarray, sentences: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, N, C)`` padded copies of the per-token rows of ``sentences`` and their ``(B,)`` lengths."""
        lengths = torch.tensor([int(offsets[d + 1] - offsets[d]) for d in sentences])
        out = rows.new_zeros(len(sentences), int(lengths.max()), rows.shape[1])
        for b, d in enumerate(sentences):
            out[b, : lengths[b]] = rows[offsets[d]: offsets[d + 1]]
        return out, lengths

    @staticmethod
    def _batches(offsets: np.ndarray, batch_size: int = 256) -> list[list[int]]:
        """Sentences grouped by similar length (less padding), each group at most ``batch_size``."""
        lengths = np.diff(offsets)
        order = np.argsort(-lengths, kind="stable")
        return [order[i: i + batch_size].tolist() for i in range(0, len(order), batch_size)]

    # ------------------------------------------------------------------- I/O
    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _set_state(self, tensors: Mapping[str, np.ndarray]) -> None:
        raise NotImplementedError

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``tagger.safetensors`` (weights) and ``tagger.json`` (config, labels, attributes) atomically."""
        if self.weights_ is None or self.index_ is None:
            raise ValueError(f"this {type(self).__name__} is not fitted")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_save_tensors(directory / "tagger.safetensors",
                            {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self._state().items()})
        meta = {"model": self.name, "config": self.config.to_dict(), "labels": self.labels_,
                "index": self.index_.to_dict(), "attributes": self.index_.attributes_,
                "n_iter": self.n_iter_, "objective": self.objective_, "fit_seconds": self.fit_seconds_}
        atomic_write_text(directory / "tagger.json", json.dumps(meta))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> LogLinearTagger:
        """Rebuild a tagger written by :meth:`save` (no pickle: safetensors and JSON only).

        Raises:
            FileNotFoundError: if a file is missing; ValueError: if it holds another model.
        """
        directory = Path(directory)
        meta_path = directory / "tagger.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path}: no tagger here")
        meta = json.loads(meta_path.read_text())
        if meta.get("model") != cls.name:
            raise ValueError(f"{meta_path}: holds a {meta.get('model')!r} tagger, not {cls.name!r}")
        tagger = cls(LogLinearConfig(**meta["config"]))
        tagger.labels_ = list(meta["labels"])
        tagger.index_ = FeatureIndex.from_dict(meta["index"], meta["attributes"])
        tagger.n_iter_ = int(meta.get("n_iter", 0))
        tagger.objective_ = list(meta.get("objective", []))
        tagger.fit_seconds_ = float(meta.get("fit_seconds", 0.0))
        tensors, _ = load_tensors(directory / "tagger.safetensors")
        tagger._set_state({k: v.numpy() for k, v in tensors.items()})
        return tagger
