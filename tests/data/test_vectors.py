"""Word2vec / GloVe text vectors: reading, and clear errors naming the file and line."""

import pytest
import torch

from latentnlp.data.vectors import read_word_vectors


def test_reads_with_and_without_header(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text("3 2\nthe 0.5 -1\ncat 1e-1 2\n, 0 0\n", encoding="utf-8")
    v = read_word_vectors(f)
    assert v.words == ["the", "cat", ","] and v.dim == 2 and len(v) == 3
    torch.testing.assert_close(v.vectors, torch.tensor([[0.5, -1.0], [0.1, 2.0], [0.0, 0.0]]))
    g = tmp_path / "glove.txt"
    g.write_text("the 0.5 -1 3\n\ncafé 1 2 3\n", encoding="utf-8")
    v = read_word_vectors(g)
    assert v.words == ["the", "café"] and v.vectors.shape == (2, 3) and v.vectors.dtype == torch.float32
    assert read_word_vectors(f, max_words=2).words == ["the", "cat"]


@pytest.mark.parametrize("text,match", [
    ("", "no word vectors"),
    ("2 2\nthe 1 2\n", "header announces 2 vectors, the file has 1"),
    ("the 1 2\ncat 1\n", r"v.txt:2: expected a word and 2 values, got 2 fields"),
    ("the 1 2\ncat 1 x\n", r"v.txt:2: could not convert"),
    ("the 1 nan\n", r"v.txt:1: the vector of 'the' is not finite"),
    ("the 1 2\nthe 3 4\n", r"v.txt:2: 'the' was already given"),
    ("the\n", r"v.txt:1: expected a word and 0 values"),
])
def test_malformed_files(tmp_path, text, match):
    f = tmp_path / "v.txt"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        read_word_vectors(f)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="word-vector file not found"):
        read_word_vectors(tmp_path / "none.txt")
