"""Greedy decoding, ancestral sampling and beam search against brute-force enumeration of small chains."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from latentnlp.data.sentences import SentenceVocabulary, collate_sentences
from latentnlp.data.vocab import Vocabulary
from latentnlp.models.language.decoding import (
    beam_search,
    beam_search_nbest,
    greedy_decode,
    rnnlm_decoder,
    sample_decode,
)
from latentnlp.models.language.rnnlm import RNNLanguageModel, RNNLMConfig

pytestmark = pytest.mark.usefixtures("one_thread")

BOS, EOS = 0, 1
V = 5  # 0 <bos> (input only), 1 <eos>, 2..4 words
WORDS = (2, 3, 4)


class Chain:
    """A second-order Markov chain per batch row: ``log p(next | prev2, prev1) = table[row, prev2, prev1, next]``.

    The state is ``(row (1, B), prev2 (1, B))``: a tuple whose second entry depends on the
    path, so a beam that reorders the state wrongly gets wrong probabilities.
    """

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table.double()  # (C, V, V, V)
        self.calls = 0

    @classmethod
    def random(cls, n_rows: int, seed: int, scale: float = 1.5) -> "Chain":
        g = torch.Generator().manual_seed(seed)
        logits = scale * torch.randn(n_rows, V, V, V, generator=g, dtype=torch.float64)
        logits[..., BOS] = -math.inf
        return cls(torch.log_softmax(logits, dim=-1))

    @classmethod
    def first_order(cls, probs: list[list[float]]) -> "Chain":
        """``probs[prev][next]`` for every row (one row)."""
        log_p = torch.tensor(probs, dtype=torch.float64).log()
        return cls(log_p.expand(1, V, V, V).clone())

    def initial_state(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor([rows]), torch.full((1, len(rows)), BOS)

    def step(self, tokens, state):
        self.calls += 1
        row, prev2 = state
        return self.table[row[0], prev2[0], tokens], (row, tokens.unsqueeze(0))

    # ------------------------------------------------ references, one sequence at a time
    def log_prob(self, row: int, words: tuple[int, ...], close: bool = True) -> float:
        t = self.table[row].tolist()
        seq = (BOS, BOS) + tuple(words) + ((EOS,) if close else ())
        return sum(t[seq[i - 2]][seq[i - 1]][seq[i]] for i in range(2, len(seq)))

    def all_sentences(self, row: int, max_length: int) -> dict[tuple[int, ...], float]:
        """``log p(w <eos>)`` of every word sequence of at most ``max_length`` words."""
        return {w: self.log_prob(row, w) for n in range(max_length + 1) for w in itertools.product(WORDS, repeat=n)}

    def greedy(self, row: int, max_length: int) -> list[int]:
        t = self.table[row]
        prev2, prev1, out = BOS, BOS, []
        for _ in range(max_length):
            nxt = int(t[prev2, prev1].argmax())
            if nxt == EOS:
                break
            out.append(nxt)
            prev2, prev1 = prev1, nxt
        return out


# ----------------------------------------------------------------------------- greedy
def test_greedy_follows_argmax_path():
    chain = Chain.random(6, seed=0)
    rows = [0, 1, 2, 3, 4, 5, 2]
    out = greedy_decode(chain.step, chain.initial_state(rows), BOS, EOS, max_length=7)
    assert out == [chain.greedy(r, 7) for r in rows]
    assert len({tuple(o) for o in out}) > 2  # the rows really differ


def test_greedy_truncates_at_max_length():
    # eos is never the argmax: every row runs to max_length words.
    probs = [[0, 0.1, 0.5, 0.2, 0.2]] * V
    chain = Chain.first_order(probs)
    out = greedy_decode(chain.step, chain.initial_state([0, 0]), BOS, EOS, max_length=4)
    assert out == [[2, 2, 2, 2]] * 2
    assert chain.calls == 4


# ------------------------------------------------------------------------ beam search
@pytest.mark.parametrize("length_penalty", [0.0, 0.7, 1.5])
def test_exhaustive_beam_is_brute_force(length_penalty):
    """Beam 128 >= every step's 4 * 27 extensions: the n-best list is every sentence, in exact order."""
    chain = Chain.random(4, seed=1)
    rows, max_length = [0, 1, 2, 3], 4
    nbest = beam_search_nbest(chain.step, chain.initial_state(rows), BOS, EOS, max_length, 128, length_penalty)
    best = beam_search(chain.step, chain.initial_state(rows), BOS, EOS, max_length, 128, length_penalty)
    for b, r in enumerate(rows):
        sentences = chain.all_sentences(r, max_length)
        assert len(sentences) == 121
        score = {w: lp / (len(w) + 1) ** length_penalty for w, lp in sentences.items()}
        ranked = sorted(score, key=score.get, reverse=True)
        assert best[b] == list(ranked[0])
        assert [tuple(h.tokens) for h in nbest[b]] == ranked
        for h in nbest[b]:
            assert h.log_prob == pytest.approx(sentences[tuple(h.tokens)], abs=1e-9)
            assert h.score == pytest.approx(score[tuple(h.tokens)], abs=1e-9)
    # The penalty changes which sentence wins somewhere (else this test could not tell them apart).
    if length_penalty == 1.5:
        plain = beam_search(chain.step, chain.initial_state(rows), BOS, EOS, max_length, 128)
        assert plain != best


