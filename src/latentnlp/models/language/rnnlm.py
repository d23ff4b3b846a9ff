"""Recurrent language models: Elman RNN, LSTM and GRU, sentence-level or continuous.

    p(w_1 .. w_n <eos>) = prod_t softmax(W_out h_t + b)[w_t],   h_t = RNN(e(w_{t-1}), h_{t-1})

(Mikolov et al. 2010; Zaremba, Sutskever & Vinyals 2014 for the LSTM with dropout on
the non-recurrent connections: after the embedding, between layers and before the
softmax; Press & Wolf 2017 / Inan et al. 2017 for tied input and output embeddings).

Two ways to feed the model, both trained by the shared
:class:`~latentnlp.training.trainer.Trainer`:

* **sentence-level** (:class:`~latentnlp.data.sentences.SentenceBatch`): every sentence
  starts from the zero state (or from a conditioning vector ``context``: the sentence
  VAE's decoder, Bowman et al. 2016 Sec. 3) with ``<bos>`` as its first input and
  predicts its words and ``<eos>``. The loss is the per-sentence NLL, nats.
* **continuous** (:class:`StreamWindow`): ``B`` parallel streams of the whole corpus cut
  into windows of ``bptt`` steps; the state is carried from one window to the next
  (detached: truncated BPTT) and reset at the start of each epoch. The loss is, as in
  Zaremba et al.'s code, the NLL summed over the window's steps and averaged over the
  streams (nats per stream-window); ``nll_per_token`` is reported beside it.

Output layer: one softmax over the vocabulary, or the **adaptive softmax** of Grave, Joulin,
Cisse, Grangier & Jegou (2017) when ``softmax_cutoffs = (c_1, .., c_k)`` are given. Ids are
words by decreasing training frequency (after the four special entries), so the head
``[0, c_1)`` holds the frequent words; it also scores one entry per tail cluster
``[c_i, c_{i+1})`` (``c_{k+1} = V``), and

    p(w) = softmax(head)[w]                                        for w < c_1
    p(w) = softmax(head)[c_1 + i] * softmax(W_i h + b_i)[w - c_i]   for w in cluster i

with ``W_i``, ``b_i`` the rows of the ordinary output layer for cluster ``i`` (so tied
embeddings stay tied; only the ``k`` cluster scores are new parameters). The likelihood is
exact (every ``p`` sums to 1 over the vocabulary); training computes a tail softmax only for
the tokens whose target lies in that tail, which is where the time goes with ``V = 10,000``.
Ids 0 (``<pad>``) and 1 (``<bos>``) are never predicted: their logits are fixed at -inf.
Shapes: ``B`` sentences or streams, ``T`` steps, ``V`` vocabulary, ``H`` hidden units,
``L`` layers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ...data.sentences import N_NEVER_PREDICTED, SentenceBatch

__all__ = ["RNNLMConfig", "RNNLanguageModel", "StreamWindow", "stream_windows"]

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
# config fields that fix the shapes of an LM's weights (shared with the sentence VAE's decoder)
NETWORK_FIELDS = ("vocab_size", "cell", "embedding_dim", "hidden_dim", "num_layers", "tie_weights", "softmax_cutoffs")

State = "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"


@dataclass
class RNNLMConfig:
    """Architecture of a recurrent language model.

    Attributes:
        vocab_size: ``V``, special entries included (see :mod:`latentnlp.data.sentences`).
        cell: ``"rnn"`` (Elman, tanh), ``"lstm"`` or ``"gru"``.
        embedding_dim: input embedding size (Zaremba small: 200).
        hidden_dim: ``H`` units per layer (Zaremba small: 200; medium 650).
        num_layers: stacked recurrent layers ``L`` (Zaremba: 2).
        dropout: dropout probability on non-recurrent connections (Zaremba small: 0; medium 0.5).
        tie_weights: share the input embedding with the output layer (needs
            ``embedding_dim == hidden_dim``).
        init_range: weights start uniform in ``[-init_range, init_range]`` (Zaremba: 0.1 small, 0.05 medium).
        context_dim: size of a conditioning vector that sets the initial hidden state of
            every layer through ``tanh(W c + b)`` (the sentence VAE's ``z``); 0: none.
        feed_context: also concatenate the context vector to the input at every step.
        softmax_cutoffs: ``(c_1 < .. < c_k)`` vocabulary ids where the adaptive softmax's
            tail clusters start (module docstring; Grave et al. 2017); ``()``: one full
            softmax. Needs ``N_NEVER_PREDICTED < c_1`` and ``c_k < vocab_size``.
    """

    vocab_size: int
    cell: str = "lstm"
    embedding_dim: int = 200
    hidden_dim: int = 200
    num_layers: int = 2
    dropout: float = 0.0
    tie_weights: bool = False
    init_range: float = 0.1
    context_dim: int = 0
    feed_context: bool = False
    softmax_cutoffs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.softmax_cutoffs = check_cutoffs(self.softmax_cutoffs, self.vocab_size, "RNNLMConfig.softmax_cutoffs")
        if self.cell not in CELLS:
            raise ValueError(f"RNNLMConfig.cell must be one of {sorted(CELLS)}, got {self.cell!r}")
        for name in ("vocab_size", "embedding_dim", "hidden_dim", "num_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RNNLMConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.vocab_size <= N_NEVER_PREDICTED:
            raise ValueError(f"RNNLMConfig.vocab_size must exceed {N_NEVER_PREDICTED} (pad and bos), got {self.vocab_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"RNNLMConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.tie_weights and self.embedding_dim != self.hidden_dim:
            raise ValueError(
                f"tie_weights needs embedding_dim == hidden_dim, got {self.embedding_dim} and {self.hidden_dim}"
            )
        if self.context_dim < 0:
            raise ValueError(f"RNNLMConfig.context_dim must be >= 0, got {self.context_dim}")
        if self.feed_context and self.context_dim == 0:
            raise ValueError("feed_context needs context_dim > 0")
        if not self.init_range > 0:
            raise ValueError(f"RNNLMConfig.init_range must be > 0, got {self.init_range!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "softmax_cutoffs": list(self.softmax_cutoffs)}


def check_cutoffs(cutoffs, vocab_size: int, name: str) -> tuple[int, ...]:
    """``cutoffs`` as a tuple of ints, validated for a vocabulary of ``vocab_size``; ``ValueError`` names ``name``."""
    try:
        values = tuple(int(c) for c in cutoffs)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of vocabulary ids, got {cutoffs!r}") from None
    if values and (values[0] <= N_NEVER_PREDICTED or values[-1] >= vocab_size
                   or any(b <= a for a, b in zip(values, values[1:]))):
        raise ValueError(f"{name} must increase strictly within ({N_NEVER_PREDICTED}, {vocab_size}), got {cutoffs!r}")
    return values


@dataclass
class StreamWindow:
    """One window of continuous training: ``inputs``/``targets`` ``(B, T)``; ``reset`` starts from the zero state."""

    inputs: torch.Tensor
    targets: torch.Tensor
    reset: bool = False

    def __len__(self) -> int:
        return 1  # one training example for the Trainer: the window of all streams


def stream_windows(stream: torch.Tensor, bptt: int) -> list[tuple[int, int]]:
    """``[(start, stop)]`` input column ranges of consecutive windows over a ``(B, L)`` stream.

    Window ``k`` reads inputs ``stream[:, start:stop]`` and targets ``stream[:, start+1:stop+1]``;
    together they predict every token but the first of each stream.
    """
    if bptt < 1:
        raise ValueError(f"bptt must be >= 1, got {bptt}")
    n = stream.shape[1] - 1
    return [(s, min(s + bptt, n)) for s in range(0, n, bptt)]


class RNNLanguageModel(nn.Module):
    """A recurrent language model (see the module docstring).

    Args:
        config: an :class:`RNNLMConfig`.
    """

    def __init__(self, config: RNNLMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_dim)
        rnn_input = c.embedding_dim + (c.context_dim if c.feed_context else 0)
        kwargs = {"nonlinearity": "tanh"} if c.cell == "rnn" else {}
        self.rnn = CELLS[c.cell](rnn_input, c.hidden_dim, c.num_layers, batch_first=True,
                                 dropout=c.dropout if c.num_layers > 1 else 0.0, **kwargs)
        self.drop = nn.Dropout(c.dropout)
        self.output = nn.Linear(c.hidden_dim, c.vocab_size)
        if c.tie_weights:
            self.output.weight = self.embedding.weight
        self.context_to_state = nn.Linear(c.context_dim, c.num_layers * c.hidden_dim) if c.context_dim else None
        # adaptive softmax: one head score per tail cluster (the words' rows are self.output's)
        self.cluster = nn.Linear(c.hidden_dim, len(c.softmax_cutoffs)) if c.softmax_cutoffs else None
        blocked = torch.zeros(c.vocab_size, dtype=torch.bool)
        blocked[:N_NEVER_PREDICTED] = True
        self.register_buffer("_blocked", blocked, persistent=False)
        self._stream_state: State | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r = self.config.init_range
        for p in self.parameters():
            nn.init.uniform_(p, -r, r)

    # ------------------------------------------------------------ building blocks
    def initial_state(self, batch_size: int, context: torch.Tensor | None = None) -> State:
        """The state before the first input: zeros, or ``h_0 = tanh(W context + b)`` per layer (LSTM: ``c_0 = 0``).

        Args:
            batch_size: ``B``.
            context: ``(B, context_dim)`` or ``None``.
        """
        c = self.config
        if context is not None and self.context_to_state is None:
            raise ValueError("this model has no context input (context_dim = 0)")
        zeros = self.output.weight.new_zeros(c.num_layers, batch_size, c.hidden_dim)
        if context is None:
            h = zeros
        else:
            if context.shape != (batch_size, c.context_dim):
                raise ValueError(f"context must have shape ({batch_size}, {c.context_dim}), got {tuple(context.shape)}")
            h = torch.tanh(self.context_to_state(context)).view(batch_size, c.num_layers, c.hidden_dim).transpose(0, 1).contiguous()
        return (h, zeros) if c.cell == "lstm" else h

    def _inputs(self, tokens: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        emb = self.drop(self.embedding(tokens))
        if self.config.feed_context:
            if context is None:
                raise ValueError("feed_context models need their context vector at every call")
            emb = torch.cat([emb, context.unsqueeze(1).expand(-1, tokens.shape[1], -1)], dim=-1)
        return emb

    def run(self, tokens: torch.Tensor, state: State | None = None, context: torch.Tensor | None = None,
            lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """Hidden outputs of the top layer (after dropout) for input ids.

        Args:
            tokens: ``(B, T)`` input ids.
            state: the state before ``tokens`` (default :meth:`initial_state` of ``context``).
            context: ``(B, context_dim)``, for conditioned models.
            lengths: ``(B,)`` valid steps per row; padded steps are skipped (packed sequence).

        Returns:
            ``(outputs (B, T, H), state after the last valid step)``.
        """
        if state is None:
            state = self.initial_state(tokens.shape[0], context)
        x = self._inputs(tokens, context)
        if lengths is None:
            out, state = self.rnn(x, state)
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, state = self.rnn(packed, state)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
        return self.drop(out), state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(..., H) -> (..., V)`` output scores, ``log p`` up to a constant; ``<pad>`` and ``<bos>`` get -inf."""
        if self.cluster is not None:
            return self.log_probs(hidden)
        return self.output(hidden).masked_fill(self._blocked, float("-inf"))

    def _head_log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """Adaptive softmax: ``(N, H) -> (N, c_1 + k)``, log-probabilities of the head words and clusters."""
        head = self.config.softmax_cutoffs[0]
        words = F.linear(hidden, self.output.weight[:head], self.output.bias[:head])
        words = words.masked_fill(self._blocked[:head], float("-inf"))
        return F.log_softmax(torch.cat([words, self.cluster(hidden)], dim=-1), dim=-1)

    def _clusters(self):
        """``(i, lo, hi)`` for each adaptive-softmax tail cluster ``[lo, hi)``."""
        bounds = (*self.config.softmax_cutoffs, self.config.vocab_size)
        return [(i, lo, hi) for i, (lo, hi) in enumerate(zip(bounds, bounds[1:]))]

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(..., H) -> (..., V)`` log-probabilities of the next token, nats."""
        if self.cluster is None:
            return F.log_softmax(self.logits(hidden), dim=-1)
        flat = hidden.reshape(-1, hidden.shape[-1])
        head = self._head_log_probs(flat)
        c1 = self.config.softmax_cutoffs[0]
        parts = [head[:, :c1]]
        for i, lo, hi in self._clusters():
            tail = F.log_softmax(F.linear(flat, self.output.weight[lo:hi], self.output.bias[lo:hi]), dim=-1)
            parts.append(head[:, c1 + i : c1 + i + 1] + tail)
        return torch.cat(parts, dim=-1).view(*hidden.shape[:-1], -1)

    def target_log_probs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``log p(target)`` for hidden outputs ``(N, H)`` and ids ``(N,)``: ``(N,)``, nats.

        With the adaptive softmax each tail's scores are computed only for the rows whose
        target lies in it (the training speed-up); the values equal :meth:`log_probs` gathered.
        """
        if self.cluster is None:
            return -F.cross_entropy(self.logits(hidden), targets, reduction="none")
        head = self._head_log_probs(hidden)
        c1 = self.config.softmax_cutoffs[0]
        out = head.gather(1, targets.clamp(max=c1 - 1).unsqueeze(1)).squeeze(1)
        for i, lo, hi in self._clusters():
            rows = ((targets >= lo) & (targets < hi)).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            tail = F.log_softmax(F.linear(hidden[rows], self.output.weight[lo:hi], self.output.bias[lo:hi]), dim=-1)
            value = head[rows, c1 + i] + tail.gather(1, (targets[rows] - lo).unsqueeze(1)).squeeze(1)
            out = out.index_put((rows,), value)
        return out

    def step(self, tokens: torch.Tensor, state: State, context: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """One decoding step: ``tokens (B,)`` -> ``(log p(next | prefix) (B, V), new state)``."""
        out, state = self.run(tokens.unsqueeze(1), state, context)
        return self.log_probs(out[:, 0]), state

    def token_log_likelihood(self, batch: SentenceBatch, context: torch.Tensor | None = None,
                             state: State | None = None) -> torch.Tensor:
        """``(B, T)`` log p of each target token (0 on padding), nats.

        The output layer runs only on the valid positions, so padding costs no softmax.
        """
        out, _ = self.run(batch.inputs, state, context, lengths=batch.lengths)
        mask = batch.mask
        ll = self.target_log_probs(out[mask], batch.targets[mask])
        return torch.zeros(mask.shape, dtype=ll.dtype, device=ll.device).masked_scatter(mask, ll)

    def sentence_log_likelihood(self, batch: SentenceBatch, context: torch.Tensor | None = None,
                                state: State | None = None) -> torch.Tensor:
        """``(B,)`` log p(w_1 .. w_n <eos>) of each sentence, nats (exact; no latent variable)."""
        return self.token_log_likelihood(batch, context, state).sum(dim=1)

    # ------------------------------------------------------------------- training
    def optimization_phases(self, alternate: bool = False) -> dict[str, list[nn.Parameter]]:
        return {"all": list(self.parameters())}

    def forward(self, x: SentenceBatch | StreamWindow, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The Trainer's loss: per-sentence NLL ``(B,)``, or per stream-window NLL ``(1,)`` (see module docstring)."""
        if isinstance(x, SentenceBatch):
            nll = -self.sentence_log_likelihood(x)
            return {"loss": nll, "nll_per_token": nll / x.lengths.to(nll.dtype)}
        if isinstance(x, StreamWindow):
            state = None if x.reset else self._stream_state  # stored detached: truncated BPTT
            out, state = self.run(x.inputs, state)
            self._stream_state = _detach(state)
            nll = -self.target_log_probs(out.flatten(0, 1), x.targets.flatten()).sum()
            n_streams, steps = x.targets.shape
            return {"loss": (nll / n_streams).view(1), "nll_per_token": (nll / (n_streams * steps)).view(1)}
        raise TypeError(f"RNNLanguageModel takes a SentenceBatch or a StreamWindow, got {type(x).__name__}")

    # ----------------------------------------------------------------- evaluation
    @torch.no_grad()
    def stream_log_likelihood(self, stream: torch.Tensor, bptt: int = 200) -> tuple[float, int]:
        """Total log-likelihood (nats) and count of the tokens ``stream[:, 1:]``, state carried throughout.

        Args:
            stream: ``(B, L)`` ids (one row: the whole test corpus, as Zaremba et al. evaluate).
            bptt: window length (affects speed only).
        """
        was_training = self.training
        self.eval()
        state, total, count = None, 0.0, 0
        for start, stop in stream_windows(stream, bptt):
            out, state = self.run(stream[:, start:stop], state)
            targets = stream[:, start + 1 : stop + 1]
            total += float(self.target_log_probs(out.flatten(0, 1), targets.flatten()).sum())
            count += targets.numel()
        self.train(was_training)
        return total, count


def _detach(state: State) -> State:
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def sentence_batches(n: int, lengths: Iterable[int], batch_size: int) -> list[list[int]]:
    """Indices ``0..n-1`` sorted by length and cut into batches (evaluation: little padding)."""
    order = sorted(range(n), key=list(lengths).__getitem__)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def perplexities(log_likelihood: torch.Tensor, n_words: torch.Tensor) -> dict[str, float]:
    """Corpus figures from per-sentence ``log p`` ``(S,)`` (nats) and word counts ``(S,)`` (``<eos>`` excluded).

    Returns ``nll_per_sentence`` (nats), ``perplexity`` (per token, one ``<eos>`` per sentence counted,
    Mikolov/Zaremba), ``perplexity_words`` (the same NLL over words only) and the counts.
    """
    from ...evaluation.perplexity import corpus_perplexity

    ll = torch.as_tensor(log_likelihood, dtype=torch.float64)
    words = torch.as_tensor(n_words, dtype=torch.float64)
    return {
        "nll_per_sentence": float(-ll.mean()),
        "nll_per_token": float(-ll.sum() / (words.sum() + len(words))),
        "perplexity": corpus_perplexity(ll, words + 1),
        "perplexity_words": math.exp(float(-ll.sum() / words.sum())),
        "n_sentences": int(len(words)),
        "n_tokens": int(words.sum()) + len(words),
    }


@torch.no_grad()
def evaluate_sentences(model: RNNLanguageModel, ids: list[torch.Tensor], vocab, batch_size: int = 64) -> dict[str, float]:
    """Sentence-level test figures (:func:`perplexities`) of ``model`` on encoded sentences, each from the zero state."""
    from ...data.sentences import collate_sentences

    was_training = model.training
    model.eval()
    ll = torch.zeros(len(ids), dtype=torch.float64)
    for idx in sentence_batches(len(ids), (len(s) for s in ids), batch_size):
        ll[idx] = model.sentence_log_likelihood(collate_sentences([ids[i] for i in idx], vocab)).double()
    model.train(was_training)
    return perplexities(ll, torch.tensor([len(s) for s in ids]))
