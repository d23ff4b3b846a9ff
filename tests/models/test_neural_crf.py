"""BiLSTM-CRF tagger: training decreases the loss and overfits a toy set; encoding, metadata, padding."""

import json
import math

import pytest
import torch

from latentnlp.models.sequence.neural_crf import (
    PAD,
    UNK,
    BiLSTMCRF,
    BiLSTMCRFConfig,
    TaggerBatch,
    build_vocabularies,
    token_accuracy,
    train_bilstm_crf,
)
from latentnlp.training.checkpoint import atomic_save_tensors, load_tensors
from latentnlp.training.seeding import seeded
from latentnlp.training.trainer import TrainConfig

WORDS = [
    ["the", "cat", "sat"],
    ["a", "dog", "ran", "fast"],
    ["the", "Dog", "sat", "down"],
    ["cats", "run"],
    ["a", "cat", "ran", "home", "now"],
]
POS = [
    ["DT", "NN", "VB"],
    ["DT", "NN", "VB", "RB"],
    ["DT", "NN", "VB", "RB"],
    ["NN", "VB"],
    ["DT", "NN", "VB", "NN", "RB"],
]
# chunk-like tags: what a tag is depends on its neighbours (B after O, I after B)
TAGS = [
    ["B-NP", "I-NP", "B-VP"],
    ["B-NP", "I-NP", "B-VP", "O"],
    ["B-NP", "I-NP", "B-VP", "O"],
    ["B-NP", "B-VP"],
    ["B-NP", "I-NP", "B-VP", "B-NP", "O"],
]

TINY = dict(word_dim=8, char_dim=6, char_hidden=5, hidden=10, dropout=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed: int = 0, **overrides) -> BiLSTMCRF:
    config = BiLSTMCRFConfig(**(TINY | {"feature_dims": {"pos": 4}} | overrides))
    v = build_vocabularies(WORDS, {"pos": POS}, TAGS, config)
    with seeded(seed):
        return BiLSTMCRF(config, words=v["words"], tags=v["tags"], chars=v["chars"], features=v["features"],
                         singletons=v["singletons"])


def test_vocabularies():
    config = BiLSTMCRFConfig(**TINY, lowercase_words=True, feature_dims={"pos": 4})
    v = build_vocabularies(WORDS, {"pos": POS, "ignored": TAGS}, TAGS, config)
    assert v["words"].tokens[:4] == (PAD, UNK, "the", "cat")
    assert "Dog" not in v["words"] and "dog" in v["words"]
    assert "D" in v["chars"] and v["chars"].unk == UNK
    assert v["features"]["pos"].tokens == (PAD, UNK, "DT", "NN", "VB", "RB")
    assert v["tags"].tokens == ("B-NP", "I-NP", "B-VP", "O") and v["tags"].unk is None
    singles = {v["words"].word(i) for i in v["singletons"]}
    assert singles == {"fast", "down", "cats", "run", "home", "now"}
    with pytest.raises(ValueError, match=r"features\['pos'\] is missing"):
        build_vocabularies(WORDS, {}, TAGS, config)
    with pytest.raises(ValueError, match="sentence 1 has 3 entries for 4 words"):
        build_vocabularies(WORDS, {"pos": POS}, [TAGS[0]] * 5, config)
    with pytest.raises(ValueError, match="sentence 0 is empty"):
        build_vocabularies([[]], {"pos": [[]]}, [[]], config)


@pytest.mark.parametrize(
    "field,value",
    [("word_dim", 0), ("hidden", -1), ("layers", 1.5), ("char_hidden", -1), ("dropout", 1.0), ("word_dropout", 1.5),
     ("feature_dims", {"pos": 0}), ("feature_dims", {"": 3}), ("lowercase_words", 1)],
)
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        BiLSTMCRFConfig(**{field: value})


