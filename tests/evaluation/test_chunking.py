"""Chunk spans by conlleval's rules, scheme conversion, conlleval scores and the confusion matrix, by hand."""

import itertools
import json
import random

import numpy as np
import pytest

from latentnlp.evaluation.chunking import (
    ChunkScores,
    chunk_scores,
    chunks,
    confusion,
    confusion_matrix_png,
    convert_scheme,
)


@pytest.mark.parametrize(
    "tags, scheme, spans",
    [
        (["B-NP", "I-NP", "O", "B-VP", "B-NP"], "iob2", [("NP", 0, 2), ("VP", 3, 4), ("NP", 4, 5)]),
        (["I-NP", "I-NP", "B-NP", "O", "I-VP"], "iob1", [("NP", 0, 2), ("NP", 2, 3), ("VP", 4, 5)]),
        (["S-NP", "B-VP", "I-VP", "E-VP", "S-NP", "S-NP"], "iobes", [("NP", 0, 1), ("VP", 1, 4), ("NP", 4, 5), ("NP", 5, 6)]),
        (["B-PP-LOC", "I-PP-LOC"], "iob2", [("PP-LOC", 0, 2)]),  # the type is everything after the first '-'
        ([], "iob2", []),
        (["O", "O"], "iobes", []),
    ],
)
def test_spans_of_well_formed_tags(tags, scheme, spans):
    assert chunks(tags, scheme) == spans


@pytest.mark.parametrize(
    "tags, scheme, spans",
    [
        (["O", "I-NP"], "iob2", [("NP", 1, 2)]),  # I after O starts a chunk
        (["I-NP", "I-NP"], "iob2", [("NP", 0, 2)]),  # ... so does I at the start of a sentence
        (["B-NP", "I-VP"], "iob2", [("NP", 0, 1), ("VP", 1, 2)]),  # a type change ends one chunk and starts another
        (["B-NP", "I-VP", "I-VP", "O", "I-NP"], "iob1", [("NP", 0, 1), ("VP", 1, 3), ("NP", 4, 5)]),
        (["B-NP", "I-NP", "O"], "iobes", [("NP", 0, 2)]),  # no E-NP: the chunk ends before O
        (["E-NP", "E-NP"], "iobes", [("NP", 0, 1), ("NP", 1, 2)]),
        (["S-NP", "I-NP"], "iobes", [("NP", 0, 1), ("NP", 1, 2)]),
        (["B-NP", "S-NP"], "iobes", [("NP", 0, 1), ("NP", 1, 2)]),
        (["B-NP", "E-VP"], "iobes", [("NP", 0, 1), ("VP", 1, 2)]),
        (["B-NP", "I-NP", "E-NP", "I-NP"], "iobes", [("NP", 0, 3), ("NP", 3, 4)]),
        (["S-NP", "S-NP"], "iobes", [("NP", 0, 1), ("NP", 1, 2)]),
    ],
)
def test_spans_of_malformed_tags_follow_conlleval(tags, scheme, spans):
    assert chunks(tags, scheme) == spans


def test_tags_outside_the_scheme_are_errors():
    with pytest.raises(ValueError, match=r"tag 'E-NP' at position 1 .*iob2"):
        chunks(["B-NP", "E-NP"], "iob2")
    for bad in ("NP", "B-", "X-NP", "o"):
        with pytest.raises(ValueError, match="is not O or P-TYPE"):
            chunks([bad], "iobes")
    with pytest.raises(ValueError, match="scheme must be one of"):
        chunks(["O"], "bio")
    with pytest.raises(ValueError, match="not the string|got the string"):
        chunks("B-NP", "iob2")


SAME_CHUNKS = {
    "iob1": ["I-NP", "I-NP", "B-NP", "O", "I-VP", "I-PP", "I-NP", "I-NP"],
    "iob2": ["B-NP", "I-NP", "B-NP", "O", "B-VP", "B-PP", "B-NP", "I-NP"],
    "iobes": ["B-NP", "E-NP", "S-NP", "O", "S-VP", "S-PP", "B-NP", "E-NP"],
}


@pytest.mark.parametrize("source, target", list(itertools.permutations(SAME_CHUNKS, 2)))
def test_convert_scheme_by_hand_and_round_trip(source, target):
    converted = convert_scheme(SAME_CHUNKS[source], source, target)
    assert converted == SAME_CHUNKS[target]
    assert convert_scheme(converted, target, source) == SAME_CHUNKS[source]
    assert chunks(converted, target) == chunks(SAME_CHUNKS[source], source)


