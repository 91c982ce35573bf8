"""The one trainer: fit, resume, checkpoints, run folders and augmentation, on fully connected
and convolutional networks (bit-exact resume, extra arrays, the float modes, branch, average
and convert)."""

import json
from dataclasses import replace

import numpy as np
import pytest

from eqfpga import checkpoint, data, trainer
from eqfpga.config import Config
from eqfpga.golden import conv_float as cf, network
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
    # Ctrl-C in the middle of epoch 2 (after the checkpoint at sample 100): fit saves and returns
    real, calls = trainer.train_step, {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 300 + 150:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(trainer, "train_step", interrupted)
    stopped = trainer.fit(small_config, tmp_path / "b", 2, checkpoint_every=100, **kw)
    monkeypatch.setattr(trainer, "train_step", real)
    mid = checkpoint.load(tmp_path / "b" / "last.npz")
    assert (stopped.epoch, stopped.position) == (mid.epoch, mid.position) == (1, 149)
    resumed = trainer.fit(small_config, tmp_path / "b", 2, resume=True, **kw)
    for k, v in straight.params.arrays().items():
        np.testing.assert_array_equal(v, resumed.params.arrays()[k], err_msg=k)
    assert straight.streams == resumed.streams
    assert [h["train_accuracy"] for h in straight.history] == [h["train_accuracy"] for h in resumed.history]


def test_sigterm_during_an_update_takes_effect_after_it(tmp_path, small_config, monkeypatch):
    """A stop signal never cuts an update short: the checkpoint holds the state after the
    batch it arrived in, and the resumed run ends with the uninterrupted run's weights."""
    import os
    import signal
    kw = dict(train_samples=40, test_samples=10, progress=False, log=lambda *_: None)
    straight = trainer.fit(small_config, tmp_path / "a", 1, **kw)
    real, calls = trainer.train_step, {"n": 0}

    def signalled(*a, **k):
        calls["n"] += 1
        if calls["n"] == 7:
            os.kill(os.getpid(), signal.SIGTERM)     # delivered in the middle of the update
        return real(*a, **k)

    monkeypatch.setattr(trainer, "train_step", signalled)
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stopped = trainer.fit(small_config, tmp_path / "b", 1, **kw)
    monkeypatch.setattr(trainer, "train_step", real)
    assert (stopped.epoch, stopped.position) == (0, 7)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers   # put back
    resumed = trainer.fit(small_config, tmp_path / "b", 1, resume=True, **kw)
    for k, v in straight.params.arrays().items():
        np.testing.assert_array_equal(v, resumed.params.arrays()[k], err_msg=k)
    assert straight.streams == resumed.streams


def test_two_hidden_layer_network_trains_and_resumes(tmp_path):
    from eqfpga.config import Config, Dense
    c = Config("deep", crop=4, layers=(Dense(16, w_init=24), Dense(8, w_init=12), Dense(10, w_init=12)),
               free_steps=8, nudge_steps=4)
    kw = dict(train_samples=64, test_samples=32, **QUIET)
    straight = trainer.fit(c, tmp_path / "a", 2, **kw)
    trainer.fit(c, tmp_path / "b", 2, max_seconds=0.0, **kw)
    assert checkpoint.load(tmp_path / "b" / "last.npz", c).position == 1
    resumed = trainer.fit(c, tmp_path / "b", 2, resume=True, **kw)
    assert len(resumed.params.w) == 3 and resumed.epoch == 2
    for a, b in zip(straight.params.w + straight.params.b, resumed.params.w + resumed.params.b):
        np.testing.assert_array_equal(a, b)
    assert straight.streams == resumed.streams and len(straight.streams) == 6


def test_resume_without_checkpoint_is_an_error(tmp_path, small_config):
    with pytest.raises(checkpoint.CheckpointError, match="not found"):
        trainer.fit(small_config, tmp_path, 1, resume=True, progress=False)


def test_epoch_order_is_a_seeded_permutation(small_config):
    a = trainer.epoch_order(small_config, 0, 100)
    assert sorted(a) == list(range(100))
    assert (a == trainer.epoch_order(small_config, 0, 100)).all()
    assert (a != trainer.epoch_order(small_config, 1, 100)).any()


def test_epoch_samples_follow_the_order_and_augment_reproducibly(small_config):
    from dataclasses import replace
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (200, small_config.pixels), dtype=np.uint8)
    labels = rng.integers(0, 10, 200)
    order = trainer.epoch_order(small_config, 3, 200)
    x, y = trainer.epoch_samples(small_config, images, labels, 3)
    np.testing.assert_array_equal(x, images[order])
    np.testing.assert_array_equal(y, labels[order])
    aug = replace(small_config, shift_pixels=2)
    xa, ya = trainer.epoch_samples(aug, images, labels, 3)
    np.testing.assert_array_equal(ya, labels[order])
    moved = (xa != images[order]).any(axis=1)
    assert 0.8 < moved.mean() < 1.0                      # (0, 0) is one of 25 moves
    xb, _ = trainer.epoch_samples(aug, images, labels, 3)
    np.testing.assert_array_equal(xa, xb)
    # every augmented sample is its source image moved by the epoch's drawn shift, at most 2 pixels
    shifts = trainer.epoch_augmentation(aug, 3, 200).shifts
    assert np.abs(shifts).max() == 2
    np.testing.assert_array_equal(xa, data.translate(images[order], shifts))
    # the batches of an epoch are its samples in order
    split = data.Split(images, labels)
    parts = [trainer.batch_images(split, order, trainer.epoch_augmentation(aug, 3, 200), i, 64)[0]
             for i in range(0, 200, 64)]
    np.testing.assert_array_equal(np.concatenate(parts), xa)


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
    with pytest.raises(RunError, match=r"^configuration 'small' takes inputs of shape \[785\]; the mnist images "
                                       r"have shape \[1, 28, 28\]"):
        trainer.fit(replace(small_config, input_shape=(785,)), tmp_path, 1, train_samples=20, **QUIET)


