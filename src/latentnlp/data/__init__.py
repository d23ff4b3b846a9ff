"""Data layer: bag-of-words corpora, their file formats, and where data sets live."""

from latentnlp.data.bow import (
    BowCorpus,
    CorpusFormatError,
    bow_from_texts,
    build_bow,
    read_feat,
    read_vocab,
    write_feat,
    write_vocab,
)
from latentnlp.data.columns import ColumnCorpus, ColumnFormatError, conll2000_path, read_columns
from latentnlp.data.newsgroups import fetch_20newsgroups_bow, load_20news
from latentnlp.data.paths import dataset_path, resolve_data_dir

__all__ = [
    "BowCorpus",
    "CorpusFormatError",
    "read_feat",
    "read_vocab",
    "write_feat",
    "write_vocab",
    "build_bow",
    "bow_from_texts",
    "load_20news",
    "fetch_20newsgroups_bow",
    "resolve_data_dir",
    "dataset_path",
    "ColumnCorpus",
    "ColumnFormatError",
    "read_columns",
    "conll2000_path",
]
