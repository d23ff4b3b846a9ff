"""Word preprocessing for taggers: signatures of hand-picked words, vocabulary, mapping, errors."""

import pytest

from latentnlp.data.tagged import UNK, TaggedCorpus, build_word_vocab
from latentnlp.data.wordforms import WordPreprocessor, normalise_word, word_signature


@pytest.mark.parametrize("word, signature", [
    ("trimming", "<sig-lower-ing>"),
    ("walked", "<sig-lower-ed>"),
    ("quickly", "<sig-lower-ly>"),
    ("nationalization", "<sig-lower-tion>"),
    ("cats", "<sig-lower-s>"),
    ("biggest", "<sig-lower-est>"),
    ("Zurich", "<sig-cap>"),
    ("Yorkers", "<sig-cap-s>"),
    ("IBM", "<sig-allcaps>"),
    ("U.S.", "<sig-allcaps>"),
    ("well-timed", "<sig-lower-hyphen-ed>"),
    ("F-16", "<sig-cap-digit-hyphen>"),
    ("1980s", "<sig-lower-digit>"),
    ("1,234.5", "<sig-num>"),
    ("3/4", "<sig-num>"),
    ("--", "<sig-punct>"),
    ("%", "<sig-punct>"),
    ("is", "<sig-lower>"),  # too short for a suffix
    ("sing", "<sig-lower>"),  # stem 's' too short for -ing
    ("A", "<sig-cap>"),
])
def test_word_signature_of_hand_picked_words(word, signature):
    assert word_signature(word) == signature


def test_normalise_word_and_errors():
    assert normalise_word("The", lowercase=True) == "the"
    assert normalise_word("1,987.5", digits=True) == "0,000.0"
    assert normalise_word("Mid-1990s", lowercase=True, digits=True) == "mid-0000s"
    assert normalise_word("The") == "The"
    with pytest.raises(TypeError, match="must be a string"):
        normalise_word(None)
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match="non-empty string"):
            word_signature(bad)
    with pytest.raises(ValueError, match="rare_words must be one of"):
        WordPreprocessor(rare_words="shape")
    with pytest.raises(ValueError, match="rare_threshold must be an integer >= 0"):
        WordPreprocessor(rare_threshold=-1)
    with pytest.raises(TypeError, match="lowercase must be True or False"):
        WordPreprocessor(lowercase="yes")
    with pytest.raises(ValueError, match="unknown word-preprocessing fields"):
        WordPreprocessor.from_dict({"lowercase": True, "stem": True})


CORPUS = TaggedCorpus(
    [["The", "dog", "is", "barking", "."], ["the", "dog", "sat", "in", "1987", "."], ["Dogs", "sat", "in", "1990", "."]],
    [["DT", "NN", "VBZ", "VBG", "."], ["DT", "NN", "VBD", "IN", "CD", "."], ["NNS", "VBD", "IN", "CD", "."]],
)


def test_vocabulary_and_mapping_with_signatures():
    pre = WordPreprocessor(lowercase=True, digits=True, rare_words="signature", rare_threshold=1)
    vocab = pre.build_vocab(CORPUS)
    # counts after lower-casing and digits -> 0: . 3, dog 2, in 2, sat 2, the 2, 0000 2; rare: is, barking, dogs
    assert vocab.tokens == (UNK, ".", "0000", "dog", "in", "sat", "the", "<sig-cap-s>", "<sig-lower-ing>",
                            "<sig-lower>")
    mapped = pre.transform(CORPUS, vocab)
    assert mapped.words[0] == ["the", "dog", "<sig-lower>", "<sig-lower-ing>", "."]
    assert mapped.words[2] == ["<sig-cap-s>", "sat", "in", "0000", "."]
    assert mapped.tags == CORPUS.tags and [len(s) for s in mapped.words] == [len(s) for s in CORPUS.words]
    # unseen words: by signature when the class exists, else <unk>
    assert pre.map_word("THE", vocab) == "the" and pre.map_word("2001", vocab) == "0000"
    assert pre.map_word("jumping", vocab) == "<sig-lower-ing>"
    assert pre.map_word("Cats", vocab) == "<sig-cap-s>"
    assert pre.map_word("IBM", vocab) == UNK  # <sig-allcaps> never seen in training
    assert pre.is_class("<sig-lower>") and pre.is_class(UNK) and not pre.is_class("dog")
    assert WordPreprocessor.from_dict(pre.to_dict()) == pre


def test_unk_mode_matches_build_word_vocab():
    for threshold in (0, 1, 2):
        pre = WordPreprocessor(rare_threshold=threshold)
        assert pre.is_identity
        assert pre.build_vocab(CORPUS) == build_word_vocab(CORPUS, min_count=threshold + 1)
    pre = WordPreprocessor(rare_threshold=1)
    vocab = pre.build_vocab(CORPUS)
    assert pre.transform(CORPUS, vocab).words[0] == ["<unk>", "dog", "<unk>", "<unk>", "."]
    assert WordPreprocessor.from_dict(None) == WordPreprocessor()