@pytest.mark.parametrize("mode, message", [
    ("double", "mode must be one of int, float, float-spiking, got 'double'"),
    ("float", "mode 'float': the float references take networks whose first layer is a convolution; "
              "configuration 'small' is 1x28x28 -> 32 -> 10"),
])
def test_fit_refuses_a_mode_it_cannot_train_before_any_work(tmp_path, small_config, mode, message):
    with pytest.raises(RunError, match=f"^{message}"):
        trainer.fit(small_config, tmp_path / "run", 1, mode=mode, train_samples=20, **QUIET)
    assert not (tmp_path / "run").exists()


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
    checkpoint.save(ck, tmp_path / "last.npz")
    with pytest.raises(RunError, match="stopped in the middle of epoch 1 and records no run settings "
                                       "\\(--dataset, --train-samples, --test-samples\\)"):
        trainer.fit(small_config, tmp_path, 1, resume=True, **kw)
    ck.position, ck.epoch = 0, 1
    checkpoint.save(ck, tmp_path / "last.npz")
    done = trainer.fit(small_config, tmp_path, 2, resume=True, **kw)
    assert done.epoch == 2
    assert checkpoint.load(tmp_path / "last.npz").meta["train_samples"] == 20   # recorded from now on


def test_resume_of_a_finished_run_says_there_is_nothing_to_train(tmp_path, small_config):
    trainer.fit(small_config, tmp_path, 1, train_samples=20, test_samples=10, **QUIET)
    said = []
    ck = trainer.fit(small_config, tmp_path, 1, resume=True, train_samples=20, test_samples=10,
                     progress=False, log=said.append)
    assert ck.epoch == 1 and "completed 1 epoch(s) already: nothing to train" in said[-1]


# Convolutional networks, trained in batches.

I = np.int64
TINY = Config.convolutional("tiny", image_size=14, conv_channels=(4, 6), kernel=3, fc_hidden=(16,),
                            w_init=(700, 100, 150, 250), batch_size=8)


def _images(n, size=14, offset=0):
    tr = data.load("train")
    return data.downsample(tr.images[offset:offset + n], size), tr.labels[offset:offset + n].astype(I)


SMALL = replace(TINY, conv_channels=(4, 8), w_init=(600, 60, 60, 120), w_shifts=(13, 13, 12, 11),
                b_shifts=(11, 11, 9, 9), free_steps=24, nudge_steps=8, batch_size=8)


