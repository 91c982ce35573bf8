"""bench/conv_modes.py: one checkpoint's weights scored in each model, as convert() makes them."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
_spec = importlib.util.spec_from_file_location("conv_modes", BENCH / "conv_modes.py")
conv_modes = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = conv_modes
_spec.loader.exec_module(conv_modes)

from eqfpga import data   # noqa: E402
from eqfpga.conv_config import load_conv_config, with_overrides   # noqa: E402
from eqfpga.golden import conv_train   # noqa: E402

SMALL = ["conv_channels=[2,2]", "fc_hidden=[8]", "batch_size=8", "free_steps=4", "nudge_steps=2", "average_steps=1"]


def test_float_weights_scored_in_the_integer_model(tmp_path, capsys):
    c = with_overrides(load_conv_config("conv_mnist"), SMALL)
    conv_train.fit(c, tmp_path / "run", 1, mode="float", train_samples=32, test_samples=16, progress=False,
                   log=lambda *a: None)
    ck = tmp_path / "run" / "epoch001.npz"
    doc = conv_modes.main([str(ck), "--config", "conv_fashion_fine", "--set", *SMALL, "--modes", "int", "float",
                           "--test-samples", "24", "--json", str(tmp_path / "m.json")])
    assert json.loads((tmp_path / "m.json").read_text()) == doc
    assert [r["mode"] for r in doc["results"]] == ["int", "float"] and doc["recorded_test_accuracy"] is not None
    fine = with_overrides(load_conv_config("conv_fashion_fine"), SMALL)
    test = data.load("test").take(24)
    as_int = conv_train.convert(conv_train.load(ck), fine, "int")
    assert doc["results"][0]["test_accuracy"] == conv_train.evaluate(as_int, test.images, test.labels)
    assert "as int" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="error: .*differ in conv_channels"):
        conv_modes.main([str(ck), "--config", "conv_mnist", "--json", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="error: .*checkpoint not found"):
        conv_modes.main([str(tmp_path / "none.npz")])
