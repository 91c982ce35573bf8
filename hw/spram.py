"""Single-port synchronous RAM that lands in the iCE40 UltraPlus SPRAM when asked to.

The iCE40 UltraPlus parts (UP5K, UP3K) have four ``SB_SPRAM256KA`` tiles of 16K words x 16
bits (1 Mbit in all) next to only 30 EBR blocks of 4 Kbit (120 Kbit). A large network state
(weights, membranes) only fits in the SPRAM, but Yosys infers SPRAM from an ordinary memory only
in narrow cases (and only with ``synth_ice40 -spram``); otherwise it *silently* maps a big
:class:`~amaranth.lib.memory.Memory` to EBR or LUTs, and the design fails much later, in
place-and-route, with an impossible EBR count. :class:`SinglePortRAM` removes the guesswork:
with ``spram=True`` on an iCE40 platform it instantiates the SPRAM tiles itself, and everywhere
else (simulation, Verilog for Verilator, other FPGAs) it elaborates an equivalent
:class:`~amaranth.lib.memory.Memory`, so that simulations of the design behave the same.

The interface is the SPRAM's: one address, one access per cycle (a read or a write), the read
data one cycle after the address. Designs written against it map onto the SPRAM unchanged.
"""

from collections import namedtuple

from amaranth.hdl import Array, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["SPRAM_WIDTH", "SPRAM_DEPTH", "SPRAM_TILES", "SinglePortRAM"]

_Inputs = namedtuple("_Inputs", "addr we wdata")

#: Data width of one ``SB_SPRAM256KA`` tile.
SPRAM_WIDTH = 16
#: Depth (words) of one ``SB_SPRAM256KA`` tile.
SPRAM_DEPTH = 16384
#: Number of ``SB_SPRAM256KA`` tiles on an iCE40 UltraPlus (UP5K, UP3K).
SPRAM_TILES = 4


def _is_ice40(platform) -> bool:
    if platform is None:
        return False
    from amaranth.vendor import SiliconBluePlatform     # LatticeICE40Platform is an alias
    return isinstance(platform, SiliconBluePlatform)


