# amaranth: UnusedElaboratable=no
"""Formal checks of :class:`~eqfpga.hw.host_link.HostLink` (SymbiYosys): the link feeds a
pixel to or starts the accelerator, writes a weight, bias or LFSR state, or changes the
learning shifts only on behalf of a good frame that it took while receiving (BMC from reset);
and its CRC network is the protocol's CRC-32 (a combinational proof).

The spec side is :class:`FrameMonitor`, a parser of the bytes the link *takes* (``rx.valid``
while ``receiving``) written from :class:`eqfpga.golden.host_link.Device`: the same resync,
length and timeout rules, the check of the CRC, the repeat rule and each command's length
rule. Bytes offered while the link is not receiving are never taken, so the monitor sees
exactly the bytes the link may act on; if the link acted on a frame whose check failed, or on
bytes that arrived while another frame executed, the monitor would disagree.

Two abstractions keep the solver's work small; each is argued below and neither hides a
frame from the check:

- the CRC: a SAT solver cannot show that two copies of CRC-32 over a dozen symbolic bytes
  agree (the XOR network is the hard case for it: the BMC stalls at the first frame that can
  end), so the link proof replaces the link's ``crc32_byte`` with :func:`crc_rotate`, a cheap
  register update that still depends on every byte and on the register's start value, and
  the monitor uses the same function. What the link proof shows holds for any update
  function; :func:`test_crc32_byte_is_crc32` shows that the real one is CRC-32. If the link
  stopped calling ``host_link.crc32_byte``, the monitor and the link would disagree and the
  proof would fail.
- the accelerator: :class:`FreeAccelerator` has no logic, its outputs are free inputs, so the
  link is checked against every accelerator keeping to the one rule the link relies on.

Depth. With bytes free in every cycle a BMC of the whole link grows too slow past the first
frame (measured: the solver was still at cycle 36 after 150 s), so the bytes come back to back (``rx.valid`` high in every cycle: each byte
the link does not take is dropped, including every byte during an execution) with at most
:data:`PAUSES` pauses, each long enough to time a partial frame out. The depth covers a
CLASSIFY frame that executes (pixels and start); a WRITE executes 112 cycles after its first
byte, beyond what fits in a unit test's time.
"""

import pytest
from amaranth.hdl import (Assert, Assume, Cat, Const, Elaboratable, Module, Mux, ResetSignal,
                          Signal, Value)
from amaranth.lib.wiring import Out

from eqfpga.config import Config
from eqfpga.golden.host_link import CRC32_POLY, MAX_PAYLOAD, SYNC, TRAIN_OVERHEAD, Cmd, Geometry
from eqfpga.hw import host_link
from eqfpga.hw.accelerator import Accelerator
from eqfpga.hw.host_link import HostLink, crc32_byte
from eqfpga.sim import formal

pytestmark = pytest.mark.usefixtures("formal_tools")

# A tiny network with the narrowest formats (as the sequencer's proofs): the link depends on
# the network only through its geometry.
CONFIG = Config(name="f", inputs=2, hidden=2, outputs=2, free_steps=1, nudge_steps=1,
                input_bits=1, weight_bits=2, bias_bits=2, weight_frac_bits=1, rate_bits=1,
                membrane_frac_bits=0, leak_shift=0, beta_shift=0, input_shift=0, drive_bits=5,
                membrane_bits=5, w1_init=1, w2_init=1, w1_shift=1, w2_shift=1, b1_shift=1,
                b2_shift=1)
LANES = 2
# Cycles: the link keeps a partial frame whose bytes come at most TIMEOUT cycles apart and
# drops it once TIMEOUT + SLACK cycles pass without a byte. The spec counts the timeout in
# byte times, the link in cycles from a registered comparison (a cycle or two later, one more
# after the length field); the environment never lets a frame's next byte fall in between.
TIMEOUT = 3
SLACK = 3
#: Pauses in the byte stream per run (each at least TIMEOUT + SLACK cycles long).
PAUSES = 1
#: A CLASSIFY frame's first byte is taken in cycle 1, its start comes in cycle 33.
DEPTH = 36


def crc32_serial(m, register, byte, poly=CRC32_POLY):
    """The CRC-32 register after ``byte``, bit by bit from the reflected polynomial ``poly``,
    as :func:`eqfpga.golden.host_link.crc32_register` (written again here, not taken from
    the link). Each bit's register is a signal of ``m``: as one expression it would grow
    threefold per bit."""
    r = register ^ Cat(byte, Const(0, 24))
    for _ in range(8):
        nxt = Signal(32)
        m.d.comb += nxt.eq(Mux(r[0], (r >> 1) ^ poly, r >> 1))
        r = nxt
    return r