def reference_beam(chain: Chain, row: int, max_length: int, K: int, alpha: float) -> list[tuple[tuple[int, ...], float]]:
    """The documented algorithm, one row in plain Python, run to ``max_length`` without early stopping."""
    live, finished = [((), 0.0)], []
    for t in range(1, max_length + 2):
        ext = []
        for words, lp in live:
            prev2, prev1 = ((BOS, BOS) + words)[-2:]
            for tok in (EOS,) + WORDS:
                ext.append((words, tok, lp + float(chain.table[row, prev2, prev1, tok])))
        if t == max_length + 1:
            finished += [(w, lp) for w, tok, lp in ext if tok == EOS]
            break
        ext.sort(key=lambda e: e[2], reverse=True)
        finished += [(w, lp) for w, tok, lp in ext[:K] if tok == EOS]
        live = [(w + (tok,), lp) for w, tok, lp in ext if tok != EOS][:K]
    finished.sort(key=lambda h: h[1] / (len(h[0]) + 1) ** alpha, reverse=True)
    return finished[:K]


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_early_stopping_changes_nothing(length_penalty):
    """The n-best list equals the plain algorithm's run to max_length (the stopping bound is safe)."""
    chain = Chain.random(8, seed=20, scale=2.0)
    rows = list(range(8))
    for K, max_length in [(1, 6), (2, 8), (3, 8), (5, 6)]:
        calls = chain.calls
        nbest = beam_search_nbest(chain.step, chain.initial_state(rows), BOS, EOS, max_length, K, length_penalty)
        for b in rows:
            ref = reference_beam(chain, b, max_length, K, length_penalty)
            assert [tuple(h.tokens) for h in nbest[b]] == [w for w, _ in ref], (K, max_length, b)
            assert [h.log_prob for h in nbest[b]] == pytest.approx([lp for _, lp in ref], abs=1e-9)
        if length_penalty == 0.0 and K <= 2:
            assert chain.calls - calls < max_length + 1  # and it did stop early


def test_beam_size_one_is_greedy():
    for seed in range(5):
        chain = Chain.random(5, seed=10 + seed, scale=1.0)
        state = chain.initial_state([0, 1, 2, 3, 4])
        assert beam_search(chain.step, state, BOS, EOS, 6, beam_size=1) == greedy_decode(chain.step, state, BOS, EOS, 6)


