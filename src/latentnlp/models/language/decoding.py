"""Decoding from any left-to-right model given as a step function: greedy, ancestral sampling, beam search.

A model is seen through

    step_fn(tokens (B,), state) -> (log_probs (B, V), new_state)

where ``log_probs[b]`` is ``log p(next token | prefix_b)`` in nats (normalised, so every
entry is <= 0; ``-inf`` for tokens the model never emits) and ``state`` is a tensor whose
dimension 1 is the batch (an RNN's hidden state ``(L, B, H)``), or a tuple/list of such
states (an LSTM's ``(h, c)``; nesting is allowed). Anything per row that the step
function needs, a conditioning vector for instance, can ride along in the state as a
``(1, B, ...)`` tensor: beam search then reorders it with the hypotheses
(:func:`rnnlm_decoder` does this for :class:`~latentnlp.models.language.rnnlm.RNNLanguageModel`).

Every decoder starts each row from ``initial_state`` with ``bos_id`` as the first input
and returns the generated ids without ``<bos>`` and ``<eos>``. ``max_length`` is the
largest number of words (ids other than ``<eos>``) a hypothesis may hold:

* :func:`greedy_decode` and :func:`sample_decode` stop a row at its first ``<eos>`` or
  after ``max_length`` words (a truncated row then has no ``<eos>``);
* :func:`beam_search` / :func:`beam_search_nbest` score complete sentences only: at step
  ``max_length + 1`` every live hypothesis is closed with ``<eos>``, so each returned
  hypothesis has a score that includes ``log p(<eos> | words)``.

Beam search (the usual algorithm of e.g. fairseq, with an exact stopping rule): row ``b``
keeps ``K = beam_size`` live hypotheses, expanded together in one ``step_fn`` call per
step over ``B * K`` rows (hypothesis ``k`` of row ``b`` at ``b * K + k``; the state is
repeated and reordered with ``index_select`` along dimension 1). Of the ``K * V``
one-token extensions, ranked by total log-probability, the ``<eos>`` ones among the
first ``K`` ranks become finished hypotheses (kept aside) and the first ``K`` others
form the next beam. A hypothesis of ``n`` words has

    log_prob = log p(w_1 .. w_n <eos>)            (nats)
    score    = log_prob / (n + 1) ** length_penalty

(``n + 1`` predicted tokens, ``<eos>`` included; a simplified form of Wu et al. 2016's
``((5 + |Y|) / 6) ** alpha`` normaliser; ``length_penalty = 0`` ranks by probability,
``> 0`` favours longer outputs). A row stops once it holds ``K`` finished hypotheses and
the ``K``-th best score is at least the best score any live hypothesis could still reach
(an extension never raises the log-probability, so the bound is its current
log-probability divided by the most favourable remaining length): the returned n-best
list is then exactly what running to ``max_length`` would give. ``beam_size = 1`` is
greedy decoding (closed with ``<eos>``); a beam at least as large as the number of
extensions per step is an exhaustive search.

Everything runs under ``torch.no_grad``; the caller puts the model in eval mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Union

import torch

__all__ = [
    "DECODING_METHODS",
    "decode",
    "State",
    "StepFn",
    "Hypothesis",
    "greedy_decode",
    "sample_decode",
    "beam_search",
    "beam_search_nbest",
    "rnnlm_decoder",
]

State = Union[torch.Tensor, tuple, list]
StepFn = Callable[[torch.Tensor, State], "tuple[torch.Tensor, State]"]


@dataclass
class Hypothesis:
    """A finished beam-search hypothesis.

    Attributes:
        tokens: the word ids, without ``<bos>`` and ``<eos>``.
        log_prob: ``log p(tokens <eos>)``, nats.
        score: ``log_prob / (len(tokens) + 1) ** length_penalty``, what the beam ranks by.
    """

    tokens: list[int]
    log_prob: float
    score: float


# ---------------------------------------------------------------------- state helpers
def _leaves(state: State) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, (tuple, list)) and len(state) > 0:
        return [leaf for s in state for leaf in _leaves(s)]
    raise TypeError(f"a decoding state is a tensor or a non-empty tuple/list of them, got {type(state).__name__}")


def _batch_size(state: State) -> int:
    """``B``, the size of dimension 1 shared by every tensor of ``state``."""
    leaves = _leaves(state)
    if any(t.dim() < 2 for t in leaves):
        raise ValueError(f"state tensors need the batch on dimension 1, got shapes {[tuple(t.shape) for t in leaves]}")
    sizes = {int(t.shape[1]) for t in leaves}
    if len(sizes) != 1:
        raise ValueError(f"state tensors disagree on the batch size (dimension 1): {sorted(sizes)}")
    return sizes.pop()


def _select(state: State, index: torch.Tensor) -> State:
    """``state`` with rows ``index`` taken along dimension 1 (same nesting)."""
    if isinstance(state, torch.Tensor):
        return state.index_select(1, index.to(state.device))
    selected = [_select(s, index) for s in state]
    return tuple(selected) if isinstance(state, tuple) else selected


def _check_common(max_length: int, bos_id: int, eos_id: int) -> None:
    if int(max_length) < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length!r}")
    if bos_id < 0 or eos_id < 0:
        raise ValueError(f"bos_id and eos_id must be >= 0, got {bos_id} and {eos_id}")


def _check_log_probs(log_probs: torch.Tensor, rows: int, eos_id: int) -> None:
    if log_probs.dim() != 2 or log_probs.shape[0] != rows:
        raise ValueError(f"step_fn must return log-probabilities of shape ({rows}, V), got {tuple(log_probs.shape)}")
    if eos_id >= log_probs.shape[1]:
        raise ValueError(f"eos_id {eos_id} is outside the vocabulary of {log_probs.shape[1]} entries")


def _device(state: State) -> torch.device:
    return _leaves(state)[0].device


# ------------------------------------------------------------------- greedy, sampling
def _decode_rows(step_fn: StepFn, state: State, bos_id: int, eos_id: int, max_length: int,
                 choose: Callable[[torch.Tensor], torch.Tensor]) -> list[list[int]]:
    """One token per row per step chosen by ``choose(log_probs (B, V)) -> (B,)`` until ``<eos>`` or ``max_length`` words."""
    _check_common(max_length, bos_id, eos_id)
    B = _batch_size(state)
    tokens = torch.full((B,), bos_id, dtype=torch.long, device=_device(state))
    out: list[list[int]] = [[] for _ in range(B)]
    done = [False] * B
    for _ in range(int(max_length)):
        log_probs, state = step_fn(tokens, state)
        _check_log_probs(log_probs, B, eos_id)
        tokens = choose(log_probs).long()
        for b, t in enumerate(tokens.tolist()):
            if done[b]:
                continue
            if t == eos_id:
                done[b] = True
            else:
                out[b].append(t)
        if all(done):
            break
    return out


@torch.no_grad()
def greedy_decode(step_fn: StepFn, initial_state: State, bos_id: int, eos_id: int, max_length: int) -> list[list[int]]:
    """The most probable next token at every step.

    Args:
        step_fn: ``(tokens (B,), state) -> (log_probs (B, V) nats, state)``; see the module docstring.
        initial_state: the state before ``<bos>``; a tensor ``(..., B, ...)`` (batch on dimension 1)
            or a tuple/list of them. ``B`` is read from it.
        bos_id: the first input of every row.
        eos_id: ends a row (not included in the output).
        max_length: at most this many words per row (``max_length`` calls of ``step_fn`` at most).

    Returns:
        ``B`` lists of word ids (no ``<bos>``/``<eos>``), each at most ``max_length`` long.

    Raises:
        ValueError: if ``max_length < 1``, the state has no consistent batch dimension, or
            ``step_fn`` returns log-probabilities of the wrong shape.
    """
    return _decode_rows(step_fn, initial_state, bos_id, eos_id, max_length, lambda lp: lp.argmax(dim=-1))


@torch.no_grad()
def sample_decode(step_fn: StepFn, initial_state: State, bos_id: int, eos_id: int, max_length: int,
                  generator: torch.Generator, temperature: float = 1.0) -> list[list[int]]:
    """Ancestral sampling: the next token of each row drawn from ``softmax(log_probs / temperature)``.

    ``temperature = 1`` samples the model's own distribution (a row's sentence ``w <eos>`` is
    drawn with probability ``p(w <eos>)``); lower values sharpen it towards greedy, higher
    values flatten it. Rows are independent draws; the same ``generator`` state gives the
    same output.

    Args:
        step_fn, initial_state, bos_id, eos_id, max_length: as in :func:`greedy_decode`.
        generator: the source of randomness (on the device of the log-probabilities).
        temperature: > 0.

    Returns:
        ``B`` lists of word ids (no ``<bos>``/``<eos>``), each at most ``max_length`` long.

    Raises:
        ValueError: as :func:`greedy_decode`, and if ``temperature`` is not a finite number > 0.
    """
    try:
        valid = math.isfinite(float(temperature)) and float(temperature) > 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    temperature = float(temperature)

    def choose(log_probs: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(log_probs.float() / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _decode_rows(step_fn, initial_state, bos_id, eos_id, max_length, choose)


# ------------------------------------------------------------------------ beam search
@torch.no_grad()
def beam_search_nbest(step_fn: StepFn, initial_state: State, bos_id: int, eos_id: int, max_length: int,
                      beam_size: int, length_penalty: float = 0.0) -> list[list[Hypothesis]]:
    """Beam search returning, per row, up to ``beam_size`` finished hypotheses, best first.

    See the module docstring for the algorithm, the score and the stopping rule.

    Args:
        step_fn: ``(tokens (B*K,), state) -> (log_probs (B*K, V) nats, state)``, ``K = beam_size``;
            called at most ``max_length + 1`` times. The log-probabilities must be normalised
            (<= 0) for the early stop to be exact.
        initial_state: the state of the ``B`` rows before ``<bos>`` (batch on dimension 1).
        bos_id: the first input of every hypothesis.
        eos_id: closes a hypothesis (not included in its ``tokens``).
        max_length: at most this many words per hypothesis.
        beam_size: ``K`` live hypotheses per row.
        length_penalty: ``alpha`` in ``score = log_prob / (words + 1) ** alpha``; 0 ranks by log-probability.

    Returns:
        ``B`` lists of :class:`Hypothesis`, sorted by ``score`` (best first), at most
        ``beam_size`` each; a row whose model never gives ``<eos>`` a positive probability
        gets an empty list.

    Raises:
        ValueError: if ``max_length < 1``, ``beam_size < 1``, ``length_penalty`` is not finite,
            or the state / log-probabilities have inconsistent shapes.
    """
    _check_common(max_length, bos_id, eos_id)
    if int(beam_size) < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size!r}")
    if not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be a finite number, got {length_penalty!r}")
    K, alpha, max_steps = int(beam_size), float(length_penalty), int(max_length) + 1
    B = _batch_size(initial_state)
    device = _device(initial_state)
    rows = torch.arange(B, device=device)
    state = _select(initial_state, rows.repeat_interleave(K))
    tokens = torch.full((B * K,), bos_id, dtype=torch.long, device=device)
    # Only hypothesis 0 of each row is alive at the start: the others would duplicate it.
    scores = torch.full((B, K), -math.inf, dtype=torch.float64, device=device)
    scores[:, 0] = 0.0
    history = torch.zeros(B, K, 0, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=device)

    def finish(b: int, k: int, log_prob: float, n_words: int) -> None:
        words = history[b, k].tolist()[:n_words]
        finished[b].append(Hypothesis(words, log_prob, log_prob / (n_words + 1) ** alpha))

    for t in range(1, max_steps + 1):  # t: number of tokens predicted after this step
        log_probs, new_state = step_fn(tokens, state)
        _check_log_probs(log_probs, B * K, eos_id)
        V = log_probs.shape[1]
        total = scores.unsqueeze(-1) + log_probs.reshape(B, K, V).double()  # (B, K, V)
        if t == max_steps:  # close every live hypothesis with <eos>
            closing = total[..., eos_id]
            for b, k in torch.nonzero(torch.isfinite(closing) & ~done.unsqueeze(1)).tolist():
                finish(b, k, float(closing[b, k]), t - 1)
            break
        n_cand = min(2 * K, K * V)
        top, flat = total.view(B, K * V).topk(n_cand, dim=1)  # (B, n_cand), best first
        source, token = flat // V, flat % V
        is_eos = token == eos_id
        # <eos> extensions ranked among the first K become finished hypotheses.
        closing = is_eos[:, :K] & torch.isfinite(top[:, :K]) & ~done.unsqueeze(1)
        for b, r in torch.nonzero(closing).tolist():
            finish(b, int(source[b, r]), float(top[b, r]), t - 1)
        # The first K other extensions form the next beam (rank order kept).
        rank = torch.arange(n_cand, device=device).expand(B, n_cand)
        order = (rank + n_cand * is_eos.long()).argsort(dim=1)[:, :K]
        scores = top.gather(1, order).masked_fill(is_eos.gather(1, order), -math.inf)
        source, token = source.gather(1, order), token.gather(1, order)
        history = torch.cat([history.gather(1, source.unsqueeze(-1).expand(-1, -1, history.shape[2])),
                             token.unsqueeze(-1)], dim=2)
        state = _select(new_state, (rows.unsqueeze(1) * K + source).view(-1))
        tokens = token.view(-1)
        # Stop a row once K finished hypotheses beat anything its live ones can still reach.
        best_live = scores.max(dim=1).values  # (B,) log-probability, <= 0
        for b in range(B):
            if done[b]:
                continue
            live = float(best_live[b])
            if live == -math.inf:
                done[b] = True
                continue
            if len(finished[b]) < K:
                continue
            # A live hypothesis (t words) closes with t + 1 .. max_steps predicted tokens; s / L**alpha is
            # monotone in L, so its best reachable score is at one end of that range.
            reach = max(live / (t + 1) ** alpha, live / max_steps**alpha)
            kth = sorted((h.score for h in finished[b]), reverse=True)[K - 1]
            if kth >= reach:
                done[b] = True
        if bool(done.all()):
            break
    return [sorted(hyps, key=lambda h: h.score, reverse=True)[:K] for hyps in finished]


def beam_search(step_fn: StepFn, initial_state: State, bos_id: int, eos_id: int, max_length: int,
                beam_size: int, length_penalty: float = 0.0) -> list[list[int]]:
    """The best beam-search hypothesis of each row (see :func:`beam_search_nbest` for arguments and errors).

    Returns:
        ``B`` lists of word ids (no ``<bos>``/``<eos>``), each at most ``max_length`` long; the
        sentence they form with ``<eos>`` has the highest ``score`` the beam found.
    """
    nbest = beam_search_nbest(step_fn, initial_state, bos_id, eos_id, max_length, beam_size, length_penalty)
    return [hyps[0].tokens if hyps else [] for hyps in nbest]


# ------------------------------------------------------------------ model adapters
def rnnlm_decoder(model, batch_size: int, context: torch.Tensor | None = None) -> tuple[StepFn, State]:
    """``(step_fn, initial_state)`` for a model with ``step(tokens, state, context)`` and ``initial_state(B, context)``.

    Fits :class:`~latentnlp.models.language.rnnlm.RNNLanguageModel`. A ``(B, context_dim)``
    ``context`` is carried in the state as ``(1, B, context_dim)``, so beam search keeps each
    hypothesis with its own row's context. Put the model in eval mode first (dropout).
    """
    state = model.initial_state(batch_size, context)
    if context is None:
        return (lambda tokens, s: model.step(tokens, s)), state

    def step_fn(tokens: torch.Tensor, s: State) -> tuple[torch.Tensor, State]:
        inner, ctx = s
        log_probs, inner = model.step(tokens, inner, ctx[0])
        return log_probs, (inner, ctx)

    return step_fn, (state, context.unsqueeze(0))


DECODING_METHODS = ("greedy", "sample", "beam")


def decode(model, n: int, context: torch.Tensor | None = None, method: str = "greedy", bos_id: int = 1, eos_id: int = 2,
           max_length: int = 50, generator: torch.Generator | None = None, beam_size: int = 5,
           temperature: float = 1.0) -> list[list[int]]:
    """``n`` sentences from a language model (optionally conditioned on ``context`` ``(n, C)``), by ``method``.

    ``method`` is ``"greedy"``, ``"sample"`` (ancestral, at ``temperature``, from ``generator``) or
    ``"beam"`` (``beam_size`` hypotheses, best total log-probability). Puts ``model`` in eval mode.

    Raises:
        ValueError: for an unknown ``method`` (and the errors of the decoder chosen).
    """
    if method not in DECODING_METHODS:
        raise ValueError(f"method must be one of {DECODING_METHODS}, got {method!r}")
    model.eval()
    step_fn, state = rnnlm_decoder(model, n, context)
    if method == "greedy":
        return greedy_decode(step_fn, state, bos_id, eos_id, max_length)
    if method == "sample":
        return sample_decode(step_fn, state, bos_id, eos_id, max_length, generator, temperature=temperature)
    return beam_search(step_fn, state, bos_id, eos_id, max_length, beam_size)
