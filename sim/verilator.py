# amaranth: UnusedElaboratable=no
"""The accelerator in Verilator, driven through cocotb 2's runner.

The design is built once per configuration and lane count (weights are loaded at run time
through the host port, so one build serves every checkpoint) and cached. A run splits its
samples into ``jobs`` contiguous slices, each simulated by its own process: the harness
(``eqfpga_harness.sv``) holds the clock, the parameter load and the pixel stream, and Python
(:mod:`eqfpga.sim.cocotb_harness`) only reads each sample's results when it ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eqfpga.config import Config
from eqfpga.golden.ep_update import Streams
from eqfpga.golden.host_link import Geometry, param_entries
from eqfpga.hw import verilog
from eqfpga.hw.accelerator import Accelerator, Tensor

__all__ = ["Build", "SampleResults", "build", "param_words", "run", "cache_dir"]

HARNESS = Path(__file__).resolve().parent / "eqfpga_harness.sv"
HARNESS_TOP = "eqfpga_harness"
TEST_MODULE = "eqfpga.sim.cocotb_harness"
#: Samples one simulation process can hold (the training set).
MAX_SAMPLES = 60_000
#: Simulated clock period of the harness, in ns (``always #5 clk = ~clk``).
CLOCK_PERIOD_NS = 10


def _runner():
    """cocotb's Verilator runner, making public to VPI only the harness, not every signal.

    The stock runner passes ``--public-flat-rw``, which on this design yields a symbol table
    whose C++ takes over ten minutes to compile; the harness's ports are all Python needs.
    """
    from cocotb_tools.runner import Verilator

    class HarnessVerilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            return cmds

    return HarnessVerilator()


def cache_dir() -> Path:
    """Where builds are kept: ``$EQFPGA_CACHE`` or ``~/.cache/eqfpga``."""
    root = os.environ.get("EQFPGA_CACHE") or Path.home() / ".cache" / "eqfpga"
    return Path(root)


@dataclass(frozen=True)
class Build:
    """A built simulation of the harness around one accelerator."""

    config: Config
    lanes: int
    directory: Path
    waves: str | None          # None, "vcd" or "fst"
    word_bits: int
    addr_bits: int
    count_bits: int


def _geometry(c: Config, lanes: int) -> dict:
    dut = Accelerator(config=c, lanes=lanes)
    return {"shift_bits": dut.signature.members["shifts"].shape.size,
            "word_bits": dut.word_bits,
            "addr_bits": (dut.addr_depth - 1).bit_length() or 1,
            "count_bits": dut.count_shape.width,
            "class_bits": (c.outputs - 1).bit_length() or 1,
            "trace_bits": 2 + c.hidden + c.outputs}


def harness_parameters(c: Config, lanes: int) -> dict[str, int]:
    """The harness's Verilog parameters for the accelerator of ``c`` with ``lanes`` lanes."""
    g = _geometry(c, lanes)
    return {"INPUTS": c.pixels, "MAX_SAMPLES": MAX_SAMPLES,
            "MAX_PARAMS": c.inputs * (c.hidden // lanes) + (c.outputs + 1) * (c.hidden // lanes)
            + c.hidden + c.outputs + 4,
            "CLASS_BITS": g["class_bits"], "COUNT_BITS": g["count_bits"] * c.outputs,
            "SHIFT_BITS": g["shift_bits"],
            "TRACE_BITS": g["trace_bits"], "SEL_BITS": Tensor.as_shape().width,
            "ADDR_BITS": g["addr_bits"], "WORD_BITS": g["word_bits"]}


def _sources(c: Config, lanes: int, kind: str, design: str | None = None,
             extra: tuple[Path, ...] = ()) -> tuple[Build, dict]:
    """The build folder (named by a hash of everything that goes into it) and parameters.
    ``design``: Verilog of the ``eqfpga_accelerator`` module (default: generated from ``c``);
    ``extra``: more sources (cell models)."""
    os.environ.update(verilog.tool_env())
    g = _geometry(c, lanes)
    params = harness_parameters(c, lanes)
    src_dir = cache_dir() / "src"
    text = design if design is not None else verilog.generate(c, src_dir / "tmp", lanes=lanes).read_text()
    key = hashlib.sha256("\n".join([text, HARNESS.read_text(), json.dumps(params, sort_keys=True),
                                    kind, json.dumps(verilog.WAIVERS), *map(str, extra)]).encode()).hexdigest()[:16]
    out = cache_dir() / f"verilator-{c.name}-p{lanes}-{kind}-{key}"
    waves = kind if kind in ("vcd", "fst") else None
    result = Build(c, lanes, out, waves, g["word_bits"], g["addr_bits"], g["count_bits"])
    if not (out / "ok").exists():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        (out / f"{verilog.TOP}.v").write_text(text)
        verilog.waiver_file(out / "waivers.vlt", f"{verilog.TOP}.v")
    return result, params


def _announce(progress, b: Build, what: str) -> None:
    (progress or (lambda m: print(m, file=sys.stderr)))(
        f"building the {what} of {b.config.name!r} (P={b.lanes}) in {b.directory} ...")


def build(c: Config, lanes: int = verilog.DEFAULT_LANES, *, waves: str | None = None,
          progress=None, design: str | None = None, extra: tuple[Path, ...] = (),
          kind: str = "cocotb") -> Build:
    """Build (or find in the cache) the Verilator simulation of ``c`` with ``lanes`` lanes.

    ``design``/``extra``/``kind``: another implementation of the accelerator (a synthesized
    netlist and its cell models) under its own cache name.
    """
    if waves not in (None, "vcd", "fst"):
        raise ValueError(f"waves must be None, 'vcd' or 'fst', not {waves!r}")
    result, params = _sources(c, lanes, waves or kind, design, extra)
    out = result.directory
    if (out / "ok").exists():
        return result
    v, vlt = out / f"{verilog.TOP}.v", out / "waivers.vlt"
    with open(vlt, "a") as f:
        f.write(f'public_flat_rw -module "{HARNESS_TOP}" -var "*"\n')
    _announce(progress, result, "Verilator simulation")
    runner = _runner()
    build_args = ["--timing", "-O3", "-Wno-fatal", "--x-assign", "fast", "--x-initial", "fast",
                  "-CFLAGS", "-std=c++20 -fcoroutines -O2"]
    if waves == "fst":
        build_args.append("--trace-fst")
    runner.build(sources=[vlt, v, HARNESS, *extra], hdl_toplevel=HARNESS_TOP, build_dir=out,
                 build_args=build_args, parameters=params, timescale=("1ns", "1ns"), waves=waves is not None,
                 log_file=out / "build.log", always=True)
    (out / "ok").write_text("built\n")
    return result


def build_bare_loop(c: Config, lanes: int = verilog.DEFAULT_LANES, *, progress=None) -> Path:
    """Build (or find) the harness in a bare C++ loop (``bare_loop.cpp``); returns the binary."""
    b, params = _sources(c, lanes, "bare")
    exe = b.directory / "bare_loop"
    if (b.directory / "ok").exists():
        return exe
    _announce(progress, b, "bare Verilator C++ loop")
    import subprocess
    cmd = ["verilator", "--cc", "--exe", "--build", "-O3", "-Wno-fatal", "--x-assign", "fast",
           "--x-initial", "fast", "--no-timing", "-DEQFPGA_EXTERNAL_CLOCK", "--timescale", "1ns/1ns",
           "--top-module", HARNESS_TOP, "-Mdir", str(b.directory), "-o", exe.name,
           "-CFLAGS", "-std=c++20 -O2", *[f"-G{k}={v}" for k, v in params.items()],
           str(b.directory / "waivers.vlt"), str(b.directory / f"{verilog.TOP}.v"), str(HARNESS),
           str(HARNESS.parent / "bare_loop.cpp")]
    with open(b.directory / "build.log", "w") as log:
        r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if r.returncode:
        raise verilog.ToolError(f"the bare C++ loop did not build: see {b.directory / 'build.log'}")
    (b.directory / "ok").write_text("built\n")
    return exe


def param_words(b: Build, params, streams: Streams | None = None) -> list[int]:
    """Entries ``{sel, addr, data}`` that load ``params`` (and LFSR ``streams``) through the port."""
    g = Geometry(b.config, b.lanes)
    shift = b.word_bits + b.addr_bits
    return [(sel << shift) | (addr << b.word_bits) | word
            for sel, addr, word in param_entries(g, params, streams)]


def _write_hex(path: Path, values, digits: int) -> None:
    values = np.asarray(values).ravel()
    if digits == 2 and values.dtype != object:
        table = np.array([f"{i:02x}" for i in range(256)])
        text = "\n".join(table[values.astype(np.uint8)])
    else:
        text = "\n".join(f"{int(v):0{digits}x}" for v in values)
    path.write_text(text + "\n")


@dataclass
class SampleResults:
    """What the hardware reported for each sample of a run, in sample order."""

    prediction: np.ndarray      # (n,)
    spike_counts: np.ndarray    # (n, outputs)
    cycles: np.ndarray          # (n,) accelerator cycles, start to done
    spikes: np.ndarray          # (n,)
    clock_cycles: int           # every simulated clock cycle, all jobs
    sim_seconds: float          # simulation time, summed over jobs
    wall_seconds: float
    jobs: int
    trace: list | None = None   # with trace: per sample, (phases, s_h, s_y) of every time step
    params: object = None       # with read_back: the parameters read through the port at the end
    streams: object = None      # ... and the LFSR stream positions


def shift_word(c: Config) -> int:
    """The accelerator's ``shifts`` input for the learning shifts of ``c``."""
    shape = Accelerator(config=c, lanes=1).signature.members["shifts"].shape
    return shape.const({"w1": c.w1_shift, "w2": c.w2_shift, "b1": c.b1_shift,
                        "b2": c.b2_shift}).as_bits()


def _job(b: Build, job_dir: Path, images, labels, words, train: bool, plusargs_extra,
         waves: bool, read_back: bool = False, shifts: Config | None = None,
         trace: bool = False) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    _write_hex(job_dir / "images.hex", images, 2)
    _write_hex(job_dir / "labels.hex", labels if labels is not None else np.zeros(len(images), int), 1)
    entry_digits = -(-(b.word_bits + b.addr_bits + 3) // 4)
    _write_hex(job_dir / "params.hex", np.array(words, dtype=object) if words else [0], entry_digits)
    spec = {"count": len(images), "n_params": len(words), "train": int(train),
            "shifts": shift_word(b.config if shifts is None else shifts),
            "outputs": b.config.outputs, "count_bits": b.count_bits,
            "results": str(job_dir / "results.txt"), "summary": str(job_dir / "summary.json"),
            "read_back": [[sel, Geometry(b.config, b.lanes).depth(sel)] for sel in range(5)]
            if read_back else [], "words": str(job_dir / "words.txt"),
            "trace": str(job_dir / "trace.txt") if trace else None}
    runner = _runner()
    xml = runner.test(test_module=TEST_MODULE, hdl_toplevel=HARNESS_TOP, hdl_toplevel_lang="verilog", build_dir=b.directory,
                      test_dir=job_dir, results_xml=str(job_dir / "results.xml"),
                      plusargs=[f"+images={job_dir / 'images.hex'}", f"+labels={job_dir / 'labels.hex'}",
                                f"+params={job_dir / 'params.hex'}", *plusargs_extra],
                      extra_env={"EQFPGA_JOB": json.dumps(spec)}, waves=waves,
                      log_file=job_dir / "sim.log")
    from cocotb_tools.check_results import get_results
    _, failed = get_results(xml)
    if failed or not (job_dir / "summary.json").exists():
        tail = (job_dir / "sim.log").read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"Verilator simulation failed in {job_dir}: {' | '.join(tail)}")


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def run(b: Build, images: np.ndarray, params, *, streams: Streams | None = None, labels=None,
        train: bool = False, jobs: int = 1, work_dir: str | os.PathLike | None = None,
        progress=None, read_back: bool = False, shifts: Config | None = None,
        trace: bool = False) -> SampleResults:
    """Simulate ``images`` (``(n, inputs)`` 8-bit) with ``params`` loaded first.

    ``progress`` (e.g. a tqdm bar) gets ``update(k)`` as samples finish. With ``train``, each
    sample is a training sample on its label; jobs must then be 1 (training is sequential).
    ``shifts``: a configuration whose learning shifts are in force (default: ``b.config``'s;
    :meth:`Config.at_epoch` gives an epoch's). ``read_back``: read every parameter and LFSR
    stream back through the port at the end (``result.params``, ``result.streams``).
    ``trace``: record every time step's spikes (``result.trace``).
    """
    images = np.asarray(images)
    n = len(images)
    if train and jobs != 1:
        raise ValueError("training runs in one job: every sample updates the weights")
    jobs = max(1, min(jobs, n))
    work = Path(work_dir) if work_dir else cache_dir() / "runs" / f"{os.getpid()}-{time.time_ns()}"
    words = param_words(b, params, streams)
    bounds = np.linspace(0, n, jobs + 1).astype(int)
    dirs = [work / f"job{j}" for j in range(jobs)]
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(_job, b, dirs[j], images[bounds[j]:bounds[j + 1]],
                               None if labels is None else labels[bounds[j]:bounds[j + 1]],
                               words, train, [], b.waves is not None, read_back, shifts, trace)
                   for j in range(jobs)]
        done = 0
        while not all(f.done() for f in futures):
            time.sleep(0.5)
            now = sum(_lines(d / "results.txt") for d in dirs)
            if progress is not None and now > done:
                progress.update(now - done)
            done = now
        for f in futures:
            f.result()
    wall = time.perf_counter() - t0
    if progress is not None and n > done:
        progress.update(n - done)
    rows = np.concatenate([np.loadtxt(d / "results.txt", dtype=object, ndmin=2) for d in dirs])
    summaries = [json.loads((d / "summary.json").read_text()) for d in dirs]
    cb, Y = b.count_bits, b.config.outputs
    packed = [int(v) for v in rows[:, 2]]
    counts = np.array([[(v >> (k * cb)) & ((1 << cb) - 1) for k in range(Y)] for v in packed], np.int64)
    result = SampleResults(rows[:, 1].astype(np.int64), counts, rows[:, 3].astype(np.int64),
                           rows[:, 4].astype(np.int64),
                           sum(s["clock_cycles"] for s in summaries),
                           sum(s["seconds"] for s in summaries), wall, jobs)
    if read_back:
        result.params, result.streams = _read_back(b, dirs[-1] / "words.txt")
    if trace:
        result.trace = _traces(b, dirs, bounds)
    return result


