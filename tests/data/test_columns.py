"""Column-file reader (CoNLL, CoNLL-U), its errors, ColumnCorpus operations; CoNLL-2000 checked against MANIFEST.md."""

import pytest

from latentnlp.data.bow import CorpusFormatError
from latentnlp.data.columns import ColumnCorpus, ColumnFormatError, conll2000_path, read_columns
from latentnlp.data.tagged import TaggedCorpus

# CoNLL-2000 style: a DOCSTART line with its blank line, '#' as a word (it is one in WSJ),
# tab and space separators, trailing whitespace, several blank lines, no final newline.
CONLL = (
    "-DOCSTART- -X- O\n"
    "\n"
    "Confidence NN B-NP\n"
    "in\tIN\tB-PP  \n"
    "the DT B-NP\n"
    "# # I-NP\n"
    "\n"
    "\n"
    "# # O\n"
    "Rockwell NNP B-NP\n"
    "\n"
    "-DOCSTART- -X- O\n"
    "\n"
    "Hi UH O"
)


def conll_file(tmp_path, text=CONLL, name="c.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_conll_reader_round_trip(tmp_path):
    path = conll_file(tmp_path)
    corpus = read_columns(path, ("word", "pos", "chunk"))
    assert corpus.names == ("word", "pos", "chunk")
    assert (len(corpus), corpus.n_tokens) == (3, 7)
    assert corpus.column("word") == [["Confidence", "in", "the", "#"], ["#", "Rockwell"], ["Hi"]]
    assert corpus.column("pos")[0] == ["NN", "IN", "DT", "#"]
    assert corpus.column("chunk") == [["B-NP", "B-PP", "B-NP", "I-NP"], ["O", "B-NP"], ["O"]]
    assert corpus.sentence(1) == {"word": ["#", "Rockwell"], "pos": ["#", "NNP"], "chunk": ["O", "B-NP"]}
    assert corpus.source == str(path)
    # default names, and the same file given explicitly as "conll"
    plain = read_columns(path, format="conll")
    assert plain.names == ("col0", "col1", "col2")
    assert plain.columns["col2"] == corpus.column("chunk")
    # trailing blank lines change nothing
    assert read_columns(conll_file(tmp_path, CONLL + "\n\n\n", "d.txt")).columns == plain.columns


def test_conll_single_column_and_no_docstart(tmp_path):
    corpus = read_columns(conll_file(tmp_path, "a\nb\n\nc\n"))
    assert corpus.columns == {"col0": [["a", "b"], ["c"]]}


@pytest.mark.parametrize(
    "text, names, line, reason",
    [
        ("", None, 1, "no sentences"),
        ("\n\n-DOCSTART- -X- O\n\n", None, 4, "no sentences in 4 lines"),
        ("a DT B-NP\nb NN\n", None, 2, r"2 columns, expected 3 \(as on line 1"),
        ("\n\na DT B-NP\n\nb NN I-NP x\n", None, 5, r"4 columns, expected 3 \(as on line 3"),
        ("\na DT B-NP\n", ("word", "pos"), 2, r"2 column names \('word', 'pos'\) given but the file has 3 columns"),
        ("a DT B-NP\n", ("word", "pos", "word"), 1, "duplicate column name 'word'"),
    ],
)
def test_conll_errors_name_file_and_line(tmp_path, text, names, line, reason):
    path = conll_file(tmp_path, text, "bad.txt")
    with pytest.raises(ColumnFormatError, match=rf"bad\.txt:{line}: {reason}") as info:
        read_columns(path, names)
    assert info.value.line == line and isinstance(info.value, ValueError) and isinstance(info.value, CorpusFormatError)


def test_reader_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_columns(tmp_path / "missing.txt")
    path = conll_file(tmp_path)
    with pytest.raises(ValueError, match="format must be one of"):
        read_columns(path, format="csv")
    with pytest.raises(TypeError, match="not the string"):
        read_columns(path, "word")
    (tmp_path / "latin1.txt").write_bytes(b"ok DT O\n\ncaf\xe9 NN O\n")
    with pytest.raises(ColumnFormatError, match=r"latin1\.txt:3: not UTF-8"):
        read_columns(tmp_path / "latin1.txt")


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
1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_
"""


def test_conllu_skips_multiword_tokens_and_empty_nodes(tmp_path):
    path = tmp_path / "a.conllu"
    path.write_text(CONLLU)
    corpus = read_columns(path)  # format from the suffix
    assert corpus.names == ("form", "lemma", "upos", "xpos")
    assert corpus.column("form") == [["I", "do", "n't", "know", "."], ["Hi"]]
    assert corpus.column("lemma")[0] == ["I", "do", "not", "know", "."]
    assert corpus.column("upos")[0] == ["PRON", "AUX", "PART", "VERB", "PUNCT"]
    assert corpus.column("xpos") == [["PRP", "VBP", "RB", "VB", "."], ["_"]]
    # names select columns, kept in file order
    chosen = read_columns(path, names=["xpos", "form"])
    assert chosen.names == ("form", "xpos") and chosen.column("xpos") == corpus.column("xpos")
    with pytest.raises(ColumnFormatError, match=r"a\.conllu:3: unknown CoNLL-U column name\(s\) \['deprel'\]"):
        read_columns(path, names=["form", "deprel"])
    with pytest.raises(ColumnFormatError, match=r"a\.conllu:3: duplicate column name 'form'"):
        read_columns(path, names=["form", "form"])


def test_conllu_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.conllu"
    path.write_text(CONLLU.replace("4\tknow\tknow\tVERB", "4\tknow\tknow VERB"))
    with pytest.raises(ColumnFormatError, match=r"bad\.conllu:7: expected 10 tab-separated columns, got 9"):
        read_columns(path)
    path.write_text("# only a comment\n\n")
    with pytest.raises(ColumnFormatError, match=r"bad\.conllu:2: no sentences"):
        read_columns(path)
    # a .txt file can still be read as CoNLL-U
    (tmp_path / "u.txt").write_text(CONLLU)
    assert len(read_columns(tmp_path / "u.txt", format="conllu")) == 2


def small_corpus(n=10):
    words = [[f"w{d}", f"x{d}"] for d in range(n)]
    tags = [["B-NP", "I-NP"] if d % 2 else ["O", "B-VP"] for d in range(n)]
    return ColumnCorpus({"word": words, "chunk": tags}, "mem")


def test_corpus_validation_and_column_errors():
    with pytest.raises(ValueError, match="column 'chunk' has 1 sentences but column 'word' has 2"):
        ColumnCorpus({"word": [["a"], ["b"]], "chunk": [["O"]]})
    with pytest.raises(ValueError, match="sentence 1 has 2 tokens in column 'chunk' but 1 in column 'word'"):
        ColumnCorpus({"word": [["a"], ["b"]], "chunk": [["O"], ["O", "O"]]})
    with pytest.raises(ValueError, match="at least one column"):
        ColumnCorpus({})
    with pytest.raises(ValueError, match=r"no column 'pos'; the columns are \('word', 'chunk'\)"):
        small_corpus().column("pos")


def test_subset_head_and_tagged():
    corpus = small_corpus()
    sub = corpus.subset([3, 0])
    assert sub.column("word") == [["w3", "x3"], ["w0", "x0"]] and sub.names == corpus.names
    assert len(corpus.head(4)) == 4 and len(corpus.head(99)) == 10
    tagged = corpus.tagged("word", "chunk")
    assert isinstance(tagged, TaggedCorpus)
    assert tagged.words[1] == ["w1", "x1"] and tagged.tags[1] == ["B-NP", "I-NP"] and tagged.source == "mem"
    tagged.words[0][0] = "changed"  # a copy: the corpus is untouched
    assert corpus.column("word")[0][0] == "w0"
    with pytest.raises(ValueError, match="no column 'pos'"):
        corpus.tagged("word", "pos")


def test_split_is_seeded_disjoint_and_complete():
    corpus = small_corpus()
    rest, held = corpus.split(0.3, seed=7)
    assert (len(rest), len(held)) == (7, 3)
    rest_ids = [w[0] for w in rest.column("word")]
    held_ids = [w[0] for w in held.column("word")]
    assert not set(rest_ids) & set(held_ids)
    assert sorted(rest_ids + held_ids) == sorted(f"w{d}" for d in range(10))
    assert rest_ids == sorted(rest_ids, key=lambda w: int(w[1:]))  # corpus order kept
    again_rest, again_held = corpus.split(0.3, seed=7)
    assert again_held.columns == held.columns and again_rest.columns == rest.columns
    other = [corpus.split(0.3, seed=s)[1].column("word") for s in range(5)]
    assert any(o != held.column("word") for o in other)  # the seed matters
    with pytest.raises(ValueError, match="empty part"):
        corpus.split(0.01, seed=0)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        corpus.split(1.0, seed=0)


def test_conll2000_first_sentences(shared_data_dir):
    corpus = read_columns(conll2000_path("train", shared_data_dir), ("word", "pos", "chunk")).head(50)
    assert len(corpus) == 50 and corpus.names == ("word", "pos", "chunk")
    assert corpus.sentence(0)["word"][:3] == ["Confidence", "in", "the"]
    assert corpus.sentence(0)["chunk"][:3] == ["B-NP", "B-PP", "B-NP"]
    for d, tags in enumerate(corpus.column("chunk")):
        prev = "O"
        for n, tag in enumerate(tags):
            prefix, _, kind = tag.partition("-")
            assert tag == "O" or (prefix in ("B", "I") and kind), (d, n, tag)
            if prefix == "I":  # IOB2: an I-X only continues a chunk of type X, which began with B-X
                assert prev in (f"B-{kind}", f"I-{kind}"), (d, n, prev, tag)
            prev = tag
    assert any("#" in words for words in corpus.column("word"))  # '#' is a word, not a comment


def test_conll2000_matches_manifest(shared_data_dir):
    test = read_columns(conll2000_path("test", shared_data_dir), ("word", "pos", "chunk"))
    assert (len(test), test.n_tokens) == (2012, 47377)


def test_conll2000_path_errors(tmp_path):
    with pytest.raises(ValueError, match="split"):
        conll2000_path("dev", tmp_path)
    with pytest.raises(FileNotFoundError, match="conll2000"):
        conll2000_path("train", tmp_path)
    (tmp_path / "conll2000").mkdir()
    with pytest.raises(FileNotFoundError, match=r"conll2000/test\.txt"):
        conll2000_path("test", tmp_path)