def test_beam_beats_greedy_where_greedy_is_myopic():
    #        bos  eos    a     b     c
    probs = [[0, 0.10, 0.50, 0.39, 0.01],   # after bos
             [0, 0.25, 0.25, 0.25, 0.25],   # after eos (unused)
             [0, 0.30, 0.35, 0.20, 0.15],   # after a: a keeps winning, eos never does
             [0, 0.90, 0.05, 0.03, 0.02],   # after b: almost surely the end
             [0, 0.50, 0.20, 0.20, 0.10]]   # after c
    chain = Chain.first_order(probs)
    state = chain.initial_state([0])
    assert greedy_decode(chain.step, state, BOS, EOS, 5) == [[2, 2, 2, 2, 2]]
    assert beam_search(chain.step, state, BOS, EOS, 5, beam_size=1) == [[2, 2, 2, 2, 2]]
    (hyps,) = beam_search_nbest(chain.step, state, BOS, EOS, 5, beam_size=2)
    assert hyps[0].tokens == [3]
    assert hyps[0].log_prob == pytest.approx(math.log(0.39 * 0.9))
    assert hyps[0].log_prob > chain.log_prob(0, (2,) * 5)


def test_beam_stops_early_once_nothing_live_can_win():
    # eos has probability 0.9 after every token: the 2 best sentences are the empty one and the best one-word one.
    probs = [[0, 0.9, 0.05, 0.03, 0.02]] * V
    chain = Chain.first_order(probs)
    (hyps,) = beam_search_nbest(chain.step, chain.initial_state([0]), BOS, EOS, max_length=30, beam_size=2)
    assert chain.calls == 2  # not 31
    assert [h.tokens for h in hyps] == [[], [2]]
    assert [h.log_prob for h in hyps] == pytest.approx([math.log(0.9), math.log(0.05 * 0.9)])


def test_beam_hypotheses_end_in_eos_at_max_length():
    # eos is rare: the beam still returns complete sentences, closed at max_length words.
    probs = [[0, 0.01, 0.5, 0.3, 0.19]] * V
    chain = Chain.first_order(probs)
    (hyps,) = beam_search_nbest(chain.step, chain.initial_state([0]), BOS, EOS, max_length=3, beam_size=3)
    assert chain.calls == 4
    assert len(hyps) == 3 and all(len(h.tokens) <= 3 for h in hyps)
    for h in hyps:
        assert h.log_prob == pytest.approx(chain.log_prob(0, tuple(h.tokens)))
    assert hyps[0].tokens == [2, 2, 2]


# --------------------------------------------------------------------------- sampling
def test_sampling_is_reproducible_with_a_seeded_generator():
    chain = Chain.random(3, seed=2, scale=0.5)
    state = chain.initial_state([0, 1, 2] * 10)
    a = sample_decode(chain.step, state, BOS, EOS, 8, torch.Generator().manual_seed(7))
    b = sample_decode(chain.step, state, BOS, EOS, 8, torch.Generator().manual_seed(7))
    c = sample_decode(chain.step, state, BOS, EOS, 8, torch.Generator().manual_seed(8))
    assert a == b
    assert a != c
    assert all(len(s) <= 8 and set(s) <= set(WORDS) for s in a)


def _assert_frequencies(counts: dict, probs: dict, n: int) -> None:
    for key, p in probs.items():
        sigma = math.sqrt(p * (1 - p) / n)
        assert abs(counts.get(key, 0) / n - p) < 5 * sigma + 1e-4, (key, counts.get(key, 0) / n, p)
    assert set(counts) <= set(probs)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_sampled_first_tokens_follow_the_model(temperature):
    chain = Chain.random(1, seed=3)
    n = 20_000
    out = sample_decode(chain.step, chain.initial_state([0] * n), BOS, EOS, 1,
                        torch.Generator().manual_seed(0), temperature=temperature)
    first = [s[0] if s else EOS for s in out]
    counts = {t: first.count(t) for t in set(first)}
    p = torch.softmax(chain.table[0, BOS, BOS] / temperature, dim=0)
    _assert_frequencies(counts, {t: float(p[t]) for t in (EOS,) + WORDS}, n)