class SinglePortRAM(wiring.Component):
    """A ``depth`` x ``width`` single-port synchronous RAM, optionally in iCE40 SPRAM.

    One access per cycle, selected by :attr:`we`: a read (``we`` low) of ``addr`` shows on
    :attr:`rdata` in the next cycle; a write (``we`` high) stores ``wdata`` at ``addr`` at the
    clock edge. Clocked by the ``sync`` domain (use :class:`~amaranth.hdl.DomainRenamer` for
    another); the domain's reset does not touch the contents.

    Implementations:

    * ``spram=False``: an :class:`~amaranth.lib.memory.Memory` initialised from ``init``, with one
      synchronous read port and one write port sharing :attr:`addr`. Yosys maps it as it sees
      fit (EBR, LUTs, or rarely SPRAM).
    * ``spram=True`` on an iCE40 platform (a :class:`~amaranth.vendor.SiliconBluePlatform`, e.g.
      ``amaranth_boards.icebreaker.ICEBreakerPlatform``): :attr:`tiles` ``SB_SPRAM256KA``
      instances, ``ceil(width / 16)`` side by side for the width and, when ``depth > 16384``,
      several such rows ("banks") for the depth. The bank of a read is registered and selects
      the tile outputs one cycle later. The device must be an UltraPlus (``iCE40UP*``).
    * ``spram=True`` with no platform (simulation, :func:`amaranth.back.verilog.convert`) or any
      other platform: the same :class:`~amaranth.lib.memory.Memory` as ``spram=False``, all
      zero at start, so simulations behave like the hardware apart from the power-up contents.

    * ``bank_depth`` (not with ``spram``): the words in banks of ``bank_depth`` (a power of
      two), one :class:`~amaranth.lib.memory.Memory` each, every bank's output registered
      before the bank is selected, so :attr:`read_latency` is 2. For a large RAM in block RAM
      (ECP5): a block RAM's output is slow and the tree that selects among many of them is
      long; the register between them keeps both out of one cycle.

    The SPRAM cannot be initialised by the bitstream, so ``spram=True`` refuses ``init``. Its
    power-up contents are not specified by Lattice: the design must write every word before it
    reads it (the simulation model starts all-zero, which hides such a bug; do not rely on it).

    Parameters
    ----------
    width : int
        Bits per word, ``>= 1``.
    depth : int
        Number of words, ``>= 1``.
    init : iterable of int or None
        Initial contents (word ``i`` is ``init[i]``, missing words are zero), each
        ``0 <= value < 2**width``. Only with ``spram=False``; ``None`` is all zero.
    spram : bool
        Build the RAM from iCE40 SPRAM tiles when elaborated for an iCE40 platform. Shapes that
        need more than :data:`SPRAM_TILES` tiles (``ceil(width/16) * ceil(depth/16384)``) are
        refused at construction.
    bank_depth : int or None
        Words per registered bank (a power of two), or ``None`` for one memory.
    input_register : bool
        Register :attr:`addr`, :attr:`we` and :attr:`wdata` first (with ``bank_depth``: a copy
        for each bank, beside it): every access happens a cycle after it is presented (reads
        and writes alike, so their order is kept), and :attr:`read_latency` grows by one. For
        a RAM whose address comes from far away, through a wide selection, or fans out to
        many block RAMs.

    Attributes
    ----------
    tiles : int
        Number of ``SB_SPRAM256KA`` tiles the shape takes on an iCE40 (whatever ``spram`` is).
    read_latency : int
        Cycles from a read's address to its word on :attr:`rdata`: 1, plus 1 with ``bank_depth``,
        plus 1 with ``input_register``.

    Members
    -------
    addr : ``In(range(depth))``
        Word address of this cycle's access; must be ``< depth``.
    wdata : ``In(width)``
        Word to write, sampled at the clock edge of a cycle with :attr:`we` high.
    we : ``In(1)``
        1: this cycle's access is a write of :attr:`wdata`; 0: a read.
    rdata : ``Out(width)``
        :attr:`read_latency` cycles after a read, the word at that read's address. In the cycle after a write
        it is unspecified (the model shows the old word, the SPRAM an undefined value); it is
        also unspecified before the first access.
    """

    def __init__(self, *, width: int, depth: int, init=None, spram: bool = False,
                 bank_depth: int | None = None, input_register: bool = False):
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise TypeError(f"Width must be a positive integer, not {width!r}")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise TypeError(f"Depth must be a positive integer, not {depth!r}")
        if not isinstance(spram, bool):
            raise TypeError(f"spram must be a bool, not {spram!r}")
        if bank_depth is not None:
            if (not isinstance(bank_depth, int) or isinstance(bank_depth, bool) or bank_depth < 1
                    or bank_depth & (bank_depth - 1)):
                raise TypeError(f"bank_depth must be a power of two, not {bank_depth!r}")
            if spram:
                raise ValueError("bank_depth and spram=True exclude each other")
        self._bank_depth = bank_depth
        if not isinstance(input_register, bool):
            raise TypeError(f"input_register must be a bool, not {input_register!r}")
        self._input_register = input_register
        self._cols = -(-width // SPRAM_WIDTH)
        self._banks = -(-depth // SPRAM_DEPTH)
        if spram:
            if init is not None:
                raise ValueError("init must be None with spram=True: the iCE40 SPRAM cannot be "
                                 "initialised by the bitstream (write the contents at run time)")
            if self.tiles > SPRAM_TILES:
                raise ValueError(f"A {depth} x {width} RAM needs {self.tiles} SPRAM tiles "
                                 f"({self._banks} x {self._cols} of 16384 x 16), more than the "
                                 f"{SPRAM_TILES} of an iCE40 UltraPlus")
            self._init = []
        else:
            self._init = [] if init is None else list(init)
            if len(self._init) > depth:
                raise ValueError(f"init has {len(self._init)} words, more than the depth {depth}")
            for i, v in enumerate(self._init):
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << width:
                    raise ValueError(f"init[{i}] must be an integer in [0, 2**{width}), "
                                     f"not {v!r}")
        self._width = width
        self._depth = depth
        self._spram = spram
        super().__init__({
            "addr": In(range(depth)),
            "wdata": In(width),
            "we": In(1),
            "rdata": Out(width),
        })

    @property
    def width(self) -> int:
        return self._width

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def spram(self) -> bool:
        return self._spram

    @property
    def tiles(self) -> int:
        return self._cols * self._banks

    @property
    def read_latency(self) -> int:
        return 1 + self._input_register + (self._bank_depth is not None)

    def elaborate(self, platform):
        spram = self._spram and _is_ice40(platform)
        if spram and not getattr(platform, "device", "").startswith("iCE40UP"):
            raise ValueError(f"spram=True needs an iCE40 UltraPlus device with SPRAM, not "
                             f"{platform.device!r}")
        m = Module()
        # Registered banks register their inputs bank by bank (the copies sit by their banks).
        per_bank = self._input_register and self._bank_depth is not None and not spram
        if self._input_register and not per_bank:
            # addr, we and wdata in registers (only we is reset: no write at start)
            inputs = _Inputs(Signal.like(self.addr, reset_less=True), Signal(),
                             Signal.like(self.wdata, reset_less=True))
            m.d.sync += [inputs.addr.eq(self.addr), inputs.we.eq(self.we),
                         inputs.wdata.eq(self.wdata)]
        else:
            inputs = _Inputs(self.addr, self.we, self.wdata)
        if spram:
            self._elaborate_spram(m, inputs)
        elif self._bank_depth is not None:
            self._elaborate_banks(m, inputs, per_bank)
        else:
            self._elaborate_model(m, inputs)
        return m

    def _elaborate_model(self, m, inputs):
        m.submodules.mem = mem = Memory(shape=self._width, depth=self._depth, init=self._init)
        rd = mem.read_port()
        wr = mem.write_port()
        m.d.comb += [
            rd.addr.eq(inputs.addr),
            wr.addr.eq(inputs.addr),
            wr.data.eq(inputs.wdata),
            wr.en.eq(inputs.we),
            self.rdata.eq(rd.data),
        ]

    def _elaborate_banks(self, m, inputs, per_bank_register):
        bd = self._bank_depth
        low = ceil_log2(bd)
        banks = -(-self._depth // bd)
        bank = Signal(range(banks))
        m.d.comb += bank.eq(inputs.addr[low:])
        bank_q = [bank] + [Signal(range(banks), name=f"bank_q{d}", reset_less=True)
                           for d in range(1, 3 + per_bank_register)]
        m.d.sync += [bank_q[d + 1].eq(bank_q[d]) for d in range(len(bank_q) - 1)]
        outs = []
        for b in range(banks):
            m.submodules[f"bank{b}"] = mem = Memory(
                shape=self._width, depth=min(bd, self._depth - b * bd),
                init=self._init[b * bd:(b + 1) * bd])
            rd, wr = mem.read_port(), mem.write_port()
            out = Signal(self._width, name=f"out{b}", reset_less=True)
            offset, wdata, we = inputs.addr[:low], inputs.wdata, inputs.we & (bank == b)
            if per_bank_register:
                regs = (Signal(low, name=f"addr{b}", reset_less=True),
                        Signal(self._width, name=f"wdata{b}", reset_less=True),
                        Signal(name=f"we{b}"))
                m.d.sync += [r.eq(v) for r, v in zip(regs, (offset, wdata, we))]
                offset, wdata, we = regs
            m.d.comb += [rd.addr.eq(offset), wr.addr.eq(offset), wr.data.eq(wdata), wr.en.eq(we)]
            m.d.sync += out.eq(rd.data)
            outs.append(out)
        m.d.comb += self.rdata.eq(Array(outs)[bank_q[-1]])

    def _elaborate_spram(self, m, inputs):
        word_bits = ceil_log2(SPRAM_DEPTH)
        address = Signal(word_bits)
        m.d.comb += address.eq(inputs.addr[:word_bits])
        if self._banks > 1:
            bank = Signal(range(self._banks))
            m.d.comb += bank.eq(inputs.addr[word_bits:])
            # Bank of this cycle's read, selecting the tile outputs in the next cycle.
            bank_q = Signal(range(self._banks), reset_less=True)
            m.d.sync += bank_q.eq(bank)
        wdata = Signal(self._cols * SPRAM_WIDTH)
        m.d.comb += wdata.eq(inputs.wdata)
        rows = []
        for b in range(self._banks):
            select = Const(1) if self._banks == 1 else bank == b
            dataout = Signal(self._cols * SPRAM_WIDTH, name=f"dataout{b}")
            for c in range(self._cols):
                lo, hi = c * SPRAM_WIDTH, (c + 1) * SPRAM_WIDTH
                m.submodules[f"spram_b{b}_c{c}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=address,
                    i_DATAIN=wdata[lo:hi],
                    i_MASKWREN=Const(0b1111, 4),    # all four nibbles (only used on a write)
                    i_WREN=inputs.we,
                    i_CHIPSELECT=select,
                    i_CLOCK=ClockSignal("sync"),
                    i_STANDBY=Const(0),
                    i_SLEEP=Const(0),
                    i_POWEROFF=Const(1),            # active low: 1 keeps the tile powered
                    o_DATAOUT=dataout[lo:hi],
                )
            rows.append(dataout)
        if self._banks == 1:
            m.d.comb += self.rdata.eq(rows[0])
        else:
            m.d.comb += self.rdata.eq(Array(rows)[bank_q])
