"""Tagged-corpus readers, vocabularies and their errors; counts checked against MANIFEST.md."""

import logging
import zipfile

import pytest

from latentnlp.data.bow import CorpusFormatError
from latentnlp.data.tagged import (
    UNK,
    TaggedCorpus,
    build_tag_vocab,
    build_word_vocab,
    encode,
    read_conllu,
    read_tagged,
    read_treebank_zip,
    read_wordtag,
    treebank_sample_path,
    ud_ewt_path,
)

CONLLU = """# sent_id = 1
# text = I don't know.
1\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\t_
4.1\tknows\tknow\tVERB\tVBZ\t_\t_\t_\t4:conj\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = 2
1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def test_conllu_skips_ranges_and_empty_nodes(tmp_path):
    path = tmp_path / "a.conllu"
    path.write_text(CONLLU)
    upos = read_conllu(path)
    assert upos.words == [["I", "do", "n't", "know", "."], ["Hi"]]
    assert upos.tags[0] == ["PRON", "AUX", "PART", "VERB", "PUNCT"]
    assert read_conllu(path, "xpos").tags[0] == ["PRP", "VBP", "RB", "VB", "."]
    assert read_tagged(path, tag_column="xpos").tags[1] == ["UH"]


def test_conllu_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.conllu"
    path.write_text(CONLLU.replace("4\tknow\tknow\tVERB", "4\tknow\tknow VERB"))
    with pytest.raises(CorpusFormatError, match=r"bad\.conllu:7: expected 10 tab-separated columns"):
        read_conllu(path)
    path.write_text(CONLLU.replace("PART\tRB", "_\tRB"))
    with pytest.raises(CorpusFormatError, match=r"bad\.conllu:6: word \"n't\" has no UPOS tag"):
        read_conllu(path)
    with pytest.raises(ValueError, match="tag_column"):
        read_conllu(path, "lemma")
    with pytest.raises(FileNotFoundError):
        read_conllu(tmp_path / "missing.conllu")


def test_wordtag_reader_and_errors(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("The/DT cat/NN sat/VBD\n\n1/2/CD ./.\n")
    corpus = read_wordtag(path)
    assert corpus.words == [["The", "cat", "sat"], ["1/2", "."]]
    assert corpus.tags == [["DT", "NN", "VBD"], ["CD", "."]]
    path.write_text("The/DT cat/NN\nsat VBD\n")
    with pytest.raises(CorpusFormatError, match=r"s\.txt:2: token 'sat' is not word/TAG"):
        read_wordtag(path)
    path.write_text("The/ cat/NN\n")
    with pytest.raises(CorpusFormatError, match=r"s\.txt:1: token 'The/'"):
        read_wordtag(path)


def test_treebank_zip_errors(tmp_path):
    path = tmp_path / "tb.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("treebank/combined/wsj_0001.mrg", "( (S (NP (DT The) (NN cat)) (VP (VBD sat) (-NONE- *T*-1))) )\n"
                   "( (S (NP (NN dog)) )\n")
    with pytest.raises(CorpusFormatError, match=r"wsj_0001\.mrg:2: tree starting here is not closed"):
        read_treebank_zip(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("treebank/combined/wsj_0001.mrg", "( (S (NP (DT The) (NN cat)) (VP (VBD sat) (-NONE- *T*-1))) )\n")
    corpus = read_treebank_zip(path)
    assert corpus.words == [["The", "cat", "sat"]] and corpus.tags == [["DT", "NN", "VBD"]]
    (tmp_path / "no.zip").write_text("plain text")
    with pytest.raises(CorpusFormatError, match="not a zip file"):
        read_treebank_zip(tmp_path / "no.zip")


def test_vocabularies_and_unknown_words(caplog):
    train = TaggedCorpus([["a", "b", "a"], ["c", "a"]], [["X", "Y", "X"], ["Z", "X"]], "train")
    words = build_word_vocab(train, min_count=2)
    assert words.tokens == (UNK, "a") and words.unk_id == 0
    tags = build_tag_vocab(train)
    assert tags.tokens == ("X", "Y", "Z")
    test = TaggedCorpus([["a", "zzz"]], [["X", "W"]], "test")
    with caplog.at_level(logging.INFO, logger="latentnlp.data.tagged"):
        ids, tag_ids = encode(test, words, tags, unknown_tag="minus_one")
    assert ids[0].tolist() == [1, 0] and tag_ids[0].tolist() == [0, -1]
    assert "1 of 2 tokens (50.00%) are out of vocabulary" in caplog.text
    with pytest.raises(ValueError, match="tag 'W' of sentence 0"):
        encode(test, words, tags)
    with pytest.raises(ValueError, match="min_count"):
        build_word_vocab(train, min_count=0)


def test_treebank_sample_matches_manifest(shared_data_dir):
    corpus = read_treebank_zip(treebank_sample_path(shared_data_dir))
    assert (len(corpus), corpus.n_tokens, len(corpus.tag_counts())) == (3914, 94084, 45)
    assert "-NONE-" not in corpus.tag_counts()
    assert corpus.words[0][:3] == ["Pierre", "Vinken", ","]


def test_ud_ewt_matches_manifest(shared_data_dir):
    train = read_conllu(ud_ewt_path("train", shared_data_dir), "upos")
    assert (len(train), train.n_tokens, len(train.tag_counts())) == (12544, 204577, 17)
    test = read_conllu(ud_ewt_path("test", shared_data_dir), "xpos")
    assert (len(test), test.n_tokens) == (2077, 25094)


def test_missing_data_set_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nltk-treebank-sample"):
        treebank_sample_path(tmp_path)
    with pytest.raises(ValueError, match="split"):
        ud_ewt_path("valid", tmp_path)
