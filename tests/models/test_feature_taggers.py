"""Feature-based MEMM and linear-chain CRF: features, objective, gradients, decoding, I/O, the CRFsuite peer."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest

from latentnlp.models.sequence.crf import FeatureCRF
from latentnlp.models.sequence.features import FeatureIndex, FeatureTemplates, token_attributes, word_shape
from latentnlp.models.sequence.loglinear import LogLinearConfig
from latentnlp.models.sequence.memm import MEMM

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = FeatureTemplates(window=1, affix=1, shape=False, lowercase=False)


def _corpus(seed: int = 0, n: int = 40):
    """Words a..g; tags depend on the word and on the previous tag (so transitions matter)."""
    rng = np.random.default_rng(seed)
    vocab = list("abcdefg")
    words, tags = [], []
    for _ in range(n):
        sent = [vocab[i] for i in rng.integers(0, 7, size=rng.integers(1, 7))]
        t, prev = [], "Y"
        for w in sent:
            tag = ("X" if w in "abc" else "Y") if rng.random() < 0.8 else ("Z" if prev != "Z" else "X")
            t.append(tag)
            prev = tag
        words.append(sent)
        tags.append(t)
    return words, tags


def test_word_shape_and_token_attributes():
    assert word_shape("McDonald's") == "XxXx'x"
    assert word_shape("1.8") == "d.d"
    tmpl = FeatureTemplates(window=1, affix=2, columns=("pos",), column_window=1)
    feats = token_attributes(["He", "reckons", "1-2"], 0, tmpl, {"pos": ["PRP", "VBZ", "CD"]})
    for f in ("bias", "w[0]=He", "lw[0]=he", "w[-1]=<s>", "w[+1]=reckons", "pre1=H", "suf2=He", "shape=Xx",
              "init_cap_first", "BOS", "pos[-1]=<s>", "pos[+0]=PRP", "pos[+0]|pos[+1]=PRP|VBZ", "pos[-1..+1]=<s>|PRP|VBZ"):
        assert f in feats, f
    last = token_attributes(["He", "reckons", "1-2"], 2, tmpl, {"pos": ["PRP", "VBZ", "CD"]})
    assert {"EOS", "has_digit", "has_hyphen", "w[+1]=</s>", "shape=d-d"} <= set(last)
    with pytest.raises(KeyError, match="pos"):
        token_attributes(["a"], 0, tmpl, {})


def test_feature_index_drops_rare_and_unknown_attributes():
    idx = FeatureIndex(FeatureTemplates(window=0, affix=0, shape=False, lowercase=False), min_count=2)
    attrs = idx.attributes([["a", "b", "a"], ["a"]])
    idx.fit(attrs)
    assert "w[0]=a" in idx.attributes_ and "w[0]=b" not in idx.attributes_
    X, offsets = idx.transform(idx.attributes([["a", "zzz"]]))
    assert X.shape == (2, len(idx)) and offsets.tolist() == [0, 2]
    kept = {idx.attributes_[j] for j in X[1].indices}
    assert kept == {"bias", "EOS"}  # the unknown word itself is dropped


def _finite_difference(fun, n, seed, fixed=0):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n) * 0.5
    direction = rng.normal(size=n)
    if fixed:
        theta[-fixed:] = 0.0
        direction[-fixed:] = 0.0
    _, grad = fun(theta)
    eps = 1e-6
    numeric = (fun(theta + eps * direction)[0] - fun(theta - eps * direction)[0]) / (2 * eps)
    return numeric, float(grad @ direction)


@pytest.mark.parametrize("boundary", [True, False])
def test_crf_gradient_matches_finite_differences(boundary):
    words, tags = _corpus(1)
    crf = FeatureCRF(LogLinearConfig(templates=TINY, c2=0.3, boundary=boundary))
    crf.labels_ = sorted({t for s in tags for t in s})
    X, offsets = crf._fit_index(FeatureIndex(TINY).attributes(words))
    fun, n = crf._objective(X, offsets, crf._label_ids(tags))
    numeric, analytic = _finite_difference(fun, n, 0, fixed=0 if boundary else 2 * crf.num_labels)
    assert numeric == pytest.approx(analytic, rel=1e-6)


def test_memm_gradient_matches_finite_differences():
    words, tags = _corpus(2)
    memm = MEMM(LogLinearConfig(templates=TINY, c2=0.3))
    memm.labels_ = sorted({t for s in tags for t in s})
    X, offsets = memm._fit_index(FeatureIndex(TINY).attributes(words))
    fun, n = memm._objective(X, offsets, memm._label_ids(tags))
    numeric, analytic = _finite_difference(fun, n, 1)
    assert numeric == pytest.approx(analytic, rel=1e-6)


def test_crf_training_objective_equals_the_log_space_likelihood():
    """The scaled probability-space E-step used in training gives the log-space core's log-likelihood."""
    words, tags = _corpus(3)
    c2 = 0.1
    crf = FeatureCRF(LogLinearConfig(templates=TINY, c2=c2, max_iterations=300, delta=1e-10)).fit(words, tags)
    theta = np.concatenate([crf.weights_.ravel(), crf.transition_.ravel(), crf.start_, crf.end_])
    assert crf.objective_[-1] == pytest.approx(-crf.log_likelihood(words, tags).sum() + c2 * theta @ theta, rel=1e-9)
    assert all(b <= a + 1e-9 for a, b in zip(crf.objective_, crf.objective_[1:]))  # L-BFGS never goes up
    assert np.mean([p == g for ps, gs in zip(crf.predict(words), tags) for p, g in zip(ps, gs)]) > 0.8