def test_resume_is_bit_exact_and_checksummed(tmp_path):
    X, y = _images(32)
    run = trainer.fresh(SMALL, "int")
    for i in range(0, 32, 8):
        trainer.train_step(run, SMALL, X[i:i + 8], y[i:i + 8])
    ck = trainer.fresh(SMALL, "int")
    for i in range(0, 16, 8):
        trainer.train_step(ck, SMALL, X[i:i + 8], y[i:i + 8])
    ck.position = 16
    checkpoint.save(ck, tmp_path / "a.npz")
    back = checkpoint.load(tmp_path / "a.npz", SMALL, "int")
    assert back.position == 16 and back.streams == ck.streams
    for i in range(16, 32, 8):
        trainer.train_step(back, SMALL, X[i:i + 8], y[i:i + 8])
    assert all(np.array_equal(a, b) for a, b in zip(back.params.w + back.params.b, run.params.w + run.params.b))
    raw = bytearray((tmp_path / "a.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "b.npz").write_bytes(bytes(raw))
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(tmp_path / "b.npz")
    with pytest.raises(checkpoint.CheckpointError, match=r"not 'tiny' \(they differ in seed, layers' w_shift\)"):
        checkpoint.load(tmp_path / "a.npz", replace(SMALL, seed=2, w_shifts=(15, 15, 14, 13)))


def test_checkpoint_keeps_extra_arrays_under_its_checksum(tmp_path):
    ck = trainer.fresh(SMALL, "int")
    ck.extra = {"m0": np.arange(6.0, dtype=np.float32).reshape(2, 3), "t": np.array(7)}
    checkpoint.save(ck, tmp_path / "x.npz")
    back = checkpoint.load(tmp_path / "x.npz", SMALL, "int")
    assert back.extra.keys() == {"m0", "t"} and int(back.extra["t"]) == 7
    assert back.extra["m0"].dtype == np.float32 and np.array_equal(back.extra["m0"], ck.extra["m0"])
    assert all(np.array_equal(a, b) for a, b in zip(back.params.w, ck.params.w))
    assert checkpoint.load(tmp_path / "x.npz").extra["m0"].shape == (2, 3)


def test_float_spiking_mode_trains_with_spikes_and_keeps_its_mode(tmp_path):
    X, y = _images(16)
    ck = trainer.fresh(SMALL, "float-spiking")
    rate = trainer.fresh(SMALL, "float")
    trainer.train_step(ck, SMALL, X[:8], y[:8])
    trainer.train_step(rate, SMALL, X[:8], y[:8])
    assert any(not np.allclose(a, b) for a, b in zip(ck.params.w, rate.params.w))
    checkpoint.save(ck, tmp_path / "s.npz")
    assert checkpoint.load(tmp_path / "s.npz").mode == "float-spiking"
    with pytest.raises(checkpoint.CheckpointError, match="trained in float-spiking mode, not float"):
        checkpoint.load(tmp_path / "s.npz", SMALL, "float")
    with pytest.raises(ValueError, match="mode must be one of"):
        trainer.fresh(SMALL, "double")


@pytest.mark.parametrize("shift_pixels, mirror_images", [(0, False), (2, False), (0, True)])
def test_fit_stops_and_resumes(tmp_path, shift_pixels, mirror_images):
    small = replace(SMALL, image_size=28, conv_channels=(2, 2), fc_hidden=(8,), kernel=5, batch_size=16,
                    free_steps=4, nudge_steps=2, w_init=(400, 60, 60, 120), shift_pixels=shift_pixels,
                    mirror_images=mirror_images)
    ck = trainer.fit(small, tmp_path, 1, mode="int", train_samples=64, test_samples=32, max_seconds=0.0,
                     progress=False, log=lambda *a: None)
    assert ck.epoch == 0 and ck.position == 16
    ck = trainer.fit(small, tmp_path, 1, mode="int", resume=True, train_samples=64, test_samples=32,
                     progress=False, log=lambda *a: None)
    assert ck.epoch == 1 and (tmp_path / "history.json").is_file()
    ref = trainer.fit(small, tmp_path / "ref", 1, mode="int", train_samples=64, test_samples=32,
                      progress=False, log=lambda *a: None)
    assert all(np.array_equal(a, b) for a, b in zip(ck.params.w, ref.params.w))
    if shift_pixels or mirror_images:   # the changed images are what it learned from
        plain = trainer.fit(replace(small, shift_pixels=0, mirror_images=False), tmp_path / "plain", 1, mode="int",
                            train_samples=64, test_samples=32, progress=False, log=lambda *a: None)
        assert any(not np.array_equal(a, b) for a, b in zip(ck.params.w, plain.params.w))


def test_epoch_augmentation_covers_the_range_and_depends_on_seed_and_epoch():
    c = replace(SMALL, shift_pixels=2, mirror_images=True)
    a = trainer.epoch_augmentation(c, 3, 5000)
    assert a.shifts.shape == (5000, 2) and set(np.unique(a.shifts)) == {-2, -1, 0, 1, 2}
    assert a.mirrors.shape == (5000,) and 2200 < a.mirrors.sum() < 2800
    for other, same in ((c, True), (replace(c, mirror_images=False), True), (replace(c, seed=2), False)):
        b = trainer.epoch_augmentation(other, 3, 5000)
        assert np.array_equal(a.shifts, b.shifts) == same   # mirrors leave the shifts as they were
    assert not np.array_equal(a.shifts, trainer.epoch_augmentation(c, 4, 5000).shifts)
    assert not np.array_equal(a.mirrors, trainer.epoch_augmentation(c, 4, 5000).mirrors)
    assert trainer.epoch_augmentation(SMALL, 3, 5000) == (None, None)


def test_batch_images_mirror_before_the_shift():
    split = data.load("test").take(8)
    c = replace(SMALL, shift_pixels=3, mirror_images=True)
    order = np.arange(8)[::-1]
    a = trainer.epoch_augmentation(c, 0, 8)
    images, labels = trainer.batch_images(split, order, a, 2, 4)
    assert np.array_equal(labels, split.labels[order[2:6]])
    want = data.translate(data.mirror(split.images[order[2:6]], a.mirrors[2:6]), a.shifts[2:6])
    assert np.array_equal(images, want)
    plain, _ = trainer.batch_images(split, order, trainer.Augmentation(None, None), 2, 4)
    assert np.array_equal(plain, split.images[order[2:6]])


def test_branch_carries_weights_and_history_into_a_new_configuration(tmp_path):
    small = replace(SMALL, image_size=28, conv_channels=(2, 2), fc_hidden=(8,), kernel=5, batch_size=16,
                    free_steps=4, nudge_steps=2, w_init=(400, 60, 60, 120))
    quiet = dict(mode="int", train_samples=32, test_samples=16, progress=False, log=lambda *a: None)
    first = trainer.fit(small, tmp_path / "a", 1, **quiet)
    slower = replace(small, name="slower", w_shifts=tuple(s + 2 for s in small.w_shifts), nudge_steps=3)
    ck = trainer.fit(slower, tmp_path / "b", 2, branch_from=tmp_path / "a" / "epoch001.npz", **quiet)
    assert ck.epoch == 2 and ck.history[0] == first.history[0] and len(ck.history) == 2
    assert ck.meta["branches"] == [{"from": str(tmp_path / "a" / "epoch001.npz"), "config": small.name,
                                    "model_hash": small.model_hash, "epoch": 1}]
    # the branch trained epoch 2 with its own rule, from the first run's weights
    manual = checkpoint.load(tmp_path / "a" / "epoch001.npz")
    tr = data.load("train").take(32)
    order = trainer.epoch_order(slower, 1, 32)
    for i in range(0, 32, 16):
        trainer.train_step(manual, slower.at_epoch(1), tr.images[order[i:i + 16]], tr.labels[order[i:i + 16]])
    assert all(np.array_equal(a, b) for a, b in zip(manual.params.w, ck.params.w))
    assert checkpoint.load(tmp_path / "b" / "last.npz", slower, "int").meta["branches"][0]["epoch"] == 1
    with pytest.raises(checkpoint.CheckpointError, match=r"do not fit configuration 'wide' \(they differ in layers\)"):
        trainer.branch(tmp_path / "a" / "epoch001.npz", replace(small, name="wide", fc_hidden=(9,)), "int")
    as_float = trainer.branch(tmp_path / "a" / "epoch001.npz", small, "float")   # converted: the same real weights
    assert as_float.mode == "float" and as_float.meta["converted"][0]["mode"] == "int"
    assert all(np.array_equal(f, i * 2.0 ** -small.weight_frac_bits) for f, i in zip(as_float.params.w, first.params.w))
    trainer.fit(small, tmp_path / "c", 1, max_seconds=0.0, **quiet)
    with pytest.raises(checkpoint.CheckpointError, match="middle of epoch 1"):
        trainer.branch(tmp_path / "c" / "last.npz", small, "int")
    with pytest.raises(ValueError, match="not both"):
        trainer.fit(small, tmp_path / "a", 2, resume=True, branch_from=tmp_path / "a" / "epoch001.npz", **quiet)


@pytest.mark.parametrize("mode", ["int", "float"])
def test_average_is_the_elementwise_mean_rounded_half_up(tmp_path, mode):
    rng = np.random.default_rng(3)
    cks, paths = [], []
    for k in range(3):
        ck = trainer.fresh(TINY, mode)
        lo, hi = TINY.weight_range
        if mode == "int":
            ck.params = network.Params([rng.integers(lo, hi + 1, w.shape) for w in ck.params.w],
                                       [rng.integers(-5, 6, b.shape) for b in ck.params.b])
        else:
            ck.params = cf.FParams([rng.standard_normal(w.shape).astype(np.float32) for w in ck.params.w],
                                   [rng.standard_normal(b.shape).astype(np.float32) for b in ck.params.b])
        ck.epoch = k + 1
        cks.append(ck)
        paths.append(checkpoint.save(ck, tmp_path / f"epoch{k + 1:03d}.npz"))
    for n in (1, 2, 3):
        mean = trainer.average(paths[:n])
        assert mean.mode == mode and mean.epoch == n
        assert [s["epoch"] for s in mean.meta["averaged"]] == list(range(1, n + 1))
        for i in range(TINY.n_layers):
            for got, parts in ((mean.params.w[i], [c.params.w[i] for c in cks[:n]]),
                               (mean.params.b[i], [c.params.b[i] for c in cks[:n]])):
                assert got.dtype == parts[0].dtype
                exact = np.sum(np.asarray(parts, np.float64), axis=0) / n
                if mode == "int":
                    assert np.array_equal(got, np.floor(exact + 0.5))   # thirds and halves round up
                else:
                    assert np.allclose(got, exact, atol=1e-6)
    if mode == "int":
        mean.params.check(TINY)
    again = checkpoint.load(checkpoint.save(trainer.average(paths), tmp_path / "mean.npz"), TINY, mode)
    assert all(np.array_equal(a, b) for a, b in zip(again.params.w, trainer.average(paths).params.w))


def test_average_refuses_other_modes_and_networks(tmp_path):
    a = checkpoint.save(trainer.fresh(TINY, "int"), tmp_path / "a.npz")
    b = checkpoint.save(trainer.fresh(TINY, "float"), tmp_path / "b.npz")
    wide = checkpoint.save(trainer.fresh(replace(TINY, name="wide", fc_hidden=(17,)), "int"), tmp_path / "wide.npz")
    faster = checkpoint.save(trainer.fresh(replace(TINY, name="faster", w_shifts=(9, 9, 9, 9)), "int"), tmp_path / "f.npz")
    with pytest.raises(checkpoint.CheckpointError, match="trained in float mode, not int"):
        trainer.average([b, a])
    with pytest.raises(checkpoint.CheckpointError, match=r"they differ in layers\)"):
        trainer.average([wide, a])
    assert trainer.average([faster, a]).config == TINY   # another learning rule, the same weights' format
    with pytest.raises(ValueError, match="at least one"):
        trainer.average([])


def test_convert_keeps_real_weights_and_rounds_into_the_integer_formats():
    rng = np.random.default_rng(5)
    fine = replace(TINY, name="fine", weight_bits=TINY.weight_bits + 2, weight_frac_bits=TINY.weight_frac_bits + 2,
                   bias_bits=TINY.bias_bits + 2)
    ck = trainer.fresh(fine, "int")
    lo, hi = fine.weight_range
    ck.params = network.Params([rng.integers(lo, hi + 1, w.shape) for w in ck.params.w],
                               [rng.integers(-9, 10, b.shape) for b in ck.params.b])
    ck.params.w[0].flat[:3] = [hi, lo, 2]   # rounds past TINY's top (saturates), its bottom, half its LSB (up)
    as_float = trainer.convert(ck, fine, "float")
    assert all(np.array_equal(f, i * 2.0 ** -fine.weight_frac_bits) for f, i in zip(as_float.params.w, ck.params.w))
    coarse = trainer.convert(as_float, TINY, "int", "f.npz")
    exact = [np.floor(w / 4 + 0.5) for w in ck.params.w]
    tlo, thi = TINY.weight_range
    assert all(np.array_equal(q, np.clip(e, tlo, thi)) for q, e in zip(coarse.params.w, exact))
    assert coarse.params.w[0].flat[2] == 1
    coarse.params.check(TINY)
    assert coarse.meta["converted"][-1] == {"from": "f.npz", "mode": "float", "config": "fine",
                                            "saturated": sum(int(np.count_nonzero((e < tlo) | (e > thi))) for e in exact)}
    assert coarse.meta["converted"][-1]["saturated"] >= 1 and coarse.params.w[0].flat[1] == tlo
    same = trainer.convert(ck, fine, "int")   # a round trip in one format changes nothing
    assert all(np.array_equal(a, b) for a, b in zip(same.params.w + same.params.b, ck.params.w + ck.params.b))
    with pytest.raises(checkpoint.CheckpointError, match=r"they differ in layers\)"):
        trainer.convert(ck, replace(TINY, name="wide", fc_hidden=(17,)), "float")
    with pytest.raises(ValueError, match="mode must be one of"):
        trainer.convert(ck, TINY, "analog")


# Any labelled data set: an .npz of three-channel 10x10 images with four classes.

def _npz_dataset(path, n_train=48, n_test=16):
    rng = np.random.default_rng(1)
    labels = {s: rng.integers(0, 4, n) for s, n in (("train", n_train), ("test", n_test))}
    images = {}
    for s, y in labels.items():   # class k lights up channel k % 3 in row band k: learnable
        x = rng.integers(0, 40, (len(y), 3, 10, 10), dtype=np.uint8)
        for i, k in enumerate(y):
            x[i, k % 3, 2 * k:2 * k + 3, :] = 250
        images[s] = x
    np.savez(path, train_images=images["train"], train_labels=labels["train"],
             test_images=images["test"], test_labels=labels["test"])
    return str(path)


RGB = Config(name="rgb", input_shape=(3, 10, 10), hidden=24, outputs=4, w1_init=40, w2_init=12,
             w1_shift=12, w2_shift=13, b1_shift=7, b2_shift=7, beta_shift=0, shift_pixels=1)


def test_fit_trains_on_an_npz_data_set_with_its_shape(tmp_path):
    path = _npz_dataset(tmp_path / "rgb.npz")
    ck = trainer.fit(RGB, tmp_path / "run", 2, dataset=path, **QUIET)
    assert ck.epoch == 2 and ck.meta["dataset"] == path
    assert ck.history[-1]["test_accuracy"] > 0.5           # chance is 0.25
    images = trainer.network_split(RGB, data.load("train", path)).images
    order, aug = trainer.epoch_order(RGB, 0, 48), trainer.epoch_augmentation(RGB, 0, 48)
    moved, _ = trainer.batch_images(data.Split(images, np.zeros(48), (3, 10, 10)), order, aug, 0, 48)
    assert np.array_equal(moved, data.translate(images[order], aug.shifts, (3, 10, 10)))


@pytest.mark.parametrize("config, message", [
    (replace(RGB, input_shape=(1, 10, 10)), r"^configuration 'rgb' takes inputs of shape \[1, 10, 10\]; the rgb "
                                            r"images have shape \[3, 10, 10\]"),
    (replace(RGB, outputs=3), r"^the rgb labels run to 3, but configuration 'rgb' has 3 outputs$"),
])
def test_fit_refuses_a_data_set_the_network_cannot_take_before_any_work(tmp_path, config, message):
    path = _npz_dataset(tmp_path / "rgb.npz")
    with pytest.raises(RunError, match=message):
        trainer.fit(config, tmp_path / "run", 1, dataset=path, **QUIET)
    assert not (tmp_path / "run").exists()
