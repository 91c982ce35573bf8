import numpy as np
import pytest

from eqfpga import checkpoint as ckpt
from eqfpga import trainer
from eqfpga.config import Config


def test_round_trip(tmp_path, small_config):
    ck = trainer.fresh(small_config)
    ck.params.w1[3, 4] = -128; ck.params.b1[0] = 2047
    ck.streams.w2 = 12345; ck.epoch, ck.position, ck.history = 2, 77, [{"epoch": 1}]
    path = ckpt.save(ck, tmp_path / "a.npz")
    back = ckpt.load(path, small_config)
    for k, v in ck.params.arrays().items():
        np.testing.assert_array_equal(v, back.params.arrays()[k])
    assert back.streams == ck.streams and back.config == small_config
    assert (back.epoch, back.position, back.history) == (2, 77, [{"epoch": 1}])


def test_corruption_is_detected(tmp_path, small_config):
    path = ckpt.save(trainer.fresh(small_config), tmp_path / "a.npz")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ckpt.CheckpointError, match="a.npz: "):
        ckpt.load(path)


def test_edited_weights_fail_the_checksum(tmp_path, small_config):
    ck = trainer.fresh(small_config)
    path = ckpt.save(ck, tmp_path / "a.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["w1"] = arrays["w1"].copy(); arrays["w1"][0, 0] += 1
    np.savez(path, **arrays)
    with pytest.raises(ckpt.CheckpointError, match="checksum mismatch"):
        ckpt.load(path)


def test_other_config_is_refused(tmp_path, small_config):
    path = ckpt.save(trainer.fresh(small_config), tmp_path / "a.npz")
    other = Config(name="other", hidden=32, w1_shift=10)
    with pytest.raises(ckpt.CheckpointError, match="made for configuration 'small'"):
        ckpt.load(path, other)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.load(tmp_path / "none.npz")
    (tmp_path / "g.npz").write_text("garbage")
    with pytest.raises(ckpt.CheckpointError, match="not a readable eqfpga checkpoint"):
        ckpt.load(tmp_path / "g.npz")


def test_shipped_checkpoint_matches_the_shipped_config():
    # editing configs/up5k.toml without retraining must fail here, not in a user's hands
    from eqfpga.config import load_config
    ck = ckpt.load(ckpt.shipped(), load_config("up5k"))
    assert ck.epoch >= 1 and ck.history
