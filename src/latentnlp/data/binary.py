"""Binary data for density estimation: binarized MNIST, raw MNIST, and any 0/1 matrix a user brings.

Formats read here:

* ``binarized-mnist/binarized_mnist_uint8.npz``: the fixed stochastic binarization
  of Larochelle & Murray (2011), keys ``train``/``valid``/``test``, uint8 0/1 arrays
  of shape ``(N, 784)`` (50,000 / 10,000 / 10,000). Read with ``allow_pickle=False``.
* ``mnist-raw/*-idx3-ubyte.gz``: the original MNIST grey levels (LeCun & Cortes),
  for dynamic binarization (each pixel ~ Bernoulli(intensity), redrawn every time).
* A user's own data: ``.npz`` (one array per split), ``.npy``, or a text matrix
  with one example per line and 0/1 values separated by spaces or commas.

Every reader returns ``float32`` tensors of shape ``(N, D)`` with values in
``{0, 1}`` and raises :class:`BinaryDataError` naming the file, key, line or row
on anything else (empty files, ragged rows, values other than 0 and 1, NaN).
"""

from __future__ import annotations

import gzip
import os
import struct
import urllib.request
from pathlib import Path

import numpy as np
import torch

from .paths import dataset_path

__all__ = [
    "BinaryDataError",
    "BINARIZED_MNIST_FILE",
    "load_binarized_mnist",
    "read_binary_matrix",
    "read_binary_splits",
    "read_idx",
    "load_mnist_raw",
    "DynamicBinarizer",
    "fetch_binarized_mnist",
]

BINARIZED_MNIST_FILE = "binarized_mnist_uint8.npz"
BINARIZED_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{split}.amat"
SPLITS = ("train", "valid", "test")


class BinaryDataError(ValueError):
    """A binary data file is missing, empty or malformed; the message names file and position."""


def _check_binary(array: np.ndarray, where: str) -> torch.Tensor:
    """``array`` as a float32 ``(N, D)`` tensor, or :class:`BinaryDataError` naming ``where``."""
    if array.ndim != 2:
        raise BinaryDataError(f"{where}: expected a 2-d (examples, dimensions) array, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise BinaryDataError(f"{where}: empty array of shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise BinaryDataError(f"{where}: expected numbers, got dtype {array.dtype}")
    bad = ~((array == 0) | (array == 1))
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise BinaryDataError(f"{where}: row {row}, column {col} holds {array[row, col]!r}; only 0 and 1 are allowed")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _read_text_matrix(path: Path) -> np.ndarray:
    rows: list[list[float]] = []
    width = None
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            fields = line.replace(",", " ").split()
            if not fields:
                continue
            try:
                row = [float(f) for f in fields]
            except ValueError:
                raise BinaryDataError(f"{path}:{line_no}: not a number in {line.strip()[:60]!r}") from None
            if width is None:
                width = len(row)
            elif len(row) != width:
                raise BinaryDataError(f"{path}:{line_no}: {len(row)} values, but line 1 of the matrix has {width}")
            bad = [v for v in row if v not in (0.0, 1.0)]
            if bad:
                raise BinaryDataError(f"{path}:{line_no}: value {bad[0]!r}; only 0 and 1 are allowed")
            rows.append(row)
    if not rows:
        raise BinaryDataError(f"{path}: no data (empty file)")
    return np.asarray(rows, dtype=np.float32)


def read_binary_matrix(path: str | os.PathLike, key: str | None = None) -> torch.Tensor:
    """Read one 0/1 matrix.

    Args:
        path: ``.npz`` (give ``key``, or the file must hold exactly one array),
            ``.npy`` or a text file (one example per line, values separated by
            spaces or commas; blank lines skipped).
        key: array name inside an ``.npz``.

    Returns:
        ``(N, D)`` float32 tensor of 0/1 values.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        BinaryDataError: empty data, ragged rows, non-binary values, a missing key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"binary data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.keys())
            if key is None:
                if len(names) != 1:
                    raise BinaryDataError(f"{path}: holds arrays {names}; say which one (key)")
                key = names[0]
            if key not in names:
                raise BinaryDataError(f"{path}: no array {key!r} (it holds {names})")
            return _check_binary(npz[key], f"{path}[{key}]")
    if suffix == ".npy":
        return _check_binary(np.load(path, allow_pickle=False), str(path))
    return _check_binary(_read_text_matrix(path), str(path))


def read_binary_splits(path: str | os.PathLike, splits: tuple[str, ...] = SPLITS) -> dict[str, torch.Tensor]:
    """Every split of an ``.npz`` holding one 0/1 array per split name.

    Raises:
        BinaryDataError: a split is missing, malformed, or the splits disagree on ``D``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"binary data file not found: {path}")
    with np.load(path, allow_pickle=False) as npz:
        missing = [s for s in splits if s not in npz]
        if missing:
            raise BinaryDataError(f"{path}: missing split(s) {missing} (it holds {list(npz.keys())})")
        out = {s: _check_binary(npz[s], f"{path}[{s}]") for s in splits}
    widths = {s: t.shape[1] for s, t in out.items()}
    if len(set(widths.values())) != 1:
        raise BinaryDataError(f"{path}: splits disagree on the number of dimensions: {widths}")
    return out


