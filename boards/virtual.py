"""``eqfpga virtual-board``: a board top in Verilator behind a pseudo-terminal.

The design is the board's :class:`~eqfpga.boards.top.BoardTop` (UART, host link, accelerator)
with W1 in a memory model instead of SPRAM, built with ``boards/virtual_board.cpp`` into one
executable (cached like the simulations). ``eqfpga run --port PTY`` then works as on a board.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from amaranth.back import verilog as amaranth_verilog

from eqfpga.boards.targets import Board, BoardError
from eqfpga.boards.top import BoardTop
from eqfpga.config import load_config
from eqfpga.hw import verilog

__all__ = ["build", "start", "stop", "DIVISOR"]

#: Clock cycles per UART bit on the virtual board (a pseudo-terminal has no baud rate).
DIVISOR = 8
#: Cycles of silence that drop a partial frame (as on the boards: 400 bit times).
TIMEOUT = 400 * DIVISOR
CPP = Path(__file__).resolve().parent / "virtual_board.cpp"
TOP = "eqfpga_board"


def build(board: Board, progress=None) -> Path:
    """Build (or find in the cache) the virtual board's executable."""
    from eqfpga.sim.verilator import cache_dir
    c = load_config(board.config)
    top = BoardTop(c, lanes=board.lanes, divisor=DIVISOR, timeout=TIMEOUT, spram=False,
                   **board.accelerator_options)
    text = amaranth_verilog.convert(top, name=TOP, emit_src=False)
    key = hashlib.sha256((text + CPP.read_text()).encode()).hexdigest()[:16]
    out = cache_dir() / f"virtual-{board.name}-{key}"
    exe = out / "virtual_board"
    if (out / "ok").exists():
        return exe
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{TOP}.v").write_text(text)
    verilog.waiver_file(out / "waivers.vlt", f"{TOP}.v")
    (progress or (lambda m: print(m, file=sys.stderr)))(
        f"building the virtual {board.name} in {out} (a minute or two) ...")
    env = verilog.tool_env()
    cmd = ["verilator", "--cc", "--exe", "--build", "-O3", "-Wno-fatal", "--x-assign", "fast",
           "--x-initial", "fast", "--top-module", TOP, "-Mdir", str(out), "-o", exe.name,
           "-CFLAGS", "-std=c++20 -O2", str(out / "waivers.vlt"), str(out / f"{TOP}.v"), str(CPP)]
    with open(out / "build.log", "w") as log:
        r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if r.returncode:
        raise BoardError(f"the virtual board did not build: see {out / 'build.log'}")
    (out / "ok").write_text("built\n")
    return exe


def start(board: Board, progress=None) -> tuple[subprocess.Popen, str]:
    """Start the virtual board; returns the process and its pseudo-terminal's path."""
    exe = build(board, progress)
    proc = subprocess.Popen([str(exe), f"+divisor={DIVISOR}"], stdout=subprocess.PIPE, text=True,
                            preexec_fn=functools.partial(_die_with_parent, os.getpid()))
    line = proc.stdout.readline().strip()
    if not line.startswith("pty "):
        stop(proc)
        raise BoardError(f"the virtual board did not start ({line or 'no output'})")
    return proc, line[4:]


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """End the virtual board ``proc``: SIGTERM, then SIGKILL if it has not ended in ``grace`` s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _die_with_parent(parent: int) -> None:
    """In the child before exec: SIGTERM it when its parent dies, even by SIGKILL (Linux)."""
    import ctypes
    import signal
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:          # the parent died before prctl took effect
        os._exit(1)
