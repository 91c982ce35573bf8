"""Labelled image data sets: MNIST and Fashion-MNIST (IDX files, MD5-verified), and any data set
as an ``.npz`` file.

Images come back as ``uint8`` arrays of shape ``(N, C*H*W)`` (row-major ``(C, H, W)``; MNIST:
``(N, 784)``), with their shape in :attr:`Split.shape`, labels as integer arrays ``(N,)``. Every
IDX file is checked against the published MD5 of its gzip bytes before it is decoded. An
``.npz`` data set holds ``train_images``, ``train_labels``, ``test_images`` and
``test_labels``: images ``uint8`` of shape ``(N, H, W)`` (one channel) or ``(N, C, H, W)``,
labels non-negative integers ``(N,)``. Anything wrong raises :class:`DataError` whose message
is one line naming the file and the fault.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["DataError", "Split", "DATASETS", "load", "load_npz", "is_npz", "dataset_name", "shipped_dir",
           "read_idx", "downsample", "images_for", "translate", "mirror"]


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
    images: np.ndarray            # (N, C*H*W) uint8, row-major (C, H, W)
    labels: np.ndarray            # (N,) integers
    shape: tuple = (1, 28, 28)    # (C, H, W) of one image

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> int:
        """Labels run from 0 to ``classes - 1``."""
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def take(self, n: int | None) -> "Split":
        if n is None:
            return self
        return Split(self.images[:n], self.labels[:n], self.shape)


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

    ``dataset`` is ``mnist``, ``fashion-mnist`` or the path of an ``.npz`` data set;
    ``data_dir`` (for the IDX data sets) defaults to the shipped MNIST files. Raises
    :class:`DataError`.
    """
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise DataError(f"unknown split {split!r} (expected 'train' or 'test')")
    if is_npz(dataset):
        return load_npz(Path(dataset), split)
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


def is_npz(dataset) -> bool:
    return str(dataset).endswith(".npz")


def load_npz(path: Path, split: str) -> Split:
    """``split`` of the ``.npz`` data set at ``path`` (see the module docstring)."""
    if not path.is_file():
        raise DataError(f"{path}: data set not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zip, npy and pickle faults all mean the same to a user
        raise DataError(f"{path}: not a readable .npz data set ({type(e).__name__}: {e})") from None
    names = (f"{split}_images", f"{split}_labels")
    missing = [k for k in ("train_images", "train_labels", "test_images", "test_labels") if k not in arrays]
    if missing:
        raise DataError(f"{path}: an .npz data set needs train_images, train_labels, test_images and "
                        f"test_labels; it lacks {', '.join(missing)}")
    images, labels = arrays[names[0]], arrays[names[1]]
    if images.dtype != np.uint8:
        raise DataError(f"{path}: {names[0]} must be uint8 (0..255), got {images.dtype}")
    if images.ndim not in (3, 4) or images.shape[0] == 0:
        raise DataError(f"{path}: {names[0]} must be N x H x W or N x C x H x W with N >= 1, got shape "
                        f"{images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {names[1]} must be a 1-D integer array, got {labels.dtype} of shape {labels.shape}")
    if len(labels) != len(images):
        raise DataError(f"{path}: {len(images)} {split} images but {len(labels)} labels")
    if labels.min(initial=0) < 0:
        raise DataError(f"{path}: {names[1]} holds negative labels")
    shape = (1,) + images.shape[1:] if images.ndim == 3 else images.shape[1:]
    return Split(np.ascontiguousarray(images.reshape(len(images), -1)), labels.astype(np.int64),
                 tuple(int(n) for n in shape))


def dataset_name(dataset) -> str:
    """A data set's name for messages and reports: ``mnist``, or an ``.npz`` file's stem."""
    return Path(str(dataset)).stem if is_npz(dataset) else str(dataset)


def downsample(images: np.ndarray, size: int, side: int = 28) -> np.ndarray:
    """Square one-channel ``side`` x ``side`` images -> ``size`` x ``size`` by block means
    (zero-padded to a multiple of ``size``), rounded down; for the small networks the hardware
    tests use."""
    images = np.asarray(images).reshape(-1, side, side)
    block = -(-side // size)
    pad = block * size - side
    padded = np.pad(images.astype(np.int64), ((0, 0), (pad // 2, pad - pad // 2),
                                             (pad // 2, pad - pad // 2)))
    blocks = padded.reshape(len(images), size, block, size, block)
    return (blocks.sum(axis=(2, 4)) // (block * block)).astype(np.uint8).reshape(len(images), -1)


def images_for(split: Split, shape, classes: int, network: str = "the network", dataset: str = "the data set") -> np.ndarray:
    """``split``'s images as a network taking ``shape`` ((C, H, W), or (n,) flat values) and
    ``classes`` outputs takes them: as they are, flattened, or (square one-channel images
    larger than the network's) downsampled. Raises :class:`DataError`, one line, when the
    images cannot be made that shape or a label has no output."""
    shape = tuple(int(n) for n in shape)
    if split.classes > classes:
        raise DataError(f"the {dataset} labels run to {split.classes - 1}, but {network} has "
                        f"{classes} outputs")
    if shape == split.shape or (len(shape) == 1 and shape[0] == split.images.shape[1]):
        return split.images
    if (len(shape) == 3 and shape[0] == 1 == split.shape[0] and shape[1] == shape[2] < split.shape[1]
            and split.shape[1] == split.shape[2]):
        return downsample(split.images, shape[1], split.shape[1])
    raise DataError(f"{network} takes inputs of shape {list(shape)}; the {dataset} images have shape "
                    f"{list(split.shape)} (channels, height, width)")


def _maps(images: np.ndarray, shape) -> np.ndarray:
    """Flattened images as (N, C, H, W): ``shape`` (C, H, W), or square one-channel images."""
    if shape is None:
        size = int(round(images.shape[1] ** 0.5))
        shape = (1, size, size)
    return images.reshape((len(images),) + tuple(shape))


def translate(images: np.ndarray, shifts: np.ndarray, shape=None) -> np.ndarray:
    """Images (flattened, one per row; of ``shape`` (C, H, W), by default square with one
    channel) each moved by whole pixels: ``shifts[i]`` is (rows down, columns right). Pixels
    moved past the edge are lost and the uncovered ones are 0, so the ink never wraps around."""
    images = np.asarray(images)
    x = _maps(images, shape)
    out = np.zeros_like(x)

    def spans(d, size):   # (destination, source) slices of one axis moved by d
        d = max(-size, min(size, d))
        return slice(max(d, 0), size + min(d, 0)), slice(max(-d, 0), size + min(-d, 0))
    for i, (dr, dc) in enumerate(np.asarray(shifts, dtype=np.int64)):
        (r_to, r_from), (c_to, c_from) = spans(int(dr), x.shape[2]), spans(int(dc), x.shape[3])
        out[i, :, r_to, c_to] = x[i, :, r_from, c_from]
    return out.reshape(images.shape)


def mirror(images: np.ndarray, flags: np.ndarray, shape=None) -> np.ndarray:
    """Images (flattened, one per row; of ``shape`` (C, H, W), by default square with one
    channel), those with ``flags[i]`` set mirrored left to right."""
    images = np.asarray(images)
    x = _maps(images, shape)
    flags = np.asarray(flags, dtype=bool)
    return np.where(flags[:, None, None, None], x[..., ::-1], x).reshape(images.shape)
