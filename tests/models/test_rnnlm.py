"""The recurrent language model: exact likelihoods by the step function, padding, continuous mode, training."""

from __future__ import annotations

import math

import pytest
import torch

from latentnlp.data.sentences import SentenceVocabulary, batchify_stream, collate_sentences
from latentnlp.models.language.rnnlm import (
    RNNLanguageModel,
    RNNLMConfig,
    StreamWindow,
    evaluate_sentences,
    perplexities,
    stream_windows,
)
from latentnlp.training.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

V = 11  # 4 special entries and 7 words
CELLS = ["rnn", "lstm", "gru"]


def _model(cell: str = "lstm", seed: int = 0, train: bool = False, **kw) -> RNNLanguageModel:
    torch.manual_seed(seed)
    kw = {"vocab_size": V, "cell": cell, "embedding_dim": 6, "hidden_dim": 8, "num_layers": 2, "init_range": 0.4} | kw
    return RNNLanguageModel(RNNLMConfig(**kw)).train(train)


def _vocab() -> SentenceVocabulary:
    return SentenceVocabulary.build([[f"w{i}" for i in range(V - 4)]])


def _sentences(n: int = 5, seed: int = 0, max_len: int = 7) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (n,), generator=g).tolist()
    return [torch.randint(3, V, (k,), generator=g) for k in lengths]  # words and <unk>, never pad/bos/eos


@torch.no_grad()
def _step_by_step(model, sentence: torch.Tensor, context: torch.Tensor | None = None) -> float:
    """log p(w_1 .. w_n <eos>) by ``step``, one token at a time."""
    state = model.initial_state(1, context)
    inputs = [1] + sentence.tolist()
    targets = sentence.tolist() + [2]
    total = 0.0
    for x, y in zip(inputs, targets):
        log_probs, state = model.step(torch.tensor([x]), state, context)
        total += float(log_probs[0, y])
    return total


# ------------------------------------------------------------------ distributions
@pytest.mark.parametrize("cell", CELLS)
def test_next_token_distribution_sums_to_one_and_never_predicts_pad_or_bos(cell):
    model = _model(cell, context_dim=3)
    state = model.initial_state(4, torch.randn(4, 3))
    for tokens in ([1, 1, 1, 1], [5, 2, 3, 9]):
        log_probs, state = model.step(torch.tensor(tokens), state)
        assert log_probs.shape == (4, V)
        torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(4))
        assert (log_probs[:, :2] == -math.inf).all()
        assert torch.isfinite(log_probs[:, 2:]).all()


# --------------------------------------------------------------- exact likelihoods
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("context", ["none", "initial", "fed"])
def test_sentence_log_likelihood_is_the_sum_of_step_log_probs(cell, context):
    kw = {"none": {}, "initial": {"context_dim": 3}, "fed": {"context_dim": 3, "feed_context": True}}[context]
    model = _model(cell, seed=1, **kw)
    sentences = _sentences(4, seed=1)
    ctx = None if context == "none" else torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    batch = collate_sentences(sentences, _vocab())
    ll = model.sentence_log_likelihood(batch, ctx)
    assert ll.shape == (4,)
    expected = [_step_by_step(model, s, None if ctx is None else ctx[i : i + 1]) for i, s in enumerate(sentences)]
    torch.testing.assert_close(ll, torch.tensor(expected), atol=1e-5, rtol=1e-5)
    if ctx is None:  # the Trainer's loss is its negation, per sentence
        out = model(batch)
        torch.testing.assert_close(out["loss"], -ll)
        torch.testing.assert_close(out["nll_per_token"], -ll / batch.lengths)


# ----------------------------------------------------------------- adaptive softmax
@pytest.mark.parametrize("cell, tie", [("lstm", False), ("gru", True)])
def test_adaptive_softmax_is_the_factorised_distribution_by_hand(cell, tie):
    sizes = {"embedding_dim": 8, "tie_weights": True} if tie else {}
    model = _model(cell, seed=4, softmax_cutoffs=(5, 8), **sizes)
    assert model.cluster.weight.shape == (2, 8)
    if tie:
        assert model.output.weight is model.embedding.weight
    h = torch.randn(6, 8, generator=torch.Generator().manual_seed(5))
    log_probs = model.log_probs(h)
    assert log_probs.shape == (6, V)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(6))
    assert (log_probs[:, :2] == -math.inf).all() and torch.isfinite(log_probs[:, 2:]).all()
    with torch.no_grad():  # p(w) = p(head entry) for w < 5, p(cluster i) p(w | cluster i) otherwise
        scores = h @ model.output.weight.T + model.output.bias  # (6, V)
        head = torch.cat([scores[:, :5], h @ model.cluster.weight.T + model.cluster.bias], dim=1)
        head[:, :2] = -math.inf
        head = head.log_softmax(-1)
        expected = torch.cat([head[:, :5], head[:, 5:6] + scores[:, 5:8].log_softmax(-1),
                              head[:, 6:7] + scores[:, 8:].log_softmax(-1)], dim=1)
    torch.testing.assert_close(log_probs, expected)
    targets = torch.tensor([2, 4, 5, 7, 8, 10])  # head, head, first cluster (twice), second cluster (twice)
    picked = model.target_log_probs(h, targets)
    torch.testing.assert_close(picked, expected.gather(1, targets[:, None]).squeeze(1))
    (-picked.sum()).backward()
    assert model.cluster.weight.grad.abs().sum() > 0
    torch.testing.assert_close(model.logits(h).log_softmax(-1), log_probs)


