"""One-sentence-per-line corpora: reader errors, the language-model vocabulary, batching, the Penn Treebank."""

from __future__ import annotations

import json

import pytest
import torch

from latentnlp.data.bow import CorpusFormatError
from latentnlp.data.sentences import (
    SentenceVocabulary,
    batchify_stream,
    collate_sentences,
    ptb_paths,
    read_sentences,
)
from latentnlp.data.vocab import Vocabulary

pytestmark = pytest.mark.usefixtures("one_thread")


def _write(tmp_path, content: bytes | str, name: str = "corpus.txt"):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


# ------------------------------------------------------------------------- reading
def test_read_sentences(tmp_path):
    path = _write(tmp_path, " The cat  sat \nA dog\tran\r\nhome")
    assert read_sentences(path) == [["The", "cat", "sat"], ["A", "dog", "ran"], ["home"]]
    assert read_sentences(str(path), lowercase=True) == [["the", "cat", "sat"], ["a", "dog", "ran"], ["home"]]
    assert read_sentences(_write(tmp_path, "née café\n", "utf8.txt")) == [["née", "café"]]


def test_read_sentences_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_sentences(tmp_path / "nope.txt")


def test_read_sentences_empty_file(tmp_path):
    path = _write(tmp_path, "")
    with pytest.raises(CorpusFormatError, match="empty") as err:
        read_sentences(path)
    assert err.value.path == str(path) and err.value.line is None
    assert str(path) in str(err.value)


@pytest.mark.parametrize("content", ["a b\n\nc d\n", "a b\n   \t\nc d\n"])
def test_read_sentences_blank_line(tmp_path, content):
    path = _write(tmp_path, content)
    with pytest.raises(CorpusFormatError, match="blank line") as err:
        read_sentences(path)
    assert err.value.line == 2
    assert str(err.value).startswith(f"{path}:2:")


def test_read_sentences_not_utf8(tmp_path):
    path = _write(tmp_path, b"fine words\nstill fine\nbad \xff\xfe bytes\n")
    with pytest.raises(CorpusFormatError, match="UTF-8") as err:
        read_sentences(path)
    assert err.value.line == 3
    assert str(err.value).startswith(f"{path}:3:")


# ---------------------------------------------------------------------- vocabulary
CORPUS = [["b", "a", "c"], ["a", "b", "d"], ["a", "e"], ["<unk>", "f", "<eos>"]]


def test_vocabulary_build_orders_specials_then_by_frequency():
    vocab = SentenceVocabulary.build(CORPUS)
    # a 3, b 2, then c d e f once each in first-seen order; "<unk>"/"<eos>" in the text are the specials
    assert vocab.tokens == ("<pad>", "<bos>", "<eos>", "<unk>", "a", "b", "c", "d", "e", "f")
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    assert len(vocab) == 10
    assert SentenceVocabulary.build(CORPUS, min_count=2).tokens == ("<pad>", "<bos>", "<eos>", "<unk>", "a", "b")
    assert SentenceVocabulary.build(CORPUS, max_size=7).tokens == ("<pad>", "<bos>", "<eos>", "<unk>", "a", "b", "c")
    with pytest.raises(ValueError, match="min_count"):
        SentenceVocabulary.build(CORPUS, min_count=0)


def test_vocabulary_needs_its_specials_in_place():
    with pytest.raises(ValueError, match="starts with"):
        SentenceVocabulary(Vocabulary(("<bos>", "<pad>", "<eos>", "<unk>", "a"), unk="<unk>"))
    with pytest.raises(ValueError, match="starts with"):
        SentenceVocabulary(Vocabulary(("<pad>", "<bos>", "<eos>", "<unk>", "a")))


def test_encode_reports_unknown_words():
    vocab = SentenceVocabulary.build(CORPUS, min_count=2)
    unknown: list[str] = []
    ids = vocab.encode(["a", "zebra", "b", "c", "<eos>"], unknown)
    assert ids.dtype == torch.long
    assert ids.tolist() == [4, 3, 5, 3, 2]
    assert unknown == ["zebra", "c"]
    assert vocab.encode(["zebra"]).tolist() == [3]  # no list: nothing reported, no error
    encoded, unknown = vocab.encode_all([["a"], ["q", "b"], ["q"]])
    assert [t.tolist() for t in encoded] == [[4], [3, 5], [3]]
    assert unknown == ["q", "q"]


def test_decode_skips_pad_and_bos_and_stops_at_eos():
    vocab = SentenceVocabulary.build(CORPUS)
    assert vocab.decode([1, 4, 0, 5, 3, 2, 6, 7]) == ["a", "b", "<unk>"]
    assert vocab.decode(torch.tensor([1, 4, 2, 6])) == ["a"]
    assert vocab.decode([1, 4, 2, 6], stop_at_eos=False) == ["a", "<eos>", "c"]
    assert vocab.decode([]) == []


