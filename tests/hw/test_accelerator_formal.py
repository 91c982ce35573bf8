# amaranth: UnusedElaboratable=no
"""Formal checks of the :class:`~eqfpga.hw.accelerator.Accelerator`'s sequencer: a sample
always ends within a bound computed from the configuration, whatever the inputs, and a
stalling pixel stream cannot keep the accelerator from finishing images (SymbiYosys, BMC).

k-induction does not close on the whole accelerator: its state holds many counters and
pipeline registers whose unreachable combinations (e.g. ``busy`` high in the idle state)
never end a sample, and the sequencer's state is not visible to a harness to rule them out.
So both properties are bounded model checks from reset, to a depth that covers loading an
image (with the stalls allowed), a whole training sample on the largest image (the worst
case), and a few cycles more.
"""

import numpy as np
import pytest
from amaranth.hdl import Assert, Elaboratable, Module, Mux, Signal
from amaranth.sim import Simulator

from eqfpga.config import Config
from eqfpga.hw.accelerator import Accelerator
from eqfpga.hw.ep_update import EPUpdateUnit
from eqfpga.hw.neuron import NeuronUnit
from eqfpga.sim import accelerator as drv
from eqfpga.sim import formal

pytestmark = pytest.mark.usefixtures("formal_tools")

# Tiny networks with the narrowest formats: the sequencer's schedule depends only on the
# shape (inputs, hidden, outputs, lanes, steps, nudging), and narrow data keep the solver fast.
NARROW = dict(input_bits=1, weight_bits=2, bias_bits=2, weight_frac_bits=1, rate_bits=1,
              membrane_frac_bits=0, leak_shift=0, beta_shift=0, input_shift=0, drive_bits=5,
              membrane_bits=5, w1_init=1, w2_init=1, w1_shift=1, w2_shift=1, b1_shift=1,
              b2_shift=1)
# One lane (two groups) with one-sided nudging; two lanes (one group) with symmetric nudging
# (a second nudged phase) and one-step phases.
TINY = {
    "2-2-2/P1/one-sided": (Config(name="f", inputs=2, hidden=2, outputs=2, free_steps=2,
                                  nudge_steps=1, **NARROW), 1),
    "2-2-2/P2/symmetric": (Config(name="f", inputs=2, hidden=2, outputs=2, free_steps=1,
                                  nudge_steps=1, symmetric_nudge=True, **NARROW), 2),
}


def sample_cycles(c: Config, lanes: int, *, nonzero: int, train: bool) -> int:
    """Cycles ``busy`` is high for one sample of an image with ``nonzero`` non-zero inputs
    (from the cycle after ``start`` up to and including the one before ``done``), read off
    the sequencer's schedule (no ``deep_pipeline``, W1 without banks: its read latency is 1).

    - drive: per group, the image's entries (pipeline of 3 after the last) and P writes;
    - a time step: the W2 loop takes max(P, Y) cycles per group but the last (whose neurons
      B then takes P cycles), then the Y outputs, and 8 cycles of neuron pipeline and
      hand-over;
    - W1 update: per non-zero row 2 cycles to fetch it, 2 per word, 5 to drain; W2: per
      output a rate fetch and 2 cycles per word, 6 to drain; biases: one per cycle, 6 to
      drain; one cycle to finish.
    """
    P, G, Y, H = lanes, c.hidden // lanes, c.outputs, c.hidden
    read_latency = 1
    drive = G * ((nonzero > 0) * (nonzero + 2 + read_latency) + P + 1)
    neuron_tail = NeuronUnit.latency + 4
    step = (G - 1) * max(P, Y) + P + 2 * Y + neuron_tail
    steps = c.free_steps + train * c.nudge_steps * (2 if c.symmetric_nudge else 1)
    update = 0
    if train:
        drain = EPUpdateUnit.latency + 1
        update = (nonzero * (2 + 2 * G + drain) + 1) + (Y * (1 + 2 * G) + drain + 1) \
            + (H + Y + drain + 1)
    return drive + steps * step + update + 1


def worst_sample(c: Config, lanes: int) -> int:
    """The longest sample: training on an image whose every input is non-zero."""
    return sample_cycles(c, lanes, nonzero=c.inputs, train=True)


def done_bound(c: Config, lanes: int, stall: int) -> int:
    """The longest time from one ``done`` (or reset) to the next with a host that keeps to
    ``stall``: every pixel after ``stall`` cycles of waiting, ``start`` ``stall`` cycles after
    the image is complete, then the longest sample (a pixel is taken in the cycle of
    ``done`` already)."""
    return c.pixels * (stall + 1) + stall + 1 + worst_sample(c, lanes)


