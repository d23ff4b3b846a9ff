"""The one Vocabulary class shared by tagged and parallel corpora."""

import pytest

from latentnlp.data.bow import CorpusFormatError
from latentnlp.data.parallel import Vocabulary as ParallelVocabulary
from latentnlp.data.tagged import Vocabulary as TaggedVocabulary
from latentnlp.data.vocab import Vocabulary


def test_one_class_everywhere():
    assert ParallelVocabulary is Vocabulary and TaggedVocabulary is Vocabulary


def test_open_and_closed_lookup():
    v = Vocabulary(("<unk>", "a", "b"), unk="<unk>")
    assert v.id("b") == 2 and v.id("zzz") == 0 and v.unk_id == 0
    with pytest.raises(KeyError, match="'zzz' is not in the vocabulary"):
        v["zzz"]
    closed = Vocabulary(["x", "y"])
    assert closed.id("q") is None and closed.get("q") == -1 and closed.word(1) == "y"
    assert closed.encode(["y", "x"]).tolist() == [1, 0]


def test_validation():
    with pytest.raises(ValueError, match="'a' twice"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        Vocabulary(["a"], unk="<unk>")


def test_round_trips(tmp_path):
    v = Vocabulary.from_sentences([["b", "a"], ["a", "c"]], unk="<unk>")
    assert v.tokens == ("<unk>", "b", "a", "c")
    assert Vocabulary.from_json(v.to_json()) == v
    v.write(tmp_path / "v.txt")
    assert Vocabulary.read(tmp_path / "v.txt", unk="<unk>") == v
    assert Vocabulary.read(tmp_path / "v.txt") != v  # unk is part of the identity
    with pytest.raises(ValueError, match="holds whitespace"):
        Vocabulary(["new york"]).write(tmp_path / "w.txt")
    (tmp_path / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(CorpusFormatError, match="line 1"):
        Vocabulary.read(tmp_path / "dup.txt")
