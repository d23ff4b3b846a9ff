"""Parallel-text and alignment-file readers: round trips and clear errors."""

import gzip

import numpy as np
import pytest

from latentnlp.data.bow import CorpusFormatError
from latentnlp.data.parallel import (
    ParallelCorpus,
    Vocabulary,
    read_gold_alignment,
    read_naacl_alignment,
    read_parallel,
    read_pharaoh,
    write_pharaoh,
)


def _write(path, lines, gz=False):
    text = "".join(l + "\n" for l in lines)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_read_parallel_plain_and_gzip_agree(tmp_path):
    src = ["le chat", "", "un chien noir"]
    tgt = ["the cat", "nothing here", "a black dog"]
    a = read_parallel(_write(tmp_path / "s.txt", src), _write(tmp_path / "t.txt", tgt))
    b = read_parallel(_write(tmp_path / "s.gz", src, gz=True), _write(tmp_path / "t.gz", tgt, gz=True))
    assert len(a) == 3 and a.n_tokens == (5, 7)
    np.testing.assert_array_equal(a.source.ids, b.source.ids)
    np.testing.assert_array_equal(a.target.offsets, b.target.offsets)
    # The empty line is kept as an empty sentence, so pair numbers follow line numbers.
    assert a.sentence_pair(1) == ([], ["nothing", "here"])
    assert a.sentence_pair(2) == (["un", "chien", "noir"], ["a", "black", "dog"])
    assert a.source_vocab.words == ("le", "chat", "un", "chien", "noir")


def test_read_parallel_mismatch_names_both_files_and_counts(tmp_path):
    s = _write(tmp_path / "a.f", ["x", "y", "z"])
    t = _write(tmp_path / "a.e", ["x", "y"])
    with pytest.raises(ValueError, match=r"a\.f has 3 lines but .*a\.e has 2 lines"):
        read_parallel(s, t)


def test_read_parallel_max_sentences_and_extra(tmp_path):
    s = _write(tmp_path / "s", ["a b", "c", "d e f"])
    t = _write(tmp_path / "t", ["A B", "C", "D E F"])
    xs = _write(tmp_path / "xs", ["a z"])
    xt = _write(tmp_path / "xt", ["Z"])
    c = read_parallel(s, t, max_sentences=2, extra=[(xs, xt)])
    assert len(c) == 3 and c.sentence_pair(2) == (["a", "z"], ["Z"])
    assert "z" in c.source_vocab and "f" not in c.source_vocab
    with pytest.raises(FileNotFoundError, match="nope"):
        read_parallel(tmp_path / "nope", t)


def test_vocabulary_round_trip_and_errors(tmp_path):
    v = Vocabulary.from_sentences([["b", "a"], ["a", "c"]])
    assert v.words == ("b", "a", "c") and v["c"] == 2 and len(v) == 3
    v.write(tmp_path / "v.txt")
    assert Vocabulary.read(tmp_path / "v.txt") == v
    with pytest.raises(KeyError, match="zz"):
        v["zz"]
    with pytest.raises(ValueError, match="twice"):
        Vocabulary(["a", "a"])
    (tmp_path / "bad.txt").write_text("a\n\nb\n")
    with pytest.raises(CorpusFormatError, match=r"bad\.txt:2"):
        Vocabulary.read(tmp_path / "bad.txt")


def test_corpus_take_swap_select():
    c = ParallelCorpus.from_sentences([["a"], ["b", "c"], []], [["A"], ["B", "C"], ["D"]])
    t = c.take(np.array([2, 1]))
    assert t.sentence_pair(0) == ([], ["D"]) and t.sentence_pair(1) == (["b", "c"], ["B", "C"])
    assert c.swap().sentence_pair(1) == (["B", "C"], ["b", "c"])
    assert c.select(1, 3).sentence_pair(0) == (["b", "c"], ["B", "C"])
    with pytest.raises(ValueError, match="2 sentences but target has 1"):
        ParallelCorpus.from_sentences([["a"], ["b"]], [["A"]])


def test_naacl_reader_sure_possible_and_null(tmp_path):
    path = _write(tmp_path / "g.wa", ["0001 1 1 S", "0001 2 3 P", "0001 0 2 S", "0003 2 2", "3 3 0 P"])
    gold = read_naacl_alignment(path, n_sentences=4)
    assert len(gold) == 4
    assert gold.sure[0] == {(0, 0)} and gold.possible[0] == {(0, 0), (1, 2)}
    assert gold.sure[1] == set() and gold.sure[2] == {(1, 1)} and gold.sure[3] == set()
    assert gold.n_null_links == 2 and gold.n_sure == 2 and gold.n_possible == 3
    assert read_gold_alignment(path, 4) == gold
    assert gold.swap().possible[0] == {(0, 0), (2, 1)}


@pytest.mark.parametrize(
    "line, message",
    [("1 2", "expected"), ("1 a 2 S", "integers"), ("1 2 3 X", "S or P"), ("0 1 1 S", "outside"), ("1 -1 2 S", ">= 0"), ("9 1 1 S", "outside")],
)
def test_naacl_reader_errors_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path / "g.wa", ["1 1 1 S", line])
    with pytest.raises(CorpusFormatError, match=rf"g\.wa:2: .*{message}"):
        read_naacl_alignment(path, n_sentences=3)


def test_pharaoh_round_trip_and_possible(tmp_path):
    links = [{(0, 1), (2, 0)}, set(), {(1, 1)}]
    assert write_pharaoh(tmp_path / "a.txt", links) == 3
    assert (tmp_path / "a.txt").read_text() == "0-1 2-0\n\n1-1\n"
    gold = read_pharaoh(tmp_path / "a.txt")
    assert list(gold.sure) == links and list(gold.possible) == links
    _write(tmp_path / "p.txt", ["0-1 1?1", "", "0?0"])
    g2 = read_pharaoh(tmp_path / "p.txt")
    assert g2.sure[0] == {(0, 1)} and g2.possible[0] == {(0, 1), (1, 1)} and g2.possible[2] == {(0, 0)}
    _write(tmp_path / "extra.txt", ["3-3", "", ""])
    g3 = read_pharaoh(tmp_path / "a.txt", possible_path=tmp_path / "extra.txt")
    assert g3.possible[0] == {(0, 1), (2, 0), (3, 3)} and g3.sure[0] == links[0]
    assert read_gold_alignment(tmp_path / "a.txt", 3) == gold
    _write(tmp_path / "short.txt", ["3-3"])
    with pytest.raises(ValueError, match="3 lines but .*short.txt has 1"):
        read_pharaoh(tmp_path / "a.txt", possible_path=tmp_path / "short.txt")


def test_pharaoh_malformed(tmp_path):
    _write(tmp_path / "bad.txt", ["0-1", "1-x"])
    with pytest.raises(CorpusFormatError, match=r"bad\.txt:2: .*'1-x'"):
        read_pharaoh(tmp_path / "bad.txt")


def test_real_gold_files(shared_data_dir):
    d = shared_data_dir / "hansards-wpt03"
    nonull = read_naacl_alignment(d / "test.wa.nonullalign", 447)
    null = read_naacl_alignment(d / "test.wa.nullalign", 447)
    # The manifest's counts: 4,038 sure links, 13,400 possible-only, so |S ∪ P| = 17,438.
    assert nonull.n_sure == 4038 and nonull.n_possible == 17438 and nonull.n_null_links == 0
    # The nullalign file only adds NULL links, which are left out.
    assert null.n_null_links > 0 and null.sure == nonull.sure and null.possible == nonull.possible