def test_encode_batch_pads_and_maps_unknowns_to_unk():
    model = tiny_model()
    x = model.encode_batch([["the", "zebra", "Éx"], ["cat"]], {"pos": [["DT", "XX", "NN"], ["NN"]]}, None)
    assert isinstance(x, TaggerBatch) and x.tags is None
    assert x.lengths.tolist() == [3, 1]
    unk = model.words.unk_id
    assert x.words.tolist() == [[model.words["the"], unk, unk], [model.words["cat"], 0, 0]]
    assert x.features["pos"][0, 1].item() == model.features["pos"].unk_id
    assert x.chars[0, 2, 0].item() == model.chars.unk_id  # 'É' unseen
    assert x.char_lengths.tolist() == [[3, 5, 2], [3, 0, 0]]
    assert x.chars.shape == (2, 3, 5)
    with pytest.raises(ValueError, match="tag 'B-XX' is not in the tag vocabulary"):
        model.encode_batch([["the"]], {"pos": [["DT"]]}, [["B-XX"]])
    with pytest.raises(ValueError, match="missing"):
        model.encode_batch([["the"]])


def test_predict_with_unknown_words():
    model = tiny_model()
    words = [["zebras", "!!", ""], ["the", "cat"]]
    tags = model.tag(words, {"pos": [["NN", "?", "."], ["DT", "NN"]]})
    assert [len(t) for t in tags] == [3, 2]
    assert all(t in model.tags for s in tags for t in s)
    ids = model.predict(model.encode_batch(words, {"pos": [["NN", "?", "."], ["DT", "NN"]]}))
    assert [[model.tags.word(i) for i in s] for s in ids] == tags


@pytest.mark.parametrize("char_hidden", [5, 0])
def test_padding_invariance(char_hidden):
    """A sentence's loss is the same alone and batched with longer sentences (eval mode and dropout-free training)."""
    model = tiny_model(char_hidden=char_hidden, dropout=0.3)
    alone = model.encode_batch(WORDS[3:4], {"pos": POS[3:4]}, TAGS[3:4])
    batched = model.encode_batch(WORDS, {"pos": POS}, TAGS)
    model.eval()
    loss_alone = model(alone)["loss"]
    loss_batched = model(batched)["loss"]
    assert loss_batched.shape == (5,)
    torch.testing.assert_close(loss_alone, loss_batched[3:4], atol=1e-5, rtol=1e-5)
    assert model.predict(alone)[0] == model.predict(batched)[3]
    model.train()
    model.dropout.p = 0.0
    torch.testing.assert_close(model(alone)["loss"], model(batched)["loss"][3:4], atol=1e-5, rtol=1e-5)


def test_loss_is_finite_and_decreases():
    model = tiny_model(seed=1)
    x = model.encode_batch(WORDS, {"pos": POS}, TAGS)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        loss = model(x)["loss"]
        assert torch.isfinite(loss).all() and (loss >= 0).all()
        losses.append(loss.sum().item())
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0]
    assert all(b < a for a, b in zip(losses[:10], losses[1:11]))  # monotone at the start


