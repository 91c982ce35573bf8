# amaranth: UnusedElaboratable=no
"""Formal proofs about :class:`~eqfpga.hw.ep_update.EPUpdateUnit`: for every input, every
result equals the golden update and lies inside the limits (SymbiYosys, k-induction)."""

import pytest
from amaranth.hdl import Assert, Assume, Const, Elaboratable, Module, Mux, Signal, signed

from eqfpga.config import LFSR_BITS, Config
from eqfpga.hw.ep_update import EPUpdateUnit
from eqfpga.sim import formal

pytestmark = pytest.mark.usefixtures("formal_tools")

LANES = 2


class GoldenUpdateHarness(Elaboratable):
    """The unit with free inputs, beside the golden update written independently of it.

    Golden (:func:`eqfpga.golden.ep_update.stochastic_round` and the clip of
    :func:`~eqfpga.golden.ep_update.apply`)::

        w' = clip(w + ((q + (draw & (2**shift - 1))) >> shift), lo, hi)

    computed here as plain integer arithmetic on explicitly wide signals (a mask made by a
    shift, signed comparisons for the clip), where the unit uses a thermometer mask and a
    sign-bit test. The expected results travel through a ``latency``-deep delay line and
    are compared with the unit's outputs.

    ``wider_mask`` (the golden rounding keeps one random bit too many) and ``narrower_range``
    (the range assertion's top one below the limit) are deliberate errors: with either the
    proof must fail.

    Every top-level port is free in every cycle: ``i.valid``, ``bias``, the lanes' ``w`` and
    ``q`` over their whole shapes, and the draws. The one assumption is the unit's contract
    on ``shift``: at most ``LFSR_BITS`` (its port is 5 bits wide). Resets are free too.
    """

    def __init__(self, config: Config, *, wider_mask: bool = False, narrower_range: bool = False):
        self.config = config
        self.dut = EPUpdateUnit(config=config, lanes=LANES)
        self.wider_mask = wider_mask
        self.narrower_range = narrower_range
        self.checks = {}      # assertion name -> src_loc, to see which one a counterexample breaks

    @property
    def ports(self):
        d = self.dut
        return [d.i.valid, d.i.payload.as_value(), d.bias, d.shift, d.draws.as_value()]

    def elaborate(self, platform):
        c, d = self.config, self.dut
        m = Module()
        m.submodules.dut = d
        m.d.comb += Assume(d.shift <= LFSR_BITS)

        wide = signed(d.q_shape.width + LFSR_BITS + d.value_shape.width + 4)
        (wlo, whi), (blo, bhi) = c.weight_range, c.bias_range
        lo, hi = Mux(d.bias, blo, wlo), Mux(d.bias, bhi, whi)
        keep = d.shift + 1 if self.wider_mask else d.shift
        mask = Signal(2 * LFSR_BITS)
        m.d.comb += mask.eq((Const(1, 2 * LFSR_BITS) << keep) - 1)
        want, want_lo, want_hi = [], Signal(wide), Signal(wide)
        m.d.comb += [want_lo.eq(lo), want_hi.eq(hi)]
        for p in range(LANES):
            rounded, total, clipped = Signal(wide), Signal(wide), Signal(wide)
            lane = d.i.payload[p]
            m.d.comb += [rounded.eq((lane.q + (d.draws[p] & mask)) >> d.shift),
                         total.eq(lane.w + rounded),
                         clipped.eq(Mux(total < lo, lo, Mux(total > hi, hi, total)))]
            want.append(clipped)

        # The expected results, delayed as the unit's are.
        valid, expect, limits = d.i.valid, want, (want_lo, want_hi)
        for k in range(d.latency):
            nv = Signal(name=f"want_valid{k + 1}")
            ne = [Signal(wide, name=f"want{k + 1}_{p}", reset_less=True) for p in range(LANES)]
            nl = tuple(Signal(wide, name=f"want_{s}{k + 1}", reset_less=True) for s in ("lo", "hi"))
            m.d.sync += [nv.eq(valid)] + [a.eq(b) for a, b in zip(ne + list(nl),
                                                                  expect + list(limits))]
            valid, expect, limits = nv, ne, nl

        valid_check = Assert(d.o.valid == valid, "results come latency cycles after inputs")
        m.d.comb += valid_check
        self.checks["valid"] = valid_check.src_loc
        top = limits[1] - 1 if self.narrower_range else limits[1]
        for p in range(LANES):
            got = d.o.payload[p]
            golden = Assert(~valid | (got == expect[p]), "result equals the golden update")
            inside = Assert(~valid | ((got >= limits[0]) & (got <= top)),
                            "result inside the limits")
            m.d.comb += [golden, inside]
            self.checks["golden"], self.checks["range"] = golden.src_loc, inside.src_loc
        return m


# Induction length: a pipeline without feedback forgets any state in `latency` cycles, so
# k-induction closes once k exceeds the latency.
DEPTH = EPUpdateUnit.latency + 2


def test_result_is_golden_and_saturated(hw_config, tmp_path):
    """k-induction (``prove``, length latency + 2): holds for every run of any length; it
    closes because the unit is a pipeline without feedback (any state is forgotten after
    ``latency`` cycles), so no invariant is needed. Each
    of the configurations of tests/hw/conftest.py (4 to 12-bit weights, 6 to 16-bit biases),
    weight and bias limits (``bias`` is free), every shift 0..LFSR_BITS, 2 lanes."""
    h = GoldenUpdateHarness(hw_config)
    result = formal.check(h, ports=h.ports, mode="prove", depth=DEPTH, workdir=tmp_path)
    assert result.passed, str(result)


@pytest.mark.parametrize("mistake, broken", [("wider_mask", "golden"),
                                             ("narrower_range", "range")])
def test_a_wrong_property_fails(mistake, broken, tmp_path):
    """The harness is not vacuous: a golden rounding with one random bit too many, or a range
    one narrower than the limits, gives a counterexample from reset (``FAIL``, not just an
    induction that does not close) on the assertion it changed."""
    h = GoldenUpdateHarness(Config(name="t"), **{mistake: True})
    result = formal.check(h, ports=h.ports, mode="prove", depth=DEPTH, workdir=tmp_path)
    assert result.status == "FAIL", str(result)
    assert result.fails_at(h.checks[broken]), str(result)
