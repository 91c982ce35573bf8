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


@given(hnp.arrays(np.uint8, (2, 2 * 4 * 6)), st.lists(st.tuples(st.integers(-5, 5), st.integers(-7, 7)),
                                                      min_size=2, max_size=2))
def test_translate_moves_every_channel_of_oblong_images(images, shifts):
    moved = data.translate(images, shifts, (2, 4, 6)).reshape(2, 2, 4, 6)
    for before, after, (dr, dc) in zip(images.reshape(2, 2, 4, 6), moved, shifts):
        for r in range(4):
            for c in range(6):
                inside = 0 <= r - dr < 4 and 0 <= c - dc < 6
                assert np.array_equal(after[:, r, c], before[:, r - dr, c - dc] if inside else [0, 0])


def _npz(path, train=(40, 3, 10, 10), test=(12, 3, 10, 10), classes=4, **replace):
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, train, dtype=np.uint8),
              "train_labels": rng.integers(0, classes, train[0]),
              "test_images": rng.integers(0, 256, test, dtype=np.uint8),
              "test_labels": rng.integers(0, classes, test[0])}
    arrays.update(replace)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_an_npz_data_set_loads_with_its_shape(tmp_path):
    path = _npz(tmp_path / "d.npz")
    train, test = data.load("train", str(path)), data.load("test", str(path))
    assert train.images.shape == (40, 300) and train.shape == (3, 10, 10) and len(test) == 12
    one_channel = data.load("test", str(_npz(tmp_path / "g.npz", test=(5, 7, 7))))
    assert one_channel.shape == (1, 7, 7) and one_channel.images.shape == (5, 49)
    assert data.dataset_name(str(path)) == "d"


@pytest.mark.parametrize("replace, message", [
    ({"test_labels": None}, "lacks test_labels"),
    ({"train_images": np.zeros((40, 3, 10, 10), np.float32)}, "train_images must be uint8"),
    ({"train_images": np.zeros((40, 300), np.uint8)}, r"N x H x W or N x C x H x W"),
    ({"train_labels": np.zeros(39, np.int64)}, "40 train images but 39 labels"),
    ({"train_labels": -np.ones(40, np.int64)}, "negative labels"),
    ({"train_labels": np.zeros(40)}, "1-D integer array"),
])
def test_a_bad_npz_data_set_is_refused_in_one_line(tmp_path, replace, message):
    path = _npz(tmp_path / "d.npz", **replace)
    with pytest.raises(data.DataError, match=message) as e:
        data.load("train", str(path))
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    with pytest.raises(data.DataError, match="not found"):
        data.load("train", str(tmp_path / "none.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(data.DataError, match="not a readable .npz"):
        data.load("train", str(tmp_path / "junk.npz"))


def test_images_for_takes_reshapes_downsamples_or_refuses():
    mnist = data.load("test").take(3)
    assert data.images_for(mnist, (1, 28, 28), 10) is mnist.images
    assert data.images_for(mnist, (784,), 10) is mnist.images
    assert np.array_equal(data.images_for(mnist, (1, 8, 8), 10), data.downsample(mnist.images, 8))
    with pytest.raises(data.DataError, match=r"^net takes inputs of shape \[3, 32, 32\]; the mnist images have "
                                             r"shape \[1, 28, 28\] \(channels, height, width\)$"):
        data.images_for(mnist, (3, 32, 32), 10, "net", "mnist")
    with pytest.raises(data.DataError, match=r"takes inputs of shape \[785\]"):
        data.images_for(mnist, (785,), 10)
    labels = data.Split(mnist.images, np.array([0, 11, 2]), mnist.shape)
    with pytest.raises(data.DataError, match=r"^the d labels run to 11, but net has 10 outputs$"):
        data.images_for(labels, (1, 28, 28), 10, "net", "d")