@pytest.mark.parametrize("cell", CELLS)
def test_adaptive_softmax_sentence_and_stream_likelihoods_are_the_step_by_step_ones(cell):
    model = _model(cell, seed=6, softmax_cutoffs=(6,), context_dim=3)
    sentences = _sentences(4, seed=7)
    ctx = torch.randn(4, 3, generator=torch.Generator().manual_seed(8))
    ll = model.sentence_log_likelihood(collate_sentences(sentences, _vocab()), ctx)
    expected = [_step_by_step(model, s, ctx[i : i + 1]) for i, s in enumerate(sentences)]
    torch.testing.assert_close(ll, torch.tensor(expected), atol=1e-5, rtol=1e-5)
    plain = _model(cell, seed=6, softmax_cutoffs=(6,))
    stream = _stream()
    window = StreamWindow(stream[:, :-1], stream[:, 1:], reset=True)
    out, _ = plain.run(window.inputs)
    by_gather = plain.log_probs(out).gather(2, window.targets.unsqueeze(2)).sum()
    torch.testing.assert_close(plain(window)["loss"], -by_gather.view(1) / stream.shape[0])


@pytest.mark.parametrize("cell", CELLS)
def test_padding_does_not_change_a_sentence_log_likelihood(cell):
    model = _model(cell, seed=2)
    vocab = _vocab()
    long, short = torch.tensor([4, 5, 6, 7, 8, 9, 10, 4]), torch.tensor([6, 3])
    together = model.sentence_log_likelihood(collate_sentences([long, short], vocab))
    together_reversed = model.sentence_log_likelihood(collate_sentences([short, long], vocab))
    alone = torch.cat([model.sentence_log_likelihood(collate_sentences([s], vocab)) for s in (long, short)])
    torch.testing.assert_close(together, alone)
    torch.testing.assert_close(together_reversed, alone.flip(0))
    tokens = model.token_log_likelihood(collate_sentences([long, short], vocab))
    assert (tokens[1, 3:] == 0).all() and (tokens[1, :3] < 0).all()


# ----------------------------------------------------------------- continuous mode
def _stream(n_streams: int = 2, seed: int = 3) -> torch.Tensor:
    return batchify_stream(_sentences(12, seed=seed), _vocab(), n_streams)


@pytest.mark.parametrize("cell", CELLS)
@torch.no_grad()
def test_stream_log_likelihood_carries_the_state(cell):
    model = _model(cell, seed=4, init_range=1.0)  # weights large enough for a long memory
    stream = _stream()
    B, L = stream.shape
    totals = {}
    for bptt in (1, 3, 7, 1000):
        totals[bptt], count = model.stream_log_likelihood(stream, bptt)
        assert count == B * (L - 1)
    assert totals[1] == pytest.approx(totals[1000], abs=1e-3)
    assert totals[3] == pytest.approx(totals[1000], abs=1e-3)
    assert totals[7] == pytest.approx(totals[1000], abs=1e-3)
    # token by token with step(): the same total
    state, by_step = model.initial_state(B), 0.0
    for t in range(L - 1):
        log_probs, state = model.step(stream[:, t], state)
        by_step += float(log_probs.gather(1, stream[:, t + 1 : t + 2]).sum())
    assert by_step == pytest.approx(totals[1000], abs=1e-3)
    # the training forward over windows (state carried, reset on the first): loss = -log p / n_streams
    for bptt in (2, 5):
        losses = [model(StreamWindow(stream[:, a:b], stream[:, a + 1 : b + 1], reset=(k == 0)))["loss"]
                  for k, (a, b) in enumerate(stream_windows(stream, bptt))]
        assert float(torch.cat(losses).sum()) * B == pytest.approx(-totals[1000], abs=1e-3)
    # without carrying the state (every window reset) the total differs: the test can tell
    reset_all = [model(StreamWindow(stream[:, a:b], stream[:, a + 1 : b + 1], reset=True))["loss"]
                 for a, b in stream_windows(stream, 3)]
    assert abs(float(torch.cat(reset_all).sum()) * B + totals[1000]) > 0.1


