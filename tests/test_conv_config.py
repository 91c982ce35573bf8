from dataclasses import replace

import numpy as np
import pytest

from eqfpga.config import Config, ConfigError
from eqfpga.conv_config import (ConvConfig, conv_config_from_dict, conv_config_to_toml, load_conv_config,
                                shipped_conv_configs)
from eqfpga.golden import neuron


def test_shipped_conv_configs_load_and_round_trip(tmp_path):
    names = shipped_conv_configs()
    assert {"conv_mnist", "conv_fashion"} <= set(names)
    for name in names:
        c = load_conv_config(name)
        assert c.layers[-1].out_shape == (c.outputs,)
        p = tmp_path / f"{name}.toml"
        p.write_text(conv_config_to_toml(c))
        assert load_conv_config(p) == c
        assert conv_config_from_dict(c.to_dict()).model_hash == c.model_hash


def test_geometry_of_the_2c2fc_network():
    c = load_conv_config("conv_mnist")
    shapes = [ly.out_shape for ly in c.layers]
    assert shapes == [(16, 12, 12), (32, 4, 4), (128,), (10,)]
    assert c.layers[1].weight_shape == (32, 16, 5, 5) and c.layers[2].weight_shape == (512, 128)
    assert c.pool_shift == 2


def test_input_pad_grows_every_map_after_it():
    c = replace(load_conv_config("conv_fashion"), input_pad=2)
    assert c.padded_size == 32 and c.image_size == 28
    assert [ly.out_shape for ly in c.layers] == [(16, 14, 14), (32, 5, 5), (128,), (10,)]
    assert c.layers[2].weight_shape == (800, 128)
    # the zeros add no range: the worst cases are the unpadded network's except the FC fan-in
    assert c.widths["acc"] == load_conv_config("conv_fashion").widths["acc"]


def test_worst_case_widths_hand_computed():
    c = ConvConfig(name="w")
    w = c.widths
    # conv 1 accumulator: 4 positions x 25 taps x 255 x (-2048 .. 2047)
    assert (w["acc"].lo, w["acc"].hi) == (4 * 25 * 255 * -2048, 4 * 25 * 255 * 2047)
    # layer 2 drive: conv of 400 spikes pooled (>> 2), feedback 128 x w, bias
    lo = ((4 * 400 * -2048) >> 2) + 128 * -2048 - 8192
    assert w["drive_2"].lo == lo
    assert w["membrane"].lo == w["drive"].lo << c.membrane_frac_bits


def test_overflowing_conv_config_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match=r"drive_bits = 16 cannot hold the worst-case drive range"):
        ConvConfig(name="bad", drive_bits=16)
    with pytest.raises(ConfigError, match=r"acc_bits"):
        ConvConfig(name="bad", acc_bits=20)
    with pytest.raises(ConfigError, match=r"update_bits"):
        ConvConfig(name="bad", batch_size=64, update_bits=32)
    with pytest.raises(ConfigError, match=r"membrane_bits"):
        ConvConfig(name="bad", membrane_bits=22)


@pytest.mark.parametrize("kwargs, msg", [
    ({"image_size": 27}, "not divisible by pool"),
    ({"kernel": 30}, "smaller than"),
    ({"pool": 3}, "power of two"),
    ({"pooling": "median"}, "pooling must be"),
    ({"w_shifts": (15, 15, 14)}, "one entry per weight layer"),
    ({"w_shifts": (18, 15, 14, 13)}, "LFSR"),
    ({"w_init": (5000, 1, 1, 1)}, "weight maximum"),
    ({"conv_channels": ()}, "at least one convolution"),
    ({"leak_shift": 3}, "leak_shift"),
    ({"average_steps": 3}, "average_steps must be a power of two"),
    ({"average_steps": 16, "nudge_steps": 12}, "average_steps must be a power of two <= nudge_steps"),
    ({"average_steps": 0}, "average_steps must be >= 1"),
    ({"minus_from_free": True, "symmetric_nudge": False}, "minus_from_free needs symmetric_nudge"),
    ({"minus_from_free": 1}, "minus_from_free must be true or false"),
    ({"shift_pixels": -1}, "shift_pixels must be >= 0"),
    ({"shift_pixels": 28}, "shift_pixels must be < image_size"),
    ({"mirror_images": "yes"}, "mirror_images must be true or false"),
    ({"input_pad": -1}, "input_pad must be >= 0"),
    ({"input_pad": 1}, "conv layer 2: output 9x9 is not divisible by pool 2"),
])
def test_bad_values_refused(kwargs, msg):
    with pytest.raises(ConfigError, match=msg):
        ConvConfig(name="bad", **kwargs)


def test_toml_lists_become_tuples_and_unknown_keys_refused(tmp_path):
    p = tmp_path / "c.toml"
    full = conv_config_to_toml(load_conv_config("conv_mnist"))
    p.write_text(full.replace("conv_channels = [16, 32]", "conv_channels = [8, 16]"))
    c = load_conv_config(p)
    assert c.conv_channels == (8, 16) and hash(c)
    p.write_text(full.replace("conv_channels = ", "channels = [8]\nconv_channels = "))
    with pytest.raises(ConfigError, match="unknown key"):
        load_conv_config(p)
    with pytest.raises(ConfigError, match="unknown conv configuration"):
        load_conv_config("nope")


