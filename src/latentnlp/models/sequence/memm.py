"""Maximum-entropy Markov model (McCallum, Freitag & Pereira 2000; Ratnaparkhi 1996).

A per-position maximum-entropy (multinomial logistic) classifier over the
current tag given the previous tag and the observation features:

    p(z_i = y | z_{i-1} = y', x) = exp(f(x, i) . W[:, y] + P[y', y]) / sum_c exp(f(x, i) . W[:, c] + P[y', c])

with ``z_{-1} = BOS`` (row ``C`` of ``P (C + 1, C)``). Training maximises the
log-likelihood of the gold tags given the *gold* previous tags, each position
an independent classification problem, with the penalty ``c2 * ||theta||^2``,
by L-BFGS. Decoding finds ``argmax_z prod_i p(z_i | z_{i-1}, x)`` with the
Viterbi algorithm of the linear-chain core, on potentials ``log p(z_i | z_{i-1}, x)``.

Because each position is normalised over the successors of the previous tag
alone, probability mass that enters a tag must leave it whatever the
observation says: the *label bias* problem (Lafferty et al. 2001, Sec. 2;
Bottou 1991). With ``transitions="observed"`` a tag with one observed
successor passes all its mass to it, for every input (see the label-bias
example in the README and ``tests/models/test_label_bias.py``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from ...structured.linear_chain import ChainPotentials, kbest, viterbi
from .loglinear import LogLinearConfig, LogLinearTagger, SparseRows, _check_sentences, log

__all__ = ["MEMM"]


class MEMM(LogLinearTagger):
    """Maximum-entropy Markov model over sparse feature templates.

    Args:
        config: :class:`~.loglinear.LogLinearConfig`.

    Learned state after :meth:`fit`: ``labels_``, ``index_``, ``weights_ (A, C)``,
    ``transition_ (C + 1, C)`` (row ``C``: the sentence start) and
    ``transition_mask_`` (0 allowed, ``-inf`` forbidden).

    Source: McCallum, Freitag & Pereira (2000), "Maximum entropy Markov models for
    information extraction and segmentation", ICML; decoding Sec. 2.1.
    """

    name = "memm"

    def __init__(self, config: LogLinearConfig | None = None) -> None:
        super().__init__(config)
        self.transition_: np.ndarray | None = None
        self.transition_mask_: np.ndarray | None = None

    def fit(self, words: Sequence[Sequence[str]], tags: Sequence[Sequence[str]],
            columns: Mapping[str, Sequence[Sequence[str]]] | None = None, callback=None) -> MEMM:
        """Fit the per-position classifier by L-BFGS (gold previous tags).

        Args, errors: as :meth:`latentnlp.models.sequence.crf.FeatureCRF.fit`.
        """
        columns = dict(columns or {})
        _check_sentences(words, columns, tags, "training data")
        return self.fit_attributes(self._attributes(words, columns), tags, callback)

    def fit_attributes(self, attributes: Sequence[Sequence[Sequence[str]]], tags: Sequence[Sequence[str]],
                       callback=None) -> MEMM:
        """Fit on given attribute lists (see :meth:`latentnlp.models.sequence.crf.FeatureCRF.fit_attributes`)."""
        _check_sentences(attributes, {}, tags, "training data")
        self.labels_ = sorted({t for sent in tags for t in sent})
        X, offsets = self._fit_index(attributes)
        objective, n = self._objective(X, offsets, self._label_ids(tags))
        theta = self._minimize(objective, np.zeros(n), callback)
        A, C = len(self.index_), self.num_labels
        self.weights_ = theta[: A * C].reshape(A, C).copy()
        self.transition_ = theta[A * C:].reshape(C + 1, C).copy()
        return self

    def _objective(self, X, offsets: np.ndarray, y: np.ndarray):
        """``(objective, n)``: ``theta (n,) -> (f, grad)``, the penalised negative log-likelihood (nats) and its gradient.

        Sets the transition mask from the data. ``theta`` is ``[W (A*C), P ((C+1)*C)]``, row-major.
        """
        T_tok, A = X.shape
        C = self.num_labels
        prev = np.concatenate([[-1], y[:-1]])
        prev[offsets[:-1]] = C  # BOS
        Y = np.zeros((T_tok, C))
        Y[np.arange(T_tok), y] = 1.0
        rows = SparseRows(X)
        emp_P = np.zeros((C + 1, C))
        np.add.at(emp_P, (prev, y), 1.0)
        if self.config.transitions == "observed":
            self.transition_mask_ = np.where(emp_P > 0, 0.0, -np.inf)
        else:
            self.transition_mask_ = np.zeros((C + 1, C))
        mask = torch.from_numpy(self.transition_mask_)
        emp = torch.cat([rows.rmatmul(torch.from_numpy(Y)).reshape(-1), torch.from_numpy(emp_P).reshape(-1)])
        del Y
        prev_t, y_t = torch.from_numpy(prev), torch.from_numpy(y)
        c2 = self.config.c2
        n = A * C + (C + 1) * C
        grad = torch.empty(n, dtype=torch.float64)
        gW, gP = grad[: A * C].view(A, C), grad[A * C:].view(C + 1, C)

        def objective(theta_np: np.ndarray) -> tuple[float, np.ndarray]:
            theta = torch.from_numpy(theta_np)
            W, P = theta[: A * C].view(A, C), theta[A * C:].view(C + 1, C)
            logits = rows.matmul(W) + (P + mask)[prev_t]  # (T, C)
            logp = torch.log_softmax(logits, dim=-1)
            f = -float(logp.gather(1, y_t[:, None]).sum()) + c2 * float(torch.dot(theta, theta))
            p = logp.exp_()
            gW.copy_(rows.rmatmul(p))
            gP.zero_().index_add_(0, prev_t, p)
            grad.sub_(emp).add_(theta, alpha=2.0 * c2)
            return f, grad.numpy().copy()

        log.info("MEMM: %d sentences, %d tokens, %d attributes x %d labels", len(offsets) - 1, T_tok, A, C)
        return objective, n

    # ------------------------------------------------------------- inference
    def _chains(self, words, columns, batch_size: int = 256):
        if self.weights_ is None:
            raise ValueError("this MEMM is not fitted")
        columns = dict(columns or {})
        _check_sentences(words, columns, None, "input")
        X, offsets = self._features(words, columns)
        U = torch.from_numpy(np.asarray(X @ self.weights_))
        P = torch.from_numpy(self.transition_ + self.transition_mask_)
        C = self.num_labels
        for batch in self._batches(offsets, batch_size):
            unary, lengths = self._padded(U, offsets, batch)  # (B, N, C)
            start = torch.log_softmax(unary[:, 0] + P[C], dim=-1)  # (B, C): log p(z_0 | BOS, x)
            # edge[b, n, i, j] = log p(z_{n+1} = j | z_n = i, x)
            edge = torch.log_softmax(unary[:, 1:, None, :] + P[None, None, :C, :], dim=-1)
            edge = torch.nan_to_num(edge, nan=float("-inf"))  # a previous tag with no allowed successor
            yield batch, ChainPotentials(start, edge), lengths

    def predict(self, words: Sequence[Sequence[str]], columns: Mapping[str, Sequence[Sequence[str]]] | None = None
                ) -> list[list[str]]:
        """Viterbi tags ``argmax_z prod_i p(z_i | z_{i-1}, x)`` (``D`` lists of tag strings)."""
        out: list[list[str]] = [[] for _ in words]
        for batch, pot, lengths in self._chains(words, columns):
            paths, _ = viterbi(pot, lengths)
            for b, d in enumerate(batch):
                out[d] = [self.labels_[k] for k in paths[b, : lengths[b]].tolist()]
        return out

    def nbest(self, words, columns=None, n: int = 5) -> list[list[tuple[float, list[str]]]]:
        """The ``n`` most probable tag sequences with ``p(z | x) = prod_i p(z_i | z_{i-1}, x)``."""
        out: list[list[tuple[float, list[str]]]] = [[] for _ in words]
        for batch, pot, lengths in self._chains(words, columns):
            paths, scores = kbest(pot, lengths, n)
            for b, d in enumerate(batch):
                L = int(lengths[b])
                out[d] = [(float(torch.exp(scores[b, r])), [self.labels_[k] for k in paths[b, r, :L].tolist()])
                          for r in range(n) if torch.isfinite(scores[b, r])]
        return out

    def local_probabilities(self, words, columns=None) -> list[np.ndarray]:
        """``p(z_i = j | z_{i-1} = k, x)`` for every sentence: ``D`` arrays ``(L_d, C + 1, C)``, row ``C`` = BOS."""
        out: list[np.ndarray] = [np.zeros(0) for _ in words]
        C = self.num_labels
        for batch, pot, lengths in self._chains(words, columns):
            for b, d in enumerate(batch):
                L = int(lengths[b])
                arr = np.full((L, C + 1, C), np.nan)
                arr[0, C] = pot.start[b].exp().numpy()
                if L > 1:
                    arr[1:, :C] = pot.edge[b, : L - 1].exp().numpy()
                out[d] = arr
        return out

    # ------------------------------------------------------------------- I/O
    def _state(self):
        return {"weights": self.weights_, "transition": self.transition_, "transition_mask": self.transition_mask_}

    def _set_state(self, tensors):
        self.weights_, self.transition_ = tensors["weights"], tensors["transition"]
        self.transition_mask_ = tensors["transition_mask"]