@pytest.mark.parametrize("cls", [FeatureCRF, MEMM])
def test_nbest_marginals_and_viterbi_agree(cls):
    words, tags = _corpus(4)
    model = cls(LogLinearConfig(templates=TINY, c2=0.1)).fit(words, tags)
    test = [list("abcdef"), ["a"], list("gg")]
    best = model.predict(test)
    lists = model.nbest(test, n=4)
    for d, sent in enumerate(test):
        probs = [p for p, _ in lists[d]]
        assert lists[d][0][1] == best[d]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-12
        assert len({tuple(t) for _, t in lists[d]}) == len(lists[d])
    if cls is FeatureCRF:
        # with C = 3 labels a one-word sentence has 3 paths: their probabilities sum to 1
        one = model.nbest([["a"]], n=5)[0]
        assert len(one) == 3 and sum(p for p, _ in one) == pytest.approx(1.0)
        for m in model.marginals(test):
            assert np.allclose(m.sum(1), 1.0)
    else:
        for local in model.local_probabilities(test):
            assert np.allclose(local[0, -1].sum(), 1.0) and np.allclose(local[1:, :-1].sum(-1), 1.0)


@pytest.mark.parametrize("cls", [FeatureCRF, MEMM])
def test_save_load_round_trip_and_errors(cls, tmp_path):
    words, tags = _corpus(5)
    model = cls(LogLinearConfig(templates=TINY, c2=0.1, transitions="observed")).fit(words, tags)
    model.save(tmp_path / "run")
    again = cls.load(tmp_path / "run")
    test = [list("abcdefg"), list("gfedcba"), ["unknown-word"]]
    assert again.predict(test) == model.predict(test)
    other = MEMM if cls is FeatureCRF else FeatureCRF
    with pytest.raises(ValueError, match="holds a"):
        other.load(tmp_path / "run")
    with pytest.raises(FileNotFoundError):
        cls.load(tmp_path / "nothing")
    with pytest.raises(ValueError, match="not fitted"):
        cls().predict([["a"]])
    with pytest.raises(ValueError, match="sentence 1 has 2 tokens but 1 tags"):
        cls(LogLinearConfig(templates=TINY)).fit([["a"], ["a", "b"]], [["X"], ["X"]])
    with pytest.raises(ValueError, match="sentence 0 is empty"):
        model.predict([[]])
    with pytest.raises(ValueError, match="columns"):
        cls(LogLinearConfig(templates=FeatureTemplates(columns=("pos",)))).fit([["a"]], [["X"]])