def test_lr_decay_raises_shifts_up_to_the_lfsr_width():
    c = replace(load_conv_config("conv_mnist"), lr_decay_epochs=2)
    assert c.at_epoch(0) == c
    assert c.at_epoch(5).w_shifts == tuple(min(17, s + 2) for s in c.w_shifts)


def test_weights_finer_than_the_nudge_shift_it_left_exactly():
    # weight_frac_bits 11 > beta_shift 1 + rate_bits 8: nudge = +-beta (t - R) << 2, exact
    c = ConvConfig(name="fine", weight_bits=14, weight_frac_bits=11, bias_bits=16, acc_bits=29,
                   drive_bits=25, membrane_bits=27, w_init=(1600, 120, 60, 120))
    assert c.nudge_shift == -2
    r, t = np.array([0, 100, 255, 3]), np.array([1, 1, 0, 0])
    assert list(neuron.nudge(r, t, c, 1)) == [1024, 624, -1020, -12]
    assert list(neuron.nudge(r, t, c, -1)) == [-1024, -624, 1020, 12]
    # the real nudge is beta * (t - R / 2**rate_bits): drive units of 2**-11
    assert np.allclose(neuron.nudge(r, t, c) * 2.0 ** -11, c.beta * (t - r / 256))


def test_fully_connected_config_still_refuses_a_left_shift_nudge():
    # its RTL neuron only shifts right
    with pytest.raises(ConfigError, match="beta_shift \\+ rate_bits - weight_frac_bits must be >= 0"):
        Config(name="fc", weight_frac_bits=10, rate_bits=8, beta_shift=1)


def test_shift_caps_let_the_decay_go_past_the_lfsr_bits():
    c = ConvConfig(name="caps", w_shifts=(15, 16, 16, 15), w_shift_caps=(17, 19, 19, 19), lr_decay_epochs=1)
    assert c.at_epoch(2).w_shifts == (17, 18, 18, 17)
    assert c.at_epoch(9).w_shifts == (17, 19, 19, 19)
    assert c.at_epoch(9).b_shifts == (17, 17, 17, 17)          # no b caps: the LFSR's 17 bits
    assert ConvConfig(name="nocaps", w_shifts=(15, 16, 16, 15), lr_decay_epochs=1).at_epoch(9).w_shifts == (17,) * 4


@pytest.mark.parametrize("kwargs, msg", [
    ({"w_shifts": (18, 15, 14, 13), "w_shift_caps": (17, 19, 19, 19)}, "must be in \\[0, 17\\]"),
    ({"w_shift_caps": (17, 19)}, "one entry per weight layer"),
    ({"b_shift_caps": (16, 17, 17, 17)}, "b_shift_caps entries must be in \\[17, update_bits - 1\\]"),
    ({"w_shift_caps": (17, 17, 17, 32)}, "update_bits - 1"),
])
def test_bad_shift_caps_refused(kwargs, msg):
    with pytest.raises(ConfigError, match=msg):
        ConvConfig(name="bad", **kwargs)


@pytest.mark.parametrize("epoch", range(8))
def test_fine_fashion_config_learns_at_the_real_rates_of_conv_fashion(epoch):
    from eqfpga.golden.conv_float import lr_scales
    coarse, fine = load_conv_config("conv_fashion"), load_conv_config("conv_fashion_fine")
    assert (fine.rate_bits, fine.weight_frac_bits) == (10, 11) and fine.nudge_shift == 0
    assert lr_scales(fine.at_epoch(epoch)) == lr_scales(coarse.at_epoch(epoch))


def test_overrides_take_json_values_and_refuse_unknown_fields():
    from eqfpga.conv_config import with_overrides
    c = with_overrides(load_conv_config("conv_mnist"), ["leak_shift=1", "w_shifts=[15,15,14,13]"])
    assert c.leak_shift == 1 and c.w_shifts == (15, 15, 14, 13)
    for items, msg in ((["leak=1"], "unknown configuration field 'leak'"), (["leak_shift"], "expected KEY=VALUE"),
                       (["leak_shift=one"], "must be JSON"), (["leak_shift=3"], "leak_shift")):
        with pytest.raises(ConfigError, match=msg):
            with_overrides(c, items)


@pytest.mark.parametrize("edits, message", [
    ([('name = "conv_mnist"', "name = 5")], "name must be a string, got 5"),
    ([("image_size = 28", "image_size = 32")], r"image_size = 32, input_channels = 1: the data sets' images are "
                                               r"28x28 with 1 channel"),
    ([("free_steps = 64\n", "")], r"\[phases\] lacks free_steps \(every key is required but input_pad, "
                                  r"w_shift_caps, b_shift_caps, shift_pixels, mirror_images\)"),
])
def test_conv_config_files_with_bad_types_or_images_are_refused_when_loaded(tmp_path, edits, message):
    text = conv_config_to_toml(load_conv_config("conv_mnist"))
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_conv_config(path)


def test_conv_config_files_need_every_section_and_utf8(tmp_path):
    text = conv_config_to_toml(load_conv_config("conv_mnist"))
    path = tmp_path / "c.toml"
    path.write_text(text[:text.index("[phases]")] + text[text.index("[learning]"):])
    with pytest.raises(ConfigError, match=r"missing section \[phases\]"):
        load_conv_config(path)
    path.write_text("")
    with pytest.raises(ConfigError, match=r"missing sections \[network\], \[fixed_point\], \[phases\], \[learning\]"):
        load_conv_config(path)
    path.write_bytes(text.encode("utf-16"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_conv_config(path)