class SequencerHarness(Elaboratable):
    """The accelerator with every input free in every cycle: pixels, ``start``, ``train``,
    ``label``, ``shifts``, the host port's reads and writes, and reset.

    Two assertions:

    - ``busy``: ``busy`` never stays high for more than ``busy_bound`` cycles in a row (a
      sample always ends), whatever the inputs;
    - ``done``: as long as the host has kept to the rules below since reset, there are at
      most ``done_bound`` cycles from one ``done`` (or reset) to the next: no stall pattern
      of the pixel stream deadlocks the accelerator. The rules: the pixel stream is never
      stalled (``valid`` low while ``ready`` is high) for more than ``stall`` cycles in a
      row, ``start`` comes at most ``stall`` cycles after the image is complete, and the
      parameter port stays idle. They are watched, not assumed, so that one run checks both
      assertions.
    """

    def __init__(self, c: Config, lanes: int, *, stall: int, busy_bound: int, done_bound: int):
        self.dut = Accelerator(config=c, lanes=lanes, trace=False)
        self.stall = stall
        self.busy_bound = busy_bound
        self.done_bound = done_bound
        self.checks = {}

    @property
    def ports(self):
        return formal.free_inputs(self.dut)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = d = self.dut
        s = self.stall

        # Cycles busy has been high, up to and including this one (saturating).
        top = self.busy_bound + 1
        run, run_before = Signal(range(top + 1)), Signal(range(top + 1))
        m.d.comb += run.eq(Mux(d.busy, Mux(run_before == top, top, run_before + 1), 0))
        m.d.sync += run_before.eq(run)
        ends = Assert(run <= self.busy_bound, "a sample ends within the bound")
        m.d.comb += ends
        self.checks["busy"] = ends.src_loc

        # The host's rules: cycles in a row, before this one, that the stream could have
        # moved and did not, and that a complete image waited for start.
        pixel_wait, start_wait = Signal(range(s + 1)), Signal(range(s + 1))
        stalled = d.pixels.ready & ~d.pixels.valid
        waiting = d.image_ready & ~d.busy & ~d.start
        m.d.sync += [pixel_wait.eq(Mux(stalled & (pixel_wait < s), pixel_wait + 1, 0)),
                     start_wait.eq(Mux(waiting & (start_wait < s), start_wait + 1, 0))]
        broken = ((stalled & (pixel_wait == s)) | (waiting & (start_wait == s))
                  | d.port.we | d.port.re)
        kept = Signal(init=1)           # the rules held in every cycle before this one
        m.d.sync += kept.eq(kept & ~broken)
        # Cycles since reset or the last done (saturating).
        top = self.done_bound + 1
        since = Signal(range(top + 1))
        m.d.sync += since.eq(Mux(d.done, 1, Mux(since == top, top, since + 1)))
        progress = Assert(~kept | (since <= self.done_bound),
                          "the next done comes within the bound")
        m.d.comb += progress
        self.checks["done"] = progress.src_loc
        return m


STALL = 2


def check_sequencer(name, workdir, *, too_small: int = 0):
    """BMC of :class:`SequencerHarness` for ``TINY[name]`` with both bounds ``too_small``
    below the computed ones: deep enough for the first ``done`` after the slowest image and
    sample, and a few cycles more. Neither counter can pass its bound before the cycle of
    that number (they start at 0 and count by one), so the earlier cycles are not checked
    (``skip``); there are no assumptions (no ``presat``)."""
    c, lanes = TINY[name]
    busy, done = worst_sample(c, lanes), done_bound(c, lanes, STALL)
    h = SequencerHarness(c, lanes, stall=STALL, busy_bound=busy - too_small,
                         done_bound=done - too_small)
    depth = done + 3
    result = formal.check(h, ports=h.ports, mode="bmc", depth=depth,
                          skip=busy - too_small, presat=False, keep_going=bool(too_small),
                          vcd=not too_small, workdir=workdir)
    return h, result


@pytest.mark.parametrize("name", TINY)
def test_sequencer_always_finishes(name, tmp_path):
    """BMC from reset (k-induction does not close, see the module docstring), to the depth of
    the first ``done`` after the slowest image load and sample plus 3 cycles: a sample never
    keeps ``busy`` high longer than :func:`worst_sample`, and a host keeping to its rules
    never waits longer than :func:`done_bound` for the next ``done``."""
    _, result = check_sequencer(name, tmp_path)
    assert result.passed, str(result)


def test_bounds_one_too_small_fail(tmp_path):
    """Not vacuous, and the bounds are exact: with each bound one smaller, both assertions
    break (counterexamples from reset: the slowest sample, then the slowest host)."""
    h, result = check_sequencer("2-2-2/P1/one-sided", tmp_path, too_small=1)
    assert result.status == "FAIL", str(result)
    assert result.fails_at(h.checks["busy"]) and result.fails_at(h.checks["done"]), str(result)


@pytest.mark.parametrize("name", TINY)
def test_sample_cycles_is_the_schedule(name):
    """:func:`sample_cycles` is the sequencer's schedule, not a bound fitted to one case: it
    gives the busy cycles of every image (0 .. all inputs non-zero), in inference and in
    training, in simulation."""
    c, lanes = TINY[name]
    dut = Accelerator(config=c, lanes=lanes, trace=False)
    cases = [(nonzero, train) for train in (False, True) for nonzero in range(c.inputs + 1)]
    got = []

    async def bench(ctx):
        for nonzero, train in cases:
            pixels = np.zeros(c.pixels, np.int64)
            pixels[:nonzero] = 255
            await drv.send_image(ctx, dut, pixels)
            ctx.set(dut.train, train)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 0
            while ctx.get(dut.busy):
                cycles += 1
                await ctx.tick()
            got.append(cycles)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == [sample_cycles(c, lanes, nonzero=n, train=t) for n, t in cases]
