"""The boards eqfpga builds for, each with a configuration that fits it.

A :class:`Board` names an amaranth-boards platform, the shipped configuration it runs, the
lane count, where W1 lives and the UART speed. Any other amaranth-boards platform with a UART
resource and enough memory can be added with :func:`register` (see docs/boards.md).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

__all__ = ["Board", "BOARDS", "BoardError", "get_board", "register"]


class BoardError(Exception):
    """Unknown board, or a board that cannot be built, flashed or reached; one line."""


@dataclass(frozen=True)
class Board:
    name: str
    platform: str                 #: "module:Class" in amaranth_boards
    config: str                   #: shipped configuration name
    lanes: int
    target_hz: float              #: the clock the design must close timing at
    #: the design's clock, made by a PLL from the board's oscillator; None: the oscillator's
    pll_hz: float | None = None
    baud: int = 115_200
    spram: bool = False           #: W1 in iCE40 SPRAM
    #: W1 in registered banks of this many words (ECP5 block RAM: 2048 x 9 a block)
    w1_bank_depth: int | None = None
    #: the accelerator's deep pipeline (registered memory outputs, pipelined multipliers)
    deep_pipeline: bool = False
    description: str = ""
    resources: dict = field(default_factory=dict)   #: what the device has, for the report
    #: ``(connector, rx pin, tx pin)`` for a board whose platform defines no UART
    uart_pins: tuple | None = None

    @property
    def accelerator_options(self) -> dict:
        """How the board builds its accelerator, beyond the network and lanes (keyword
        arguments of :class:`~eqfpga.hw.accelerator.Accelerator`; ``spram`` apart, which only
        matters on the device)."""
        return {"w1_bank_depth": self.w1_bank_depth, "deep_pipeline": self.deep_pipeline}

    def make_platform(self):
        module, cls = self.platform.split(":")
        try:
            platform = getattr(importlib.import_module(f"amaranth_boards.{module}"), cls)()
        except (ImportError, AttributeError) as e:
            raise BoardError(f"board {self.name!r}: amaranth-boards has no {self.platform}") from e
        if self.uart_pins:
            from amaranth.build import Attrs
            from amaranth_boards.resources import UARTResource
            conn, rx, tx = self.uart_pins
            platform.add_resources([UARTResource(0, rx=rx, tx=tx, conn=conn,
                                                 attrs=Attrs(IO_TYPE="LVCMOS33"))])
        return platform

    @property
    def family(self) -> str:
        return "ice40" if self.spram or "ice" in self.platform else "ecp5"


BOARDS: dict[str, Board] = {}


def register(board: Board) -> Board:
    BOARDS[board.name] = board
    return board


# Two lanes: the 400-320-10 network's logic fits the UP5K's 5,280 cells at 2 lanes (4 lanes
# need about 5,800; see README, Boards).
register(Board("icebreaker", "icebreaker:ICEBreakerPlatform", "up5k", lanes=2, target_hz=30e6,
               pll_hz=30e6, spram=True, description="iCEBreaker, iCE40 UP5K: W1 in the four SPRAMs",
               resources={"LUT": 5280, "FF": 5280, "EBR": 30, "SPRAM": 4, "DSP": 8}))
register(Board("ulx3s-85f", "ulx3s:ULX3S_85F_Platform", "ecp5", lanes=10, target_hz=80e6,
               pll_hz=80e6, w1_bank_depth=2048, deep_pipeline=True,
               description="ULX3S, ECP5 LFE5U-85F",
               resources={"LUT": 83640, "FF": 83640, "EBR": 208, "DSP": 156}))
register(Board("orangecrab-25f", "orangecrab_r0_2:OrangeCrabR0_2_25FPlatform", "orangecrab", lanes=8,
               w1_bank_depth=2048, deep_pipeline=True,
               target_hz=48e6, description="OrangeCrab r0.2, ECP5 LFE5U-25F (UART on the feather pins)",
               resources={"LUT": 24288, "FF": 24288, "EBR": 56, "DSP": 28},
               uart_pins=(("io", 0), "0", "1")))   # Feather RX/TX: a 3.3 V USB-serial adapter


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise BoardError(f"unknown board {name!r}; known: {', '.join(sorted(BOARDS))}") from None
