"""Feature-based linear-chain CRF (Lafferty, McCallum & Pereira 2001), trained by L-BFGS.

For a sentence ``x`` of ``L`` tokens and tags ``z``,

    s(z, x) = start[z_0] + sum_i f(x, i) . W[:, z_i] + sum_{i>0} A[z_{i-1}, z_i] + end[z_{L-1}]
    p(z | x) = exp(s(z, x)) / Z(x)

with sparse 0/1 attributes ``f(x, i)`` (:mod:`.features`), state weights
``W (A, C)``, transition weights ``A (C, C)`` (rows: previous tag) and
first/last-tag weights. Training minimises

    sum_d [log Z(x_d) - s(z_d, x_d)] + c2 * ||theta||^2          (nats + penalty)

whose gradient is expected minus empirical feature counts (Sha & Pereira 2003,
Eq. 2-4). The expectations come from one scaled forward-backward over the whole
corpus in probability space (:func:`latentnlp.structured.scaled_hmm.scaled_forward_backward`,
packed by length, one ``(k, C) x (C, C)`` matmul per position), the state-feature
scores and gradients from two sparse matrix products ``X W`` and ``X^T (P - Y)``.
Decoding (Viterbi), n-best lists and per-sentence log-likelihoods run on the
log-space core (:mod:`latentnlp.structured.linear_chain`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from ...structured.linear_chain import crf_potentials, kbest, log_partition, path_score, posterior, viterbi
from ...structured.scaled_hmm import pack_sentences, scaled_forward_backward
from .loglinear import LogLinearConfig, LogLinearTagger, SparseRows, _check_sentences, log

__all__ = ["FeatureCRF"]


class FeatureCRF(LogLinearTagger):
    """Linear-chain CRF over sparse feature templates.

    Args:
        config: :class:`~.loglinear.LogLinearConfig` (templates, ``c2``, L-BFGS settings, transitions).

    Learned state after :meth:`fit`: ``labels_``, ``index_``, ``weights_ (A, C)``,
    ``transition_ (C, C)``, ``start_ (C,)``, ``end_ (C,)`` (float64, nats) and the
    masks ``transition_mask_``, ``start_mask_``, ``end_mask_`` (0 allowed, ``-inf``
    forbidden; all 0 with ``transitions="all"``).

    Source: Lafferty et al. (2001); Sha & Pereira (2003) for L-BFGS training;
    CRFsuite (Okazaki 2007) for the regularisation and stopping conventions.
    """

    name = "crf"

    def __init__(self, config: LogLinearConfig | None = None) -> None:
        super().__init__(config)
        self.transition_: np.ndarray | None = None
        self.start_: np.ndarray | None = None
        self.end_: np.ndarray | None = None

    # ---------------------------------------------------------------- params
    def _unpack(self, theta: np.ndarray, A: int, C: int):
        W = theta[: A * C].reshape(A, C)
        T = theta[A * C: A * C + C * C].reshape(C, C)
        s = theta[A * C + C * C: A * C + C * C + C]
        e = theta[A * C + C * C + C:]
        return W, T, s, e

    def _masked(self):
        return (self.transition_ + self.transition_mask_, self.start_ + self.start_mask_, self.end_ + self.end_mask_)

    # ------------------------------------------------------------------ fit
    def fit(self, words: Sequence[Sequence[str]], tags: Sequence[Sequence[str]],
            columns: Mapping[str, Sequence[Sequence[str]]] | None = None, callback=None) -> FeatureCRF:
        """Fit by L-BFGS on the regularised conditional log-likelihood.

        Args:
            words: ``D`` non-empty sentences of tokens.
            tags: ``D`` tag sequences of the same lengths.
            columns: extra input columns used by the templates (e.g. ``{"pos": ...}``).
            callback: optional ``callback(iteration, objective)`` after each L-BFGS iteration.

        Raises:
            ValueError: on empty input, mismatched lengths or missing feature columns (named).
            FloatingPointError: if the objective becomes non-finite.
        """
        columns = dict(columns or {})
        _check_sentences(words, columns, tags, "training data")
        return self.fit_attributes(self._attributes(words, columns), tags, callback)

    def fit_attributes(self, attributes: Sequence[Sequence[Sequence[str]]], tags: Sequence[Sequence[str]],
                       callback=None) -> FeatureCRF:
        """Fit on given attribute lists (``D`` sentences of ``L_d`` lists of strings, as CRFsuite takes them).

        :meth:`fit` calls this with the templates' attributes; users with their own
        feature extractor call it directly (``predict_attributes`` then decodes).
        """
        _check_sentences(attributes, {}, tags, "training data")
        self.labels_ = sorted({t for sent in tags for t in sent})
        X, offsets = self._fit_index(attributes)
        objective, n = self._objective(X, offsets, self._label_ids(tags))
        theta = self._minimize(objective, np.zeros(n), callback)
        W, Tr, s, e = self._unpack(theta, len(self.index_), self.num_labels)
        self.weights_, self.transition_, self.start_, self.end_ = W.copy(), Tr.copy(), s.copy(), e.copy()
        return self

    def _objective(self, X, offsets: np.ndarray, y: np.ndarray):
        """``(objective, n)``: ``theta (n,) -> (f, grad)``, the penalised negative log-likelihood (nats) and its gradient.

        Sets the transition masks from the data as a side effect. ``theta`` is
        ``[W (A*C), A (C*C), start (C), end (C)]``, row-major.
        """
        T_tok, A = X.shape
        C = self.num_labels
        D = len(offsets) - 1
        first, last = offsets[:-1], offsets[1:] - 1
        # empirical counts
        Y = np.zeros((T_tok, C))
        Y[np.arange(T_tok), y] = 1.0
        rows = SparseRows(X)
        emp_W = rows.rmatmul(torch.from_numpy(Y))
        del Y
        is_first = np.zeros(T_tok, dtype=bool)
        is_first[first] = True
        cur = np.nonzero(~is_first)[0]
        emp_T = np.zeros((C, C))
        np.add.at(emp_T, (y[cur - 1], y[cur]), 1.0)
        emp_s = np.bincount(y[first], minlength=C).astype(np.float64)
        emp_e = np.bincount(y[last], minlength=C).astype(np.float64)
        if self.config.transitions == "observed":
            self.transition_mask_ = np.where(emp_T > 0, 0.0, -np.inf)
            self.start_mask_ = np.where(emp_s > 0, 0.0, -np.inf)
            self.end_mask_ = np.where(emp_e > 0, 0.0, -np.inf)
        else:
            self.transition_mask_, self.start_mask_, self.end_mask_ = np.zeros((C, C)), np.zeros(C), np.zeros(C)
        # packed layout: one row per token, sentences sorted by length
        packed = pack_sentences([torch.arange(int(first[d]), int(last[d]) + 1) for d in range(D)])
        inverse = torch.empty(T_tok, dtype=torch.long)
        inverse[packed.data] = torch.arange(T_tok)
        first_rows, last_rows = inverse[torch.from_numpy(first)], inverse[torch.from_numpy(last)]
        n_edges = float(T_tok - D)
        t_mask, s_mask, e_mask = (torch.from_numpy(m) for m in (self.transition_mask_, self.start_mask_, self.end_mask_))
        ones = torch.ones(C, dtype=torch.float64)
        c2, boundary = self.config.c2, self.config.boundary
        n = A * C + C * C + 2 * C
        emp = torch.cat([emp_W.reshape(-1), torch.from_numpy(emp_T).reshape(-1), torch.from_numpy(emp_s),
                         torch.from_numpy(emp_e)])
        grad = torch.empty(n, dtype=torch.float64)
        gW, gT, gs, ge = grad[: A * C].view(A, C), grad[A * C: A * C + C * C].view(C, C), grad[-2 * C: -C], grad[-C:]

        def objective(theta_np: np.ndarray) -> tuple[float, np.ndarray]:
            theta = torch.from_numpy(theta_np)
            W, Tr = theta[: A * C].view(A, C), theta[A * C: A * C + C * C].view(C, C)
            s, e = theta[-2 * C: -C], theta[-C:]
            U = rows.matmul(W)  # (T, C) state scores, original order
            u = U[packed.data]  # packed order
            u[first_rows] += s + s_mask
            u[last_rows] += e + e_mask
            m = u.max(dim=1).values
            factors = torch.exp(u - m[:, None])
            trans = Tr + t_mask
            mt = trans.max()
            result = scaled_forward_backward(ones, torch.exp(trans - mt), factors, packed)
            if result is None:
                raise FloatingPointError("FeatureCRF: a sentence's forward probability underflowed in float64")
            gamma, trans_counts, log_scale = result
            log_z = float(log_scale.sum() + m.sum()) + n_edges * float(mt)
            f = log_z - float(torch.dot(emp, theta)) + c2 * float(torch.dot(theta, theta))
            gamma_orig = torch.empty_like(gamma)
            gamma_orig[packed.data] = gamma
            gW.copy_(rows.rmatmul(gamma_orig))
            gT.copy_(trans_counts)
            gs.copy_(gamma[first_rows].sum(0))
            ge.copy_(gamma[last_rows].sum(0))
            grad.sub_(emp).add_(theta, alpha=2.0 * c2)
            if not boundary:  # start and end stay at 0
                gs.zero_()
                ge.zero_()
            return f, grad.numpy().copy()

        log.info("FeatureCRF: %d sentences, %d tokens, %d attributes x %d labels = %d weights", D, T_tok, A, C, n)
        return objective, n

    # ------------------------------------------------------------- inference
    def _check_fitted(self) -> None:
        if self.weights_ is None:
            raise ValueError("this FeatureCRF is not fitted")

    def _chains(self, words, columns, batch_size: int = 256, attributes=None):
        """Yield ``(sentence indices, ChainPotentials, lengths)`` batches of similar length."""
        self._check_fitted()
        if attributes is None:
            columns = dict(columns or {})
            _check_sentences(words, columns, None, "input")
            X, offsets = self._features(words, columns)
        else:
            _check_sentences(attributes, {}, None, "input")
            X, offsets = self.index_.transform(attributes)
        U = torch.from_numpy(np.asarray(X @ self.weights_))
        trans, start, end = (torch.from_numpy(v) for v in self._masked())
        for batch in self._batches(offsets, batch_size):
            unary, lengths = self._padded(U, offsets, batch)
            yield batch, crf_potentials(unary, trans, lengths, start, end), lengths

    def predict_attributes(self, attributes: Sequence[Sequence[Sequence[str]]]) -> list[list[str]]:
        """Viterbi tags from given attribute lists (see :meth:`fit_attributes`)."""
        return self._decode(self._chains(None, None, attributes=attributes), len(attributes))

    def _decode(self, chains, n_sentences: int) -> list[list[str]]:
        out: list[list[str]] = [[] for _ in range(n_sentences)]
        for batch, pot, lengths in chains:
            paths, _ = viterbi(pot, lengths)
            for b, d in enumerate(batch):
                out[d] = [self.labels_[k] for k in paths[b, : lengths[b]].tolist()]
        return out

    def predict(self, words: Sequence[Sequence[str]], columns: Mapping[str, Sequence[Sequence[str]]] | None = None
                ) -> list[list[str]]:
        """Viterbi tags of each sentence (``D`` lists of tag strings).

        Raises:
            ValueError: if not fitted, on empty sentences or missing feature columns.
        """
        return self._decode(self._chains(words, columns), len(words))

    def nbest(self, words, columns=None, n: int = 5) -> list[list[tuple[float, list[str]]]]:
        """The ``n`` most probable tag sequences of each sentence with ``p(z | x)``, most probable first.

        Returns:
            ``D`` lists of up to ``n`` ``(probability, tags)`` pairs (fewer when the
            sentence has fewer allowed paths).
        """
        out: list[list[tuple[float, list[str]]]] = [[] for _ in words]
        for batch, pot, lengths in self._chains(words, columns):
            paths, scores = kbest(pot, lengths, n)
            log_z = log_partition(pot, lengths)
            for b, d in enumerate(batch):
                L = int(lengths[b])
                out[d] = [(float(torch.exp(scores[b, r] - log_z[b])), [self.labels_[k] for k in paths[b, r, :L].tolist()])
                          for r in range(n) if torch.isfinite(scores[b, r])]
        return out

    def marginals(self, words, columns=None) -> list[np.ndarray]:
        """Posterior tag marginals ``p(z_i = c | x)``: ``D`` arrays ``(L_d, C)`` (columns in ``labels_`` order)."""
        out: list[np.ndarray] = [np.zeros(0) for _ in words]
        for batch, pot, lengths in self._chains(words, columns):
            node = posterior(pot, lengths).node
            for b, d in enumerate(batch):
                out[d] = node[b, : lengths[b]].numpy()
        return out

    def log_likelihood(self, words, tags, columns=None) -> np.ndarray:
        """``log p(z_d | x_d)`` of given tag sequences, ``(D,)`` nats (``-inf`` for a forbidden sequence).

        Raises:
            ValueError: on an unknown tag (named with its sentence) or mismatched lengths.
        """
        ids = {t: k for k, t in enumerate(self.labels_)}
        out = np.zeros(len(words))
        for batch, pot, lengths in self._chains(words, columns):
            paths = torch.zeros(len(batch), pot.max_length, dtype=torch.long)
            for b, d in enumerate(batch):
                if len(tags[d]) != len(words[d]):
                    raise ValueError(f"sentence {d}: {len(words[d])} tokens but {len(tags[d])} tags")
                unknown = [t for t in tags[d] if t not in ids]
                if unknown:
                    raise ValueError(f"sentence {d}: tag {unknown[0]!r} was not seen in training")
                paths[b, : len(tags[d])] = torch.tensor([ids[t] for t in tags[d]])
            ll = path_score(pot, lengths, paths) - log_partition(pot, lengths)
            out[batch] = ll.numpy()
        return out

    # ------------------------------------------------------------------- I/O
    def _state(self):
        return {"weights": self.weights_, "transition": self.transition_, "start": self.start_, "end": self.end_,
                "transition_mask": self.transition_mask_, "start_mask": self.start_mask_, "end_mask": self.end_mask_}

    def _set_state(self, tensors):
        self.weights_, self.transition_ = tensors["weights"], tensors["transition"]
        self.start_, self.end_ = tensors["start"], tensors["end"]
        self.transition_mask_, self.start_mask_ = tensors["transition_mask"], tensors["start_mask"]
        self.end_mask_ = tensors["end_mask"]
