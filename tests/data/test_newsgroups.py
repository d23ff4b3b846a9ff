"""Tests of latentnlp.data.newsgroups on small synthetic folders and on the real data."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from latentnlp.data import load_20news
from latentnlp.data.newsgroups import NVDM_20NEWS


def make_folder(root, files):
    folder = root / NVDM_20NEWS
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_load_20news_small_folder(tmp_path):
    make_folder(tmp_path, {"vocab.new": "a 3\nb 1\n", "train.feat": "1 1:2 2:1\n2 1:1\n", "test.feat": "20 2:4\n"})
    data = load_20news(tmp_path)
    assert set(data) == {"train", "test"}
    assert data["train"].vocab == data["test"].vocab == ("a", "b")
    np.testing.assert_array_equal(data["train"].counts.toarray(), [[2, 1], [1, 0]])
    np.testing.assert_array_equal(data["test"].labels, [20])


def test_load_20news_missing_file_is_named(tmp_path):
    make_folder(tmp_path, {"vocab.new": "a 3\n", "train.feat": "1 1:2\n"})
    with pytest.raises(FileNotFoundError, match="test.feat"):
        load_20news(tmp_path)


def test_load_20news_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="LATENTNLP_DATA"):
        load_20news(tmp_path)


@pytest.fixture(scope="module")
def nvdm(shared_data_dir):
    return load_20news(shared_data_dir)


@pytest.mark.parametrize("split, n_docs, n_tokens", [("train", 11268, 1128881), ("test", 7505, 720898)])
def test_real_nvdm_counts(nvdm, split, n_docs, n_tokens):
    corpus = nvdm[split]
    assert corpus.n_docs == n_docs
    assert corpus.n_tokens == n_tokens
    assert corpus.vocab_size == 2000
    assert corpus.labels.min() == 1 and corpus.labels.max() == 20
    assert set(np.unique(corpus.labels)) == set(range(1, 21))
    assert corpus.doc_lengths.min() > 0
    assert corpus.vocab[:3] == ("who", "out", "which")


def test_real_prodlda_drops_last_empty_document(shared_data_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="latentnlp.data"):
        data = load_20news(shared_data_dir, folder="20news-prodlda")
    train = data["train"]
    assert (train.n_docs, train.n_tokens, train.vocab_size) == (11258, 991493, 1995)
    assert (data["test"].n_docs, data["test"].n_tokens) == (7487, 629312)
    messages = [r.getMessage() for r in caplog.records]
    assert any("train.feat: dropped 1 empty document(s) (line 11259)" in m for m in messages)
