"""IDX data sets (MNIST, Fashion-MNIST) with MD5 verification.

Images come back as ``uint8`` arrays of shape ``(N, 784)`` (row-major 28x28), labels as
``uint8`` arrays of shape ``(N,)``. Every file is checked against the published MD5 of its
gzip bytes before it is decoded; anything wrong raises :class:`DataError` whose message is one
line naming the file and the fault.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["DataError", "Split", "DATASETS", "load", "shipped_dir", "read_idx", "downsample"]


class DataError(Exception):
    """A data file is missing, corrupt, or not what it claims to be."""


#: Published MD5 of each gzip file, per data set and file name.
DATASETS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

_IDX_MAGIC = {2051: 3, 2049: 1}  # magic -> number of dimensions (unsigned byte data)


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, 784) uint8
    labels: np.ndarray  # (N,) uint8

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, n: int | None) -> "Split":
        if n is None:
            return self
        return Split(self.images[:n], self.labels[:n])


def shipped_dir() -> Path:
    """Folder of the MNIST files shipped inside the package."""
    return Path(str(resources.files("eqfpga") / "datasets" / "mnist"))


def read_idx(path: Path, md5: str | None = None) -> np.ndarray:
    """Read one gzip IDX file of unsigned bytes, checking its MD5 first if given."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    if md5 is not None and hashlib.md5(raw).hexdigest() != md5:
        raise DataError(f"{path}: MD5 mismatch (corrupt or wrong file; expected {md5})")
    try:
        data = gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a valid gzip file ({e})") from None
    if len(data) < 8:
        raise DataError(f"{path}: too short for an IDX header")
    magic = int.from_bytes(data[0:4], "big")
    if magic not in _IDX_MAGIC:
        raise DataError(f"{path}: bad IDX magic {magic} (expected 2051 or 2049)")
    ndim = _IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims)) + header
    if len(data) != expected:
        raise DataError(f"{path}: {len(data)} bytes decompressed, header says {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _resolve(dataset: str, data_dir: Path | str | None) -> Path:
    if dataset not in DATASETS:
        raise DataError(f"unknown data set {dataset!r} (known: {', '.join(DATASETS)})")
    if data_dir is not None:
        return Path(data_dir)
    if dataset == "mnist":
        return shipped_dir()
    raise DataError(f"{dataset} is not shipped with eqfpga: pass its folder with --data DIR")


def load(split: str, dataset: str = "mnist", data_dir: Path | str | None = None) -> Split:
    """Load ``split`` ("train" or "test") of ``dataset`` from ``data_dir``.

    ``data_dir`` defaults to the shipped MNIST files. Raises :class:`DataError`.
    """
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise DataError(f"unknown split {split!r} (expected 'train' or 'test')")
    folder = _resolve(dataset, data_dir)
    sums = DATASETS[dataset]
    img_name, lbl_name = f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"
    images = read_idx(folder / img_name, sums[img_name])
    labels = read_idx(folder / lbl_name, sums[lbl_name])
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{folder / img_name}: images are {images.shape[1:]}, expected 28x28")
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} images but {len(labels)} labels")
    if labels.max(initial=0) > 9:
        raise DataError(f"{folder / lbl_name}: label {labels.max()} out of range 0..9")
    return Split(images.reshape(len(images), 784), labels)


def downsample(images: np.ndarray, size: int) -> np.ndarray:
    """28x28 images -> ``size`` x ``size`` by block means (zero-padded to a multiple of
    ``size``), rounded down; for the small networks the hardware tests use."""
    images = np.asarray(images).reshape(-1, 28, 28)
    block = -(-28 // size)
    pad = block * size - 28
    padded = np.pad(images.astype(np.int64), ((0, 0), (pad // 2, pad - pad // 2),
                                             (pad // 2, pad - pad // 2)))
    blocks = padded.reshape(len(images), size, block, size, block)
    return (blocks.sum(axis=(2, 4)) // (block * block)).astype(np.uint8).reshape(len(images), -1)


def translate(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Square images (flattened, one per row) each moved by whole pixels: ``shifts[i]`` is
    (rows down, columns right). Pixels moved past the edge are lost and the uncovered ones
    are 0, so the ink never wraps around."""
    images = np.asarray(images)
    size = int(round(images.shape[1] ** 0.5))
    x = images.reshape(len(images), size, size)
    out = np.zeros_like(x)

    def spans(d):   # (destination, source) slices of one axis moved by d
        d = max(-size, min(size, d))
        return slice(max(d, 0), size + min(d, 0)), slice(max(-d, 0), size + min(-d, 0))
    for i, (dr, dc) in enumerate(np.asarray(shifts, dtype=np.int64)):
        (r_to, r_from), (c_to, c_from) = spans(int(dr)), spans(int(dc))
        out[i, r_to, c_to] = x[i, r_from, c_from]
    return out.reshape(images.shape)


def mirror(images: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Square images (flattened, one per row), those with ``flags[i]`` set mirrored left to right."""
    images = np.asarray(images)
    size = int(round(images.shape[1] ** 0.5))
    x = images.reshape(len(images), size, size)
    flags = np.asarray(flags, dtype=bool)
    return np.where(flags[:, None, None], x[:, :, ::-1], x).reshape(images.shape)
