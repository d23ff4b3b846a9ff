"""Binary data readers: formats, and clear errors naming file and position."""

import gzip
import struct

import numpy as np
import pytest
import torch

from latentnlp.data.binary import (
    BinaryDataError,
    DynamicBinarizer,
    load_binarized_mnist,
    read_binary_matrix,
    read_binary_splits,
    read_idx,
)


def test_text_matrix_and_errors(tmp_path):
    good = tmp_path / "x.txt"
    good.write_text("0 1 1\n\n1,0,0\n")
    assert read_binary_matrix(good).tolist() == [[0, 1, 1], [1, 0, 0]]
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("0 1 1\n1 0\n")
    with pytest.raises(BinaryDataError, match="ragged.txt:2: 2 values"):
        read_binary_matrix(ragged)
    nonbin = tmp_path / "nb.txt"
    nonbin.write_text("0 1\n0 2\n")
    with pytest.raises(BinaryDataError, match="nb.txt:2: value 2.0"):
        read_binary_matrix(nonbin)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(BinaryDataError, match="empty file"):
        read_binary_matrix(empty)
    with pytest.raises(FileNotFoundError):
        read_binary_matrix(tmp_path / "missing.txt")


def test_npz_splits_and_errors(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, train=np.eye(3, dtype=np.uint8), valid=np.ones((2, 3)), test=np.zeros((1, 3)))
    splits = read_binary_splits(path)
    assert splits["train"].dtype == torch.float32 and splits["valid"].shape == (2, 3)
    assert read_binary_matrix(path, key="test").shape == (1, 3)
    with pytest.raises(BinaryDataError, match="say which one"):
        read_binary_matrix(path)
    bad = tmp_path / "bad.npz"
    np.savez(bad, train=np.array([[0, 1], [np.nan, 0]]), valid=np.zeros((1, 2)), test=np.zeros((1, 2)))
    with pytest.raises(BinaryDataError, match=r"bad.npz\[train\]: row 1, column 0"):
        read_binary_splits(bad)
    missing = tmp_path / "missing.npz"
    np.savez(missing, train=np.zeros((1, 2)))
    with pytest.raises(BinaryDataError, match="missing split"):
        read_binary_splits(missing)
    widths = tmp_path / "w.npz"
    np.savez(widths, train=np.zeros((1, 2)), valid=np.zeros((1, 3)), test=np.zeros((1, 2)))
    with pytest.raises(BinaryDataError, match="disagree"):
        read_binary_splits(widths)


def test_idx_reader(tmp_path):
    images = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    path = tmp_path / "img-idx3-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2, 2, 3) + images.tobytes())
    assert np.array_equal(read_idx(path), images)
    short = tmp_path / "short-idx"
    short.write_bytes(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 5) + b"\x00\x01")
    with pytest.raises(BinaryDataError, match="declares shape"):
        read_idx(short)


def test_dynamic_binarizer_draws_fresh_bernoullis():
    p = torch.full((2, 4000), 0.25)
    b = DynamicBinarizer(p, seed=0)
    first, second = b([0, 1]), b([0, 1])
    assert not torch.equal(first, second)
    assert abs(float(first.mean()) - 0.25) < 0.02
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DynamicBinarizer(torch.tensor([[1.5]]))


def test_real_binarized_mnist(shared_data_dir):
    d = load_binarized_mnist(shared_data_dir)
    assert {k: tuple(v.shape) for k, v in d.items()} == {"train": (50000, 784), "valid": (10000, 784), "test": (10000, 784)}
    assert 0.12 < float(d["train"].mean()) < 0.14