def test_crf_log_likelihood_names_unknown_tags():
    words, tags = _corpus(6)
    crf = FeatureCRF(LogLinearConfig(templates=TINY)).fit(words, tags)
    with pytest.raises(ValueError, match="'Q' was not seen"):
        crf.log_likelihood([["a"]], [["Q"]])


def test_config_validation():
    with pytest.raises(ValueError, match="c2"):
        LogLinearConfig(c2=-1)
    with pytest.raises(ValueError, match="transitions"):
        LogLinearConfig(transitions="some")


def _conll2000_head(shared_data_dir, n, split="train"):
    from latentnlp.data.columns import read_columns

    corpus = read_columns(shared_data_dir / "conll2000" / f"{split}.txt", names=("word", "pos", "chunk")).head(n)
    return corpus.column("word"), {"pos": corpus.column("pos")}, corpus.column("chunk")


def test_crf_matches_crfsuite_on_the_same_features(shared_data_dir):
    """Same attributes, same c2, same model (all state and transition features, no boundary weights):
    CRFsuite's L-BFGS and ours reach the same regularised objective and the same tags."""
    pycrfsuite = pytest.importorskip("pycrfsuite")
    words, columns, tags = _conll2000_head(shared_data_dir, 150)
    tmpl = FeatureTemplates(window=1, affix=2, columns=("pos",), column_window=1)
    attributes = FeatureIndex(tmpl).attributes(words, columns)
    trainer = pycrfsuite.Trainer(verbose=False)
    for a, t in zip(attributes, tags):
        trainer.append(a, t)
    trainer.set_params({"c1": 0.0, "c2": 0.5, "max_iterations": 400, "feature.possible_states": True,
                        "feature.possible_transitions": True, "delta": 1e-9})
    with tempfile.TemporaryDirectory() as tmp:
        trainer.train(f"{tmp}/model.crfsuite")
        peer_loss = trainer.logparser.last_iteration["loss"]
        tagger = pycrfsuite.Tagger()
        tagger.open(f"{tmp}/model.crfsuite")
        peer_tags = [tagger.tag(a) for a in attributes]
        tagger.close()
    ours = FeatureCRF(LogLinearConfig(templates=tmpl, c2=0.5, boundary=False, max_iterations=400, delta=1e-9))
    ours.fit_attributes(attributes, tags)
    assert ours.objective_[-1] == pytest.approx(peer_loss, rel=1e-4)
    agree = np.mean([a == b for x, y in zip(ours.predict_attributes(attributes), peer_tags) for a, b in zip(x, y)])
    assert agree > 0.995


def test_crf_and_memm_chunk_real_sentences(shared_data_dir):
    """A small slice of CoNLL-2000 (300 training sentences): chunk F1 on 200 test sentences."""
    from latentnlp.evaluation.chunking import chunk_scores

    words, columns, tags = _conll2000_head(shared_data_dir, 300)
    test_words, test_columns, test_tags = _conll2000_head(shared_data_dir, 200, split="test")
    tmpl = FeatureTemplates(window=1, affix=3, columns=("pos",))
    crf = FeatureCRF(LogLinearConfig(templates=tmpl, c2=0.5, max_iterations=60)).fit(words, tags, columns)
    memm = MEMM(LogLinearConfig(templates=tmpl, c2=0.5, max_iterations=60)).fit(words, tags, columns)
    f_crf = chunk_scores(crf.predict(test_words, test_columns), test_tags).f1
    f_memm = chunk_scores(memm.predict(test_words, test_columns), test_tags).f1
    assert f_crf > 0.85 and f_memm > 0.80