def load_binarized_mnist(data_dir: str | os.PathLike | None = None, folder: str = "binarized-mnist") -> dict[str, torch.Tensor]:
    """The fixed binarized MNIST of Larochelle & Murray (2011).

    Args:
        data_dir: data root (``--data-dir``; else ``$LATENTNLP_DATA``; else the cache folder).
        folder: sub-folder holding ``binarized_mnist_uint8.npz``.

    Returns:
        ``{"train": (50000, 784), "valid": (10000, 784), "test": (10000, 784)}`` float32 0/1 tensors.

    Raises:
        FileNotFoundError: naming the expected file and how to get it.
        BinaryDataError: if the file is malformed.
    """
    path = dataset_path(folder, data_dir) / BINARIZED_MNIST_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; point --data-dir / $LATENTNLP_DATA at the folder holding {folder}/, "
            "or create it with latentnlp.data.binary.fetch_binarized_mnist"
        )
    return read_binary_splits(path)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (MNIST's format; gzip or plain) as a numpy array of its declared shape and type.

    Raises:
        BinaryDataError: bad magic number, unknown type code, or a size that does not match the header.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise BinaryDataError(f"{path}: not an IDX file (bad magic number)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise BinaryDataError(f"{path}: unknown IDX type code 0x{data[2]:02x}")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(dtypes[data[2]])
    body = data[4 + 4 * ndim :]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(body) != expected:
        raise BinaryDataError(f"{path}: header declares shape {shape} ({expected} bytes) but the file holds {len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def load_mnist_raw(data_dir: str | os.PathLike | None = None, folder: str = "mnist-raw") -> dict[str, torch.Tensor]:
    """MNIST grey levels scaled to ``[0, 1]``: ``{"train": (60000, 784), "test": (10000, 784)}`` float32."""
    root = dataset_path(folder, data_dir)
    out = {}
    for split, stem in (("train", "train-images-idx3-ubyte"), ("test", "t10k-images-idx3-ubyte")):
        path = root / f"{stem}.gz"
        if not path.is_file():
            path = root / stem
        if not path.is_file():
            raise FileNotFoundError(f"{root / (stem + '.gz')} not found (MNIST idx images)")
        images = read_idx(path)
        out[split] = torch.from_numpy(images.reshape(images.shape[0], -1).astype(np.float32) / 255.0)
    return out


class DynamicBinarizer:
    """Dynamic binarization: each call draws fresh ``x ~ Bernoulli(intensity)`` for the requested rows.

    Args:
        intensities: ``(N, D)`` grey levels in ``[0, 1]``.
        seed: seeds the binarization noise (its state is not checkpointed, so a
            resumed run sees different, equally distributed, binarizations).

    Raises:
        ValueError: if an intensity lies outside ``[0, 1]`` or is NaN.
    """

    def __init__(self, intensities: torch.Tensor, seed: int = 0) -> None:
        if intensities.ndim != 2:
            raise ValueError(f"intensities must be (N, D), got shape {tuple(intensities.shape)}")
        if not bool(((intensities >= 0) & (intensities <= 1)).all()):
            raise ValueError("intensities must lie in [0, 1] (and not be NaN)")
        self.intensities = intensities
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.intensities.shape[0]

    def __call__(self, indices) -> torch.Tensor:
        p = self.intensities[torch.as_tensor(indices, dtype=torch.long)]
        return torch.bernoulli(p, generator=self.generator)


def fetch_binarized_mnist(data_dir: str | os.PathLike | None = None, folder: str = "binarized-mnist") -> Path:
    """Download the Larochelle & Murray ``.amat`` files and write ``binarized_mnist_uint8.npz``.

    Needs the network (never used by the tests). Returns the written path.
    """
    root = dataset_path(folder, data_dir)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split in SPLITS:
        with urllib.request.urlopen(BINARIZED_MNIST_URL.format(split=split), timeout=120) as response:
            text = response.read().decode("ascii")
        rows = [np.array(line.split(), dtype=np.uint8) for line in text.splitlines() if line.strip()]
        arrays[split] = np.stack(rows)
        _check_binary(arrays[split], f"{BINARIZED_MNIST_URL.format(split=split)}")
    target = root / BINARIZED_MNIST_FILE
    tmp = target.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, target)
    return target