def test_stream_windows_cover_every_target_once():
    stream = torch.arange(20).view(2, 10)
    windows = stream_windows(stream, 4)
    assert windows == [(0, 4), (4, 8), (8, 9)]
    targets = torch.cat([stream[:, a + 1 : b + 1] for a, b in windows], dim=1)
    assert torch.equal(targets, stream[:, 1:])
    with pytest.raises(ValueError, match="bptt"):
        stream_windows(stream, 0)


def test_stream_window_reset_starts_from_the_zero_state():
    stream = _stream()
    w0 = StreamWindow(stream[:, :5], stream[:, 1:6])
    w1 = StreamWindow(stream[:, 5:10], stream[:, 6:11])
    fresh = _model(seed=5)
    first = fresh(StreamWindow(w1.inputs, w1.targets, reset=True))["loss"]
    model = _model(seed=5)
    model(StreamWindow(w0.inputs, w0.targets, reset=True))
    carried = model(w1)["loss"]
    model(w0)
    reset = model(StreamWindow(w1.inputs, w1.targets, reset=True))["loss"]
    torch.testing.assert_close(reset, first)
    assert not torch.allclose(carried, first)


def test_truncated_bptt_detaches_the_carried_state():
    model = _model(seed=6, train=True)
    stream = _stream()
    model(StreamWindow(stream[:, :4], stream[:, 1:5], reset=True))["loss"].sum().backward()
    # a second backward through the first window's (freed) graph would raise
    model(StreamWindow(stream[:, 4:8], stream[:, 5:9]))["loss"].sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_stream_log_likelihood_uses_eval_mode_and_restores_training():
    model = _model(seed=7, train=True, dropout=0.5)
    stream = _stream()
    a, _ = model.stream_log_likelihood(stream, 4)
    assert model.training
    b, _ = model.eval().stream_log_likelihood(stream, 4)
    assert a == pytest.approx(b)


# ------------------------------------------------------------------- configuration
def test_tied_weights_share_one_tensor():
    model = _model(embedding_dim=8, hidden_dim=8, tie_weights=True)
    assert model.output.weight is model.embedding.weight
    untied = _model(embedding_dim=8, hidden_dim=8)
    n_tied = sum(p.numel() for p in model.parameters())
    assert n_tied == sum(p.numel() for p in untied.parameters()) - V * 8
    with torch.no_grad():
        model.embedding.weight[5] += 1.0
    assert torch.equal(model.output.weight[5], model.embedding.weight[5])
    with pytest.raises(ValueError, match="tie_weights"):
        RNNLMConfig(vocab_size=V, embedding_dim=6, hidden_dim=8, tie_weights=True)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"cell": "transformer"}, "cell"),
        ({"vocab_size": 2}, "vocab_size"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"hidden_dim": 0}, "hidden_dim"),
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"num_layers": 0}, "num_layers"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"context_dim": -1}, "context_dim"),
        ({"feed_context": True}, "feed_context"),
        ({"init_range": 0.0}, "init_range"),
        ({"softmax_cutoffs": (2,)}, "softmax_cutoffs"),
        ({"softmax_cutoffs": (5, 5)}, "softmax_cutoffs"),
        ({"softmax_cutoffs": (5, V)}, "softmax_cutoffs"),
        ({"softmax_cutoffs": ("a",)}, "softmax_cutoffs"),
        ({"softmax_cutoffs": 5}, "softmax_cutoffs"),
    ],
)
def test_bad_configs_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        RNNLMConfig(**({"vocab_size": V} | kw))


def test_bad_calls_raise():
    plain = _model()
    with pytest.raises(ValueError, match="context"):
        plain.initial_state(2, torch.zeros(2, 3))
    conditioned = _model(context_dim=3, feed_context=True)
    with pytest.raises(ValueError, match="shape"):
        conditioned.initial_state(2, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="feed_context"):
        conditioned.step(torch.tensor([1, 1]), conditioned.initial_state(2))
    with pytest.raises(TypeError, match="SentenceBatch or a StreamWindow"):
        plain(torch.zeros(2, 3, dtype=torch.long))


