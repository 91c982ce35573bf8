"""bench/conv_average.py: the averaged checkpoint it saves scores what it reports."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
_spec = importlib.util.spec_from_file_location("conv_average", BENCH / "conv_average.py")
conv_average = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = conv_average
_spec.loader.exec_module(conv_average)

from eqfpga import data   # noqa: E402
from eqfpga.conv_config import load_conv_config, with_overrides   # noqa: E402
from eqfpga.golden import conv_train   # noqa: E402


def test_average_of_two_epochs(tmp_path, capsys):
    c = with_overrides(load_conv_config("conv_mnist"), ["conv_channels=[2,2]", "fc_hidden=[8]", "batch_size=8",
                                                        "free_steps=4", "nudge_steps=2",
                                                        "average_steps=1"])
    conv_train.fit(c, tmp_path / "run", 2, mode="int", train_samples=32, test_samples=16, progress=False,
                   log=lambda *a: None)
    run = tmp_path / "run"
    doc = conv_average.main([str(run / "epoch001.npz"), str(run / "epoch002.npz"), "--test-samples", "24",
                             "--save", str(tmp_path / "mean.npz"), "--json", str(tmp_path / "mean.json")])
    assert json.loads((tmp_path / "mean.json").read_text()) == doc
    assert [s["epoch"] for s in doc["sources"]] == [1, 2] and doc["sources"][0]["test_samples"] == 16
    mean = conv_train.load(tmp_path / "mean.npz", c, "int")
    test = data.load("test").take(24)
    assert conv_train.evaluate(mean, test.images, test.labels) == doc["test_accuracy"]
    assert "mean of 2 (int, mnist)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="error: .*checkpoint not found"):
        conv_average.main([str(run / "epoch009.npz")])
