"""`eqfpga build` with the real YoWASP toolchain on a small network, and its failure messages."""

import dataclasses
import json

import pytest

from eqfpga.boards import build, targets
from eqfpga.boards.targets import BoardError
from eqfpga.config import Config

SMALL = Config(name="tiny", inputs=16, hidden=8, input_bits=4, free_steps=8, nudge_steps=4,
               input_shift=4, w1_init=8, w2_init=8)


def test_small_network_builds_for_ulx3s(tmp_path):
    """The real flow on a small network, clocked by the ECP5's PLL (25 MHz in, 50 MHz out). Its
    target clock is set out of reach, so the one build shows both the report and the
    missed-timing error (the 80 MHz goal for the board's own network is measured by
    bench/board_builds.py)."""
    board = dataclasses.replace(targets.get_board("ulx3s-85f"), target_hz=900e6, pll_hz=50e6)
    with pytest.raises(BoardError, match=r"timing not met, Fmax [0-9.]+ MHz < target 900 MHz"):
        build.build(board, tmp_path, config=SMALL, lanes=1, cycles={"inference": 1000, "training": 2500})
    r = json.loads((tmp_path / "build_report.json").read_text())
    assert r["board"] == "ulx3s-85f" and r["bitstream"] and (tmp_path / "eqfpga.bit").stat().st_size > 0
    assert r["clock_hz"] == 50e6 and "EHXPLLL" in (tmp_path / "eqfpga.tim").read_text()
    u = r["utilization"]
    assert 0 < u["LUT"]["used"] <= u["LUT"]["available"] == 83640
    assert 0 < u["FF"]["used"] <= u["FF"]["available"]
    assert r["fmax"] >= 40
    assert r["inferences_per_second"] == pytest.approx(r["fmax"] * 1e6 / 1000)
    assert "Fmax" in build.format_report(r)


def test_small_network_builds_for_icebreaker_behind_its_pll(tmp_path):
    """The real iCE40 flow: W1 in SPRAM, the 30 MHz clock made by the PLL from the 12 MHz pin,
    and nextpnr's timing analysis on the PLL's output."""
    board = targets.get_board("icebreaker")
    r = build.build(board, tmp_path, config=SMALL, lanes=2)
    assert r["clock_hz"] == board.pll_hz == 30e6
    assert r["bitstream"] and (tmp_path / "eqfpga.bin").stat().st_size > 0
    tim = (tmp_path / "eqfpga.tim").read_text()
    assert "Derived frequency constraint of 30.0 MHz" in tim
    assert r["utilization"]["SPRAM"]["used"] >= 1
    assert r["fmax"] >= 30


def test_a_design_that_does_not_fit_names_the_resources(tmp_path):
    (tmp_path / "eqfpga.tim").write_text(
        "Info: Device utilisation:\n"
        "Info: \t         ICESTORM_LC:   12928/   5280   244%\n"
        "Info: \t        ICESTORM_DSP:      32/      8   400%\n"
        "Info: \t        ICESTORM_RAM:      25/     30    83%\n"
        "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_DSP'\n")
    reason = build._failure_reason(tmp_path, "eqfpga")
    assert reason.startswith("the design does not fit: ICESTORM_LC 12928/5280, ICESTORM_DSP 32/8")
    rep = build._report(targets.get_board("icebreaker"), tmp_path, "eqfpga")
    assert rep["utilization"]["LUT"] == {"used": 12928, "available": 5280}


def test_unknown_board():
    with pytest.raises(BoardError, match="unknown board 'nope'"):
        targets.get_board("nope")
