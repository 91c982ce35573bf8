"""The configuration: the one layered :class:`Config`, its TOML files (the layered format and
the two earlier ones), its validation, geometry, worst-case widths and learning schedule."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import re

import pytest

from eqfpga.config import (Config, ConfigError, Conv, Dense, config_from_dict, config_to_toml, load_config,
                           read_config_file, shipped_configs, with_overrides)
from eqfpga.golden import neuron

DATA = Path(__file__).parent / "data"

#: Hashes of the shipped networks as the earlier configuration classes computed them:
#: checkpoints made before the layered configuration carry these.
LEGACY_HASHES = {
    "up5k": "c6d29ec6af82d0ba22c7f937be035b4ba619ec89a686b5595a84b6925f082bc7",
    "conv_mnist": "7ceaa18395dcd12d7b6eff543acc3f34db85a1595324213b5540d109016003c2",
}

#: A two-hidden-layer dense network written by hand in the layered format.
TWO_HIDDEN = """\
name = "two_hidden"
description = "28x28 cropped to 20x20 -> 400 -> 100 -> 10"

[input]
shape = [1, 28, 28]
crop = 4

[fixed_point]
input_bits = 8
weight_bits = 8
weight_frac_bits = 6
bias_bits = 12
rate_bits = 8
membrane_frac_bits = 4
leak_shift = 2
input_shift = 10
beta_shift = 1
drive_bits = 17
membrane_bits = 21

[phases]
free_steps = 32
nudge_steps = 16
symmetric_nudge = true

[learning]
batch_size = 1
update_order = "hardware"
lr_decay_epochs = 2
seed = 1

[[layers]]
kind = "dense"
neurons = 400
w_shift = 12
b_shift = 6
w_init = 32

[[layers]]
kind = "dense"
neurons = 100
w_shift = 13
b_shift = 6
w_init = 16

