import json
from pathlib import Path

import numpy as np
import pytest

from eqfpga import checkpoint as ckpt
from eqfpga import trainer
from eqfpga.config import Config, Dense, load_config

OLD_CONV = Path(__file__).parent / "golden" / "data" / "conv_mnist_int.npz"


def _deep() -> Config:
    return Config("deep", crop=4, layers=(Dense(16), Dense(8), Dense(10)), free_steps=8, nudge_steps=4)


def _raw(path):
    """The arrays and the meta of an .npz checkpoint, read directly."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(arrays.pop("meta").tobytes())


def _same_state(a: ckpt.Checkpoint, b: ckpt.Checkpoint) -> None:
    assert a.mode == b.mode and a.config == b.config
    assert len(a.params.w) == len(b.params.w) == a.config.n_layers
    for x, y in zip(a.params.w + a.params.b, b.params.w + b.params.b):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)
    assert list(a.streams) == list(b.streams)
    assert (a.epoch, a.position, a.samples_seen, a.history, a.meta) == \
           (b.epoch, b.position, b.samples_seen, b.history, b.meta)
    assert a.extra.keys() == b.extra.keys()
    for k in a.extra:
        assert a.extra[k].dtype == b.extra[k].dtype
        np.testing.assert_array_equal(a.extra[k], b.extra[k])


NETWORKS = {
    "dense": lambda small: (small, "int"),
    "two hidden layers": lambda small: (_deep(), "int"),
    "conv": lambda small: (load_config("conv_mnist"), "int"),
    "conv float": lambda small: (load_config("conv_mnist"), "float"),
}


@pytest.mark.parametrize("network", NETWORKS)
def test_round_trip(tmp_path, small_config, network):
    c, mode = NETWORKS[network](small_config)
    ck = trainer.fresh(c, mode)
    lo, hi = c.weight_range
    ck.params.w[0].flat[3] = lo if mode == "int" else -1.5e-3
    ck.params.w[-1].flat[-1] = hi if mode == "int" else 7.25
    ck.params.b[0][0] = c.bias_range[1] if mode == "int" else 0.125
    if mode == "int":
        ck.streams[1] = 12345
    ck.epoch, ck.position, ck.samples_seen = 2, 77, 120077
    ck.history, ck.meta = [{"epoch": 1, "test_accuracy": 0.5}], {"dataset": "mnist", "note": "x"}
    ck.extra = {"m1": np.linspace(-1, 1, 6, dtype=np.float32), "count": np.arange(-3, 300, dtype=np.int64)}
    path = ckpt.save(ck, tmp_path / "a.npz")
    assert _raw(path)[1]["format"] == ckpt.FORMAT and _raw(path)[1]["mode"] == mode
    back = ckpt.load(path, c, mode)
    _same_state(ck, back)
    assert back.params.w[0].dtype == (np.int64 if mode == "int" else np.float32)
    assert len(back.streams) == (2 * c.n_layers if mode == "int" else 0)


def test_old_dense_format_loads_with_its_numbers(tmp_path):
    """The shipped checkpoint is in the one-hidden-layer format eqfpga-checkpoint-1."""
    arrays, meta = _raw(ckpt.shipped())
    assert meta["format"] == "eqfpga-checkpoint-1"
    ck = ckpt.load(ckpt.shipped(), load_config("up5k"), "int")
    assert ck.config == load_config("up5k") and ck.config.model_hash == meta["model_hash"]
    assert ck.mode == "int" and ck.extra == {}
    for k, a in arrays.items():
        np.testing.assert_array_equal(ck.params.arrays()[k], a.astype(np.int64), err_msg=k)
    assert list(ck.streams) == meta["streams"] == [98404, 74648, 50635, 97315]
    assert (ck.epoch, ck.position, ck.samples_seen) == (12, 0, 720000)
    assert ck.history == meta["history"] and ck.history[-1]["epoch"] == 12 and ck.meta == meta["meta"]
    # written again, it is in the one format, with the same numbers
    again = ckpt.load(ckpt.save(ck, tmp_path / "up5k.npz"), load_config("up5k"))
    assert _raw(tmp_path / "up5k.npz")[1]["format"] == ckpt.FORMAT
    _same_state(ck, again)


def test_old_conv_format_loads_with_its_numbers(tmp_path):
    arrays, meta = _raw(OLD_CONV)
    assert meta["format"] == "eqfpga-conv-checkpoint-1"
    ck = ckpt.load(OLD_CONV, mode="int")
    stored = meta["config"]
    assert {k: ck.config.legacy_dict()[k] for k in stored} == stored   # every stored field kept
    assert ck.config.describe_layers() == "1x28x28 -> conv5x5:16/avg2 -> conv5x5:32/avg2 -> 128 -> 10"
    assert ck.config.update_order == "tensor" and ck.config.batch_size == 16
    for k, a in arrays.items():
        np.testing.assert_array_equal(ck.params.arrays()[k], a, err_msg=k)
    assert list(ck.streams) == meta["streams"] and len(ck.streams) == 8
    assert (ck.epoch, ck.position, ck.samples_seen) == (10, 21264, 621264)
    assert ck.history == meta["history"] and ck.meta == meta["meta"]
    again = ckpt.load(ckpt.save(ck, tmp_path / "conv.npz"), ck.config, "int")
    _same_state(ck, again)


def _one_line(e: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(e.value)
    return str(e.value)


def test_corruption_is_detected(tmp_path, small_config):
    path = ckpt.save(trainer.fresh(small_config), tmp_path / "a.npz")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ckpt.CheckpointError, match="a.npz: ") as e:
        ckpt.load(path)
    _one_line(e)


@pytest.mark.parametrize("network", NETWORKS)
def test_edited_weights_fail_the_checksum(tmp_path, small_config, network):
    c, mode = NETWORKS[network](small_config)
    path = ckpt.save(trainer.fresh(c, mode), tmp_path / "a.npz")
    arrays, _ = _raw(path)
    with np.load(path) as z:
        meta = z["meta"]
    arrays["w2"] = arrays["w2"].copy()
    arrays["w2"].flat[0] += 1
    np.savez(path, meta=meta, **arrays)
    with pytest.raises(ckpt.CheckpointError, match="a.npz: checksum mismatch") as e:
        ckpt.load(path)
    _one_line(e)


def test_edited_old_format_files_fail_their_checksum(tmp_path):
    for source in (ckpt.shipped(), OLD_CONV):
        arrays, meta = _raw(source)
        arrays["b1"] = arrays["b1"].copy()
        arrays["b1"][0] += 1
        path = tmp_path / source.name
        np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
        with pytest.raises(ckpt.CheckpointError, match="checksum mismatch") as e:
            ckpt.load(path)
        _one_line(e)


def test_other_config_is_refused(tmp_path, small_config):
    path = ckpt.save(trainer.fresh(small_config), tmp_path / "a.npz")
    other = Config(name="other", hidden=32, w1_shift=10)
    with pytest.raises(ckpt.CheckpointError, match="made for configuration 'small', not 'other' \\(they "
                                                   "differ in beta_shift, layers' b_shift, layers' w_init, "
                                                   "layers' w_shift\\)") as e:
        ckpt.load(path, other)
    _one_line(e)
    with pytest.raises(ckpt.CheckpointError, match=r"made for configuration 'small', not 'deep' \(they differ "
                                                   "in crop, beta_shift, free_steps, nudge_steps, layers\\)"):
        ckpt.load(path, _deep())


def test_other_mode_is_refused(tmp_path):
    c = load_config("conv_mnist")
    path = ckpt.save(trainer.fresh(c, "float"), tmp_path / "f.npz")
    with pytest.raises(ckpt.CheckpointError, match="f.npz: trained in float mode, not int$") as e:
        ckpt.load(path, c, "int")
    _one_line(e)
    with pytest.raises(ckpt.CheckpointError, match="trained in int mode, not float-spiking$"):
        ckpt.load(ckpt.shipped(), mode="float-spiking")


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="none.npz: checkpoint not found$"):
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
    with pytest.raises(ckpt.CheckpointError, match=r"b.npz: is not an eqfpga checkpoint \(the archive has no meta\)$"):
        ckpt.load(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", meta=np.frombuffer(b"\xff{", np.uint8), w1=[0], w2=[0], b1=[0], b2=[0])
    with pytest.raises(ckpt.CheckpointError, match=r"c.npz: is not an eqfpga checkpoint \(its meta is not JSON\)$"):
        ckpt.load(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", meta=np.frombuffer(b'{"format": "something-else"}', np.uint8))
    with pytest.raises(ckpt.CheckpointError, match=r"d.npz: unknown checkpoint format 'something-else'$"):
        ckpt.load(tmp_path / "d.npz")


def test_a_checkpoint_lacking_a_layers_tensors_is_refused(tmp_path):
    path = ckpt.save(trainer.fresh(_deep()), tmp_path / "a.npz")
    arrays, meta = _raw(path)
    del arrays["w3"], arrays["b3"]
    meta.pop("sha256")
    meta["sha256"] = ckpt._digest({k: v.astype(np.int64) for k, v in arrays.items()}, meta)
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    with pytest.raises(ckpt.CheckpointError, match=r"a.npz: the archive has no w3, b3 for its 3 weight layers$"):
        ckpt.load(path)


def rewrite_meta(path, edit, digest):
    """Replace the meta of the checkpoint at ``path`` by ``edit(meta)`` with a matching checksum
    (``digest(arrays, meta)``), so that only the meta's shape is wrong."""
    arrays, meta = _raw(path)
    del meta["sha256"]
    meta = edit(meta)
    if isinstance(meta, dict):
        meta["sha256"] = digest(arrays, meta)
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)


