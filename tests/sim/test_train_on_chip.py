"""`eqfpga train --on-chip`: the accelerator in Verilator trains, the golden model checks."""

import json

from eqfpga import checkpoint
from eqfpga.cli import main


def test_on_chip_training_matches_golden(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--on-chip", "--sim", "verilator", "--train-samples", "60",
                 "--test-samples", "200", "--out", str(out), "--quiet",
                 "--json", str(tmp_path / "t.json")]) == 0
    assert "weights, LFSRs and predictions equal golden" in capsys.readouterr().out
    e = json.loads((tmp_path / "t.json").read_text())["history"][0]
    assert e["weights_equal_golden"] and e["differences"] == 0 and e["samples"] == 60
    assert e["test_accuracy"] == e["golden_test_accuracy"]
    ck = checkpoint.load(out / "last.npz")
    assert ck.epoch == 1 and ck.samples_seen == 60


def test_on_chip_options_need_on_chip(capsys):
    assert main(["train", "--sim", "verilator"]) == 2
    assert "add --on-chip" in capsys.readouterr().err


def test_plot_stdp_from_recorded_spikes(tmp_path, capsys):
    png = tmp_path / "stdp.png"
    assert main(["plot", "stdp", "--samples", "2", "-o", str(png), "--json", str(tmp_path / "s.json")]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["pairs"] > 0 and len(doc["curve"]["dt"]) == len(doc["curve"]["mean_dw"]) > 0