def test_sampled_sentences_follow_the_model():
    """Whole outputs up to 2 words: ``p(<eos>)``, ``p(w <eos>)`` and ``p(w w' ...)`` (the path-dependent state matters)."""
    chain = Chain.random(1, seed=4, scale=0.8)
    n = 20_000
    out = sample_decode(chain.step, chain.initial_state([0] * n), BOS, EOS, 2, torch.Generator().manual_seed(1))
    counts: dict[tuple, int] = {}
    for s in out:
        counts[tuple(s)] = counts.get(tuple(s), 0) + 1
    probs = {(): math.exp(chain.log_prob(0, ()))}
    for w in WORDS:
        probs[(w,)] = math.exp(chain.log_prob(0, (w,)))
        for w2 in WORDS:
            probs[(w, w2)] = math.exp(chain.log_prob(0, (w, w2), close=False))
    assert sum(probs.values()) == pytest.approx(1.0)
    _assert_frequencies(counts, probs, n)


# ----------------------------------------------------------------------------- errors
def test_errors():
    chain = Chain.random(1, seed=5)
    state = chain.initial_state([0])
    g = torch.Generator()
    with pytest.raises(ValueError, match="max_length"):
        greedy_decode(chain.step, state, BOS, EOS, 0)
    with pytest.raises(ValueError, match="max_length"):
        sample_decode(chain.step, state, BOS, EOS, 0, g)
    with pytest.raises(ValueError, match="max_length"):
        beam_search(chain.step, state, BOS, EOS, 0, 2)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(chain.step, state, BOS, EOS, 3, 0)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search_nbest(chain.step, state, BOS, EOS, 3, -1)
    with pytest.raises(ValueError, match="length_penalty"):
        beam_search(chain.step, state, BOS, EOS, 3, 2, length_penalty=math.nan)
    for bad in (0.0, -1.0, math.nan, math.inf, "hot"):
        with pytest.raises(ValueError, match="temperature"):
            sample_decode(chain.step, state, BOS, EOS, 3, g, temperature=bad)
    with pytest.raises(TypeError, match="state"):
        greedy_decode(chain.step, None, BOS, EOS, 3)
    with pytest.raises(ValueError, match="batch"):
        greedy_decode(chain.step, (torch.zeros(1, 2), torch.zeros(1, 3)), BOS, EOS, 3)
    with pytest.raises(ValueError, match="shape"):
        greedy_decode(lambda t, s: (torch.zeros(len(t) + 1, V), s), state, BOS, EOS, 3)
    with pytest.raises(ValueError, match="eos_id"):
        beam_search(chain.step, state, BOS, V, 3, 2)


def test_no_autograd_graph():
    w = torch.zeros(V, requires_grad=True)
    seen = []

    def step(tokens, state):
        lp = torch.log_softmax(w.expand(len(tokens), V) + torch.arange(V) * 0.1, dim=-1)
        seen.append(lp.requires_grad)
        return lp, state

    beam_search(step, torch.zeros(1, 2), BOS, EOS, 2, 2)
    greedy_decode(step, torch.zeros(1, 2), BOS, EOS, 2)
    assert seen and not any(seen)


# ------------------------------------------------------------------ a real language model
def _vocab(n_words: int) -> SentenceVocabulary:
    return SentenceVocabulary(Vocabulary(("<pad>", "<bos>", "<eos>", "<unk>") + tuple(f"w{i}" for i in range(n_words)), unk="<unk>"))


def _lm(cell: str, vocab_size: int, seed: int = 0, eos_bias: float = 1.0, **kw) -> RNNLanguageModel:
    torch.manual_seed(seed)
    model = RNNLanguageModel(RNNLMConfig(vocab_size=vocab_size, cell=cell, embedding_dim=6, hidden_dim=8,
                                         num_layers=2, init_range=0.5, **kw))
    with torch.no_grad():
        model.output.bias[2] += eos_bias
    return model.eval()


