import pytest

from eqfpga.config import Config, ConfigError, config_to_toml, load_config, shipped_configs


def test_shipped_configs_load_and_fit():
    names = shipped_configs()
    assert "up5k" in names
    for name in names:
        c = load_config(name)
        for w in c.widths.values():
            assert w.lo >= -(1 << (w.bits - 1)) if w.signed else w.lo >= 0
            assert w.hi < (1 << (w.bits - int(w.signed)))


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
    ({"hidden": 0}, "hidden must be >= 1"),
    ({"input_bits": 9}, "input_bits must be <= 8"),
    ({"w1_shift": 18}, "needs more random bits"),
    ({"w2_init": 300}, "exceeds the 8-bit weight maximum"),
    ({"leak_shift": 5}, "leak_shift"),
    ({"weight_frac_bits": 1, "membrane_frac_bits": 2}, "must be >= rate_bits"),
    ({"hidden": 1.5}, "must be an integer"),
    ({"outputs": 1}, "outputs must be >= 2"),
])
def test_impossible_values_are_refused(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        Config(name="bad", **kw)


def test_toml_round_trip_and_hash(tmp_path):
    c = load_config("up5k")
    path = tmp_path / "c.toml"
    path.write_text(config_to_toml(c))
    c2 = load_config(path)
    assert c2 == c and c2.model_hash == c.model_hash
    assert Config(name="x", seed=2).model_hash != Config(name="x", seed=1).model_hash
    assert Config(name="x").model_hash == Config(name="y").model_hash  # names do not matter


def test_bad_files_give_one_line_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[network]\nhiden = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'hiden'"):
        load_config(bad)
    bad.write_text("[netw]\n")
    with pytest.raises(ConfigError, match=r"unknown section \[netw\]"):
        load_config(bad)
    bad.write_text("not = [toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="unknown configuration 'nope'"):
        load_config("nope")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_learning_rate_schedule():
    c = Config(name="x", w1_shift=13, w2_shift=16, lr_decay_epochs=2)
    assert c.at_epoch(0) is c or c.at_epoch(0) == c
    assert (c.at_epoch(2).w1_shift, c.at_epoch(2).w2_shift) == (14, 17)
    assert c.at_epoch(9).w2_shift == 17          # capped at the LFSR width
    assert Config(name="y").at_epoch(5) == Config(name="y")


@pytest.mark.parametrize("beta_shift", [0, 1, 3])
def test_nudge_range_covers_both_signs(beta_shift):
    import numpy as np
    from eqfpga.golden import neuron
    c = Config(name="x", beta_shift=beta_shift, weight_frac_bits=8)
    r = np.arange(c.rate_max + 1)
    values = [neuron.nudge(r, np.full_like(r, t), c, sign) for t in (0, 1) for sign in (1, -1)]
    w = c.widths["nudge"]
    assert min(v.min() for v in values) == w.lo and max(v.max() for v in values) == w.hi


def test_crop_keeps_a_square_window():
    from eqfpga.config import Config, ConfigError
    c = Config(name="c", inputs=400, crop=4, hidden=32)
    assert (c.pixels, c.image_side) == (784, 28)
    assert Config(name="c", hidden=32).pixels == 784
    with pytest.raises(ConfigError, match="inputs = 401 is not a square"):
        Config(name="c", inputs=401, crop=1, hidden=32)
    # crop enters the model hash only when set: older configurations keep theirs
    assert Config(name="c", hidden=32).model_hash != Config(name="c", inputs=400, crop=4, hidden=32).model_hash


def test_augment_shift_is_checked_and_hashed_only_when_set():
    base = Config(name="c", hidden=32)
    assert Config(name="c", hidden=32, augment_shift=0).model_hash == base.model_hash
    assert Config(name="c", hidden=32, augment_shift=1).model_hash != base.model_hash
    with pytest.raises(ConfigError, match="augment_shift"):
        Config(name="c", hidden=32, augment_shift=28)
    with pytest.raises(ConfigError, match="augment_shift"):
        Config(name="c", inputs=500, hidden=32, augment_shift=1)


def _up5k_toml(tmp_path, *edits, raw: bytes | None = None):
    """The shipped up5k configuration as a file, each (old, new) of ``edits`` replaced once."""
    text = config_to_toml(load_config("up5k"))
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "c.toml"
    path.write_bytes(raw if raw is not None else text.encode())
    return path


@pytest.mark.parametrize("edits, message", [
    ([('name = "up5k"', "name = 5")], "name must be a string, got 5"),
    ([('description = "', 'description = 3\n# "')], "description must be a string, got 3"),
    ([("inputs = 400", "inputs = 785"), ("crop = 4", "crop = 0")],
     r"inputs = 785 with crop = 0 takes 785-pixel images, but the data sets' images are 28x28 = 784"),
    ([("crop = 4", "crop = 20")], "with crop = 20 takes 3600-pixel images"),
    ([("[network]", "hidden = 3\n[network]")], "unknown top-level key 'hidden'"),
    ([("[network]", "phases = 3\n[network]"), ("[phases]", "[unused]")],
     r"phases must be a section \[phases\], got 3"),
    ([("free_steps = 32\n", "")], r"\[phases\] lacks free_steps \(every key is required but crop, augment_shift\)"),
])
def test_config_files_with_bad_types_or_images_are_refused_when_loaded(tmp_path, edits, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_up5k_toml(tmp_path, *edits))


def test_missing_sections_are_refused_and_optional_keys_default(tmp_path):
    text = config_to_toml(load_config("up5k"))
    path = tmp_path / "c.toml"
    path.write_text(text[:text.index("[phases]")] + text[text.index("[learning]"):])
    with pytest.raises(ConfigError, match=r"missing section \[phases\] \(a configuration needs \[network\], "
                                          r"\[fixed_point\], \[phases\], \[learning\]\)"):
        load_config(path)
    path.write_text("")
    with pytest.raises(ConfigError, match=r"missing sections \[network\], \[fixed_point\], \[phases\], \[learning\]"):
        load_config(path)
    path.write_text(text.replace("augment_shift = 0\n", ""))   # a feature that is off may be left out
    assert load_config(path) == load_config("up5k")


def test_a_config_file_that_is_not_utf8_is_refused(tmp_path):
    path = _up5k_toml(tmp_path, raw=b'name = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"c.toml: not UTF-8 text \(byte 11\)"):
        load_config(path)