[[layers]]
kind = "dense"
neurons = 10
w_shift = 14
b_shift = 7
w_init = 12
"""


def _edited(tmp_path, text: str, *edits, raw: bytes | None = None) -> Path:
    """``text`` as a file, each (old, new) of ``edits`` replaced once."""
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "c.toml"
    path.write_bytes(raw if raw is not None else text.encode())
    return path


def _shipped_toml(name: str) -> str:
    return config_to_toml(load_config(name))


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# -- shipped configurations -------------------------------------------------------------
def test_shipped_configs_load_fit_and_round_trip(tmp_path):
    names = shipped_configs()
    assert {"up5k", "ecp5", "conv_mnist", "conv_fashion"} <= set(names)
    for name in names:
        c = load_config(name)
        for w in c.widths.values():
            assert w.lo >= -(1 << (w.bits - 1)) if w.signed else w.lo >= 0
            assert w.hi < (1 << (w.bits - int(w.signed)))
        assert c.geometry[-1].out_shape == (c.outputs,)
        p = tmp_path / f"{name}.toml"
        p.write_text(config_to_toml(c))
        assert load_config(p) == c and load_config(p).model_hash == c.model_hash
        assert config_from_dict(c.to_dict()) == c
        assert config_from_dict(c.to_dict()).model_hash == c.model_hash


def test_shipped_files_are_in_the_layered_format():
    for name, path in shipped_configs().items():
        assert "[network]" not in path.read_text(), name
        kw = read_config_file(path)
        assert kw["name"] == name and kw["description"]
        assert all(isinstance(ly, (Dense, Conv)) for ly in kw["layers"])


@pytest.mark.parametrize("legacy, shipped", [("legacy_up5k.toml", "up5k"), ("legacy_conv_mnist.toml", "conv_mnist")])
def test_earlier_formats_load_to_the_shipped_config_and_hash(legacy, shipped):
    assert "[network]" in (DATA / legacy).read_text()       # the earlier format, not the layered one
    old, new = load_config(DATA / legacy), load_config(shipped)
    assert old == new and (old.name, old.description) == (new.name, new.description)
    assert old.model_hash == new.model_hash == LEGACY_HASHES[shipped]


def test_model_hash_follows_the_network_not_its_name():
    assert Config(name="x", seed=2).model_hash != Config(name="x", seed=1).model_hash
    assert Config(name="x").model_hash == Config(name="y").model_hash
    assert Config(name="x", description="a").model_hash == Config(name="x").model_hash


# -- files ------------------------------------------------------------------------------
def test_bad_files_give_one_line_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[network]\nhiden = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'hiden' in \[network\]"):
        load_config(bad)
    bad.write_text("[netw]\n")
    with pytest.raises(ConfigError, match=r"unknown section \[netw\] \(known: name, description, \[input\], "
                                          r"\[fixed_point\], \[phases\], \[learning\], \[\[layers\]\]\)"):
        load_config(bad)
    bad.write_text("not = [toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="unknown configuration 'nope'"):
        load_config("nope")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize("name, edits, message", [
    ("up5k", [('name = "up5k"', "name = 5")], "name must be a string, got 5"),
    ("up5k", [('description = "', 'description = 3\n# "')], "description must be a string, got 3"),
    ("up5k", [("crop = 4", "crop = 14")], "crop = 14 leaves nothing of the 28-pixel side"),
    ("up5k", [("shape = [1, 28, 28]", 'shape = "28x28"')], r"\[input\] shape must be \[channels, height, "
                                                           r"width\] or \[values\], got '28x28'"),
    ("up5k", [("[input]", "hidden = 3\n[input]")], "unknown top-level key 'hidden'"),
    ("up5k", [("[input]", "phases = 3\n[input]"), ("[phases]", "[unused]")],
     r"phases must be a section \[phases\], got 3"),
    ("up5k", [("free_steps = 32\n", "")],
     r"\[phases\] lacks free_steps \(every key of \[phases\] is required but minus_from_free, average_steps\)$"),
    ("up5k", [("symmetric_nudge = true", "symmetric_nudge = 1")], "symmetric_nudge must be true or false, got 1"),
    ("up5k", [("neurons = 320", "neurons = 0")], "layer 1: needs at least one neuron"),
    ("conv_mnist", [('name = "conv_mnist"', "name = 5")], "name must be a string, got 5"),
    ("conv_mnist", [("acc_bits = 28\n", "")], None),          # optional: left at its worst case
    ("conv_mnist", [("pooling = \"avg\"", "pooling = \"median\"")], "layer 1: pooling must be 'avg' or 'max'"),
])
def test_config_files_with_bad_types_or_images_are_refused_when_loaded(tmp_path, name, edits, message):
    path = _edited(tmp_path, _shipped_toml(name), *edits)
    if message is None:
        assert load_config(path).acc_bits == 0
        return
    with pytest.raises(ConfigError, match=message) as e:
        load_config(path)
    assert _one_line(e).startswith(f"{path}: ")


@pytest.mark.parametrize("legacy, edits, message", [
    ("legacy_up5k.toml", [("free_steps = 32\n", "")], r"\[phases\] lacks free_steps \(every key of \[phases\] "
                                                     r"is required\)"),
    ("legacy_up5k.toml", [("hidden = 320", "hidden = 0")], "layer 1: needs at least one neuron"),
    ("legacy_conv_mnist.toml", [("w_shifts = [14, 14, 14, 13]", "w_shifts = [14, 14, 13]")],
     r"w_shifts needs one entry per weight layer \(4\), got 3"),
])
def test_earlier_format_files_are_refused_in_their_own_words(tmp_path, legacy, edits, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_config(_edited(tmp_path, (DATA / legacy).read_text(), *edits))
    _one_line(e)


@pytest.mark.parametrize("edits, message", [
    ([('kind = "dense"', 'kind = "pool"')], r"c.toml: layer 1: kind must be 'dense' or 'conv', got 'pool'$"),
    ([("neurons = 10\n", "")], r"c.toml: layer 2: a dense layer needs neurons$"),
    ([("w_init = 12\n", "")], r"c.toml: layer 2: a dense layer needs w_init$"),
    ([("neurons = 320\n", "neurons = 320\nchannels = 3\n")], r"c.toml: layer 1: unknown key 'channels' for a "
                                                             r"dense layer"),
    ([("[[layers]]", "[[layer]]")], r"c.toml: unknown array of tables \[\[layer\]\] \(known: name, description, "
                                    r"\[input\], \[fixed_point\], \[phases\], \[learning\], \[\[layers\]\]\)$"),
])
def test_bad_layers_give_one_line_naming_the_layer(tmp_path, edits, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_config(_edited(tmp_path, _shipped_toml("up5k"), *edits))
    _one_line(e)


@pytest.mark.parametrize("layers, message", [
    ([{"kind": "dense", "neurons": 32, "w_shift": 12, "b_shift": 6, "w_init": 16}, {"kind": "pool"}],
     r"stored configuration layer 2: kind must be 'dense' or 'conv', got 'pool'$"),
    ([{"kind": "dense", "neurons": 32, "w_shift": 12, "b_shift": 6}, {"kind": "dense", "neurons": 10}],
     r"stored configuration layer 1: a dense layer needs w_init$"),
    ([{"kind": "conv", "channels": 8, "w_shift": 12, "b_shift": 6, "w_init": 16}],
     r"stored configuration layer 1: a conv layer needs kernel, pool, pooling$"),
    ("dense", r"stored configuration: layers must be a list$"),
])
def test_bad_stored_layers_give_one_line_naming_the_layer(layers, message):
    d = Config(name="s", hidden=32).to_dict()
    d["layers"] = layers
    with pytest.raises(ConfigError, match=message) as e:
        config_from_dict(d)
    _one_line(e)


def test_a_layers_key_that_is_no_array_of_tables_is_refused(tmp_path):
    text = _shipped_toml("up5k")
    path = _edited(tmp_path, text[:text.index("[[layers]]")] + "[layers]\nkind = \"dense\"\n")
    with pytest.raises(ConfigError, match=r"layers must be an array of tables \[\[layers\]\]"):
        load_config(path)


def test_missing_sections_are_refused_and_optional_keys_default(tmp_path):
    text = _shipped_toml("up5k")
    path = tmp_path / "c.toml"
    path.write_text(text[:text.index("[phases]")] + text[text.index("[learning]"):])
    with pytest.raises(ConfigError, match=r"missing section \[phases\] \(a configuration needs \[input\], "
                                          r"\[fixed_point\], \[phases\], \[learning\], \[\[layers\]\]\)"):
        load_config(path)
    path.write_text(text[:text.index("[[layers]]")])
    with pytest.raises(ConfigError, match=r"missing section \[\[layers\]\]"):
        load_config(path)
    path.write_text("")
    with pytest.raises(ConfigError, match=r"missing sections \[input\], \[fixed_point\], \[phases\], \[learning\], "
                                          r"\[\[layers\]\]"):
        load_config(path)
    # a feature that is off may be left out, or given at its default
    assert "\naverage_steps =" not in text and "\npad =" not in text
    path.write_text(text.replace("[phases]\n", "[phases]\naverage_steps = 1\n")
                    .replace("crop = 4\n", "crop = 4\npad = 0\n"))
    assert load_config(path) == load_config("up5k")


def test_a_config_file_that_is_not_utf8_is_refused(tmp_path):
    path = _edited(tmp_path, "", raw=b'name = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"c.toml: not UTF-8 text \(byte 11\)"):
        load_config(path)
    path.write_bytes(_shipped_toml("conv_mnist").encode("utf-16"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(path)


def test_toml_lists_become_tuples_and_unknown_layer_keys_are_refused(tmp_path):
    text = _shipped_toml("conv_mnist")
    c = load_config(_edited(tmp_path, text, ("channels = 16", "channels = 8"), ("channels = 32", "channels = 16")))
    assert c.conv_channels == (8, 16) and isinstance(c.layers, tuple) and isinstance(c.input_shape, tuple)
    assert hash(c)
    with pytest.raises(ConfigError, match=r"layer 1: unknown key 'channel' for a conv layer"):
        load_config(_edited(tmp_path, text, ("channels = 16", "channels = 16\nchannel = 8")))


# -- validation -------------------------------------------------------------------------
def test_overflowing_drive_is_refused():
    with pytest.raises(ConfigError, match=r"drive_bits = 12 cannot hold the worst-case drive range"):
        Config(name="bad", drive_bits=12)


def test_overflowing_membrane_is_refused():
    with pytest.raises(ConfigError, match="membrane_bits = 18"):
        Config(name="bad", membrane_bits=18)


def test_wider_network_needs_wider_drive():
    Config(name="ok", hidden=128)
    with pytest.raises(ConfigError, match="drive"):
        Config(name="big", hidden=4000, drive_bits=16, membrane_bits=24)


@pytest.mark.parametrize("kw,msg", [
    ({"hidden": 0}, "layer 1: needs at least one neuron"),
    ({"input_bits": 9}, "input_bits must be <= 8"),
    ({"w1_shift": 18}, r"layer 1: w_shift = 18 must be in \[0, 17\] \(the LFSR gives 17 random bits"),
    ({"w2_init": 300}, "layer 2: w_init = 300 exceeds the 8-bit weight maximum 127"),
    ({"leak_shift": 5}, "leak_shift"),
    ({"weight_frac_bits": 1, "membrane_frac_bits": 2}, "must be >= rate_bits"),
    ({"hidden": 1.5}, "layer 1: neurons must be an integer, got 1.5"),
    ({"outputs": 1}, "outputs must be >= 2"),
    ({"layers": (Dense(32), "dense")}, "layer 2: must be a Dense or Conv layer, got 'dense'"),
    ({"layers": ()}, "layers must be a non-empty list"),
    ({"layers": (Dense(32), Conv(8))}, r"the last layer \(the outputs\) must be dense"),
    ({"color": 1}, "unknown field color"),
])
def test_impossible_values_are_refused(kw, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        Config(name="bad", **kw)
    _one_line(e)


def test_update_order_hardware_is_dense_and_per_sample_only():
    conv = (Conv(8), Dense(10))
    Config(name="ok", layers=conv, update_order="tensor", drive_bits=19, membrane_bits=23)
    with pytest.raises(ConfigError, match=r"update_order 'hardware' is defined for dense layers only"):
        Config(name="bad", layers=conv, drive_bits=19, membrane_bits=23)
    Config(name="ok", batch_size=4, update_order="tensor")
    with pytest.raises(ConfigError, match=r"update_order 'hardware' trains per sample: batch_size must be 1"):
        Config(name="bad", batch_size=4)
    with pytest.raises(ConfigError, match=r"update_order must be one of hardware, tensor, got 'chip'"):
        Config(name="bad", update_order="chip")


def test_a_convolution_after_a_dense_layer_is_refused():
    with pytest.raises(ConfigError, match=r"layer 2: a convolution after a dense layer") as e:
        Config(name="bad", layers=(Dense(100), Conv(8), Dense(10)), update_order="tensor")
    _one_line(e)


def test_without_convolutions_the_convolutional_shorthand_is_a_dense_network():
    c = Config.convolutional("d", conv_channels=(), w_shifts=(15, 14), b_shifts=(10, 10), w_init=(22, 44))
    assert c.is_dense and c.n_conv == 0 and c.layers == (Dense(128, 15, 10, 22), Dense(10, 14, 10, 44))
    with pytest.raises(ConfigError, match=r"kernel is not one value for every convolution \(no convolutions\)"):
        c.kernel


def test_a_left_shift_nudge_is_refused_in_the_chips_update_order():
    # the chip's RTL neuron only shifts the nudge right
    with pytest.raises(ConfigError, match=r"beta_shift \+ rate_bits - weight_frac_bits must be >= 0 with "
                                          r"update_order 'hardware'.*got -1"):
        Config(name="fc", weight_frac_bits=10, rate_bits=8, beta_shift=1)


# -- convolutional networks -------------------------------------------------------------
def test_geometry_of_the_2c2fc_network():
    c = load_config("conv_mnist")
    assert [ly.out_shape for ly in c.geometry] == [(16, 12, 12), (32, 4, 4), (128,), (10,)]
    assert c.geometry[1].weight_shape == (32, 16, 5, 5) and c.geometry[2].weight_shape == (512, 128)
    assert c.pool_shift == 2 and c.hidden_sizes == (16 * 12 * 12, 32 * 4 * 4, 128)


def test_input_pad_grows_every_map_after_it():
    c = replace(load_config("conv_fashion"), input_pad=2)
    assert c.padded_size == 32 and c.image_size == 28 and c.pad == 2
    assert [ly.out_shape for ly in c.geometry] == [(16, 14, 14), (32, 5, 5), (128,), (10,)]
    assert c.geometry[2].weight_shape == (800, 128)
    # the zeros add no range: the worst cases are the unpadded network's except the FC fan-in
    assert c.widths["acc"] == load_config("conv_fashion").widths["acc"]


def test_worst_case_widths_hand_computed():
    c = Config.convolutional("w")
    w = c.widths
    # conv 1 accumulator: 4 positions x 25 taps x 255 x (-2048 .. 2047)
    assert (w["acc"].lo, w["acc"].hi) == (4 * 25 * 255 * -2048, 4 * 25 * 255 * 2047)
    # layer 2 drive: conv of 400 spikes pooled (>> 2), feedback 128 x w, bias
    lo = ((4 * 400 * -2048) >> 2) + 128 * -2048 - 8192
    assert w["drive_2"].lo == lo
    assert w["membrane"].lo == w["drive"].lo << c.membrane_frac_bits


def test_overflowing_conv_config_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match=r"drive_bits = 16 cannot hold the worst-case drive range"):
        Config.convolutional("bad", drive_bits=16)
    with pytest.raises(ConfigError, match=r"acc_bits"):
        Config.convolutional("bad", acc_bits=20)
    with pytest.raises(ConfigError, match=r"update_bits"):
        Config.convolutional("bad", batch_size=64, update_bits=32)
    with pytest.raises(ConfigError, match=r"membrane_bits"):
        Config.convolutional("bad", membrane_bits=22)


@pytest.mark.parametrize("kwargs, msg", [
    ({"image_size": 27}, "not divisible by pool"),
    ({"kernel": 30}, "smaller than"),
    ({"pool": 3}, "power of two"),
    ({"pooling": "median"}, "pooling must be"),
    ({"w_shifts": (15, 15, 14)}, "one entry per weight layer"),
    ({"w_shifts": (18, 15, 14, 13)}, "LFSR"),
    ({"w_init": (5000, 1, 1, 1)}, "weight maximum"),
    ({"leak_shift": 3}, "leak_shift"),
    ({"average_steps": 3}, "average_steps must be a power of two"),
    ({"average_steps": 16, "nudge_steps": 12}, "average_steps must be a power of two <= nudge_steps"),
    ({"average_steps": 0}, "average_steps must be >= 1"),
    ({"minus_from_free": True, "symmetric_nudge": False}, "minus_from_free needs symmetric_nudge"),
    ({"minus_from_free": 1}, "minus_from_free must be true or false"),
    ({"shift_pixels": -1}, "shift_pixels must be >= 0"),
    ({"shift_pixels": 28}, "shift_pixels 28 moves the whole image out of its 28-pixel side"),
    ({"mirror_images": "yes"}, "mirror_images must be true or false"),
    ({"input_pad": -1}, "pad must be >= 0, got -1"),
    ({"input_pad": 1}, "layer 2: output 9x9 is not divisible by pool 2"),
    ({"input_pad": 1, "crop": 1}, "crop and pad: give one"),
])
def test_bad_conv_values_refused(kwargs, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        Config.convolutional("bad", **kwargs)
    _one_line(e)


def test_weights_finer_than_the_nudge_shift_it_left_exactly():
    # weight_frac_bits 11 > beta_shift 1 + rate_bits 8: nudge = +-beta (t - R) << 2, exact
    c = Config.convolutional("fine", weight_bits=14, weight_frac_bits=11, bias_bits=16, acc_bits=29,
                             drive_bits=25, membrane_bits=27, w_init=(1600, 120, 60, 120))
    assert c.nudge_shift == -2
    r, t = np.array([0, 100, 255, 3]), np.array([1, 1, 0, 0])
    assert list(neuron.nudge(r, t, c, 1)) == [1024, 624, -1020, -12]
    assert list(neuron.nudge(r, t, c, -1)) == [-1024, -624, 1020, 12]
    # the real nudge is beta * (t - R / 2**rate_bits): drive units of 2**-11
    assert np.allclose(neuron.nudge(r, t, c) * 2.0 ** -11, c.beta * (t - r / 256))


# -- one-hidden-layer networks ----------------------------------------------------------
@pytest.mark.parametrize("beta_shift", [0, 1, 3])
def test_nudge_range_covers_both_signs(beta_shift):
    c = Config(name="x", beta_shift=beta_shift, weight_frac_bits=8)
    r = np.arange(c.rate_max + 1)
    values = [neuron.nudge(r, np.full_like(r, t), c, sign) for t in (0, 1) for sign in (1, -1)]
    w = c.widths["nudge"]
    assert min(v.min() for v in values) == w.lo and max(v.max() for v in values) == w.hi


def test_crop_keeps_a_square_window():
    c = Config(name="c", inputs=400, crop=4, hidden=32)
    assert (c.pixels, c.image_side, c.inputs, c.first_shape) == (784, 28, 400, (1, 20, 20))
    assert Config(name="c", hidden=32).pixels == 784
    with pytest.raises(ConfigError, match="inputs = 401 is not a square"):
        Config(name="c", inputs=401, crop=1, hidden=32)
    # crop enters the model hash only when set: older configurations keep theirs
    assert Config(name="c", hidden=32).model_hash != Config(name="c", inputs=400, crop=4, hidden=32).model_hash


def test_augment_shift_is_checked_and_hashed_only_when_set():
    base = Config(name="c", hidden=32)
    assert Config(name="c", hidden=32, augment_shift=0).model_hash == base.model_hash
    assert Config(name="c", hidden=32, augment_shift=1).model_hash != base.model_hash
    assert Config(name="c", hidden=32, augment_shift=1) == Config(name="c", hidden=32, shift_pixels=1)
    with pytest.raises(ConfigError, match="shift_pixels 28 moves the whole image out of its 28-pixel side"):
        Config(name="c", hidden=32, augment_shift=28)
    with pytest.raises(ConfigError, match=r"shift_pixels and mirror_images need an image input_shape"):
        Config(name="c", inputs=500, hidden=32, augment_shift=1)


# -- deeper dense networks --------------------------------------------------------------
def test_two_hidden_layer_dense_config_loads_and_round_trips(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text(TWO_HIDDEN)
    c = load_config(path)
    assert c == Config("two_hidden", crop=4, weight_frac_bits=6, drive_bits=17, membrane_bits=21,
                       symmetric_nudge=True, lr_decay_epochs=2,
                       layers=(Dense(400, 12, 6, 32), Dense(100, 13, 6, 16), Dense(10, 14, 7, 12)))
    assert [ly.weight_shape for ly in c.geometry] == [(400, 400), (400, 100), (100, 10)]
    assert c.hidden_sizes == (400, 100) and c.legacy_dict() is None
    again = tmp_path / "again.toml"
    again.write_text(config_to_toml(c))
    assert load_config(again) == c and load_config(again).model_hash == c.model_hash
    stored = config_from_dict(c.to_dict())
    assert stored == c and stored.model_hash == c.model_hash and stored.description == c.description
    assert c.model_hash != replace(c, layers=c.layers[:1] + (Dense(101, 13, 6, 16),) + c.layers[2:]).model_hash


def test_two_hidden_layer_widths_hand_computed(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text(TWO_HIDDEN)
    w = load_config(path).widths
    assert {f"drive_{i}" for i in (1, 2, 3)} <= set(w) and "drive_4" not in w
    # layer 1: 400 inputs of 255 through 8-bit weights, >> input_shift 10; feedback 100 x w; bias
    assert (w["drive_1"].lo, w["drive_1"].hi) == ((400 * 255 * -128 >> 10) + 100 * -128 - 2048,
                                                  (400 * 255 * 127 >> 10) + 100 * 127 + 2047)
    # layer 2: 400 spikes through w, feedback 10 x w, bias: the widest hidden drive
    assert (w["drive_2"].lo, w["drive_2"].hi) == (-54528, 54117)
    assert (w["hidden_drive"].lo, w["hidden_drive"].hi) == (-54528, 54117)
    assert w["hidden_drive"].lo < w["drive_1"].lo and w["hidden_drive"].hi > w["drive_1"].hi
    # output: 100 spikes through w, the nudge (256 >> 3), bias
    assert (w["output_drive"].lo, w["output_drive"].hi) == (-12800 - 32 - 2048, 12700 + 32 + 2047)
    with pytest.raises(ConfigError, match=r"drive_bits = 16 cannot hold the worst-case drive range "
                                          r"\[-54528, 54117\] \(needs 17 bits\)"):
        load_config(_edited(tmp_path, TWO_HIDDEN, ("drive_bits = 17", "drive_bits = 16")))


def test_two_hidden_layers_refuse_the_one_hidden_layer_shorthand(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text(TWO_HIDDEN)
    c = load_config(path)
    for name in ("hidden", "w1_shift", "b2_shift", "w2_init"):
        with pytest.raises(ConfigError, match=rf"config 'two_hidden': {name} is defined for networks with one "
                                              rf"dense hidden layer; this one has 1x20x20 -> 400 -> 100 -> 10$") as e:
            getattr(c, name)
        _one_line(e)
    with pytest.raises(ConfigError, match=r"hidden is the one-hidden-layer shorthand; this network has other layers"):
        replace(c, hidden=50)
    with pytest.raises(ConfigError, match=r"w1_shift is the one-hidden-layer shorthand"):
        with_overrides(c, ["w1_shift=13"])


# -- learning schedule ------------------------------------------------------------------
def test_learning_rate_schedule():
    c = Config(name="x", w1_shift=13, w2_shift=16, lr_decay_epochs=2)
    assert c.at_epoch(0) == c
    assert (c.at_epoch(2).w1_shift, c.at_epoch(2).w2_shift) == (14, 17)
    assert c.at_epoch(9).w2_shift == 17          # capped at the LFSR width
    assert Config(name="y").at_epoch(5) == Config(name="y")


def test_at_epoch_grows_every_layers_shifts_and_stops_at_caps(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text(TWO_HIDDEN)
    c = load_config(path)                                          # lr_decay_epochs = 2
    assert (c.w_shifts, c.b_shifts) == ((12, 13, 14), (6, 6, 7))
    assert (c.at_epoch(3).w_shifts, c.at_epoch(3).b_shifts) == ((13, 14, 15), (7, 7, 8))
    assert (c.at_epoch(10).w_shifts, c.at_epoch(10).b_shifts) == ((17, 17, 17), (11, 11, 12))
    assert c.at_epoch(99).b_shifts == (17, 17, 17)               # no caps: the LFSR's 17 bits
    assert [replace(ly, w_shift=0, b_shift=0) for ly in c.at_epoch(99).layers] == \
           [replace(ly, w_shift=0, b_shift=0) for ly in c.layers]  # only the shifts change
    # per-layer caps beyond the LFSR (the convolutional network, update_bits = 32)
    base = load_config("conv_mnist")
    layers = (replace(base.layers[0], w_shift=14, w_shift_cap=18), replace(base.layers[1], w_shift=16, b_shift_cap=19),
              replace(base.layers[2], w_shift=16, w_shift_cap=20), base.layers[3])
    capped = replace(base, layers=layers)                          # lr_decay_epochs = 1
    assert capped.at_epoch(3).w_shifts == (17, 17, 19, 16)
    assert capped.at_epoch(50).w_shifts == (18, 17, 20, 17)
    assert capped.at_epoch(50).b_shifts == (17, 19, 17, 17)


def test_lr_decay_raises_shifts_up_to_the_lfsr_width():
    c = replace(load_config("conv_mnist"), lr_decay_epochs=2)
    assert c.at_epoch(0) == c
    assert c.at_epoch(5).w_shifts == tuple(min(17, s + 2) for s in c.w_shifts)


def test_shift_caps_let_the_decay_go_past_the_lfsr_bits():
    c = Config.convolutional("caps", w_shifts=(15, 16, 16, 15), w_shift_caps=(17, 19, 19, 19), lr_decay_epochs=1)
    assert c.at_epoch(2).w_shifts == (17, 18, 18, 17)
    assert c.at_epoch(9).w_shifts == (17, 19, 19, 19)
    assert c.at_epoch(9).b_shifts == (17, 17, 17, 17)          # no b caps: the LFSR's 17 bits
    nocaps = Config.convolutional("nocaps", w_shifts=(15, 16, 16, 15), lr_decay_epochs=1)
    assert nocaps.at_epoch(9).w_shifts == (17,) * 4


@pytest.mark.parametrize("kwargs, msg", [
    ({"w_shifts": (18, 15, 14, 13), "w_shift_caps": (17, 19, 19, 19)}, r"layer 1: w_shift = 18 must be in \[0, 17\]"),
    ({"w_shift_caps": (17, 19)}, "one entry per weight layer"),
    ({"b_shift_caps": (16, 17, 17, 17)}, r"layer 1: b_shift_cap must be 0 \(the LFSR's 17 bits\) or in "
                                         r"\[17, update_bits - 1\], got 16"),
    ({"w_shift_caps": (17, 17, 17, 32)}, r"layer 4: w_shift_cap must be 0 \(the LFSR's 17 bits\) or in "
                                         r"\[17, update_bits - 1 = 31\], got 32"),
])
def test_bad_shift_caps_refused(kwargs, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        Config.convolutional("bad", **kwargs)
    _one_line(e)
    Config.convolutional("ok", w_shift_caps=(17, 17, 17, 31))


@pytest.mark.parametrize("epoch", range(8))
def test_fine_fashion_config_learns_at_the_real_rates_of_conv_fashion(epoch):
    from eqfpga.golden.conv_float import lr_scales
    coarse, fine = load_config("conv_fashion"), load_config("conv_fashion_fine")
    assert (fine.rate_bits, fine.weight_frac_bits) == (10, 11) and fine.nudge_shift == 0
    assert lr_scales(fine.at_epoch(epoch)) == lr_scales(coarse.at_epoch(epoch))


def test_overrides_take_json_values_and_refuse_unknown_fields():
    c = with_overrides(load_config("conv_mnist"), ["leak_shift=1", "w_shifts=[15,15,14,13]"])
    assert c.leak_shift == 1 and c.w_shifts == (15, 15, 14, 13)
    d = with_overrides(load_config("up5k"), ['layers=[{"kind": "dense", "neurons": 64, "w_shift": 12, '
                                             '"b_shift": 6, "w_init": 32}, {"kind": "dense", "neurons": 10, '
                                             '"w_shift": 13, "b_shift": 6, "w_init": 12}]'])
    assert d.hidden == 64 and d.layers[1] == load_config("up5k").layers[1]
    for items, msg in ((["leak=1"], "unknown configuration field 'leak'"), (["leak_shift"], "expected KEY=VALUE"),
                       (["leak_shift=one"], "must be JSON"), (["leak_shift=3"], "leak_shift"),
                       (['layers=[{"kind": "pool"}]'], "--set layers entry 1: kind must be 'dense' or 'conv'")):
        with pytest.raises(ConfigError, match=msg):
            with_overrides(c, items)


@pytest.mark.parametrize("name, edits, shape", [
    ("up5k", [("shape = [1, 28, 28]", "shape = [785]"), ("crop = 4\n", "")], (785,)),
    ("conv_mnist", [("shape = [1, 28, 28]", "shape = [1, 32, 32]")], (1, 32, 32)),
    ("legacy_up5k.toml", [("inputs = 400", "inputs = 785"), ("crop = 4", "crop = 0")], (785,)),
    ("legacy_conv_mnist.toml", [("image_size = 28", "image_size = 32")], (1, 32, 32)),
])
def test_any_input_shape_loads_and_is_checked_against_the_data_where_used(tmp_path, name, edits, shape):
    from eqfpga import data
    from eqfpga.run_folder import RunError
    from eqfpga.trainer import network_split
    text = (DATA / name).read_text() if name.endswith(".toml") else _shipped_toml(name)
    c = load_config(_edited(tmp_path, text, *edits))
    assert c.input_shape == shape
    with pytest.raises(RunError, match=rf"takes inputs of shape {re.escape(str(list(shape)))}; the mnist images "
                                       r"have shape \[1, 28, 28\]"):
        network_split(c, data.load("test").take(2), "mnist")