def test_vocabulary_json_round_trip():
    vocab = SentenceVocabulary.build(CORPUS, min_count=1)
    again = SentenceVocabulary.from_json(json.loads(json.dumps(vocab.to_json())))
    assert again.tokens == vocab.tokens
    assert again.vocab == vocab.vocab
    assert again.encode(["f", "zebra"]).tolist() == vocab.encode(["f", "zebra"]).tolist() == [9, 3]


# ------------------------------------------------------------------------ batching
def test_collate_sentences():
    vocab = SentenceVocabulary.build(CORPUS)
    ids = [torch.tensor([4, 5, 6]), torch.tensor([7]), torch.tensor([8, 9])]
    batch = collate_sentences(ids, vocab)
    assert len(batch) == 3
    assert batch.lengths.tolist() == [4, 2, 3]
    assert batch.inputs.tolist() == [[1, 4, 5, 6], [1, 7, 0, 0], [1, 8, 9, 0]]
    assert batch.targets.tolist() == [[4, 5, 6, 2], [7, 2, 0, 0], [8, 9, 2, 0]]
    assert batch.mask.tolist() == [[True] * 4, [True, True, False, False], [True, True, True, False]]
    truncated = collate_sentences(ids, vocab, max_length=2)
    assert truncated.inputs.tolist() == [[1, 4, 5], [1, 7, 0], [1, 8, 9]]
    assert truncated.targets.tolist() == [[4, 5, 2], [7, 2, 0], [8, 9, 2]]
    assert truncated.lengths.tolist() == [3, 2, 3]
    with pytest.raises(ValueError, match="empty"):
        collate_sentences([], vocab)


def test_batchify_stream():
    vocab = SentenceVocabulary.build(CORPUS)
    ids = [torch.tensor([4, 5, 6]), torch.tensor([7]), torch.tensor([8, 9])]
    # the stream: 4 5 6 <eos> 7 <eos> 8 9 <eos> (9 tokens)
    stream = batchify_stream(ids, vocab, 2)
    assert stream.shape == (2, 4) and stream.dtype == torch.long
    assert stream.tolist() == [[4, 5, 6, 2], [7, 2, 8, 9]]  # the last <eos> is the dropped remainder
    assert batchify_stream(ids, vocab, 1).tolist() == [[4, 5, 6, 2, 7, 2, 8, 9, 2]]
    assert batchify_stream(ids, vocab, 3).tolist() == [[4, 5, 6], [2, 7, 2], [8, 9, 2]]
    assert batchify_stream(ids, vocab, 4).shape == (4, 2)
    with pytest.raises(ValueError, match="cannot fill 5 streams"):
        batchify_stream(ids, vocab, 5)
    with pytest.raises(ValueError, match="cannot fill"):
        batchify_stream([], vocab, 1)
    with pytest.raises(ValueError, match="n_streams"):
        batchify_stream(ids, vocab, 0)


# -------------------------------------------------------------------- Penn Treebank
def test_ptb_paths_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        ptb_paths(tmp_path)
    assert str(tmp_path / "ptb") in str(err.value)


def test_ptb_paths_missing_file(tmp_path):
    (tmp_path / "ptb").mkdir()
    for name in ("ptb.train.txt", "ptb.test.txt"):
        (tmp_path / "ptb" / name).write_text("a b\n")
    with pytest.raises(FileNotFoundError, match="ptb.valid.txt"):
        ptb_paths(tmp_path)
    (tmp_path / "ptb" / "ptb.valid.txt").write_text("a b\n")
    paths = ptb_paths(tmp_path)
    assert paths == {split: tmp_path / "ptb" / f"ptb.{split}.txt" for split in ("train", "valid", "test")}


def test_ptb_paths_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "ptb").mkdir()
    for split in ("train", "valid", "test"):
        (tmp_path / "ptb" / f"ptb.{split}.txt").write_text("a b\n")
    monkeypatch.setenv("LATENTNLP_DATA", str(tmp_path))
    assert ptb_paths()["test"] == tmp_path / "ptb" / "ptb.test.txt"


def test_real_ptb(shared_data_dir):
    if not (shared_data_dir / "ptb").is_dir():
        pytest.skip(f"no ptb/ under {shared_data_dir}")
    paths = ptb_paths(shared_data_dir)
    train = read_sentences(paths["train"])
    assert len(train) == 42_068
    assert sum(len(s) for s in train) == 887_521  # 929,589 tokens with one <eos> per sentence
    vocab = SentenceVocabulary.build(train)
    assert len(vocab) == 10_002  # Mikolov's 10,000 (words, <unk> and <eos>) plus <pad> and <bos>
    assert vocab.tokens[:5] == ("<pad>", "<bos>", "<eos>", "<unk>", "the")
    sizes = {"valid": (3_370, 70_390), "test": (3_761, 78_669)}
    for split, (n_sentences, n_words) in sizes.items():
        sentences = read_sentences(paths[split])
        assert (len(sentences), sum(len(s) for s in sentences)) == (n_sentences, n_words)
        _, unknown = vocab.encode_all(sentences)
        assert unknown == []