def _traces(b: Build, dirs, bounds):
    """Per sample ``(phases, s_h, s_y)``: arrays over the sample's time steps."""
    H, Y = b.config.hidden, b.config.outputs
    per = [[] for _ in range(bounds[-1])]
    for j, d in enumerate(dirs):
        for line in (d / "trace.txt").read_text().split("\n"):
            if line:
                i, word = (int(v) for v in line.split())
                per[bounds[j] + i].append(word)

    def bits(v, n):
        return np.array([(v >> k) & 1 for k in range(n)], np.int8)
    return [(np.array([w & 3 for w in ws], np.int8),
             np.array([bits(w >> 2, H) for w in ws], np.int8).reshape(-1, H),
             np.array([bits(w >> (2 + H), Y) for w in ws], np.int8).reshape(-1, Y)) for ws in per]


def _read_back(b: Build, path: Path):
    """Parameters and LFSR positions from the ``sel addr word`` lines of a job's read-back."""
    from eqfpga.golden import lfsr
    from eqfpga.golden.host_link import Device
    dev = Device(Geometry(b.config, b.lanes))
    for line in path.read_text().split("\n"):
        if line:
            sel, addr, word = (int(v) for v in line.split())
            dev._write(sel, addr, word)
    return dev.params, dev.streams