# ----------------------------------------------------------------------- training
SENTENCES = [["the", "cat", "sat"], ["a", "dog", "ran", "home"], ["the", "dog", "sat", "down"]]


def test_trainer_overfits_a_tiny_stream():
    """Continuous truncated BPTT by the shared Trainer: windows in order, state carried, reset each epoch."""
    vocab = SentenceVocabulary.build(SENTENCES)
    ids, _ = vocab.encode_all(SENTENCES * 4)
    stream = batchify_stream(ids, vocab, 2)
    windows = stream_windows(stream, 9)
    torch.manual_seed(0)
    model = RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_dim=16, hidden_dim=16, num_layers=1))
    visited = []

    def collate(idx):
        (k,) = idx
        visited.append(k)
        a, b = windows[k]
        return StreamWindow(stream[:, a:b], stream[:, a + 1 : b + 1], reset=(k == 0))

    before, count = model.stream_log_likelihood(stream)
    config = TrainConfig(epochs=20, batch_size=1, learning_rate=0.05, shuffle=False, progress=False, resume=False)
    result = Trainer(model, config, len(windows), collate).fit()
    after, _ = model.stream_log_likelihood(stream)
    assert visited == list(range(len(windows))) * 20
    assert -before / count > 0.9 * math.log(len(vocab) - 2)  # starts near uniform
    assert -after / count < 0.1 * (-before / count)  # learns the periodic stream
    assert result.history[-1]["train_nll_per_token"] < 0.1 * result.history[0]["train_nll_per_token"]


def test_trainer_fits_sentences():
    vocab = SentenceVocabulary.build(SENTENCES)
    ids, _ = vocab.encode_all(SENTENCES)
    torch.manual_seed(0)
    model = RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_dim=16, hidden_dim=16, num_layers=1))
    before = evaluate_sentences(model, ids, vocab)
    config = TrainConfig(epochs=60, batch_size=3, learning_rate=0.03, progress=False, resume=False)
    Trainer(model, config, len(ids), lambda idx: collate_sentences([ids[i] for i in idx], vocab)).fit()
    after = evaluate_sentences(model, ids, vocab)
    # three sentences: the first words are a coin toss ("the" twice, "a" once), after that little is uncertain
    assert after["nll_per_sentence"] < 0.25 * before["nll_per_sentence"]
    assert after["nll_per_sentence"] < 1.5


def test_step_learning_rate_schedule_is_zarembas():
    config = TrainConfig(epochs=6, learning_rate=1.0, lr_schedule="step", lr_decay=0.5, lr_decay_start=5)
    assert [config.learning_rate_at(e) for e in range(6)] == [1, 1, 1, 1, 0.5, 0.25]
    # the Trainer runs each epoch at that rate
    model = _model(seed=8)
    stream = _stream()
    config = TrainConfig(epochs=6, batch_size=1, optimizer="sgd", learning_rate=1.0, lr_schedule="step",
                         shuffle=False, progress=False, resume=False)
    result = Trainer(model, config, 1, lambda idx: StreamWindow(stream[:, :5], stream[:, 1:6], reset=True)).fit()
    assert [r["learning_rate"] for r in result.history] == [1, 1, 1, 1, 0.5, 0.25]
    for bad in ({"lr_decay": 0.0}, {"lr_decay": 1.5}, {"lr_decay_start": 0}, {"lr_schedule": "exponential"}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


# ---------------------------------------------------------------------- evaluation
def test_perplexities_by_hand():
    figures = perplexities(torch.tensor([-3.0, -5.0]), torch.tensor([2, 3]))
    assert figures["nll_per_sentence"] == pytest.approx(4.0)
    assert figures["n_sentences"] == 2
    assert figures["n_tokens"] == 7  # 5 words and 2 <eos>
    assert figures["nll_per_token"] == pytest.approx(8 / 7)
    assert figures["perplexity"] == pytest.approx(math.exp(8 / 7))  # <eos> counted (Mikolov/Zaremba)
    assert figures["perplexity_words"] == pytest.approx(math.exp(8 / 5))  # words only


def test_evaluate_sentences_matches_one_at_a_time():
    model = _model(seed=9, train=True, dropout=0.3)
    vocab = _vocab()
    sentences = _sentences(7, seed=9)
    figures = evaluate_sentences(model, sentences, vocab, batch_size=3)
    assert model.training  # restored
    model.eval()
    ll = torch.tensor([_step_by_step(model, s) for s in sentences])
    expected = perplexities(ll, torch.tensor([len(s) for s in sentences]))
    assert figures.keys() == expected.keys()
    for key in expected:
        assert figures[key] == pytest.approx(expected[key], rel=1e-5)