def _sentence_ll(model, vocab, sentences, context=None) -> list[float]:
    batch = collate_sentences([torch.tensor(s, dtype=torch.long) for s in sentences], vocab)
    return model.sentence_log_likelihood(batch, context).tolist()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnnlm_greedy_sample_and_beam(cell):
    vocab = _vocab(4)
    model = _lm(cell, len(vocab))
    B, max_length = 6, 12
    step_fn, state = rnnlm_decoder(model, B)
    greedy = greedy_decode(step_fn, state, vocab.bos_id, vocab.eos_id, max_length)
    samples = sample_decode(step_fn, state, vocab.bos_id, vocab.eos_id, max_length, torch.Generator().manual_seed(0))
    beams = beam_search_nbest(step_fn, state, vocab.bos_id, vocab.eos_id, max_length, beam_size=4)
    for out in (greedy, samples, [h.tokens for hyps in beams for h in hyps]):
        assert all(len(s) <= max_length and all(t >= 3 for t in s) for s in out)  # no pad, bos or eos
    assert any(len(s) < max_length for s in samples)  # sampling stopped at eos
    # Greedy by the batched forward pass: every word is the argmax, and eos is next when it stopped.
    g = greedy[0]
    out, _ = model.run(torch.tensor([[vocab.bos_id] + g]))
    argmax = model.log_probs(out[0]).argmax(-1).tolist()
    assert argmax[: len(g)] == g
    assert len(g) == max_length or argmax[len(g)] == vocab.eos_id
    assert beam_search(step_fn, state, vocab.bos_id, vocab.eos_id, max_length, 1) == greedy
    # Beam scores are the model's sentence log-likelihoods (the reordered LSTM/GRU state is right).
    hyps = [h for row in beams for h in row]
    assert len(hyps) == B * 4
    assert [h.log_prob for h in hyps] == pytest.approx(_sentence_ll(model, vocab, [h.tokens for h in hyps]), abs=1e-4)
    assert all(row[0].log_prob >= row[-1].log_prob for row in beams)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnnlm_exhaustive_beam(cell):
    vocab = _vocab(2)  # words 3 (<unk>) and 4 and 5: 3 extensions + eos per step
    model = _lm(cell, len(vocab), seed=3, eos_bias=0.0)
    max_length = 3
    sentences = [list(w) for n in range(max_length + 1) for w in itertools.product((3, 4, 5), repeat=n)]
    ll = _sentence_ll(model, vocab, sentences)
    step_fn, state = rnnlm_decoder(model, 1)
    (hyps,) = beam_search_nbest(step_fn, state, vocab.bos_id, vocab.eos_id, max_length, beam_size=40)
    order = sorted(range(len(sentences)), key=ll.__getitem__, reverse=True)
    assert [h.tokens for h in hyps] == [sentences[i] for i in order]
    assert [h.log_prob for h in hyps] == pytest.approx([ll[i] for i in order], abs=1e-4)


def test_rnnlm_context_rides_in_the_state():
    vocab = _vocab(4)
    model = _lm("lstm", len(vocab), seed=0, eos_bias=0.0, context_dim=3, feed_context=True)
    context = torch.randn(3, 3, generator=torch.Generator().manual_seed(0)) * 3
    step_fn, state = rnnlm_decoder(model, 3, context)
    beams = beam_search_nbest(step_fn, state, vocab.bos_id, vocab.eos_id, 8, beam_size=3)
    tokens = [h.tokens for row in beams for h in row]
    rows = torch.tensor([b for b, row in enumerate(beams) for _ in row])
    expected = _sentence_ll(model, vocab, tokens, context[rows])
    assert [h.log_prob for row in beams for h in row] == pytest.approx(expected, abs=1e-4)
    assert len({tuple(tuple(h.tokens) for h in row) for row in beams}) == 3  # the context matters
    greedy = greedy_decode(step_fn, state, vocab.bos_id, vocab.eos_id, 8)
    assert beam_search(step_fn, state, vocab.bos_id, vocab.eos_id, 8, 1) == greedy
