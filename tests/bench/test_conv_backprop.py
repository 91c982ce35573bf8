"""bench/conv_backprop.py: a stopped run resumes to the weights of an uninterrupted one."""

import json
from pathlib import Path

import numpy as np
import pytest

SMALL = ["--config", "conv_mnist", "--train-samples", "48", "--test-samples", "16", "--no-progress",
         "--set", "conv_channels=[2,3]", "fc_hidden=[8]", "batch_size=8"]


def _weights(path: Path) -> dict:
    """The arrays of a saved checkpoint, without its metadata (whose timings differ run to run)."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k != "meta"}


@pytest.mark.parametrize("optimizer, more_settings", [("ep-sgd", []), ("adam", []), ("ep-sgd", ["shift_pixels=2"])])
def test_resume_continues_to_the_uninterrupted_weights(tmp_path, bench, optimizer, more_settings):
    whole, split = tmp_path / "whole.json", tmp_path / "split.json"
    run = SMALL + more_settings + ["--optimizer", optimizer]
    bench("conv_backprop.py", *run, "--epochs", "2", "--json", whole)
    bench("conv_backprop.py", *run, "--epochs", "1", "--json", split)
    r = bench("conv_backprop.py", *run, "--epochs", "2", "--json", split, "--resume")
    assert f"resuming {split}: 1 epochs done" in r.stdout
    a, b = _weights(whole.with_suffix(".npz")), _weights(split.with_suffix(".npz"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    ha, hb = json.loads(whole.read_text())["history"], json.loads(split.read_text())["history"]
    assert [h["test_accuracy"] for h in ha] == [h["test_accuracy"] for h in hb]
    assert len(json.loads(split.read_text())["resumed"]) == 1


def test_resume_refuses_other_options_or_missing_weights(tmp_path, bench):
    out = tmp_path / "run.json"
    bench("conv_backprop.py", *SMALL, "--optimizer", "ep-sgd", "--epochs", "1", "--json", out)
    r = bench("conv_backprop.py", *SMALL, "--optimizer", "adam", "--epochs", "2", "--json", out, "--resume", ok=False)
    assert "other optimizer" in r.stderr
    out.with_suffix(".npz").unlink()
    r = bench("conv_backprop.py", *SMALL, "--optimizer", "ep-sgd", "--epochs", "2", "--json", out, "--resume", ok=False)
    assert "is missing" in r.stderr
    r = bench("conv_backprop.py", *SMALL, "--epochs", "2", "--json", tmp_path / "none.json", "--resume", ok=False)
    assert "cannot read" in r.stderr


def test_pad_makes_room_for_a_third_convolution(tmp_path, bench):
    deeper = ["--config", "conv_mnist", "--train-samples", "16", "--test-samples", "8", "--no-progress",
              "--epochs", "1", "--set", "kernel=3", "conv_channels=[2,2,2]", "fc_hidden=[8]", "batch_size=8",
              "w_shifts=[14,14,14,14,13]", "b_shifts=[12,12,12,10,10]", "w_init=[400,30,30,15,30]"]
    r = bench("conv_backprop.py", *deeper, "--json", tmp_path / "no.json", ok=False)
    assert r.stderr.strip() == "error: config 'conv_mnist': layer 2: output 11x11 is not divisible by pool 2"
    bench("conv_backprop.py", *deeper, "--pad", "1", "--json", tmp_path / "pad.json")
    doc = json.loads((tmp_path / "pad.json").read_text())
    assert doc["pad"] == 1 and len(doc["history"]) == 1
    with np.load(tmp_path / "pad.npz") as z:
        assert z["w3"].shape == (2, 2, 3, 3)   # 30 -> 28 -> 14 -> 12 -> 6 -> 4 -> 2
