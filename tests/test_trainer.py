import json

import numpy as np
import pytest

from eqfpga import checkpoint as ckpt
from eqfpga import trainer
from eqfpga.run_folder import RunError


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

QUIET = dict(progress=False, log=lambda *_: None)


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be at least 1, got 0"),
    ({"epochs": -2}, "epochs must be at least 1, got -2"),
    ({"epochs": True}, "epochs must be a whole number, got True"),
    ({"train_samples": 0}, "train_samples must be at least 1, got 0"),
    ({"train_samples": -1}, "train_samples must be at least 1, got -1"),
    ({"test_samples": -3}, "test_samples must be at least 1, got -3"),
    ({"test_samples": 2.5}, "test_samples must be a whole number, got 2.5"),
    ({"checkpoint_every": 0}, "checkpoint_every must be at least 1, got 0"),
    ({"train_samples": 60001}, "train_samples = 60001 is more than the 60000 mnist training images"),
    ({"test_samples": 10001}, "test_samples = 10001 is more than the 10000 mnist test images"),
])
def test_fit_refuses_impossible_counts_before_any_work(tmp_path, small_config, kwargs, message):
    kw = {"epochs": 1, "train_samples": 20, "test_samples": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        trainer.fit(small_config, tmp_path / "run", kw.pop("epochs"), **kw, **QUIET)
    assert not (tmp_path / "run").exists()


def test_fit_refuses_images_of_another_size(tmp_path, small_config):
    from dataclasses import replace
    with pytest.raises(RunError, match="configuration 'small' takes 64-pixel images; the data sets' "
                                       "images are 28x28 = 784 pixels"):
        trainer.fit(replace(small_config, inputs=64), tmp_path, 1, train_samples=20, **QUIET)


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_new_run_refuses_a_folder_holding_one_unless_forced(tmp_path, small_config):
    out = tmp_path / "run"
    trainer.fit(small_config, out, 2, train_samples=20, test_samples=10, **QUIET)
    before = _files(out)
    assert {"last.npz", "epoch001.npz", "epoch002.npz", "history.json", "training.png"} == set(before)
    with pytest.raises(RunError, match=f"^{out} already holds a training run \\(last.npz, history.json, "
                                       f"training.png, epoch001.npz, ...\\): continue it with --resume, "
                                       f"or start it over with --force$"):
        trainer.fit(small_config, out, 1, train_samples=20, test_samples=10, **QUIET)
    assert _files(out) == before
    with pytest.raises(RunError, match="not both"):
        trainer.fit(small_config, out, 1, resume=True, force=True, **QUIET)
    ck = trainer.fit(small_config, out, 1, force=True, train_samples=20, test_samples=10, **QUIET)
    assert ck.epoch == 1 and not (out / "epoch002.npz").exists()   # the old run's files are gone
    assert len(json.loads((out / "history.json").read_text())) == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"train_samples": 30, "test_samples": 10}, "--train-samples differs from the run's: 20 when it started, "
                                                "30 now \\(resume with --train-samples 20"),
    ({"train_samples": 20}, "--test-samples differs from the run's: 10 when it started, 10000 now"),
])
def test_resume_refuses_settings_other_than_the_runs(tmp_path, small_config, kwargs, message):
    trainer.fit(small_config, tmp_path, 1, train_samples=20, test_samples=10, **QUIET)
    before = _files(tmp_path)
    with pytest.raises(RunError, match=f"^{tmp_path / 'last.npz'}: {message}"):
        trainer.fit(small_config, tmp_path, 2, resume=True, **kwargs, **QUIET)
    assert _files(tmp_path) == before


def test_resume_refuses_another_data_set(tmp_path, small_config, shared_data):
    trainer.fit(small_config, tmp_path, 1, train_samples=20, test_samples=10, **QUIET)
    with pytest.raises(RunError, match="--dataset differs from the run's: mnist when it started, fashion-mnist now"):
        trainer.fit(small_config, tmp_path, 2, resume=True, dataset="fashion-mnist",
                    data_dir=shared_data / "fashion-mnist", train_samples=20, test_samples=10, **QUIET)


def test_a_checkpoint_without_settings_resumes_only_at_an_epoch_end(tmp_path, small_config):
    kw = dict(train_samples=20, test_samples=10, **QUIET)
    ck = trainer.fresh(small_config)
    ck.position = 5
    ckpt.save(ck, tmp_path / "last.npz")
    with pytest.raises(RunError, match="stopped in the middle of epoch 1 and records no run settings "
                                       "\\(--dataset, --train-samples, --test-samples\\)"):
        trainer.fit(small_config, tmp_path, 1, resume=True, **kw)
    ck.position, ck.epoch = 0, 1
    ckpt.save(ck, tmp_path / "last.npz")
    done = trainer.fit(small_config, tmp_path, 2, resume=True, **kw)
    assert done.epoch == 2
    assert ckpt.load(tmp_path / "last.npz").meta["train_samples"] == 20   # recorded from now on


def test_resume_of_a_finished_run_says_there_is_nothing_to_train(tmp_path, small_config):
    trainer.fit(small_config, tmp_path, 1, train_samples=20, test_samples=10, **QUIET)
    said = []
    ck = trainer.fit(small_config, tmp_path, 1, resume=True, train_samples=20, test_samples=10,
                     progress=False, log=said.append)
    assert ck.epoch == 1 and "completed 1 epoch(s) already: nothing to train" in said[-1]
