"""The 20 Newsgroups corpus as bag-of-words: the preprocessed NVDM/ProdLDA releases read
from the data folder, or (with a network) built from scikit-learn's download."""

from __future__ import annotations

import os
from pathlib import Path

from latentnlp.data.bow import (
    BowCorpus,
    bow_from_texts,
    build_bow,
    read_feat,
    read_vocab,
)
from latentnlp.data.paths import DATA_ENV_VAR, dataset_path

__all__ = ["NVDM_20NEWS", "PRODLDA_20NEWS", "load_20news", "fetch_20newsgroups_bow"]

NVDM_20NEWS = "20news-nvdm"
"""Folder of 20 Newsgroups as preprocessed for NVDM (Miao et al. 2016): labels 1..20, V = 2,000."""

PRODLDA_20NEWS = "20news-prodlda"
"""Folder of 20 Newsgroups as preprocessed for ProdLDA: labels all 1, V = 1,995."""


def load_20news(
    data_dir: str | os.PathLike[str] | None = None, folder: str = NVDM_20NEWS
) -> dict[str, BowCorpus]:
    """Read ``train.feat``, ``test.feat`` and ``vocab.new`` from ``dataset_path(folder, data_dir)``.

    For ``20news-nvdm`` this gives train 11,268 documents / 1,128,881 tokens and test
    7,505 / 720,898, V = 2,000, labels 1..20. Empty documents (ProdLDA's files end with
    one) are dropped and logged, see :func:`latentnlp.data.bow.read_feat`.

    Returns:
        ``{"train": BowCorpus, "test": BowCorpus}`` sharing one vocabulary.

    Raises:
        FileNotFoundError: the folder or one of the three files is missing (named).
        CorpusFormatError: a file is malformed.
    """
    root = dataset_path(folder, data_dir)
    files = {name: Path(root) / name for name in ("vocab.new", "train.feat", "test.feat")}
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(
                f"missing data file {path}; point --data-dir or {DATA_ENV_VAR} at the folder holding {folder}/"
            )
    vocab = read_vocab(files["vocab.new"])
    return {
        "train": read_feat(files["train.feat"], vocab),
        "test": read_feat(files["test.feat"], vocab),
    }


def fetch_20newsgroups_bow(
    vocab_size: int = 2000,
    data_home: str | os.PathLike[str] | None = None,
    remove: tuple[str, ...] = ("headers", "footers", "quotes"),
) -> dict[str, BowCorpus]:
    """Download (or reuse scikit-learn's cache of) 20 Newsgroups and build a bag of words.

    The vocabulary (``vocab_size`` words, English stop words removed, see
    :func:`latentnlp.data.bow.build_bow`) comes from the training split only; the test
    split is mapped onto it with :func:`latentnlp.data.bow.bow_from_texts`. Labels are
    scikit-learn's ``target + 1`` (1..20, newsgroups in alphabetical order), which need not
    match the numbering of the NVDM files. Needs network access the first time.

    Returns:
        ``{"train": BowCorpus, "test": BowCorpus}`` sharing one vocabulary.

    Raises:
        OSError / URLError: the download fails.
    """
    from sklearn.datasets import fetch_20newsgroups

    home = None if data_home is None else os.fspath(data_home)
    train = fetch_20newsgroups(subset="train", remove=tuple(remove), data_home=home)
    test = fetch_20newsgroups(subset="test", remove=tuple(remove), data_home=home)
    train_bow = build_bow(train.data, vocab_size=vocab_size, labels=train.target + 1)
    test_bow = bow_from_texts(test.data, train_bow.vocab, labels=test.target + 1)
    return {"train": train_bow, "test": test_bow}