def test_convert_scheme_reads_malformed_input_as_conlleval():
    assert convert_scheme(["O", "I-NP", "I-VP"], "iob2", "iob2") == ["O", "B-NP", "B-VP"]
    assert convert_scheme(["B-NP", "I-NP", "O"], "iobes", "iobes") == ["B-NP", "E-NP", "O"]
    with pytest.raises(ValueError, match="target must be one of"):
        convert_scheme(["O"], "iob2", "ioe2")


def test_chunk_scores_by_hand():
    # gold: NP[0,2) VP[2,3) NP[3,4); predicted: NP[0,2) VP[2,3) NP[3,5).
    # The last predicted NP covers the gold NP's token but ends one token later: wrong (CoNLL-2000).
    gold = [["B-NP", "I-NP", "B-VP", "B-NP", "O"]]
    pred = [["B-NP", "I-NP", "B-VP", "B-NP", "I-NP"]]
    s = chunk_scores(pred, gold)
    assert (s.n_gold, s.n_pred, s.n_correct, s.n_tokens) == (3, 3, 2, 5)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3) and s.f1 == pytest.approx(2 / 3)
    assert s.token_accuracy == pytest.approx(4 / 5)
    assert s.per_type == {"NP": (0.5, 0.5, 0.5, 2, 2), "VP": (1.0, 1.0, 1.0, 1, 1)}


def test_chunk_scores_precision_and_recall_differ():
    # gold 4 chunks (NP NP in s0, PP NP in s1); predicted 2 chunks, both right: P = 1, R = 1/2, F1 = 2/3.
    gold = [["B-NP", "O", "B-NP"], ["B-PP", "B-NP", "I-NP"]]
    pred = [["B-NP", "O", "O"], ["O", "B-NP", "I-NP"]]
    s = chunk_scores(pred, gold)
    assert (s.precision, s.recall) == (1.0, 0.5) and s.f1 == pytest.approx(2 / 3)
    assert s.per_type["PP"] == (0.0, 0.0, 0.0, 1, 0)
    assert s.per_type["NP"] == (1.0, pytest.approx(2 / 3), pytest.approx(0.8), 3, 2)
    # a start-boundary error: same type and end, different start -> wrong
    assert chunk_scores([["B-NP", "I-NP", "I-NP"]], [["O", "B-NP", "I-NP"]]).n_correct == 0
    # a type error: same boundaries, different type -> wrong
    assert chunk_scores([["B-VP", "I-VP"]], [["B-NP", "I-NP"]]).f1 == 0.0


def test_chunks_do_not_cross_sentences():
    # conlleval ends every chunk at a sentence break; I-NP then starts a new chunk
    s = chunk_scores([["I-NP"], ["I-NP"]], [["B-NP"], ["B-NP"]])
    assert (s.n_gold, s.n_pred, s.n_correct, s.token_accuracy) == (2, 2, 2, 0.0)


def test_iobes_scores_and_empty_predictions():
    gold = [["S-NP", "B-VP", "E-VP", "O"]]
    assert chunk_scores(gold, gold, "iobes").f1 == 1.0
    s = chunk_scores([["O", "O", "O", "O"]], gold, "iobes")
    assert (s.precision, s.recall, s.f1, s.n_pred) == (0.0, 0.0, 0.0, 0)