def crc_rotate(register, byte):
    """The link proof's stand-in for ``crc32_byte``: the register rotated by a byte, the new
    byte XORed in. Every byte of a frame and the start value reach the four CRC bytes, so a
    link that skipped a byte, counted one twice or kept a stale register would still be
    caught, and no XOR network mixes the bytes."""
    return Cat(byte ^ register[24:32], register[:24])


class FrameMonitor(Elaboratable):
    """The golden parser of the bytes taken (``taken``, ``byte``).

    A frame *executes* (``executes``) from its last byte, if its CRC checks and it is not a
    repeat, up to the next byte taken; meanwhile ``cmd`` and ``length`` are its own, and
    ``write_ok``, ``shifts_ok``, ``sample_ok`` say that it is a WRITE, SHIFTS, or CLASSIFY /
    TRAIN frame of a length the golden device accepts. ``count``: a WRITE's words.
    ``in_frame``: a frame has begun and not ended; ``gap``: cycles since the last byte taken
    (saturating); ``stale``: the link has dropped the partial frame. ``crc`` is the register
    update function (``crc32_byte`` or a stand-in).
    """

    def __init__(self, g: Geometry, *, crc, timeout: int, slack: int):
        self.g, self.crc = g, crc
        self.timeout, self.slack = timeout, slack
        self.taken = Signal()
        self.byte = Signal(8)
        self.in_frame = Signal()
        self.gap = Signal(range(timeout + slack + 1))
        self.stale = Signal()
        self.executes = Signal()
        self.cmd = Signal(8)
        self.length = Signal(16)
        self.write_ok, self.shifts_ok, self.sample_ok = Signal(), Signal(), Signal()
        self.count = Signal(16)

    def elaborate(self, platform):
        m = Module()
        g, c, b, n = self.g, self.g.config, self.byte, self.length
        top = self.timeout + self.slack
        m.d.sync += self.gap.eq(Mux(self.taken, 1, Mux(self.gap == top, top, self.gap + 1)))
        m.d.comb += self.stale.eq(self.gap == top)

        pos = Signal(range(MAX_PAYLOAD + 9))    # bytes of the frame after SYNC taken so far
        seq = Signal(8)
        crc = Signal(32)                        # the register over cmd .. payload
        crc_next = Signal(32)
        m.d.comb += crc_next.eq(self.crc(crc, b))
        crc_ok = Signal()                       # the CRC's bytes so far match
        got_crc = Signal(24)                    # the CRC's bytes so far (the repeat rule)
        last_valid, last_seq, last_crc = Signal(), Signal(8), Signal(32)
        k = (pos - 4 - n)[:2]                   # of a CRC byte

        with m.If(self.taken):
            m.d.sync += self.executes.eq(0)
            with m.If(~self.in_frame | self.stale):
                m.d.sync += [self.in_frame.eq(b == SYNC), pos.eq(0), crc.eq(0xFFFFFFFF)]
            with m.Else():
                m.d.sync += pos.eq(pos + 1)
                with m.If(pos < 4 + n):
                    m.d.sync += crc.eq(crc_next)
                with m.Switch(pos):
                    with m.Case(0):
                        m.d.sync += self.cmd.eq(b)
                    with m.Case(1):
                        m.d.sync += seq.eq(b)
                    with m.Case(2):
                        m.d.sync += n[:8].eq(b)
                    with m.Case(3):
                        m.d.sync += n[8:].eq(b)
                        with m.If(Cat(n[:8], b) > MAX_PAYLOAD):
                            m.d.sync += self.in_frame.eq(0)
                    with m.Default():
                        with m.If(pos >= 4 + n):
                            matches = b == ~crc.word_select(k, 8)
                            with m.If(k != 3):
                                m.d.sync += [crc_ok.eq(Mux(k == 0, 1, crc_ok) & matches),
                                             got_crc.word_select(k, 8).eq(b)]
                            with m.Else():
                                m.d.sync += self.in_frame.eq(0)
                                received = Cat(got_crc, b)
                                repeat = last_valid & (seq == last_seq) & (received == last_crc)
                                with m.If(crc_ok & matches & ~repeat):
                                    reports = ((self.cmd == Cmd.INFO) | (self.cmd == Cmd.READ)
                                               | (self.cmd == Cmd.COUNTERS))
                                    m.d.sync += [self.executes.eq(1), last_valid.eq(~reports),
                                                 last_seq.eq(seq), last_crc.eq(received)]

        # The length rules of Device._execute (the model hash and the arguments are read from
        # the link's frame buffer: a check of those would have the solver reason about its
        # contents, which costs more than the depth allows).
        wb = g.word_bytes
        is_cmd = {cmd: self.executes & (self.cmd == cmd) for cmd in Cmd}
        m.d.comb += [
            self.count.eq((n - 11) // wb),
            self.write_ok.eq(is_cmd[Cmd.WRITE] & (n >= 11 + wb) & ((n - 11) % wb == 0)),
            self.shifts_ok.eq(is_cmd[Cmd.SHIFTS] & (n == 8 + 4)),
            self.sample_ok.eq((is_cmd[Cmd.CLASSIFY] & (n == c.pixels))
                              | (is_cmd[Cmd.TRAIN] & (n == c.pixels + TRAIN_OVERHEAD))),
        ]
        return m


class FreeAccelerator(Accelerator):
    """The accelerator's ports with nothing behind them: :class:`LinkHarness` makes its
    outputs free inputs, so the link is checked against every accelerator that keeps to the
    one rule the link relies on (assumed there): pixel ``ready`` falls only in the cycle
    after a pixel is taken."""

    def elaborate(self, platform):
        return Module()


class LinkHarness(Elaboratable):
    """The link around :class:`FreeAccelerator`, beside :class:`FrameMonitor` on the bytes
    it takes. Free: the bytes' values, the reply's ``ready``, reset, the accelerator's
    outputs.

    Assumptions: the accelerator's rule (see :class:`FreeAccelerator`); the byte stream
    (``rx.valid`` high but in at most ``pauses`` pauses, each of at least TIMEOUT + SLACK
    cycles); and so the timeout's margin: no byte of a partial frame is taken between
    TIMEOUT and TIMEOUT + SLACK cycles after the one before.

    Assertions (``checks``), each in the cycle of the action:

    - ``write``: a port write (``we``) only while a WRITE of a good length executes, at most
      its word count;
    - ``shifts``: the accelerator's shifts change only while a SHIFTS frame of the right
      length executes (a reset restores them);
    - ``pixel``: a pixel is taken only while a CLASSIFY / TRAIN frame of the right length
      executes, no more than its pixels;
    - ``start``: ``start`` only while such a frame executes, after all of its pixels, once,
      with ``train`` as the frame's command says.

    ``never``: actions (``write``, ``shifts``, ``pixel``, ``start``) also claimed never to
    happen: false claims that show the actions are reachable within the depth.
    """

    def __init__(self, *, crc, pauses: int = PAUSES, never=()):
        self.acc = FreeAccelerator(config=CONFIG, lanes=LANES, trace=False)
        self.dut = HostLink(self.acc, timeout=TIMEOUT)
        self.mon = FrameMonitor(self.dut.geometry, crc=crc, timeout=TIMEOUT, slack=SLACK)
        self.pauses = pauses
        self.never = never
        self.checks = {}

    @property
    def ports(self):
        outputs = [Value.cast(v) for _, member, v in self.acc.signature.flatten(self.acc)
                   if member.flow == Out]
        return formal.free_inputs(self.dut) + outputs

    def _check(self, m, name, cond, msg):
        a = Assert(cond, msg)
        m.d.comb += a
        self.checks[name] = a.src_loc

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = d = self.dut
        m.submodules.mon = mon = self.mon
        acc, c = self.acc, CONFIG

        # The environment.
        valid_before = Signal(init=1, reset_less=True)
        pauses = Signal(range(self.pauses + 1), reset_less=True)    # begun so far
        m.d.sync += valid_before.eq(d.rx.valid)
        with m.If(valid_before & ~d.rx.valid):
            m.d.sync += pauses.eq(pauses + 1)
        m.d.comb += Assume(~(valid_before & ~d.rx.valid) | (pauses < self.pauses))
        m.d.comb += [mon.taken.eq(d.rx.valid & d.receiving), mon.byte.eq(d.rx.payload)]
        m.d.comb += Assume(~(mon.taken & mon.in_frame & (mon.gap > TIMEOUT) & ~mon.stale))
        ready_before, taken_before = Signal(reset_less=True), Signal(reset_less=True)
        pixel_taken = acc.pixels.valid & acc.pixels.ready
        m.d.sync += [ready_before.eq(acc.pixels.ready), taken_before.eq(pixel_taken)]
        m.d.comb += Assume(~ready_before | acc.pixels.ready | taken_before)

        # What the executing frame has done so far.
        writes = Signal(16)
        pixels = Signal(range(c.pixels + 2))
        started = Signal()
        with m.If(mon.taken):
            m.d.sync += [writes.eq(0), pixels.eq(0), started.eq(0)]
        with m.Else():
            with m.If(acc.port.we):
                m.d.sync += writes.eq(writes + 1)
            with m.If(pixel_taken & (pixels <= c.pixels)):
                m.d.sync += pixels.eq(pixels + 1)
            with m.If(acc.start):
                m.d.sync += started.eq(1)
        shifts = acc.shifts.as_value()
        shifts_before = Signal(len(shifts), reset_less=True)
        reset_before = Signal(init=1, reset_less=True)   # or the initial state
        m.d.sync += [shifts_before.eq(shifts), reset_before.eq(ResetSignal())]
        changed = (shifts != shifts_before) & ~reset_before

        self._check(m, "write", ~acc.port.we | (mon.write_ok & (writes < mon.count)),
                    "a port write belongs to a good WRITE frame")
        self._check(m, "shifts", ~changed | mon.shifts_ok,
                    "the shifts change only for a good SHIFTS frame")
        self._check(m, "pixel", ~pixel_taken | (mon.sample_ok & (pixels < c.pixels)),
                    "a pixel taken belongs to a good CLASSIFY / TRAIN frame")
        self._check(m, "start", ~acc.start | (
            mon.sample_ok & ~started & (pixels == c.pixels)
            & (acc.train == (mon.cmd == Cmd.TRAIN))),
            "a sample starts for a good CLASSIFY / TRAIN frame")
        claims = {"write": ~acc.port.we, "shifts": ~changed, "pixel": ~pixel_taken,
                  "start": ~acc.start}
        for name in self.never:
            self._check(m, f"never_{name}", claims[name], f"no {name} ever")
        return m


class CrcHarness(Elaboratable):
    """:func:`crc32_byte` (the link's XOR network) beside :func:`crc32_serial`, for a free
    register and byte; ``poly`` is the bit-serial side's polynomial (a wrong one must
    fail)."""

    def __init__(self, poly=CRC32_POLY):
        self.register = Signal(32)
        self.byte = Signal(8)
        self.poly = poly
        self.checks = {}

    def elaborate(self, platform):
        m = Module()
        a = Assert(crc32_byte(self.register, self.byte)
                   == crc32_serial(m, self.register, self.byte, self.poly),
                   "the XOR network is CRC-32")
        m.d.comb += a
        self.checks["crc"] = a.src_loc
        return m


def link_check(monkeypatch, workdir, **kwargs):
    """BMC of :class:`LinkHarness` to :data:`DEPTH` with the link's CRC update replaced by
    :func:`crc_rotate` (see the module docstring)."""
    monkeypatch.setattr(host_link, "crc32_byte", crc_rotate)
    h = LinkHarness(crc=crc_rotate, **kwargs)
    never = kwargs.get("never", ())
    result = formal.check(h, ports=h.ports, mode="bmc", depth=DEPTH, presat=False,
                          keep_going=bool(never), vcd=False, workdir=workdir)
    return h, result


@pytest.mark.parametrize("poly", [CRC32_POLY, 0x04C11DB7])
def test_crc32_byte_is_crc32(poly, tmp_path):
    """For every register and byte, the link's XOR network gives the register the golden
    bit-serial CRC-32 gives (a combinational proof); with the polynomial not reflected the
    same proof fails, so it is not vacuous."""
    h = CrcHarness(poly)
    result = formal.check(h, ports=[h.register, h.byte], mode="prove", depth=1,
                          workdir=tmp_path)
    if poly == CRC32_POLY:
        assert result.passed, str(result)
    else:
        assert result.status == "FAIL" and result.fails_at(h.checks["crc"]), str(result)


@pytest.mark.slow
def test_link_acts_only_for_good_frames(monkeypatch, tmp_path):
    """BMC from reset to :data:`DEPTH` cycles: no port write, change of the shifts, pixel
    or start except for a good frame, taken while receiving, that executes."""
    _, result = link_check(monkeypatch, tmp_path)
    assert result.passed, str(result)


@pytest.mark.slow
def test_sample_is_reachable(monkeypatch, tmp_path):
    """Not vacuous: within the depth a good CLASSIFY frame starts a sample (after its pixels,
    or the ``start`` assertion would break too)."""
    h, result = link_check(monkeypatch, tmp_path, never=("start",))
    assert result.status == "FAIL", str(result)
    assert result.fails_at(h.checks["never_start"]), str(result)
    for name in ("write", "shifts", "pixel", "start"):
        assert not result.fails_at(h.checks[name]), str(result)
