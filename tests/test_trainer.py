import json

import numpy as np
import pytest

from eqfpga import checkpoint as ckpt
from eqfpga import trainer


def test_short_training_rises_well_above_chance(tmp_path, small_config):
    ck = trainer.fit(small_config, tmp_path, 1, train_samples=3000, test_samples=1000,
                     progress=False, log=lambda *_: None)
    assert ck.history[0]["test_accuracy"] > 0.6          # chance is 0.1
    assert (tmp_path / "training.png").stat().st_size > 1000
    assert json.loads((tmp_path / "history.json").read_text())[0]["epoch"] == 1


def test_resume_gives_identical_weights(tmp_path, small_config, monkeypatch):
    kw = dict(train_samples=300, test_samples=50, progress=False, log=lambda *_: None)
    straight = trainer.fit(small_config, tmp_path / "a", 2, **kw)
    # stop in the middle of epoch 2 (after checkpoint at sample 100), then resume
    from eqfpga.golden import train as golden_train
    real, calls = golden_train.train_sample, {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 300 + 150:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(golden_train, "train_sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(small_config, tmp_path / "b", 2, checkpoint_every=100, **kw)
    monkeypatch.setattr(golden_train, "train_sample", real)
    mid = ckpt.load(tmp_path / "b" / "last.npz")
    assert (mid.epoch, mid.position) == (1, 149)
    resumed = trainer.fit(small_config, tmp_path / "b", 2, resume=True, **kw)
    for k, v in straight.params.arrays().items():
        np.testing.assert_array_equal(v, resumed.params.arrays()[k], err_msg=k)
    assert straight.streams == resumed.streams


def test_resume_without_checkpoint_is_an_error(tmp_path, small_config):
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        trainer.fit(small_config, tmp_path, 1, resume=True, progress=False)


def test_epoch_order_is_a_seeded_permutation(small_config):
    a = trainer.epoch_order(small_config, 0, 100)
    assert sorted(a) == list(range(100))
    assert (a == trainer.epoch_order(small_config, 0, 100)).all()
    assert (a != trainer.epoch_order(small_config, 1, 100)).any()


def test_shift_images_moves_pixels_and_fills_zeros():
    img = np.arange(1, 17, dtype=np.uint8).reshape(1, 16)       # 4x4: 1..16
    down_right = trainer.shift_images(img, 1, 1).reshape(4, 4)
    assert (down_right[0] == 0).all() and (down_right[:, 0] == 0).all()
    np.testing.assert_array_equal(down_right[1:, 1:], img.reshape(4, 4)[:3, :3])
    up_left = trainer.shift_images(img, -2, -1).reshape(4, 4)
    np.testing.assert_array_equal(up_left[:2, :3], img.reshape(4, 4)[2:, 1:])
    assert (up_left[2:] == 0).all() and (up_left[:, 3] == 0).all()
    np.testing.assert_array_equal(trainer.shift_images(img, 0, 0), img)


def test_epoch_samples_follow_the_order_and_augment_reproducibly(small_config):
    from dataclasses import replace
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (200, small_config.pixels), dtype=np.uint8)
    labels = rng.integers(0, 10, 200)
    order = trainer.epoch_order(small_config, 3, 200)
    x, y = trainer.epoch_samples(small_config, images, labels, 3)
    np.testing.assert_array_equal(x, images[order])
    np.testing.assert_array_equal(y, labels[order])
    aug = replace(small_config, augment_shift=2)
    xa, ya = trainer.epoch_samples(aug, images, labels, 3)
    np.testing.assert_array_equal(ya, labels[order])
    moved = (xa != images[order]).any(axis=1)
    assert 0.8 < moved.mean() < 1.0                      # (0, 0) is one of 25 moves
    xb, _ = trainer.epoch_samples(aug, images, labels, 3)
    np.testing.assert_array_equal(xa, xb)
    # every augmented sample is its source image moved by at most 2 pixels
    for k in range(10):
        assert any((trainer.shift_images(images[order][k:k + 1], dy, dx) == xa[k]).all()
                   for dy in range(-2, 3) for dx in range(-2, 3))
