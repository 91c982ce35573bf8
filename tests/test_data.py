import gzip
import shutil

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from eqfpga import data


def test_shipped_mnist_loads():
    test = data.load("test")
    assert test.images.shape == (10000, 784) and test.images.dtype == np.uint8
    assert test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(test.labels).tolist()[:3] == [980, 1135, 1032]


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_shared_files_load(shared_data, dataset):
    train = data.load("train", dataset, shared_data / dataset)
    assert len(train) == 60000 and train.images.shape[1] == 784
    assert set(np.unique(train.labels)) == set(range(10))


def test_fashion_mnist_needs_a_folder():
    with pytest.raises(data.DataError, match="pass its folder with --data"):
        data.load("test", "fashion-mnist")


def _copy(tmp_path):
    for f in data.shipped_dir().glob("t10k*"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def test_missing_file_names_it(tmp_path):
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz: file not found"):
        data.load("test", "mnist", tmp_path)


def test_corrupt_file_is_caught_by_md5(tmp_path):
    folder = _copy(tmp_path)
    f = folder / "t10k-labels-idx1-ubyte.gz"
    b = bytearray(f.read_bytes()); b[100] ^= 1
    f.chmod(0o644); f.write_bytes(bytes(b))
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.gz: MD5 mismatch"):
        data.load("test", "mnist", folder)


def test_idx_reader_checks_structure(tmp_path):
    f = tmp_path / "x.gz"
    f.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abc"))
    with pytest.raises(data.DataError, match="header says"):
        data.read_idx(f)
    f.write_bytes(gzip.compress(b"\x00\x00\x09\x09\x00\x00\x00\x01a"))
    with pytest.raises(data.DataError, match="bad IDX magic"):
        data.read_idx(f)
    f.write_bytes(b"plain text")
    with pytest.raises(data.DataError, match="not a valid gzip"):
        data.read_idx(f)
    f.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x03abc"))
    assert data.read_idx(f).tolist() == [97, 98, 99]


def test_unknown_split_and_dataset():
    with pytest.raises(data.DataError, match="unknown split"):
        data.load("valid")
    with pytest.raises(data.DataError, match="unknown data set"):
        data.load("test", "cifar")


@given(hnp.arrays(np.uint8, (3, 36)), st.lists(st.tuples(st.integers(-8, 8), st.integers(-8, 8)),
                                                min_size=3, max_size=3))
def test_translate_moves_pixels_and_fills_with_zero(images, shifts):
    moved = data.translate(images, shifts)
    assert moved.shape == images.shape and moved.dtype == images.dtype
    for before, after, (dr, dc) in zip(images.reshape(3, 6, 6), moved.reshape(3, 6, 6), shifts):
        for r in range(6):
            for c in range(6):
                inside = 0 <= r - dr < 6 and 0 <= c - dc < 6
                assert after[r, c] == (before[r - dr, c - dc] if inside else 0)


def test_translate_by_nothing_is_the_identity():
    images = data.load("test").take(4).images
    assert np.array_equal(data.translate(images, np.zeros((4, 2), int)), images)


@given(hnp.arrays(np.uint8, (4, 25)), hnp.arrays(np.bool_, 4))
def test_mirror_flips_the_flagged_images_left_to_right(images, flags):
    out = data.mirror(images, flags)
    assert out.shape == images.shape and out.dtype == images.dtype
    for before, after, flag in zip(images.reshape(4, 5, 5), out.reshape(4, 5, 5), flags):
        assert np.array_equal(after, before[:, ::-1] if flag else before)
    assert np.array_equal(data.mirror(out, flags), images)
