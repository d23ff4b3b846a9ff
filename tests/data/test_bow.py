"""Tests of latentnlp.data.bow: the corpus container, .feat/vocab I/O, and text -> bag of words."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from latentnlp.data import (
    BowCorpus,
    CorpusFormatError,
    bow_from_texts,
    build_bow,
    read_feat,
    read_vocab,
    write_feat,
    write_vocab,
)

VOCAB = ("apple", "banana", "cherry", "date", "elder")


def make_corpus() -> BowCorpus:
    dense = np.array(
        [
            [1, 0, 2, 0, 0],
            [0, 3, 0, 0, 1],
            [0, 0, 0, 4, 0],
            [5, 1, 1, 1, 1],
            [0, 2, 0, 0, 0],
            [1, 1, 0, 0, 7],
        ],
        dtype=np.int64,
    )
    return BowCorpus(sp.csr_matrix(dense), VOCAB, np.array([3, 1, 2, 3, 20, 1]))


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------- BowCorpus


def test_corpus_basic_properties():
    c = make_corpus()
    assert (c.n_docs, c.vocab_size, len(c)) == (6, 5, 6)
    np.testing.assert_array_equal(c.doc_lengths, [3, 4, 4, 9, 2, 9])
    assert c.doc_lengths.dtype == np.int64
    assert c.n_tokens == 31
    assert c.word_index == {"apple": 0, "banana": 1, "cherry": 2, "date": 3, "elder": 4}
    assert c.labels.dtype == np.int64
    # arrays handed out convert to tensors without torch's non-writable-array warning
    torch.as_tensor(c.doc_lengths, dtype=torch.float64)
    torch.as_tensor(c.labels, dtype=torch.float64)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(counts=sp.csr_matrix(np.ones((2, 4), dtype=np.int64)), vocab=VOCAB), "(2, 4)"),
        (dict(counts=sp.csr_matrix(np.ones((2, 5), dtype=np.int64)), vocab=VOCAB, labels=np.array([1, 2, 3])), "(3,)"),
        (dict(counts=sp.csr_matrix(-np.ones((2, 5), dtype=np.int64)), vocab=VOCAB), "non-negative"),
        (dict(counts=sp.csr_matrix(np.ones((1, 2), dtype=np.int64)), vocab=("a", "a")), "repeated"),
    ],
)
def test_corpus_validation(kwargs, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        BowCorpus(**kwargs)


def test_corpus_rejects_float_counts():
    with pytest.raises(TypeError):
        BowCorpus(sp.csr_matrix(np.ones((1, 5))), VOCAB)


def test_subset_keeps_rows_and_labels_in_order():
    c = make_corpus()
    s = c.subset([4, 0, 4])
    np.testing.assert_array_equal(s.counts.toarray(), c.counts.toarray()[[4, 0, 4]])
    np.testing.assert_array_equal(s.labels, [20, 3, 20])
    assert s.vocab == c.vocab
    with pytest.raises(IndexError):
        c.subset([6])
    with pytest.raises(IndexError):
        c.subset([-1])


def test_split_is_deterministic_disjoint_and_sized():
    dense = np.arange(1, 101, dtype=np.int64)[:, None] * np.ones((1, 5), dtype=np.int64)
    c = BowCorpus(sp.csr_matrix(dense), VOCAB, np.arange(100))
    rest, held = c.split(0.1, seed=7)
    rest2, held2 = c.split(0.1, seed=7)
    _, held3 = c.split(0.1, seed=8)
    assert (len(rest), len(held)) == (90, 10)
    np.testing.assert_array_equal(held.labels, held2.labels)
    np.testing.assert_array_equal(rest.labels, rest2.labels)
    assert not np.array_equal(held.labels, held3.labels)
    assert set(rest.labels).isdisjoint(held.labels)
    assert set(rest.labels) | set(held.labels) == set(range(100))
    # rows travel with their labels (row i holds the value i + 1)
    np.testing.assert_array_equal(held.counts.toarray()[:, 0], held.labels + 1)
    assert len(c.split(0.25, seed=0)[1]) == 25


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, 0.01, 0.99])
def test_split_rejects_bad_fraction_or_empty_part(fraction):
    with pytest.raises(ValueError):
        make_corpus().split(fraction, seed=0)


def test_to_dense_matches_counts():
    c = make_corpus()
    full = c.to_dense()
    assert full.dtype == torch.float32 and full.shape == (6, 5)
    np.testing.assert_array_equal(full.numpy(), c.counts.toarray())
    part = c.to_dense([3, 1], dtype=torch.float64)
    assert part.dtype == torch.float64 and part.shape == (2, 5)
    np.testing.assert_array_equal(part.numpy(), c.counts.toarray()[[3, 1]])


def test_drop_empty():
    dense = np.array([[1, 0], [0, 0], [0, 2], [0, 0]], dtype=np.int64)
    c, n = BowCorpus(sp.csr_matrix(dense), ("a", "b"), np.array([1, 2, 3, 4])).drop_empty()
    assert n == 2
    np.testing.assert_array_equal(c.labels, [1, 3])
    np.testing.assert_array_equal(c.counts.toarray(), [[1, 0], [0, 2]])


# ----------------------------------------------------------------- file I/O


def test_feat_and_vocab_round_trip(tmp_path):
    c = make_corpus()
    write_vocab(c.vocab, tmp_path / "vocab.new", counts=[10, 20, 30, 40, 50])
    write_feat(c, tmp_path / "train.feat")
    assert (tmp_path / "vocab.new").read_text().splitlines()[0] == "apple 10"
    assert (tmp_path / "train.feat").read_text().splitlines()[1] == "1 2:3 5:1"
    vocab = read_vocab(tmp_path / "vocab.new")
    back = read_feat(tmp_path / "train.feat", tmp_path / "vocab.new")
    assert vocab == c.vocab == back.vocab
    assert back.counts.shape == c.counts.shape
    assert (back.counts != c.counts).nnz == 0
    np.testing.assert_array_equal(back.labels, c.labels)
    # writing the read corpus reproduces the file byte for byte
    write_feat(back, tmp_path / "again.feat")
    assert (tmp_path / "again.feat").read_bytes() == (tmp_path / "train.feat").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_read_feat_parses_unsorted_ids_and_tabs(tmp_path):
    path = write(tmp_path, "x.feat", "7\t3:2 1:1\r\n-2 5:4\n")
    c = read_feat(path, VOCAB)
    np.testing.assert_array_equal(c.counts.toarray(), [[1, 0, 2, 0, 0], [0, 0, 0, 0, 4]])
    np.testing.assert_array_equal(c.labels, [7, -2])


GOOD = "1 1:2 3:1\n2 2:1\n"


@pytest.mark.parametrize(
    "bad_line, fragment",
    [
        ("x 1:1", "label"),
        ("1.5 1:1", "label"),
        ("1 2", "id:count"),
        ("1 2:3:4", "id:count"),
        ("1 a:3", "id"),
        ("1 :3", "id"),
        ("1 2:b", "count"),
        ("1 2:1.0", "count"),
        ("1 2:", "count"),
        ("1 0:1", "id 0 outside the vocabulary (1..5)"),
        ("1 6:1", "id 6 outside the vocabulary (1..5)"),
        ("1 -1:1", "outside the vocabulary"),
        ("1 2:0", "count 0"),
        ("1 2:-3", "count -3"),
        ("1 2:1 4:1 2:5", "id 2 appears more than once"),
        ("1 99999999999999999999:1", "outside the vocabulary"),
        ("1 2:99999999999999999999", "int64"),
        ("1 2:1,3:1", "id:count"),
    ],
)
def test_malformed_feat_line_names_file_and_line(tmp_path, bad_line, fragment):
    # the bad line is line 3, after two good lines; a later bad line must not be reported
    path = write(tmp_path, "bad.feat", GOOD + bad_line + "\n3 1:1\n1 0:1\n")
    with pytest.raises(CorpusFormatError) as info:
        read_feat(path, VOCAB)
    message = str(info.value)
    assert "bad.feat:3: " in message
    assert fragment in message
    assert info.value.line == 3


def test_malformed_line_after_empty_lines_keeps_file_line_numbers(tmp_path):
    path = write(tmp_path, "bad.feat", "1 1:1\n\n4\n1 1:1 9:1\n")
    with pytest.raises(CorpusFormatError, match=r"bad\.feat:4: id 9 outside the vocabulary \(1\.\.5\)"):
        read_feat(path, VOCAB)


def test_empty_documents_dropped_and_logged_once(tmp_path, caplog):
    path = write(tmp_path, "test.feat", "1 1:1\n4\n2 2:2\n\n3   \n5 5:5\n")
    with caplog.at_level(logging.WARNING, logger="latentnlp.data"):
        c = read_feat(path, VOCAB)
    assert c.n_docs == 3
    np.testing.assert_array_equal(c.labels, [1, 2, 5])
    np.testing.assert_array_equal(c.doc_lengths, [1, 2, 5])
    records = [r for r in caplog.records if r.name == "latentnlp.data"]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert "test.feat: dropped 3 empty document(s) (lines 2, 4, 5)" in records[0].getMessage()


def test_no_warning_without_empty_documents(tmp_path, caplog):
    path = write(tmp_path, "ok.feat", GOOD)
    with caplog.at_level(logging.DEBUG, logger="latentnlp.data"):
        read_feat(path, VOCAB)
    assert not caplog.records


@pytest.mark.parametrize("text", ["", "\n\n", "1\n2 \n"])
def test_feat_without_documents_is_an_error(tmp_path, text):
    path = write(tmp_path, "empty.feat", text)
    with pytest.raises(CorpusFormatError, match="empty.feat"):
        read_feat(path, VOCAB)


def test_read_feat_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_feat(tmp_path / "nope.feat", VOCAB)


def test_read_vocab_ignores_counts_and_trailing_space(tmp_path):
    path = write(tmp_path, "vocab.new", "who 6494\nout\t6114 \nwhich\n")
    assert read_vocab(path) == ("who", "out", "which")


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("a 1\n\nb 2\n", 2, "blank"),
        ("a 1\nb 2\na 3\n", 3, "'a' repeats line 1"),
        ("a 1\nb x\n", 2, "not an integer"),
        ("a 1\nnew york 2\n", 2, "fields"),
    ],
)
def test_bad_vocab_names_file_and_line(tmp_path, text, line, fragment):
    path = write(tmp_path, "vocab.new", text)
    with pytest.raises(CorpusFormatError) as info:
        read_vocab(path)
    assert f"vocab.new:{line}: " in str(info.value)
    assert fragment in str(info.value)


def test_empty_vocab_file(tmp_path):
    path = write(tmp_path, "vocab.new", "")
    with pytest.raises(CorpusFormatError, match="vocab.new"):
        read_vocab(path)


def test_write_vocab_rejects_bad_words(tmp_path):
    with pytest.raises(ValueError):
        write_vocab(["a", "b c"], tmp_path / "v")
    with pytest.raises(ValueError):
        write_vocab(["a", "a"], tmp_path / "v")
    with pytest.raises(ValueError):
        write_vocab(["a", "b"], tmp_path / "v", counts=[1])
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------- from text


TEXTS = [
    "The cat sat on the mat. The CAT!",  # cat 2, sat 1, mat 1
    "Dogs chase cats; the dog barks at 3 cats_2 x",  # dogs, chase, cats, dog, barks ("3", "cats_2", "x" are no tokens)
    "A mat, a mat, a MAT and the cat",  # mat 3, cat 1
    "the of and",  # only stop words -> empty
]


def test_build_bow_hand_checked(caplog):
    with caplog.at_level(logging.WARNING, logger="latentnlp.data"):
        c = build_bow(TEXTS, vocab_size=3, labels=[10, 11, 12, 13])
    # corpus counts: mat 4, cat 3, cats 1, dogs 1, chase 1, dog 1, barks 1, sat 1
    # top 3 by count, ties alphabetical: mat, cat, barks
    assert c.vocab == ("mat", "cat", "barks")
    np.testing.assert_array_equal(c.counts.toarray(), [[1, 2, 0], [0, 0, 1], [3, 1, 0]])
    np.testing.assert_array_equal(c.labels, [10, 11, 12])
    assert [r.getMessage() for r in caplog.records] == ["build_bow: dropped 1 empty document(s) (text index 3)"]


def test_build_bow_lowercases_and_removes_stop_words():
    c = build_bow(TEXTS, vocab_size=100)
    assert set(c.vocab) == {"cat", "sat", "mat", "dogs", "chase", "cats", "dog", "barks"}
    assert all(w == w.lower() for w in c.vocab)
    assert c.n_tokens == 4 + 5 + 4  # stop words (the, on, at, and) and one-letter words removed
    no_stop = build_bow(TEXTS, vocab_size=100, stop_words=None)
    assert {"the", "on", "of", "and", "at"} <= set(no_stop.vocab)
    assert "a" not in no_stop.vocab  # single letters are not tokens


def test_build_bow_bad_arguments():
    with pytest.raises(ValueError):
        build_bow(TEXTS, vocab_size=0)
    with pytest.raises(ValueError):
        build_bow(TEXTS, labels=[1, 2])
    with pytest.raises(TypeError):
        build_bow("just one string")


def test_bow_from_texts_drops_oov(caplog):
    vocab = ("mat", "cat", "the")
    with caplog.at_level(logging.INFO, logger="latentnlp.data"):
        c = bow_from_texts(["The cat and the dog", "zebra zebra", "MAT mat cat"], vocab, labels=[1, 2, 3])
    assert c.vocab == vocab
    np.testing.assert_array_equal(c.counts.toarray(), [[0, 1, 2], [2, 1, 0]])
    np.testing.assert_array_equal(c.labels, [1, 3])
    messages = {r.levelno: r.getMessage() for r in caplog.records}
    assert "dropped 4 out-of-vocabulary token(s) of 10" in messages[logging.INFO]
    assert "dropped 1 empty document(s) (text index 1)" in messages[logging.WARNING]


def test_bow_from_texts_round_trips_build_bow():
    c = build_bow(TEXTS[:3], vocab_size=100)
    again = bow_from_texts(TEXTS[:3], c.vocab)
    assert (again.counts != c.counts).nnz == 0