def _set(**fields):
    return lambda m: {**m, **fields}


META_FAULTS = [
    (lambda m: [m], r"is not an eqfpga checkpoint \(its meta is a JSON list, not an object\)"),
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
    (_set(model_hash="0" * 64), "configuration hash does not match its configuration"),
    (_set(config=[]), r"its meta's 'config' must be a JSON object, got \[\]"),
    (_set(config={"name": "x", "hidden": -3}), r"its configuration is invalid \("),
    (_set(mode="double"), "its meta's 'mode' must be one of int, float, float-spiking, got 'double'"),
]


def _int_digest(arrays, meta):
    return ckpt._digest({k: v.astype(np.int64) for k, v in arrays.items()}, meta)


def _dense_digest(arrays, meta):
    return ckpt._dense_digest(arrays, meta)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The bytes of a checkpoint of each kind, and the checksum of its format."""
    folder = tmp_path_factory.mktemp("ck")
    return {
        "dense": (ckpt.save(trainer.fresh(Config("small", hidden=32)), folder / "d.npz").read_bytes(), _int_digest, 4),
        "conv": (ckpt.save(trainer.fresh(load_config("conv_mnist")), folder / "c.npz").read_bytes(), _int_digest, 8),
        "old dense": (ckpt.shipped().read_bytes(), _dense_digest, 4),
        "old conv": (OLD_CONV.read_bytes(), ckpt._digest, 8),
    }


@pytest.mark.parametrize("kind", ["dense", "conv", "old dense", "old conv"])
@pytest.mark.parametrize("edit, message", META_FAULTS + [
    (_set(streams=[1, 2, 3]), r"its meta's 'streams' must hold {n} positions \(two per weight layer\), got 3"),
])
def test_a_checksummed_meta_of_the_wrong_shape_is_refused(tmp_path, files, kind, edit, message):
    raw, digest, streams = files[kind]
    path = tmp_path / "a.npz"
    path.write_bytes(raw)
    ckpt.load(path)   # the unedited file is a checkpoint
    rewrite_meta(path, edit, digest)
    with pytest.raises(ckpt.CheckpointError, match="a.npz: " + message.replace("{n}", str(streams))) as e:
        ckpt.load(path)
    _one_line(e)


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, small_config, monkeypatch):
    path = ckpt.save(trainer.fresh(small_config), tmp_path / "last.npz")
    before = path.read_bytes()
    ck = trainer.fresh(small_config)
    ck.epoch = 3

    def stopped(*a):
        raise KeyboardInterrupt
    monkeypatch.setattr(ckpt.os, "replace", stopped)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(ck, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.npz"]


def test_shipped_checkpoint_matches_the_shipped_config():
    # editing configs/up5k.toml without retraining must fail here, not in a user's hands
    ck = ckpt.load(ckpt.shipped(), load_config("up5k"))
    assert ck.epoch >= 1 and ck.history
