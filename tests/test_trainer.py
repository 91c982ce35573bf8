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
