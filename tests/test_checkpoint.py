import json

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
    with pytest.raises(ckpt.CheckpointError, match=r"g.npz: is not an eqfpga checkpoint \(not a NumPy .npz archive\)$"):
        ckpt.load(tmp_path / "g.npz")


def test_files_that_are_no_checkpoint_say_what_they_are_not(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    with pytest.raises(ckpt.CheckpointError, match=r"a.npz: is not an eqfpga checkpoint \(not a NumPy .npz archive\)$"):
        ckpt.load(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", w1=np.zeros(3))
    with pytest.raises(ckpt.CheckpointError,
                       match=r"b.npz: is not an eqfpga checkpoint \(the archive has no meta, w2, b1, b2\)$"):
        ckpt.load(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", meta=np.frombuffer(b"\xff{", np.uint8), w1=[0], w2=[0], b1=[0], b2=[0])
    with pytest.raises(ckpt.CheckpointError, match=r"c.npz: is not an eqfpga checkpoint \(its meta is not JSON\)$"):
        ckpt.load(tmp_path / "c.npz")


def rewrite_meta(path, edit, digest):
    """Replace the meta of the checkpoint at ``path`` by ``edit(meta)`` with a matching checksum
    (``digest(arrays, meta)``), so that only the meta's shape is wrong."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    del meta["sha256"]
    meta = edit(meta)
    if isinstance(meta, dict):
        meta["sha256"] = digest(arrays, meta)
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)


def _set(**fields):
    return lambda m: {**m, **fields}


META_FAULTS = [
    (lambda m: [m], r"is not an .*checkpoint \(its meta is a JSON list, not an object\)"),
    (lambda m: {k: v for k, v in m.items() if k != "streams"}, "its meta has no 'streams'"),
    (_set(streams="abc"), "its meta's 'streams' must be a JSON list, got 'abc'"),
    (_set(streams=[1, 2, -3, 4]), r"its meta's 'streams' must be LFSR positions in \[0, 131071\)"),
    (_set(epoch="3"), "its meta's 'epoch' must be an integer, got '3'"),
    (_set(epoch=True), "its meta's 'epoch' must be an integer, got True"),
    (_set(position=-5), "its meta's 'position' must be >= 0, got -5"),
    (_set(samples_seen=1.5), "its meta's 'samples_seen' must be an integer, got 1.5"),
    (_set(position=150, meta={"train_samples": 100}), "its position 150 lies beyond its 100 training samples"),
    (_set(history=[1]), "its meta's 'history' must be a list of JSON objects"),
    (_set(meta=[]), r"its meta's 'meta' must be a JSON object, got \[\]"),
    (_set(model_hash=5), "its meta's 'model_hash' must be a string, got 5"),
    (_set(config=[]), r"its meta's 'config' must be a JSON object, got \[\]"),
]


@pytest.mark.parametrize("edit, message", META_FAULTS + [
    (_set(streams=[1, 2, 3]), "its meta's 'streams' must hold 4 positions, got 3"),
])
def test_a_checksummed_meta_of_the_wrong_shape_is_refused(tmp_path, small_config, edit, message):
    path = ckpt.save(trainer.fresh(small_config), tmp_path / "a.npz")
    rewrite_meta(path, edit, lambda arrays, meta: ckpt._digest({k: arrays[k].astype(np.int64)
                                                                 for k in ("w1", "w2", "b1", "b2")}, meta))
    with pytest.raises(ckpt.CheckpointError, match="a.npz: " + message):
        ckpt.load(path)


@pytest.fixture(scope="module")
def conv_checkpoint(tmp_path_factory):
    from eqfpga.conv_config import load_conv_config
    from eqfpga.golden import conv_train
    path = tmp_path_factory.mktemp("conv") / "c.npz"
    return conv_train.save(conv_train.fresh(load_conv_config("conv_mnist"), "int"), path).read_bytes()


@pytest.mark.parametrize("edit, message", META_FAULTS + [
    (_set(streams=[1, 2, 3]), r"its meta's 'streams' must hold 8 positions \(two per weight layer\), got 3"),
    (_set(mode="double"), "its meta's 'mode' must be one of int, float, float-spiking, got 'double'"),
])
def test_a_checksummed_conv_meta_of_the_wrong_shape_is_refused(tmp_path, conv_checkpoint, edit, message):
    from eqfpga.golden import conv_train
    path = tmp_path / "a.npz"
    path.write_bytes(conv_checkpoint)
    conv_train.load(path)   # the unedited file is a checkpoint
    rewrite_meta(path, edit, conv_train._digest)
    with pytest.raises(conv_train.ConvCheckpointError, match="a.npz: " + message):
        conv_train.load(path)


def test_files_that_are_no_conv_checkpoint_say_what_they_are_not(tmp_path):
    from eqfpga.golden import conv_train
    (tmp_path / "g.npz").write_text("garbage")
    with pytest.raises(conv_train.ConvCheckpointError,
                       match=r"g.npz: is not an eqfpga conv checkpoint \(not a NumPy .npz archive\)$"):
        conv_train.load(tmp_path / "g.npz")


def test_shipped_checkpoint_matches_the_shipped_config():
    # editing configs/up5k.toml without retraining must fail here, not in a user's hands
    from eqfpga.config import load_config
    ck = ckpt.load(ckpt.shipped(), load_config("up5k"))
    assert ck.epoch >= 1 and ck.history