def test_train_overfits_and_metadata_round_trip(tmp_path):
    """train_bilstm_crf (shared Trainer) reaches 100% token accuracy on 5 sentences; the saved model predicts the same."""
    config = BiLSTMCRFConfig(**TINY, feature_dims={"pos": 4})
    train = (WORDS, {"pos": POS}, TAGS)
    scorer_calls = []

    def scorer(pred, gold):
        scorer_calls.append(1)
        return {"exact": sum(p == g for p, g in zip(pred, gold)) / len(gold)}

    tc = TrainConfig(epochs=60, batch_size=5, learning_rate=0.05, patience=0, monitor="valid_neg_exact", progress=False)
    model, result = train_bilstm_crf(train, train, config, tc, run_dir=tmp_path / "run", seed=3, dev_scorer=scorer)
    assert result.best_value == -1.0  # every sentence exactly right
    assert model.tag(WORDS, {"pos": POS}) == TAGS
    losses = [r["train_loss"] for r in result.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.1 * losses[0]
    assert result.history[-1]["valid_error"] == 0.0 and "valid_exact" in result.history[-1]
    assert len(scorer_calls) >= 60
    assert (tmp_path / "run" / "bilstm_crf.json").is_file()

    # rebuild from metadata + weights (through JSON and safetensors)
    meta = json.loads(json.dumps(model.to_metadata()))
    assert meta == json.loads((tmp_path / "run" / "bilstm_crf.json").read_text())
    atomic_save_tensors(tmp_path / "w.safetensors", dict(model.state_dict()), {"model": meta})
    tensors, saved = load_tensors(tmp_path / "w.safetensors")
    rebuilt = BiLSTMCRF.from_metadata(saved["model"])
    rebuilt.load_state_dict(tensors)
    test = [["the", "dog", "ran", "home"], ["unseen", "cat"]]
    feats = {"pos": [["DT", "NN", "VB", "NN"], ["NN", "NN"]]}
    assert rebuilt.tag(test, feats) == model.tag(test, feats)
    x = model.encode_batch(WORDS, {"pos": POS}, TAGS)
    torch.testing.assert_close(rebuilt.eval()(x)["loss"], model.eval()(x)["loss"])
    with pytest.raises(ValueError, match="description"):
        BiLSTMCRF.from_metadata({"format": "other"})


def test_train_default_monitor_and_clipping():
    config = BiLSTMCRFConfig(**TINY | {"char_hidden": 0})
    tc = TrainConfig(epochs=2, batch_size=2, progress=False)  # monitor left at the TrainConfig default
    model, result = train_bilstm_crf((WORDS, None, TAGS), (WORDS[:2], None, TAGS[:2]), config, tc, seed=0)
    assert result.best_value == min(r["valid_error"] for r in result.history)
    assert not model.training
    with pytest.raises(ValueError, match="not among the validation metrics"):
        train_bilstm_crf((WORDS, None, TAGS), (WORDS, None, TAGS), config,
                         TrainConfig(epochs=1, monitor="valid_f1", progress=False))
    with pytest.raises(ValueError, match="alternate"):
        model.optimization_phases(True)


def test_seeded_initialisation_is_reproducible():
    config = BiLSTMCRFConfig(**TINY | {"char_hidden": 0})
    tc = TrainConfig(epochs=1, batch_size=5, progress=False)
    a, _ = train_bilstm_crf((WORDS, None, TAGS), (WORDS, None, TAGS), config, tc, seed=5)
    b, _ = train_bilstm_crf((WORDS, None, TAGS), (WORDS, None, TAGS), config, tc, seed=5)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_word_dropout_replaces_singletons():
    model = tiny_model(word_dropout=1.0)
    x = model.encode_batch(WORDS, {"pos": POS}, TAGS)
    unk = model.words.unk_id
    replaced = TaggerBatch(
        torch.where(model.is_singleton[x.words] & (x.words != 0), torch.full_like(x.words, unk), x.words),
        x.chars, x.char_lengths, x.features, x.lengths, x.tags,
    )
    assert (replaced.words != x.words).sum() == 8  # dog, Dog, fast, down, cats, run, home, now
    noise = model.sample_noise(5, torch.Generator().manual_seed(0))
    assert noise.shape == (1, 5)
    model.train()  # dropout is 0: train and eval mode differ only by word dropout
    dropped = model(x, noise)["loss"]
    model.eval()  # no word dropout at test time
    torch.testing.assert_close(dropped, model(replaced)["loss"])
    assert not torch.allclose(model(x)["loss"], model(replaced)["loss"])
    half = tiny_model(word_dropout=0.5).train()
    n1, n2 = (half.sample_noise(5, torch.Generator().manual_seed(s)) for s in (1, 1))
    torch.testing.assert_close(half(x, n1)["loss"], half(x, n2)["loss"])  # same seeds, same replacement
    assert tiny_model(word_dropout=0.0).sample_noise(5) is None


def test_token_accuracy():
    assert token_accuracy([["A", "B"], ["C"]], [["A", "X"], ["C"]]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="sentence 0"):
        token_accuracy([["A"]], [["A", "B"]])
    with pytest.raises(ValueError, match="no tokens"):
        token_accuracy([], [])


# ------------------------------------------------------------------ sparse features (Huang et al. 2015)
SPARSE = {"window": 1, "lowercase": True, "word_bigrams": False, "affix": 2, "shape": True, "columns": ["pos"],
          "column_window": 1, "column_ngrams": True}


def sparse_model(seed: int = 0, **overrides) -> BiLSTMCRF:
    config = BiLSTMCRFConfig(**(TINY | {"sparse_templates": SPARSE} | overrides))
    v = build_vocabularies(WORDS, {"pos": POS}, TAGS, config)
    with seeded(seed):
        return BiLSTMCRF(config, words=v["words"], tags=v["tags"], chars=v["chars"], features=v["features"],
                         singletons=v["singletons"], attributes=v["attributes"])


def test_sparse_features_add_their_weights_to_the_unary_scores():
    """P[b, n] with U minus P[b, n] with U = 0 is the sum of U over the token's known attributes (by hand)."""
    from latentnlp.models.sequence.features import FeatureTemplates, token_attributes

    model = sparse_model().eval()
    assert model.config.columns == ["pos"]  # read by the templates although feature_dims is empty
    attrs = model.attribute_index.attributes_
    assert attrs == sorted(attrs) and "w[0]=cat" in attrs and "pos[-1]|pos[+0]=DT|NN" in attrs
    with torch.no_grad():
        model.sparse_weight.weight.normal_()
        model.sparse_weight.weight[0].zero_()
    words = [["the", "zebra", "sat"], ["cat"]]
    pos = [["DT", "NN", "XX"], ["NN"]]
    x = model.encode_batch(words, {"pos": pos})
    assert x.attributes.shape[:2] == (2, 3) and (x.attributes[1, 1:] == 0).all()
    with torch.no_grad():
        full = model.unary(x)
        U = model.sparse_weight.weight.clone()
        model.sparse_weight.weight.zero_()
        base = model.unary(x)
    templates = FeatureTemplates.from_dict(SPARSE)
    row = {a: k + 1 for k, a in enumerate(attrs)}
    for b, sentence in enumerate(words):
        for n in range(len(sentence)):
            known = {row[a] for a in token_attributes(sentence, n, templates, {"pos": pos[b]}) if a in row}
            assert "w[0]=zebra" not in row and len(known) > 3
            torch.testing.assert_close(full[b, n] - base[b, n], U[sorted(known)].sum(0), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"features\['pos'\] is missing"):
        model.encode_batch([["the"]])
    with pytest.raises(ValueError, match="lacks the sparse attributes"):
        model.unary(TaggerBatch(x.words, x.chars, x.char_lengths, {}, x.lengths))


def test_sparse_l2_penalty_and_validation():
    model = sparse_model(sparse_l2=0.01).eval()
    with torch.no_grad():
        model.sparse_weight.weight.uniform_(-1, 1)
        model.sparse_weight.weight[0].zero_()
    x = model.encode_batch(WORDS, {"pos": POS}, TAGS)
    penalty = 0.01 * model.sparse_weight.weight.pow(2).sum()
    torch.testing.assert_close(model(x)["loss"], -model.log_likelihood(x) + penalty)
    for field, value in [("sparse_min_count", 0), ("sparse_l2", -1.0), ("sparse_l2", math.nan),
                         ("sparse_templates", {"window": -1}), ("sparse_templates", {"nonsense": 1}),
                         ("sparse_templates", "words")]:
        with pytest.raises(ValueError, match="sparse"):
            BiLSTMCRFConfig(**{field: value})
    config = BiLSTMCRFConfig(**TINY, sparse_templates=SPARSE)
    v = build_vocabularies(WORDS, {"pos": POS}, TAGS, config)
    with pytest.raises(ValueError, match="attributes are needed"):
        BiLSTMCRF(config, words=v["words"], tags=v["tags"], chars=v["chars"])
    counted = build_vocabularies(WORDS, {"pos": POS}, TAGS, BiLSTMCRFConfig(**TINY, sparse_templates=SPARSE,
                                                                            sparse_min_count=2))["attributes"]
    assert "w[0]=cat" in counted and "w[0]=fast" not in counted and set(counted) < set(v["attributes"])


def test_sparse_features_train_pad_and_round_trip(tmp_path):
    """With only sparse features worth learning (tiny BiLSTM), training overfits; padding and metadata are exact."""
    config = BiLSTMCRFConfig(**TINY, sparse_templates=SPARSE, sparse_l2=1e-4)
    tc = TrainConfig(epochs=40, batch_size=5, learning_rate=0.05, patience=0, progress=False)
    model, result = train_bilstm_crf((WORDS, {"pos": POS}, TAGS), (WORDS, {"pos": POS}, TAGS), config, tc,
                                     run_dir=tmp_path / "run", seed=2)
    assert result.best_value == 0.0 and model.tag(WORDS, {"pos": POS}) == TAGS
    assert model.sparse_weight.weight.abs().sum() > 0 and (model.sparse_weight.weight[0] == 0).all()
    alone = model.encode_batch(WORDS[3:4], {"pos": POS[3:4]}, TAGS[3:4])
    batched = model.encode_batch(WORDS, {"pos": POS}, TAGS)
    torch.testing.assert_close(model(alone)["loss"], model(batched)["loss"][3:4], atol=1e-5, rtol=1e-5)
    meta = json.loads((tmp_path / "run" / "bilstm_crf.json").read_text())
    assert meta["attributes"] == model.attribute_index.attributes_
    atomic_save_tensors(tmp_path / "w.safetensors", dict(model.state_dict()), {"model": meta})
    tensors, saved = load_tensors(tmp_path / "w.safetensors")
    rebuilt = BiLSTMCRF.from_metadata(saved["model"])
    rebuilt.load_state_dict(tensors)
    test, feats = [["the", "dog", "ran", "home"], ["unseen", "cat"]], {"pos": [["DT", "NN", "VB", "NN"], ["NN", "NN"]]}
    assert rebuilt.tag(test, feats) == model.tag(test, feats)
    torch.testing.assert_close(rebuilt.eval()(batched)["loss"], model(batched)["loss"])


# ------------------------------------------------------------------ pretrained word vectors
def test_word_vectors_extend_the_vocabulary_and_start_the_embeddings():
    from latentnlp.data.vectors import WordVectors

    vectors = WordVectors(["The", "zebra", "cat", "giraffe"], torch.arange(32, dtype=torch.float32).view(4, 8))
    config = BiLSTMCRFConfig(**TINY, feature_dims={"pos": 4})
    plain = build_vocabularies(WORDS, {"pos": POS}, TAGS, config)
    v = build_vocabularies(WORDS, {"pos": POS}, TAGS, config, extra_words=vectors.words)
    n = len(plain["words"])
    assert v["words"].tokens[:n] == plain["words"].tokens  # training ids unchanged
    assert v["words"].tokens[n:] == ("The", "zebra", "giraffe") and v["singletons"] == plain["singletons"]
    lower = build_vocabularies(WORDS, {"pos": POS}, TAGS, BiLSTMCRFConfig(**TINY, lowercase_words=True),
                               extra_words=vectors.words)["words"]
    assert "The" not in lower and lower.tokens[-2:] == ("zebra", "giraffe")

    model, _ = train_bilstm_crf((WORDS, {"pos": POS}, TAGS), (WORDS, {"pos": POS}, TAGS), config,
                                TrainConfig(epochs=1, batch_size=5, learning_rate=1e-9, progress=False),
                                word_vectors=vectors)
    E = model.word_embedding.weight.detach()
    for word, row in [("zebra", 1), ("cat", 2), ("The", 0), ("giraffe", 3)]:
        torch.testing.assert_close(E[model.words[word]], vectors.vectors[row], atol=1e-5, rtol=0)
    assert not torch.allclose(E[model.words["the"]], vectors.vectors[0])  # 'The' is not the lower-cased form of 'the'
    assert model.encode_batch([["giraffe"]], {"pos": [["NN"]]}).words[0, 0].item() == model.words["giraffe"]
    fresh = tiny_model()
    assert fresh.load_word_vectors(vectors) == 1  # only 'cat' is in the training vocabulary
    with pytest.raises(ValueError, match="3 dimensions, the model's word_dim is 8"):
        fresh.load_word_vectors(WordVectors(["cat"], torch.zeros(1, 3)))


def test_lowercased_lookup_falls_back_to_the_lower_case_vector():
    from latentnlp.data.vectors import WordVectors

    model = tiny_model()
    vectors = WordVectors(["dog"], torch.ones(1, 8))
    assert model.load_word_vectors(vectors) == 2  # 'dog' and 'Dog'
    torch.testing.assert_close(model.word_embedding.weight[model.words["Dog"]].detach(), torch.ones(8))