def test_chunk_scores_errors():
    with pytest.raises(ValueError, match="2 predicted sentences but 1 gold"):
        chunk_scores([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 1: 1 predicted tags but 2 gold"):
        chunk_scores([["O"], ["O"]], [["O"], ["O", "O"]])
    with pytest.raises(ValueError, match="sentence 0: tag 'S-NP'"):
        chunk_scores([["S-NP"]], [["B-NP"]], "iob2")
    with pytest.raises(ValueError, match="sentence 0 is a string"):
        chunk_scores(["B-NP"], ["B-NP"])


def test_report_and_dict():
    s = chunk_scores([["B-NP", "I-NP", "B-VP", "B-NP", "I-NP"]], [["B-NP", "I-NP", "B-VP", "B-NP", "O"]])
    text = s.format()
    assert "processed 5 tokens with 3 phrases; found: 3 phrases; correct: 2." in text
    assert "accuracy:  80.00%; precision:  66.67%; recall:  66.67%; FB1:  66.67" in text
    assert "               NP: precision:  50.00%; recall:  50.00%; FB1:  50.00  2" in text
    d = json.loads(json.dumps(s.to_dict()))
    assert d["per_type"]["VP"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "n_gold": 1, "n_pred": 1}
    assert d["n_correct"] == 2 and isinstance(s, ChunkScores)


# conlleval's own counting, streamed over tokens with a sentence break as "O" (the 2004 script's
# main loop and its B/I/O rules, written out independently of the module), for random BIO tags.
def _conlleval_counts(pred_sents, gold_sents):
    def split(tag):
        return ("O", "") if tag == "O" else tuple(tag.split("-", 1))

    def end(pt, t, ptype, ty):
        pairs = {("B", "B"), ("B", "O"), ("I", "B"), ("I", "O")}
        return (pt, t) in pairs or (pt != "O" and ptype != ty)

    def start(pt, t, ptype, ty):
        pairs = {("B", "B"), ("I", "B"), ("O", "B"), ("O", "I")}
        return (pt, t) in pairs or (t != "O" and ptype != ty)

    lines = []
    for p, g in zip(pred_sents, gold_sents):
        lines += list(zip(g, p)) + [("O", "O")]
    correct = found_gold = found_pred = 0
    in_correct = False
    lc, lct, lg, lgt = "O", "", "O", ""
    for gold_tag, pred_tag in lines:
        c, ct = split(gold_tag)
        g, gt = split(pred_tag)
        if in_correct:
            ec, eg = end(lc, c, lct, ct), end(lg, g, lgt, gt)
            if ec and eg and lgt == lct:
                in_correct = False
                correct += 1
            elif ec != eg or gt != ct:
                in_correct = False
        sc, sg = start(lc, c, lct, ct), start(lg, g, lgt, gt)
        if sc and sg and gt == ct:
            in_correct = True
        found_gold += sc
        found_pred += sg
        lc, lct, lg, lgt = c, ct, g, gt
    return correct + in_correct, found_gold, found_pred


def test_agrees_with_conlleval_counting_on_random_bio_tags():
    rng = random.Random(0)
    alphabet = ["O", "B-NP", "I-NP", "B-VP", "I-VP"]
    for _ in range(300):
        lengths = [rng.randint(0, 7) for _ in range(rng.randint(1, 4))]
        gold = [[rng.choice(alphabet) for _ in range(n)] for n in lengths]
        pred = [[rng.choice(alphabet) for _ in range(n)] for n in lengths]
        s = chunk_scores(pred, gold)
        assert (s.n_correct, s.n_gold, s.n_pred) == _conlleval_counts(pred, gold), (pred, gold)


def test_confusion_by_hand_and_png(tmp_path):
    gold = ["NN", "NN", "VB", "DT"]
    pred = ["NN", "VB", "VB", "DT"]
    labels, matrix = confusion(pred, gold)
    assert labels == ["DT", "NN", "VB"]
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]  # rows gold, columns predicted
    assert matrix.dtype == np.int64
    labels, matrix = confusion(pred, gold, labels=["VB", "NN"])
    assert matrix.tolist() == [[1, 0], [1, 1]]
    out = confusion_matrix_png(pred, gold, tmp_path / "figs" / "cm.png", title="POS")
    assert out == tmp_path / "figs" / "cm.png"
    data = out.read_bytes()
    assert len(data) > 100 and data[:8] == b"\x89PNG\r\n\x1a\n"
    raw = confusion_matrix_png(pred, gold, tmp_path / "raw.png", normalize=False)
    assert raw.stat().st_size > 0
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind
    with pytest.raises(ValueError, match="got 4 and 3"):
        confusion(pred, gold[:3])
    with pytest.raises(ValueError, match="empty"):
        confusion([], [])


def test_conll2000_baseline_matches_the_shared_task_paper(shared_data_dir):
    # Tjong Kim Sang & Buchholz (2000): the baseline (each POS tag's most frequent chunk tag in
    # train) scores precision 72.58%, recall 82.14%, FB1 77.07 on test.
    from collections import Counter, defaultdict

    from latentnlp.data.columns import conll2000_path, read_columns

    names = ("word", "pos", "chunk")
    train = read_columns(conll2000_path("train", shared_data_dir), names)
    test = read_columns(conll2000_path("test", shared_data_dir), names)
    counts = defaultdict(Counter)
    for pos, chunk in zip(train.column("pos"), train.column("chunk")):
        for p, c in zip(pos, chunk):
            counts[p][c] += 1
    best = {p: c.most_common(1)[0][0] for p, c in counts.items()}
    pred = [[best.get(p, "O") for p in pos] for pos in test.column("pos")]
    s = chunk_scores(pred, test.column("chunk"))
    assert (round(100 * s.precision, 2), round(100 * s.recall, 2), round(100 * s.f1, 2)) == (72.58, 82.14, 77.07)
    assert (s.n_gold, s.n_tokens) == (23852, 47377)
    assert chunk_scores(test.column("chunk"), test.column("chunk")).f1 == 1.0
